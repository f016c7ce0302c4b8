//! Configuration: the YAML file an admin writes, parsed into validated types in one step.
//!
//! [`RawConfig`] mirrors the file (unknown keys are refused); [`Config::from_raw`] turns it into
//! [`Config`], whose fields are already the domain types the rest of the code wants (URLs,
//! server names, room IDs, socket addresses). Relative paths are resolved against the directory
//! of the config file. Every error names the file and the key.

mod raw;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ruma::{OwnedRoomOrAliasId, OwnedServerName, OwnedUserId};
use url::Url;

pub use raw::RawConfig;

use crate::registration::{AppRegistration, RegistrationError};

/// Default limit for a transaction body: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A configuration problem, always naming the file (and, where there is one, the key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration file: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid { file: PathBuf, key: &'static str, message: String },
    #[error("{file}: appservice.registration: {source}")]
    Registration {
        file: PathBuf,
        #[source]
        source: RegistrationError,
    },
}

/// Which decisions get a notice in the control room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    All,
    Review,
    None,
}

/// The format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Who a review notice mentions (`review.mention`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mention {
    /// Nobody (the default).
    #[default]
    None,
    /// The joined control-room members who count as moderators.
    Moderators,
    /// The whole control room (`@room`).
    Room,
}

/// What happens to a review item nobody resolved in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    Deny,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct HomeserverConfig {
    /// Client-server API base URL.
    pub url: Url,
    pub server_name: OwnedServerName,
    /// Requests to the homeserver in flight at once (actions run concurrently up to this).
    pub max_concurrent_requests: usize,
    /// How long one request may take before it counts as unanswered (and is tried again).
    pub request_timeout: Duration,
    /// Actions in flight at once whose target is on one other server (a knocker's server):
    /// knockers of a server that never answers hold at most this many slots.
    pub max_requests_per_server: usize,
    /// A file holding a server admin's access token, for `account:` conditions.
    pub admin_token_file: Option<PathBuf>,
}

/// The ban lists followed (see [`crate::lists`]).
#[derive(Debug, Clone)]
pub struct BanListsConfig {
    /// A list holding more rules than this is unavailable: knocks its `ban_list` conditions
    /// ask about are held for review, never accepted.
    pub max_rules: usize,
}

/// Prometheus metrics (see [`crate::metrics`]).
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (its own listener); `None`: not served.
    pub listen: Option<SocketAddr>,
}

/// How actions are carried out (see [`crate::runner`]).
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    /// An action still failing after this long moves to the failed list.
    pub give_up_after: Duration,
}

#[derive(Debug, Clone)]
pub struct AppserviceConfig {
    /// Where the homeserver pushes transactions.
    pub listen: SocketAddr,
    /// Path of the registration file (resolved).
    pub registration: PathBuf,
    /// Largest transaction body accepted, in bytes.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Moderators {
    pub power_level: i64,
    pub users: Vec<OwnedUserId>,
}

#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub expire_after: Duration,
    pub on_expiry: OnExpiry,
    /// Who review notices mention.
    pub mention: Mention,
}

/// How long knockwarden keeps what it only needs for a while (see [`crate::retention`]).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Seen event IDs and transaction hashes (to recognise what the homeserver sends again).
    pub events: Duration,
    /// Settled audit entries and closed review items.
    pub audit: Duration,
}

/// The validated configuration, without the registration (see [`Settings`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub file: PathBuf,
    pub homeserver: HomeserverConfig,
    pub appservice: AppserviceConfig,
    pub database: PathBuf,
    pub policies: PathBuf,
    pub control_room: OwnedRoomOrAliasId,
    pub moderators: Moderators,
    pub notify: Notify,
    pub dry_run: bool,
    pub log_format: LogFormat,
    pub review: ReviewConfig,
    pub retention: RetentionConfig,
    pub actions: ActionsConfig,
    pub metrics: MetricsConfig,
    pub ban_lists: BanListsConfig,
}

/// Everything `serve` needs: the configuration and the registration it points at.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub registration: AppRegistration,
    /// The server admin's token from `homeserver.admin_token_file`, if set.
    pub admin_token: Option<AdminToken>,
}

/// A server admin's access token: never printed (`Debug` leaves it out).
#[derive(Clone)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl Config {
    /// Reads and validates a config file (but not the registration it names).
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.to_owned(), source })?;
        let raw = RawConfig::parse(&text).map_err(|message| ConfigError::Parse { file: file.to_owned(), message })?;
        Self::from_raw(raw, file)
    }

    /// Turns the raw file into validated values; relative paths are resolved against the
    /// directory of `file`.
    pub fn from_raw(raw: RawConfig, file: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { file: file.to_owned(), key, message };
        let base = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() { p.to_owned() } else { base.join(p) }
        };

        let url = Url::parse(&raw.homeserver.url)
            .map_err(|e| invalid("homeserver.url", format!("`{}` is not a URL: {e}", raw.homeserver.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("homeserver.url", format!("`{url}` must be an http:// or https:// URL")));
        }
        let server_name = OwnedServerName::try_from(raw.homeserver.server_name.as_str()).map_err(|e| {
            invalid("homeserver.server_name", format!("`{}` is not a server name: {e}", raw.homeserver.server_name))
        })?;
        let listen: SocketAddr = raw.appservice.listen.parse().map_err(|e| {
            invalid(
                "appservice.listen",
                format!("`{}` is not an IP address and port such as 127.0.0.1:9993: {e}", raw.appservice.listen),
            )
        })?;
        let max_body_bytes = raw.appservice.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(invalid("appservice.max_body_bytes", "must be greater than 0".into()));
        }
        let control_room = OwnedRoomOrAliasId::try_from(raw.control_room.as_str()).map_err(|e| {
            invalid(
                "control_room",
                format!("`{}` is neither a room ID (!…) nor an alias (#…:server): {e}", raw.control_room),
            )
        })?;
        let mut users = Vec::with_capacity(raw.moderators.users.len());
        for u in &raw.moderators.users {
            users.push(
                OwnedUserId::try_from(u.as_str())
                    .map_err(|e| invalid("moderators.users", format!("`{u}` is not a user ID: {e}")))?,
            );
        }
        let expire_after =
            crate::duration::parse(&raw.review.expire_after).map_err(|e| invalid("review.expire_after", e))?;

        let retention = RetentionConfig {
            events: crate::duration::parse(&raw.retention.events).map_err(|e| invalid("retention.events", e))?,
            audit: crate::duration::parse(&raw.retention.audit).map_err(|e| invalid("retention.audit", e))?,
        };

        let max_concurrent_requests = raw.homeserver.max_concurrent_requests;
        if max_concurrent_requests == 0 {
            return Err(invalid("homeserver.max_concurrent_requests", "must be at least 1".into()));
        }
        let request_timeout = crate::duration::parse(&raw.homeserver.request_timeout)
            .map_err(|e| invalid("homeserver.request_timeout", e))?;
        let max_requests_per_server = raw.homeserver.max_requests_per_server;
        if max_requests_per_server == 0 {
            return Err(invalid("homeserver.max_requests_per_server", "must be at least 1".into()));
        }
        let give_up_after =
            crate::duration::parse(&raw.actions.give_up_after).map_err(|e| invalid("actions.give_up_after", e))?;
        let metrics_listen = match &raw.metrics.listen {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
                invalid("metrics.listen", format!("`{a}` is not an IP address and port such as 127.0.0.1:9101: {e}"))
            })?),
        };

        Ok(Config {
            file: file.to_owned(),
            homeserver: HomeserverConfig {
                url,
                server_name,
                max_concurrent_requests,
                request_timeout,
                max_requests_per_server,
                admin_token_file: raw.homeserver.admin_token_file.as_deref().map(resolve),
            },
            appservice: AppserviceConfig {
                listen,
                registration: resolve(&raw.appservice.registration),
                max_body_bytes,
            },
            database: resolve(&raw.database),
            policies: resolve(&raw.policies),
            control_room,
            moderators: Moderators { power_level: raw.moderators.power_level, users },
            notify: raw.notify,
            dry_run: raw.dry_run,
            log_format: raw.log_format,
            review: ReviewConfig { expire_after, on_expiry: raw.review.on_expiry, mention: raw.review.mention },
            retention,
            actions: ActionsConfig { give_up_after },
            metrics: MetricsConfig { listen: metrics_listen },
            ban_lists: BanListsConfig { max_rules: raw.ban_lists.max_rules },
        })
    }
}

impl Settings {
    /// Reads the config file and the registration it names; nothing starts unless both are good.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let config = Config::load(file)?;
        let registration = AppRegistration::load(&config.appservice.registration, &config.homeserver.server_name)
            .map_err(|source| ConfigError::Registration { file: file.to_owned(), source })?;
        let admin_token = match &config.homeserver.admin_token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    file: file.to_owned(),
                    key: "homeserver.admin_token_file",
                    message: format!("{}: cannot read it: {e}", path.display()),
                })?;
                let token = text.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(ConfigError::Invalid {
                        file: file.to_owned(),
                        key: "homeserver.admin_token_file",
                        message: format!("{}: must hold one access token", path.display()),
                    });
                }
                Some(AdminToken(token.to_owned()))
            }
        };
        Ok(Settings { config, registration, admin_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config.example.yaml");

    fn from_text(text: &str) -> Result<Config, ConfigError> {
        let raw = RawConfig::parse(text).map_err(|message| ConfigError::Parse { file: "c.yaml".into(), message })?;
        Config::from_raw(raw, Path::new("/etc/kw/c.yaml"))
    }

    #[test]
    fn the_example_parses_and_paths_are_resolved_against_the_file() {
        let c = from_text(EXAMPLE).unwrap();
        assert_eq!(c.homeserver.server_name.as_str(), "example.org");
        assert_eq!(c.appservice.listen, "127.0.0.1:9993".parse().unwrap());
        assert_eq!(c.appservice.registration, Path::new("/etc/kw/registration.yaml"));
        assert_eq!(c.database, Path::new("/etc/kw/data/knockwarden"));
        assert_eq!(c.appservice.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.notify, Notify::Review);
        assert_eq!(c.review.expire_after, Duration::from_secs(7 * 86400));
        assert_eq!(c.review.on_expiry, OnExpiry::Ignore);
        assert_eq!(c.homeserver.max_concurrent_requests, 32);
        assert_eq!(c.homeserver.request_timeout, Duration::from_secs(20));
        assert_eq!(c.homeserver.max_requests_per_server, 4);
        assert_eq!(c.actions.give_up_after, Duration::from_secs(86_400));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let text = EXAMPLE.replace("  listen:", "  lisen: \"x\"\n  listen:");
        let err = from_text(&text).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("appservice"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn malformed_values_name_the_key() {
        let cases = [
            ("url: \"http://127.0.0.1:8008\"", "url: \"not a url\"", "homeserver.url"),
            ("server_name: \"example.org\"", "server_name: \"bad name!\"", "homeserver.server_name"),
            ("listen: \"127.0.0.1:9993\"", "listen: \"nowhere\"", "appservice.listen"),
            ("control_room: \"!ctrl:example.org\"", "control_room: \"ctrl\"", "control_room"),
            ("users: []", "users: [\"bob\"]", "moderators.users"),
        ];
        for (from, to, key) in cases {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let err = from_text(&EXAMPLE.replace(from, to)).unwrap_err().to_string();
            assert!(err.starts_with(&format!("/etc/kw/c.yaml: {key}: ")), "{err}");
        }
    }

    #[test]
    fn bad_enum_value_is_refused() {
        let err = from_text(&EXAMPLE.replace("notify: review", "notify: sometimes")).unwrap_err().to_string();
        assert!(err.contains("notify"), "{err}");
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/kw.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/kw.yaml: cannot read"), "{err}");
    }
}

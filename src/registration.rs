//! The appservice registration: loading it for `serve`, generating it for
//! `generate-registration`.
//!
//! The file format is ruma's [`Registration`] (the spec's registration YAML).

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use rand::RngCore;
use ruma::{
    OwnedUserId, ServerName, UserId,
    api::appservice::{Namespace, Namespaces, Registration, RegistrationInit},
};

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("{path}: cannot read the registration: {source}{}", read_hint(source))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid registration: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: String, key: &'static str, message: String },
    #[error("{path}: already exists; pass --force to overwrite it")]
    Exists { path: String },
    #[error("{path}: cannot write the registration: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What to do about an unreadable registration, when it is a matter of permissions.
fn read_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (knockwarden's user must own it, mode 0600; the homeserver reads its own copy: docs/OPERATIONS.md, \"As a systemd service\")"
        }
        _ => "",
    }
}

/// A loaded registration with the bot's user ID worked out.
#[derive(Clone)]
pub struct AppRegistration {
    pub id: String,
    pub as_token: String,
    pub hs_token: String,
    pub bot_user_id: OwnedUserId,
    /// Where the homeserver pushes transactions (the registration's `url`).
    pub url: Option<String>,
    /// Whether the users namespace claims the bot's user ID (the homeserver then lets the
    /// as_token act as it).
    pub claims_bot: bool,
}

// Tokens never appear in logs, not even in Debug output.
impl std::fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRegistration")
            .field("id", &self.id)
            .field("bot_user_id", &self.bot_user_id)
            .field("as_token", &"<redacted>")
            .field("hs_token", &"<redacted>")
            .finish()
    }
}

impl AppRegistration {
    pub fn load(path: &Path, server_name: &ServerName) -> Result<Self, RegistrationError> {
        let p = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| RegistrationError::Read { path: p.clone(), source })?;
        let reg: Registration = serde_yaml::from_str(&text)
            .map_err(|e| RegistrationError::Parse { path: p.clone(), message: e.to_string() })?;
        Self::from_registration(reg, server_name, &p)
    }

    fn from_registration(reg: Registration, server_name: &ServerName, p: &str) -> Result<Self, RegistrationError> {
        let invalid =
            |key, message: &str| RegistrationError::Invalid { path: p.to_owned(), key, message: message.to_owned() };
        if reg.as_token.trim().is_empty() {
            return Err(invalid("as_token", "must not be empty"));
        }
        if reg.hs_token.trim().is_empty() {
            return Err(invalid("hs_token", "must not be empty"));
        }
        if reg.as_token == reg.hs_token {
            return Err(invalid("hs_token", "must differ from as_token"));
        }
        let bot_user_id = UserId::parse_with_server_name(reg.sender_localpart.as_str(), server_name).map_err(|e| {
            invalid("sender_localpart", &format!("`{}` is not a valid localpart: {e}", reg.sender_localpart))
        })?;
        let claims_bot = reg.namespaces.users.iter().any(|ns| {
            regex::Regex::new(&format!("^(?:{})$", ns.regex)).is_ok_and(|r| r.is_match(bot_user_id.as_str()))
        });
        Ok(Self { id: reg.id, as_token: reg.as_token, hs_token: reg.hs_token, bot_user_id, url: reg.url, claims_bot })
    }
}

/// What `generate-registration` writes.
pub struct NewRegistration<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub localpart: &'a str,
    pub server_name: &'a ServerName,
}

/// A fresh 64-hex-character token (32 random bytes).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl NewRegistration<'_> {
    /// Builds the registration: fresh tokens, no rate limits, an exclusive namespace holding
    /// exactly the bot's user ID.
    pub fn build(&self) -> Result<Registration, RegistrationError> {
        let user = UserId::parse_with_server_name(self.localpart, self.server_name).map_err(|e| {
            RegistrationError::Invalid {
                path: "--localpart".into(),
                key: "sender_localpart",
                message: format!("`{}` is not a valid localpart: {e}", self.localpart),
            }
        })?;
        let mut namespaces = Namespaces::new();
        namespaces.users = vec![Namespace::new(true, format!("^{}$", regex::escape(user.as_str())))];
        let mut reg: Registration = RegistrationInit {
            id: self.id.to_owned(),
            url: Some(self.url.to_owned()),
            as_token: random_token(),
            hs_token: random_token(),
            sender_localpart: self.localpart.to_owned(),
            namespaces,
            rate_limited: Some(false),
            protocols: None,
        }
        .into();
        reg.receive_ephemeral = false;
        Ok(reg)
    }

    /// Writes the registration with mode 0600; refuses to overwrite unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<Registration, RegistrationError> {
        let p = path.display().to_string();
        let reg = self.build()?;
        let yaml = serde_yaml::to_string(&reg).expect("a registration serializes");
        let mut opts = fs::OpenOptions::new();
        opts.write(true).mode(0o600);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut file = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                RegistrationError::Exists { path: p.clone() }
            } else {
                RegistrationError::Write { path: p.clone(), source }
            }
        })?;
        // An existing file keeps its old mode when truncated: set it explicitly.
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|source| RegistrationError::Write { path: p.clone(), source })?;
        file.write_all(yaml.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| RegistrationError::Write { path: p, source })?;
        Ok(reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::server_name;

    #[test]
    fn generated_registration_round_trips_and_has_an_exact_exclusive_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.yaml");
        let new = NewRegistration {
            id: "knockwarden",
            url: "http://127.0.0.1:9993",
            localpart: "knockwarden",
            server_name: server_name!("example.org"),
        };
        let reg = new.write(&path, false).unwrap();
        assert_eq!(reg.as_token.len(), 64);
        assert!(reg.as_token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(reg.as_token, reg.hs_token);
        let ns = &reg.namespaces.users[0];
        assert!(ns.exclusive);
        let re = regex::Regex::new(&ns.regex).unwrap();
        assert!(re.is_match("@knockwarden:example.org"));
        assert!(!re.is_match("@knockwarden:exampleXorg"));
        assert!(!re.is_match("@knockwarden2:example.org"));

        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let loaded = AppRegistration::load(&path, server_name!("example.org")).unwrap();
        assert_eq!(loaded.bot_user_id.as_str(), "@knockwarden:example.org");
        assert_eq!(loaded.hs_token, reg.hs_token);
        assert!(!format!("{loaded:?}").contains(&reg.hs_token));

        let err = new.write(&path, false).unwrap_err();
        assert!(matches!(err, RegistrationError::Exists { .. }), "{err}");
        let again = new.write(&path, true).unwrap();
        assert_ne!(again.as_token, reg.as_token);
    }

    #[test]
    fn broken_registration_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.yaml");
        fs::write(&path, "id: x\nurl: null\nas_token: a\nhs_token: a\nsender_localpart: bot\nnamespaces: {}\n")
            .unwrap();
        let err = AppRegistration::load(&path, server_name!("example.org")).unwrap_err().to_string();
        assert!(err.contains("hs_token: must differ"), "{err}");
        fs::write(&path, "this: [is not").unwrap();
        let err = AppRegistration::load(&path, server_name!("example.org")).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}

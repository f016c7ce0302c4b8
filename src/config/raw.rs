//! The config file as written: plain strings and numbers, unknown keys refused.

use serde::Deserialize;

use super::{LogFormat, Mention, Notify, OnExpiry};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub homeserver: RawHomeserver,
    pub appservice: RawAppservice,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_policies")]
    pub policies: String,
    pub control_room: String,
    #[serde(default)]
    pub moderators: RawModerators,
    #[serde(default = "default_notify")]
    pub notify: Notify,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_log_format")]
    pub log_format: LogFormat,
    #[serde(default)]
    pub review: RawReview,
    #[serde(default)]
    pub retention: RawRetention,
    #[serde(default)]
    pub actions: RawActions,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub ban_lists: RawBanLists,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBanLists {
    #[serde(default = "default_max_rules")]
    pub max_rules: usize,
}

impl Default for RawBanLists {
    fn default() -> Self {
        Self { max_rules: default_max_rules() }
    }
}

fn default_max_rules() -> usize {
    crate::policy::banlist::DEFAULT_MAX_RULES
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    #[serde(default = "default_give_up_after")]
    pub give_up_after: String,
}

impl Default for RawActions {
    fn default() -> Self {
        Self { give_up_after: default_give_up_after() }
    }
}

fn default_give_up_after() -> String {
    "24h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(default = "default_retention_events")]
    pub events: String,
    #[serde(default = "default_retention_audit")]
    pub audit: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self { events: default_retention_events(), audit: default_retention_audit() }
    }
}

fn default_retention_events() -> String {
    "30d".into()
}
fn default_retention_audit() -> String {
    "365d".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeserver {
    pub url: String,
    pub server_name: String,
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    #[serde(default = "default_max_requests_per_server")]
    pub max_requests_per_server: usize,
    #[serde(default)]
    pub admin_token_file: Option<String>,
}

fn default_request_timeout() -> String {
    "20s".into()
}

fn default_max_requests_per_server() -> usize {
    4
}

fn default_max_concurrent_requests() -> usize {
    32
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppservice {
    pub listen: String,
    #[serde(default = "default_registration")]
    pub registration: String,
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModerators {
    #[serde(default = "default_power_level")]
    pub power_level: i64,
    #[serde(default)]
    pub users: Vec<String>,
}

impl Default for RawModerators {
    fn default() -> Self {
        Self { power_level: default_power_level(), users: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    #[serde(default = "default_expire_after")]
    pub expire_after: String,
    #[serde(default = "default_on_expiry")]
    pub on_expiry: OnExpiry,
    #[serde(default)]
    pub mention: Mention,
}

impl Default for RawReview {
    fn default() -> Self {
        Self { expire_after: default_expire_after(), on_expiry: default_on_expiry(), mention: Mention::None }
    }
}

fn default_database() -> String {
    "data/knockwarden".into()
}
fn default_policies() -> String {
    "policies".into()
}
fn default_registration() -> String {
    "registration.yaml".into()
}
fn default_power_level() -> i64 {
    50
}
fn default_notify() -> Notify {
    Notify::Review
}
fn default_log_format() -> LogFormat {
    LogFormat::Pretty
}
fn default_expire_after() -> String {
    "7d".into()
}
fn default_on_expiry() -> OnExpiry {
    OnExpiry::Ignore
}

impl RawConfig {
    /// Parses YAML text; the error message carries the key path, line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

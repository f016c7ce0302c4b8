//! The policy file format, described for the JSON Schema (`policies/schema.json`) that editors
//! use to check files as people type. The reader ([`super::reader`]) is what knockwarden uses
//! to read files; a test keeps the two in step.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Action;

/// A knockwarden knock policy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "knockwarden policy")]
pub struct PolicyFile {
    /// Unique name of the policy; defaults to the file name without `.yaml`.
    pub name: Option<String>,
    /// Rooms governed: room IDs (`!…`), aliases (`#…:server`), or `"*"` for every room no other
    /// policy claims.
    pub rooms: OneOrMany<String>,
    /// Action when no rule matches (default `review`).
    pub default: Option<Action>,
    /// Decide and report, but change no membership.
    #[serde(default)]
    pub dry_run: bool,
    /// Rules, evaluated top to bottom; the first that matches decides.
    #[schemars(length(min = 1))]
    pub rules: Vec<Rule>,
}

/// A rule: when all conditions hold, take the action.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name within the policy; shown in notices and the audit log.
    pub name: String,
    /// Conditions that must all hold. No `when`: the rule always matches.
    pub when: Option<Condition>,
    pub action: Action,
    /// Reason sent with the invite, kick or ban; `{user}`, `{server}`, `{room}`, `{rule}` are
    /// filled in.
    pub reason: Option<String>,
    /// Overrides the global `notify` setting for decisions of this rule.
    pub notify: Option<bool>,
    /// When the rule matches a knock, the room enters lockdown for this long (`30m`, `2h`,
    /// `1d`), or has its lockdown extended to that long from now; then the rule's action
    /// applies. While a room is in lockdown, knocks that would be accepted are held for review.
    /// A circuit breaker on a wave rule (`room_knocks`).
    pub lockdown: Option<String>,
}

/// Conditions; all that are given must hold.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Glob(s) over the full user ID, e.g. `@*:example.org`.
    pub user: Option<OneOrMany<String>>,
    /// Regex over the full user ID.
    pub user_regex: Option<String>,
    /// Glob(s) over the knocker's server name (everything after the first `:`; ports kept).
    pub server: Option<OneOrMany<String>>,
    /// Conditions on the knock's reason.
    pub reason: Option<ReasonCondition>,
    /// Conditions on the knocker's display name.
    pub displayname: Option<DisplaynameCondition>,
    /// Holds when the knocker is joined to at least one of these rooms (IDs or aliases).
    pub member_of: Option<OneOrMany<String>>,
    /// Holds when a ban rule (`m.policy.rule.user` / `m.policy.rule.server` with `m.ban`) of one
    /// of these moderation policy lists (room IDs or aliases) matches the knocker.
    pub ban_list: Option<OneOrMany<String>>,
    /// What the homeserver says of the knocker's account (local knockers, with
    /// `homeserver.admin_token_file`); every key given must hold.
    pub account: Option<AccountCondition>,
    /// Knocks on this room in a time window (a knock wave).
    pub room_knocks: Option<CountCondition>,
    /// Knocks by this user on this room in a time window.
    pub user_knocks: Option<CountCondition>,
    /// Holds when any of these holds.
    #[schemars(length(min = 1))]
    pub any: Option<Vec<Condition>>,
    /// Holds when all of these hold.
    #[schemars(length(min = 1))]
    pub all: Option<Vec<Condition>>,
    /// Holds when this does not.
    pub not: Option<Box<Condition>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonCondition {
    /// true: no reason (or a blank one) was given; false: one was.
    pub missing: Option<bool>,
    /// At least this many characters.
    pub min_length: Option<u64>,
    /// At most this many characters.
    pub max_length: Option<u64>,
    /// A regex the reason matches (unanchored; use `(?i)` for case-insensitive).
    pub matches: Option<String>,
    /// Words or phrases, matched case-insensitively as whole words; any may occur.
    pub contains: Option<OneOrMany<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplaynameCondition {
    /// true: no display name was given; false: one was.
    pub missing: Option<bool>,
    /// A regex the display name matches.
    pub matches: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountCondition {
    /// The account was created less than this long ago, like `1d`.
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub younger_than: Option<String>,
    /// The account was created more than this long ago.
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub older_than: Option<String>,
    /// The homeserver shadow-bans the account (or does not, with false).
    pub shadow_banned: Option<bool>,
    /// The account is locked.
    pub locked: Option<bool>,
    /// The account is suspended.
    pub suspended: Option<bool>,
    /// true: the account cannot be known (a remote knocker, no admin token, the homeserver
    /// refused or failed). The other keys never hold then.
    pub unknown: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountCondition {
    /// Holds when the count (the current knock included) is more than this.
    pub more_than: u64,
    /// The window, like `90s`, `10m`, `24h`, `7d`.
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub within: String,
}

/// A single value or a list of values.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// The JSON Schema of policy files, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(PolicyFile);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

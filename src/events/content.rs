//! The contents knockwarden reads, one type per event type, read leniently (see
//! [`super::lenient`]). Stored records keep some of them ([`PowerLevels`] in a room's record):
//! they read back what older versions stored (the whole content) too.

use std::collections::BTreeMap;

use ruma::events::room::member::MembershipState;
use ruma::room::{JoinRuleKind, RoomType};
use serde::{Deserialize, Serialize};

use super::lenient;

/// A membership event's content, with the user it is about (its state key).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The state key: the user whose membership this is (not always a valid user ID: a
    /// knock's is checked where it is decided).
    pub user: String,
    pub membership: MembershipState,
    pub reason: Option<String>,
    pub displayname: Option<String>,
    /// For an invitation: the canonical alias of the room, as its stripped state gives it.
    pub invite_alias: Option<String>,
}

/// The content of a membership event, as sent.
#[derive(Deserialize)]
pub(super) struct MemberWire {
    #[serde(default, deserialize_with = "lenient::string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub displayname: Option<String>,
}

/// The `membership` of a membership event's content (its JSON text): `None` when missing or
/// not a string.
pub fn membership_of(content: &str) -> Result<Option<MembershipState>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default, deserialize_with = "lenient::opt")]
        membership: Option<MembershipState>,
    }
    Ok(serde_json::from_str::<Only>(content)?.membership)
}

/// One event of an invitation's stripped state: only a canonical alias is read.
#[derive(Deserialize)]
pub(super) struct Stripped {
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub event_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub content: Option<AliasContent>,
}

#[derive(Deserialize)]
pub(super) struct AliasContent {
    #[serde(default, deserialize_with = "lenient::string")]
    pub alias: Option<String>,
}

/// The room state types knockwarden follows (with an empty state key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Create,
    JoinRules,
    PowerLevels,
}

impl StateKind {
    pub const ALL: [StateKind; 3] = [StateKind::Create, StateKind::JoinRules, StateKind::PowerLevels];

    pub fn of_type(event_type: &str) -> Option<StateKind> {
        match event_type {
            "m.room.create" => Some(StateKind::Create),
            "m.room.join_rules" => Some(StateKind::JoinRules),
            "m.room.power_levels" => Some(StateKind::PowerLevels),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Create => "m.room.create",
            StateKind::JoinRules => "m.room.join_rules",
            StateKind::PowerLevels => "m.room.power_levels",
        }
    }
}

/// A room's own state that knockwarden follows, read.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomState {
    Create(Create),
    JoinRules(JoinRules),
    PowerLevels(PowerLevels),
}

impl RoomState {
    /// Reads the content of a state event of `kind`.
    pub fn parse(kind: StateKind, content: &str) -> Result<RoomState, serde_json::Error> {
        Ok(match kind {
            StateKind::Create => RoomState::Create(serde_json::from_str(content)?),
            StateKind::JoinRules => RoomState::JoinRules(serde_json::from_str(content)?),
            StateKind::PowerLevels => RoomState::PowerLevels(serde_json::from_str(content)?),
        })
    }

    pub fn kind(&self) -> StateKind {
        match self {
            RoomState::Create(_) => StateKind::Create,
            RoomState::JoinRules(_) => StateKind::JoinRules,
            RoomState::PowerLevels(_) => StateKind::PowerLevels,
        }
    }
}

/// `m.room.create`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Create {
    /// Missing means version 1.
    #[serde(default, deserialize_with = "lenient::string")]
    pub room_version: Option<String>,
    /// Rooms of version 12 and later: creators besides the sender.
    #[serde(default, deserialize_with = "lenient::strings")]
    pub additional_creators: Vec<String>,
    /// Rooms before version 11 name their creator here too.
    #[serde(default, deserialize_with = "lenient::string")]
    pub creator: Option<String>,
    /// `m.space` for a space.
    #[serde(rename = "type", default, deserialize_with = "lenient::opt")]
    pub room_type: Option<RoomType>,
}

/// `m.room.join_rules`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct JoinRules {
    #[serde(default, deserialize_with = "lenient::opt")]
    pub join_rule: Option<JoinRuleKind>,
}

/// `m.room.power_levels`: what knockwarden reads of it (a level given as a string of an
/// integer, as old rooms have them, is read as that integer; one that is neither is left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerLevels {
    #[serde(default, deserialize_with = "lenient::levels")]
    pub users: BTreeMap<String, i64>,
    #[serde(default, deserialize_with = "lenient::level", skip_serializing_if = "Option::is_none")]
    pub users_default: Option<i64>,
    #[serde(default, deserialize_with = "lenient::level", skip_serializing_if = "Option::is_none")]
    pub invite: Option<i64>,
    #[serde(default, deserialize_with = "lenient::level", skip_serializing_if = "Option::is_none")]
    pub kick: Option<i64>,
    #[serde(default, deserialize_with = "lenient::level", skip_serializing_if = "Option::is_none")]
    pub ban: Option<i64>,
}

/// `m.room.message`: what commands are read from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub msgtype: Option<String>,
    pub body: Option<String>,
    pub formatted_body: Option<String>,
    /// `m.mentions.user_ids`.
    pub mentions: Vec<String>,
    /// An edit of another message (`m.relates_to.rel_type` is `m.replace`).
    pub is_edit: bool,
}

#[derive(Deserialize)]
struct MessageWire {
    #[serde(default, deserialize_with = "lenient::string")]
    msgtype: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    body: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    formatted_body: Option<String>,
    #[serde(rename = "m.mentions", default, deserialize_with = "lenient::opt")]
    mentions: Option<MentionsWire>,
    #[serde(rename = "m.relates_to", default, deserialize_with = "lenient::opt")]
    relates_to: Option<RelatesWire>,
}

#[derive(Deserialize)]
struct MentionsWire {
    #[serde(default, deserialize_with = "lenient::strings")]
    user_ids: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct RelatesWire {
    #[serde(default, deserialize_with = "lenient::string")]
    rel_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    event_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    key: Option<String>,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = MessageWire::deserialize(d)?;
        Ok(Message {
            msgtype: w.msgtype,
            body: w.body,
            formatted_body: w.formatted_body,
            mentions: w.mentions.map(|m| m.user_ids).unwrap_or_default(),
            is_edit: w.relates_to.and_then(|r| r.rel_type).as_deref() == Some("m.replace"),
        })
    }
}

/// What a reaction says: the event it annotates and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub event_id: String,
    pub key: String,
}

#[derive(Deserialize)]
pub(super) struct ReactionWire {
    #[serde(rename = "m.relates_to", default, deserialize_with = "lenient::opt")]
    relates_to: Option<RelatesWire>,
}

impl ReactionWire {
    pub fn annotation(self) -> Option<Annotation> {
        let r = self.relates_to?;
        (r.rel_type.as_deref() == Some("m.annotation")).then_some(())?;
        Some(Annotation { event_id: r.event_id?, key: r.key? })
    }
}

/// `m.room.redaction`'s content (room version 11 moved `redacts` there).
#[derive(Deserialize)]
pub(super) struct RedactionWire {
    #[serde(default, deserialize_with = "lenient::string")]
    pub redacts: Option<String>,
}

/// The state event types of user rules.
pub const USER_RULE_TYPES: &[&str] = &["m.policy.rule.user", "m.room.rule.user", "org.matrix.mjolnir.rule.user"];
/// The state event types of server rules.
pub const SERVER_RULE_TYPES: &[&str] =
    &["m.policy.rule.server", "m.room.rule.server", "org.matrix.mjolnir.rule.server"];

/// What a ban list's rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    User,
    Server,
}

impl EntityKind {
    /// The kind of rule a state event type holds, if it is a rule type knockwarden reads.
    pub fn of_type(event_type: &str) -> Option<Self> {
        if USER_RULE_TYPES.contains(&event_type) {
            Some(EntityKind::User)
        } else if SERVER_RULE_TYPES.contains(&event_type) {
            Some(EntityKind::Server)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Server => "server",
        }
    }
}

/// A ban list rule's content (`m.policy.rule.*`), hashed entities (MSC4205) included.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RuleContent {
    #[serde(default, deserialize_with = "lenient::string")]
    pub entity: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub recommendation: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub reason: Option<String>,
    #[serde(rename = "org.matrix.msc4205.hashes", default, deserialize_with = "lenient::opt")]
    pub hashes: Option<RuleHashes>,
}

/// MSC4205's hashes of a rule's entity.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RuleHashes {
    #[serde(default, deserialize_with = "lenient::string")]
    pub sha256: Option<String>,
}

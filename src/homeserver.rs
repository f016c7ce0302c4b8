//! The homeserver, as knockwarden's bot sees it: a narrow trait over the client-server API.
//!
//! [`Homeserver`] lists exactly the calls knockwarden makes. [`MatrixHomeserver`] is the real
//! implementation (matrix-sdk, acting as the appservice bot with the as_token); tests put a
//! fake HTTP homeserver behind it, or a fake implementation of the trait.

mod admin;
mod limited;
mod matrix;

use std::time::Duration;

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, RoomAliasId, RoomId, RoomOrAliasId, UserId};
use serde::{Deserialize, Serialize};

/// A change of someone else's membership that the bot makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipChange {
    Invite,
    Kick,
    Ban,
}

impl MembershipChange {
    /// The verb, as in the endpoint and the power-levels key.
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipChange::Invite => "invite",
            MembershipChange::Kick => "kick",
            MembershipChange::Ban => "ban",
        }
    }
}

pub use admin::{AccountRecord, AdminApi, SynapseAdmin};
pub use limited::{Limited, Limits};
pub use matrix::MatrixHomeserver;

/// A failed call to the homeserver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HsError {
    /// The homeserver answered with an error status.
    #[error("homeserver answered {status} {errcode}: {message}")]
    Api { status: u16, errcode: String, message: String, retry_after: Option<Duration> },
    /// No usable answer: connection refused, timed out or cut.
    #[error("homeserver unreachable: {0}")]
    Transport(String),
    /// An answer we could not use (malformed body, unexpected shape).
    #[error("unexpected answer from the homeserver: {0}")]
    Unexpected(String),
}

impl HsError {
    /// Whether trying again later may succeed: rate limits, 5xx, and no answer at all.
    pub fn is_transient(&self) -> bool {
        match self {
            HsError::Api { status, .. } => *status == 429 || *status >= 500,
            HsError::Transport(_) => true,
            HsError::Unexpected(_) => false,
        }
    }

    /// How long the homeserver asked us to wait (429), if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HsError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn errcode(&self) -> Option<&str> {
        match self {
            HsError::Api { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HsError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The calls knockwarden makes to its homeserver, as the bot.
#[async_trait]
pub trait Homeserver: Send + Sync + 'static {
    /// `POST /_matrix/client/v3/join/{roomIdOrAlias}`; returns the room ID. A room ID is joined
    /// via its own server (a room on another server is joined over federation).
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError>;

    /// `POST /_matrix/client/v3/rooms/{roomId}/{invite|kick|ban}` with `user_id` and `reason`.
    async fn membership(
        &self,
        change: MembershipChange,
        room: &RoomId,
        user: &UserId,
        reason: &str,
    ) -> Result<(), HsError>;

    /// `GET /_matrix/client/v3/directory/room/{roomAlias}`: the room ID.
    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError>;

    /// `POST /_matrix/client/v3/rooms/{roomId}/leave` (also declines an invite).
    async fn leave(&self, room: &RoomId) -> Result<(), HsError>;

    /// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: the homeserver calls our
    /// `/ping` back; returns how long that took it.
    async fn ping(&self, appservice_id: &str) -> Result<Duration, HsError>;

    /// `GET /_matrix/client/v3/joined_rooms`: the rooms the bot is joined to.
    async fn joined_rooms(&self) -> Result<Vec<OwnedRoomId>, HsError>;

    /// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`: the joined user IDs.
    async fn joined_members(&self, room: &RoomId) -> Result<Vec<String>, HsError>;

    /// `GET /_matrix/client/v3/rooms/{roomId}/members?membership=knock`: the knock events, each
    /// as its JSON text (read one by one, so that one bad event costs only itself).
    async fn knocking_members(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError>;

    /// `GET /_matrix/client/v3/rooms/{roomId}/state`: the room's whole current state, each event
    /// as its JSON text (read one by one, so that one bad event costs only itself).
    async fn room_state(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError>;

    /// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`: a message-like event
    /// (a notice, a reaction, an edit). The homeserver posts the same `txn_id` only once.
    async fn send(
        &self,
        room: &RoomId,
        txn_id: &str,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<OwnedEventId, HsError>;

    /// An `m.notice` with an HTML body and a plain-text fallback (see [`Homeserver::send`]).
    async fn send_notice(&self, room: &RoomId, txn_id: &str, plain: &str, html: &str) -> Result<OwnedEventId, HsError> {
        self.send(room, txn_id, "m.room.message", &notice_content(plain, html)).await
    }

    /// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}?format=event`, or
    /// `None` when the room has no such state.
    async fn state(&self, room: &RoomId, event_type: &str, state_key: &str) -> Result<Option<StateEvent>, HsError>;
}

/// A state event as read back from the homeserver.
#[derive(Debug, Clone)]
pub struct StateEvent {
    /// Its sender, when the homeserver gave the whole event (`format=event`).
    pub sender: Option<String>,
    /// Its event ID, likewise.
    pub event_id: Option<String>,
    /// Its content's JSON text, read by its type ([`StateEvent::room_state`],
    /// [`StateEvent::membership`]).
    pub content: Box<serde_json::value::RawValue>,
}

impl StateEvent {
    /// Reads a `format=event` answer; a homeserver that ignores `format` sends only the content.
    pub fn from_answer(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Whole<'a> {
            #[serde(rename = "type", default, deserialize_with = "crate::events::lenient::string")]
            event_type: Option<String>,
            #[serde(default, deserialize_with = "crate::events::lenient::string")]
            sender: Option<String>,
            #[serde(default, deserialize_with = "crate::events::lenient::string")]
            event_id: Option<String>,
            #[serde(default, borrow)]
            content: Option<&'a serde_json::value::RawValue>,
        }
        let whole: Whole = serde_json::from_str(text)?;
        Ok(match whole.content.filter(|c| whole.event_type.is_some() && c.get().starts_with('{')) {
            Some(content) => StateEvent { sender: whole.sender, event_id: whole.event_id, content: content.to_owned() },
            None => StateEvent {
                sender: None,
                event_id: None,
                content: serde_json::value::RawValue::from_string(text.to_owned())?,
            },
        })
    }

    /// The `membership` of an `m.room.member` event.
    pub fn membership(&self) -> Option<crate::events::MembershipState> {
        crate::events::content::membership_of(self.content.get()).ok().flatten()
    }

    /// The content of a room state event of `kind`, read.
    pub fn room_state(&self, kind: crate::events::StateKind) -> Result<crate::events::RoomState, serde_json::Error> {
        crate::events::RoomState::parse(kind, self.content.get())
    }
}

/// The content of an `m.notice` with an HTML body and a plain-text fallback. `m.mentions` is
/// empty: the bot's notices never ping anyone.
pub fn notice_content(plain: &str, html: &str) -> serde_json::Value {
    serde_json::json!({
        "msgtype": "m.notice",
        "body": plain,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": {},
    })
}

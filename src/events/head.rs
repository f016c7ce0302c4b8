//! An event's head: its routing fields, read in one pass over its text, its content left as
//! text until the event is kept ([`Head::into_event`]).

use std::borrow::Cow;

use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::content::{EntityKind, MemberWire, ReactionWire, RedactionWire, RoomState, StateKind, Stripped};
use super::{Body, Event, Member, ParseError, lenient};

/// An event's type, as knockwarden routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Member,
    /// One of the room state types knockwarden follows (room state only with an empty state
    /// key).
    State(StateKind),
    Message,
    Reaction,
    Redaction,
    PolicyRule(EntityKind),
    /// Debug builds only: [`super::FAULT_EVENT_TYPE`].
    #[cfg(debug_assertions)]
    Fault,
    Other,
}

impl Kind {
    pub fn of_type(event_type: &str) -> Kind {
        match event_type {
            "m.room.member" => Kind::Member,
            "m.room.message" => Kind::Message,
            "m.reaction" => Kind::Reaction,
            "m.room.redaction" => Kind::Redaction,
            #[cfg(debug_assertions)]
            super::FAULT_EVENT_TYPE => Kind::Fault,
            t => match (StateKind::of_type(t), EntityKind::of_type(t)) {
                (Some(s), _) => Kind::State(s),
                (None, Some(e)) => Kind::PolicyRule(e),
                (None, None) => Kind::Other,
            },
        }
    }
}

/// The routing fields of an event.
#[derive(Debug)]
pub struct Head<'a> {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: Kind,
    pub event_type: Cow<'a, str>,
    pub state_key: Option<Cow<'a, str>>,
    /// A membership event's `membership`.
    pub membership: Option<MembershipState>,
    origin_server_ts: u64,
    content: Option<&'a RawValue>,
    redacts: Option<String>,
    invite_room_state: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    state_key: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::timestamp")]
    origin_server_ts: u64,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    /// Where redactions before room version 11 name what they redact.
    #[serde(default, deserialize_with = "lenient::string")]
    redacts: Option<String>,
    /// Where older homeservers put an invitation's stripped state.
    #[serde(default, borrow)]
    invite_room_state: Option<&'a RawValue>,
    #[serde(default, borrow)]
    unsigned: Option<Unsigned<'a>>,
}

#[derive(Deserialize)]
struct Unsigned<'a> {
    #[serde(default, borrow)]
    invite_room_state: Option<&'a RawValue>,
}

impl<'a> Head<'a> {
    /// Reads the routing fields from an event's JSON text, skipping the rest (at any depth,
    /// without building it); the error says which field is missing or malformed.
    pub fn parse(json: &'a str) -> Result<Head<'a>, ParseError> {
        let w: Wire<'a> = serde_json::from_str(json)?;
        let kind = Kind::of_type(&w.event_type);
        let membership = match kind {
            Kind::Member => {
                if w.state_key.is_none() {
                    return Err(ParseError::NoStateKey);
                }
                let content = w.content.ok_or(ParseError::NoMembership)?;
                Some(super::content::membership_of(content.get())?.ok_or(ParseError::NoMembership)?)
            }
            _ => None,
        };
        let invite_room_state = w.invite_room_state.or(w.unsigned.and_then(|u| u.invite_room_state));
        Ok(Head {
            event_id: w.event_id,
            room_id: w.room_id,
            sender: w.sender,
            kind,
            event_type: w.event_type,
            state_key: w.state_key,
            membership,
            origin_server_ts: w.origin_server_ts,
            content: w.content,
            redacts: w.redacts,
            invite_room_state,
        })
    }

    /// Whether this is room state (its state key is empty, as for every state event
    /// knockwarden reads apart from memberships).
    pub fn is_room_state(&self) -> bool {
        self.state_key.as_deref() == Some("")
    }

    /// Whether this is the membership event of `user`.
    pub fn is_membership_of(&self, user: &UserId) -> bool {
        self.kind == Kind::Member && self.state_key.as_deref() == Some(user.as_str())
    }

    /// Reads the content, as its type gives it: the whole event.
    pub fn into_event(self) -> Result<Event, ParseError> {
        let text = self.content.map_or("{}", RawValue::get);
        let content_error = |error| ParseError::Content { event_type: self.event_type.to_string(), error };
        let body = match self.kind {
            Kind::Member => {
                let w: MemberWire = serde_json::from_str(text).map_err(content_error)?;
                let invite_alias = match &self.membership {
                    Some(MembershipState::Invite) => self.invite_room_state.and_then(canonical_alias),
                    _ => None,
                };
                Body::Member(Member {
                    user: self.state_key.as_deref().unwrap_or_default().to_owned(),
                    membership: self.membership.clone().ok_or(ParseError::NoMembership)?,
                    reason: w.reason,
                    displayname: w.displayname,
                    invite_alias,
                })
            }
            Kind::State(kind) if self.is_room_state() => {
                Body::RoomState(RoomState::parse(kind, text).map_err(content_error)?)
            }
            Kind::Message => Body::Message(serde_json::from_str(text).map_err(content_error)?),
            Kind::Reaction => {
                let w: ReactionWire = serde_json::from_str(text).map_err(content_error)?;
                Body::Reaction(w.annotation())
            }
            Kind::Redaction => {
                let w: RedactionWire = serde_json::from_str(text).map_err(content_error)?;
                Body::Redaction { redacts: w.redacts.or(self.redacts.clone()) }
            }
            Kind::PolicyRule(kind) => match self.state_key.as_deref() {
                Some(state_key) => Body::PolicyRule {
                    event_type: self.event_type.to_string(),
                    kind,
                    state_key: state_key.to_owned(),
                    content: serde_json::from_str(text).map_err(content_error)?,
                },
                None => Body::Other { event_type: self.event_type.to_string() },
            },
            #[cfg(debug_assertions)]
            Kind::Fault => {
                #[derive(Deserialize)]
                struct Fault {
                    #[serde(default, deserialize_with = "lenient::string")]
                    fault: Option<String>,
                }
                Body::Fault(serde_json::from_str::<Fault>(text).map_err(content_error)?.fault)
            }
            Kind::State(_) | Kind::Other => Body::Other { event_type: self.event_type.to_string() },
        };
        Ok(Event {
            event_id: self.event_id,
            room_id: self.room_id,
            sender: self.sender,
            origin_server_ts: self.origin_server_ts,
            body,
        })
    }
}

/// The canonical alias an invitation's stripped state names, if any.
fn canonical_alias(state: &RawValue) -> Option<String> {
    let events: Vec<Stripped> = serde_json::from_str(state.get()).ok()?;
    events
        .into_iter()
        .filter(|e| e.event_type.as_deref() == Some("m.room.canonical_alias"))
        .find_map(|e| e.content?.alias)
}

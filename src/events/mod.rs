//! The events knockwarden keeps, typed: read once from their JSON text, then handled by one
//! `match` on [`Body`].
//!
//! Pure code: no I/O. An event is read in two steps, both in one pass over its text: its
//! [`Head`] (the routing fields, the content left as text) decides whether it is kept
//! ([`is_wanted`]); a kept one becomes an [`Event`] ([`Head::into_event`]), its content read
//! into the type its event type gives ([`content`]). The intake reads each event so, once; the
//! worker reads the journal's copy so, once, as it takes it.
//!
//! Reading is lenient where Matrix is: unknown fields are ignored, optional fields may be
//! missing, null or of another type (read as absent), and room IDs without a server part (room
//! version 12) are accepted. What knockwarden cannot do without (the event ID, room, sender and
//! type; a membership's `membership` and state key) must be there, and the error says what is
//! missing. Identifiers are ruma's types; memberships, join rules and room types are ruma's
//! enums.
//!
//! `serde_json::Value` is not used past this point, with one exception: the content of the
//! events the bot *sends* (notices, replies, reactions, edits: [`crate::notices::fit`],
//! `Action::Send`, [`crate::homeserver::Homeserver::send`]), free-form Matrix content built
//! as it is sent. What is stored as it came (an event waiting or failed) is its JSON text.

pub mod command;
pub mod content;
mod head;
pub(crate) mod lenient;
mod wanted;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

pub use command::{Verdict, command_text};
pub use content::{
    Annotation, Create, EntityKind, JoinRules, Member, Message, PowerLevels, RoomState, RuleContent, StateKind,
};
pub use head::{Head, Kind};
pub use ruma::events::room::member::MembershipState;
pub use wanted::{Interests, is_wanted};

/// Debug builds only (the test suite): an event of this type injects a fault, to test that
/// knockwarden survives and reports it. `content.fault` is `handler` (a panic while handling
/// this event) or `worker` (a panic that stops the worker task). See the worker.
#[cfg(debug_assertions)]
pub const FAULT_EVENT_TYPE: &str = "org.knockwarden.test.fault";

/// An event knockwarden keeps, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// The sending server's clock (0 when missing); knockwarden's own counters never use it.
    pub origin_server_ts: u64,
    pub body: Body,
}

/// What an event is, by its type, with its content read.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `m.room.member` (its state key is the user whose membership it is).
    Member(Member),
    /// `m.room.create`, `m.room.join_rules` or `m.room.power_levels` with an empty state key:
    /// the room's own state.
    RoomState(RoomState),
    /// `m.room.message`.
    Message(Message),
    /// `m.reaction`: the annotation it makes, if it is one.
    Reaction(Option<Annotation>),
    /// `m.room.redaction`: the event it redacts (from the content since room version 11).
    Redaction { redacts: Option<String> },
    /// A ban list's rule (`m.policy.rule.*` and its older names), with its state key.
    PolicyRule { event_type: String, kind: EntityKind, state_key: String, content: RuleContent },
    /// Debug builds only: a fault to inject ([`FAULT_EVENT_TYPE`]).
    #[cfg(debug_assertions)]
    Fault(Option<String>),
    /// Any other event (or one of the room state types with another state key): nothing is
    /// read of its content.
    Other { event_type: String },
}

/// Why an event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or a required field missing or malformed.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("m.room.member event without content.membership")]
    NoMembership,
    #[error("m.room.member event without a state_key")]
    NoStateKey,
    /// The content of a type knockwarden reads cannot be read as that type.
    #[error("the content of this {event_type} event cannot be read: {error}")]
    Content { event_type: String, error: serde_json::Error },
}

impl Event {
    /// Reads an event from its JSON text.
    pub fn parse(json: &str) -> Result<Event, ParseError> {
        Head::parse(json)?.into_event()
    }

    /// The user whose membership this is, for a membership event.
    pub fn member(&self) -> Option<&Member> {
        match &self.body {
            Body::Member(m) => Some(m),
            _ => None,
        }
    }
}

/// How deep an event kept may nest arrays and objects. serde_json reads 127 levels; what is
/// stored is read back with it, inside the records that hold it (the failed list's entries
/// wrap an event in three levels), so an event may use a little less.
pub const MAX_DEPTH: usize = 120;

/// Whether a JSON text nests no deeper than [`MAX_DEPTH`] (one pass, building nothing).
pub fn nests_within_limit(json: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// The event ID of an event's JSON text, for a log line or a listing (best effort: the text
/// may not be an event).
pub fn event_id_of(json: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(default, deserialize_with = "lenient::string")]
        event_id: Option<String>,
    }
    serde_json::from_str::<Id>(json).ok().and_then(|i| i.event_id).unwrap_or_else(|| "(no ID)".to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Event {
        Event::parse(&v.to_string()).unwrap()
    }

    fn event(kind: &str, state_key: Option<&str>, content: serde_json::Value) -> serde_json::Value {
        let mut v = json!({"event_id": "$e", "room_id": "!r:x", "sender": "@a:x", "type": kind, "content": content, "origin_server_ts": 5});
        if let Some(k) = state_key {
            v["state_key"] = json!(k);
        }
        v
    }

    #[test]
    fn a_knock_reads_its_reason_and_name_and_a_field_of_another_type_is_absent() {
        let e = parse(event(
            "m.room.member",
            Some("@k:y"),
            json!({"membership": "knock", "reason": "hi", "displayname": 5}),
        ));
        assert_eq!(e.origin_server_ts, 5);
        let Body::Member(m) = e.body else { panic!() };
        assert_eq!((m.user.as_str(), &m.membership), ("@k:y", &MembershipState::Knock));
        assert_eq!((m.reason.as_deref(), m.displayname), (Some("hi"), None));
        let custom = parse(event("m.room.member", Some("@k:y"), json!({"membership": "xyz"})));
        assert_eq!(custom.member().unwrap().membership.as_str(), "xyz");
    }

    #[test]
    fn an_invitation_names_the_canonical_alias_of_its_stripped_state() {
        let stripped = json!([{"type": "m.room.name", "content": {"name": "n"}}, {"type": "m.room.canonical_alias", "content": {"alias": "#c:x"}}]);
        let mut v = event("m.room.member", Some("@kw:x"), json!({"membership": "invite"}));
        v["unsigned"] = json!({"invite_room_state": stripped});
        assert_eq!(parse(v.clone()).member().unwrap().invite_alias.as_deref(), Some("#c:x"));
        let mut top = event("m.room.member", Some("@kw:x"), json!({"membership": "invite"}));
        top["invite_room_state"] = stripped;
        assert_eq!(parse(top).member().unwrap().invite_alias.as_deref(), Some("#c:x"));
    }

    #[test]
    fn room_state_is_read_only_with_an_empty_state_key() {
        let pl = json!({"users": {"@a:x": "75", "@b:x": true}, "kick": 40});
        let Body::RoomState(RoomState::PowerLevels(p)) = parse(event("m.room.power_levels", Some(""), pl.clone())).body
        else {
            panic!()
        };
        assert_eq!((p.users.get("@a:x"), p.users.get("@b:x"), p.kick, p.ban), (Some(&75), None, Some(40), None));
        assert!(matches!(parse(event("m.room.power_levels", Some("x"), pl)).body, Body::Other { .. }));
        let Body::RoomState(RoomState::JoinRules(j)) =
            parse(event("m.room.join_rules", Some(""), json!({"join_rule": "knock"}))).body
        else {
            panic!()
        };
        assert_eq!(j.join_rule, Some(ruma::room::JoinRuleKind::Knock));
        let Body::RoomState(RoomState::Create(c)) = parse(event(
            "m.room.create",
            Some(""),
            json!({"room_version": "12", "type": "m.space", "additional_creators": ["@b:x", 3]}),
        ))
        .body
        else {
            panic!()
        };
        assert_eq!(c.room_type, Some(ruma::room::RoomType::Space));
        assert_eq!(c.additional_creators, ["@b:x"]);
    }

    #[test]
    fn redactions_name_what_they_redact_in_either_place() {
        let v11 = parse(event("m.room.redaction", None, json!({"redacts": "$a"})));
        assert_eq!(v11.body, Body::Redaction { redacts: Some("$a".into()) });
        let mut old = event("m.room.redaction", None, json!({}));
        old["redacts"] = json!("$b");
        assert_eq!(parse(old).body, Body::Redaction { redacts: Some("$b".into()) });
    }

    #[test]
    fn messages_and_reactions_read_what_commands_need() {
        let m = parse(event(
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": "!knock", "m.mentions": {"user_ids": ["@kw:x", 1]}, "m.relates_to": {"rel_type": "m.replace"}}),
        ));
        let Body::Message(m) = m.body else { panic!() };
        assert_eq!((m.body.as_deref(), m.mentions, m.is_edit), (Some("!knock"), vec!["@kw:x".to_owned()], true));
        let r = parse(event(
            "m.reaction",
            None,
            json!({"m.relates_to": {"rel_type": "m.reference", "event_id": "$n", "key": "✅"}}),
        ));
        assert_eq!(r.body, Body::Reaction(None));
    }

    #[test]
    fn what_cannot_be_read_says_why() {
        let no_key = Event::parse(&json!({"event_id": "$e", "room_id": "!r:x", "sender": "@a:x", "type": "m.room.member", "content": {"membership": "join"}}).to_string());
        assert!(matches!(no_key, Err(ParseError::NoStateKey)));
        let bad = Event::parse(&event("m.room.message", None, json!("text")).to_string()).unwrap_err();
        assert!(bad.to_string().contains("m.room.message"), "{bad}");
    }

    #[test]
    fn depth_is_counted_outside_strings() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(nests_within_limit(&deep(MAX_DEPTH)));
        assert!(!nests_within_limit(&deep(MAX_DEPTH + 1)));
        assert!(nests_within_limit(&format!("{{\"a\": \"{}\\\"\"}}", "[".repeat(500))));
    }
}

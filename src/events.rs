//! Reading pushed events: the few fields knockwarden routes on, and which events it keeps.
//!
//! Pure code: no I/O. Events are parsed leniently (unknown fields ignored, optional fields may
//! be missing or null), with ruma's identifier types, so room IDs without a server part (room
//! version 12) are accepted.

use std::borrow::Cow;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::Deserialize;

/// The routing fields of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHead {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: String,
    pub state_key: Option<String>,
    /// `content.membership` of an `m.room.member` event.
    pub membership: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    state_key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<ContentHead<'a>>,
}

/// Of the content, only `membership`; everything else is skipped without being built.
#[derive(Deserialize)]
struct ContentHead<'a> {
    #[serde(default, borrow)]
    membership: Option<Cow<'a, str>>,
}

impl EventHead {
    /// Reads the routing fields from an event's JSON text, skipping everything else (at any
    /// depth, without building it); the error says which field is missing or malformed.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let w: Wire = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Self::from_wire(w)
    }

    /// Reads the routing fields of an event already parsed.
    pub fn parse(event: &serde_json::Value) -> Result<Self, String> {
        Self::from_wire(Wire::deserialize(event).map_err(|e| e.to_string())?)
    }

    fn from_wire(w: Wire) -> Result<Self, String> {
        let membership = if w.kind == "m.room.member" {
            let m = w.content.and_then(|c| c.membership);
            Some(m.ok_or("m.room.member event without content.membership")?.into_owned())
        } else {
            None
        };
        Ok(Self {
            event_id: w.event_id,
            room_id: w.room_id,
            sender: w.sender,
            kind: w.kind.into_owned(),
            state_key: w.state_key.map(Cow::into_owned),
            membership,
        })
    }

    /// Whether this is a room state event of `kind` (its state key is empty, as for every
    /// state event knockwarden reads apart from memberships).
    pub fn is_room_state(&self) -> bool {
        self.state_key.as_deref() == Some("")
    }

    /// Whether this is the membership event of `user`.
    pub fn is_membership_of(&self, user: &UserId) -> bool {
        self.kind == "m.room.member" && self.state_key.as_deref() == Some(user.as_str())
    }
}

/// What intake needs to know to decide whether an event is kept.
pub trait Interests {
    fn bot(&self) -> &UserId;
    /// The control room, once resolved.
    fn control_room(&self) -> Option<&RoomId>;
    /// Rooms the bot is joined to or invited to.
    fn is_managed(&self, room: &RoomId) -> bool;
    /// Users with a knock on record.
    fn is_knocker(&self, user: &str) -> bool;
    /// Ban list rooms knockwarden follows.
    fn is_list_room(&self, room: &RoomId) -> bool;
}

/// Debug builds only (the test suite): an event of this type injects a fault, to test that
/// knockwarden survives and reports it. `content.fault` is `handler` (a panic while handling
/// this event) or `worker` (a panic that stops the worker task). See the worker.
#[cfg(debug_assertions)]
pub const FAULT_EVENT_TYPE: &str = "org.knockwarden.test.fault";

/// Whether knockwarden needs this event: membership events in managed rooms, of pending
/// knockers and of the bot itself, every knock, messages and reactions in the control room,
/// power levels and join rules of managed rooms and the control room. Everything else is
/// dropped.
pub fn is_wanted(head: &EventHead, view: &impl Interests) -> bool {
    let control = view.control_room();
    let in_control = control == Some(head.room_id.as_ref());
    // A ban list room gives its rules, their redactions and the bot's own membership, and
    // nothing else (looked up only for events that would be kept).
    let list_room = || !in_control && view.is_list_room(&head.room_id);
    let rule = head.state_key.is_some() && crate::policy::banlist::EntityKind::of_type(&head.kind).is_some();
    if rule || head.kind == "m.room.redaction" {
        return list_room();
    }
    let wanted = match head.kind.as_str() {
        "m.room.member" => {
            head.is_membership_of(view.bot())
                || head.membership.as_deref() == Some("knock")
                || in_control
                || view.is_managed(&head.room_id)
                || head.state_key.as_deref().is_some_and(|u| view.is_knocker(u))
        }
        // Until an alias control room is resolved, keep commands from any managed room;
        // the worker drops those that turn out not to be from the control room.
        "m.room.message" | "m.reaction" => in_control || (control.is_none() && view.is_managed(&head.room_id)),
        // State of the room itself has an empty state key; anything else is not room state.
        "m.room.power_levels" | "m.room.join_rules" | "m.room.create" => {
            head.is_room_state() && (in_control || view.is_managed(&head.room_id))
        }
        // Debug builds (the test suite) only: injected faults (see the worker).
        #[cfg(debug_assertions)]
        FAULT_EVENT_TYPE => true,
        _ => false,
    };
    wanted && (head.is_membership_of(view.bot()) || !list_room())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{room_id, user_id};
    use serde_json::json;

    struct View;
    impl Interests for View {
        fn bot(&self) -> &UserId {
            user_id!("@kw:test.local")
        }
        fn control_room(&self) -> Option<&RoomId> {
            Some(room_id!("!ctrl:test.local"))
        }
        fn is_managed(&self, room: &RoomId) -> bool {
            room.as_str() == "!managed:test.local"
        }
        fn is_knocker(&self, user: &str) -> bool {
            user == "@knocker:elsewhere"
        }
        fn is_list_room(&self, room: &RoomId) -> bool {
            room.as_str() == "!list:test.local"
        }
    }

    fn ev(kind: &str, room: &str, state_key: Option<&str>, membership: Option<&str>) -> EventHead {
        let mut v = json!({"event_id": "$e", "room_id": room, "sender": "@a:test.local", "type": kind, "content": {}});
        if let Some(k) = state_key {
            v["state_key"] = json!(k);
        }
        if let Some(m) = membership {
            v["content"]["membership"] = json!(m);
        }
        EventHead::parse(&v).unwrap()
    }

    #[test]
    fn parses_v12_room_ids_and_ports_in_user_ids() {
        let h = EventHead::parse(&json!({
            "event_id": "$x", "room_id": "!yDTWb7wKownNOAQQIbza_KXFr_gVjWRY80QEvIjN52s",
            "sender": "@bob:localhost:18248", "type": "m.room.member", "state_key": "@bob:localhost:18248",
            "content": {"membership": "knock", "avatar_url": null}, "unsigned": {}
        }))
        .unwrap();
        assert_eq!(h.membership.as_deref(), Some("knock"));
        assert_eq!(h.sender.server_name().as_str(), "localhost:18248");
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let e = EventHead::parse(&json!({"room_id": "!r:x", "sender": "@a:x", "type": "m.room.message"})).unwrap_err();
        assert!(e.contains("event_id"), "{e}");
        let e = EventHead::parse(
            &json!({"event_id": "$e", "room_id": "!r:x", "sender": "@a:x", "type": "m.room.member", "content": {}}),
        )
        .unwrap_err();
        assert!(e.contains("membership"), "{e}");
    }

    #[test]
    fn keeps_what_it_needs_and_drops_the_rest() {
        let keep = [
            ev("m.room.member", "!other:x", Some("@kw:test.local"), Some("invite")),
            ev("m.room.member", "!other:x", Some("@someone:x"), Some("knock")),
            ev("m.room.member", "!managed:test.local", Some("@someone:x"), Some("join")),
            ev("m.room.member", "!other:x", Some("@knocker:elsewhere"), Some("join")),
            ev("m.room.message", "!ctrl:test.local", None, None),
            ev("m.reaction", "!ctrl:test.local", None, None),
            ev("m.room.power_levels", "!ctrl:test.local", Some(""), None),
            ev("m.room.join_rules", "!managed:test.local", Some(""), None),
            ev("m.policy.rule.user", "!list:test.local", Some("rule:1"), None),
            ev("org.matrix.mjolnir.rule.server", "!list:test.local", Some("s"), None),
            ev("m.room.redaction", "!list:test.local", None, None),
        ];
        for h in &keep {
            assert!(is_wanted(h, &View), "dropped {h:?}");
        }
        let drop = [
            ev("m.room.member", "!other:x", Some("@someone:x"), Some("join")),
            ev("m.room.message", "!managed:test.local", None, None),
            ev("m.room.join_rules", "!other:x", Some(""), None),
            ev("m.room.topic", "!managed:test.local", Some(""), None),
            ev("m.policy.rule.user", "!managed:test.local", Some("rule:1"), None),
            ev("m.room.redaction", "!managed:test.local", None, None),
            ev("m.room.member", "!list:test.local", Some("@someone:x"), Some("join")),
            ev("m.room.message", "!list:test.local", None, None),
        ];
        for h in &drop {
            assert!(!is_wanted(h, &View), "kept {h:?}");
        }
    }
}

//! Which pushed events knockwarden keeps ([`is_wanted`]), by their [`Head`].

use ruma::{RoomId, UserId};

use super::{Head, Kind, MembershipState};

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

/// Whether knockwarden needs this event: membership events in managed rooms, of pending
/// knockers and of the bot itself, every knock, messages and reactions in the control room,
/// power levels and join rules of managed rooms and the control room. Everything else is
/// dropped.
pub fn is_wanted(head: &Head, view: &impl Interests) -> bool {
    let control = view.control_room();
    let in_control = control == Some(head.room_id.as_ref());
    // A ban list room gives its rules, their redactions and the bot's own membership, and
    // nothing else (looked up only for events that would be kept).
    let list_room = || !in_control && view.is_list_room(&head.room_id);
    let wanted = match head.kind {
        Kind::PolicyRule(_) if head.state_key.is_some() => return list_room(),
        Kind::Redaction => return list_room(),
        Kind::Member => {
            head.is_membership_of(view.bot())
                || head.membership == Some(MembershipState::Knock)
                || in_control
                || view.is_managed(&head.room_id)
                || head.state_key.as_deref().is_some_and(|u| view.is_knocker(u))
        }
        // Until an alias control room is resolved, keep commands from any managed room;
        // the worker drops those that turn out not to be from the control room.
        Kind::Message | Kind::Reaction => in_control || (control.is_none() && view.is_managed(&head.room_id)),
        // State of the room itself has an empty state key; anything else is not room state.
        Kind::State(_) => head.is_room_state() && (in_control || view.is_managed(&head.room_id)),
        // Debug builds (the test suite) only: injected faults (see the worker).
        #[cfg(debug_assertions)]
        Kind::Fault => true,
        Kind::PolicyRule(_) | Kind::Other => false,
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

    fn ev(kind: &str, room: &str, state_key: Option<&str>, membership: Option<&str>) -> String {
        let mut v = json!({"event_id": "$e", "room_id": room, "sender": "@a:test.local", "type": kind, "content": {}});
        if let Some(k) = state_key {
            v["state_key"] = json!(k);
        }
        if let Some(m) = membership {
            v["content"]["membership"] = json!(m);
        }
        v.to_string()
    }

    #[test]
    fn parses_v12_room_ids_and_ports_in_user_ids() {
        let text = json!({
            "event_id": "$x", "room_id": "!yDTWb7wKownNOAQQIbza_KXFr_gVjWRY80QEvIjN52s",
            "sender": "@bob:localhost:18248", "type": "m.room.member", "state_key": "@bob:localhost:18248",
            "content": {"membership": "knock", "avatar_url": null}, "unsigned": {}
        })
        .to_string();
        let h = Head::parse(&text).unwrap();
        assert_eq!(h.membership, Some(MembershipState::Knock));
        assert_eq!(h.sender.server_name().as_str(), "localhost:18248");
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let parse = |v: serde_json::Value| Head::parse(&v.to_string()).map(|_| ()).unwrap_err().to_string();
        let e = parse(json!({"room_id": "!r:x", "sender": "@a:x", "type": "m.room.message"}));
        assert!(e.contains("event_id"), "{e}");
        let e = parse(
            json!({"event_id": "$e", "room_id": "!r:x", "sender": "@a:x", "type": "m.room.member", "state_key": "@a:x", "content": {}}),
        );
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
            assert!(is_wanted(&Head::parse(h).unwrap(), &View), "dropped {h}");
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
            assert!(!is_wanted(&Head::parse(h).unwrap(), &View), "kept {h}");
        }
    }
}

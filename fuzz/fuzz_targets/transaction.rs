//! A transaction body through intake: split into events, each read on its own (routing
//! fields, then the whole event where knockwarden would keep it), as
//! `knockwarden::pipeline::intake::take_events` does.
#![no_main]

use knockwarden::{
    events::{EventHead, Interests, is_wanted},
    pipeline::intake::split_events,
};
use libfuzzer_sys::fuzz_target;
use ruma::{RoomId, UserId};

struct Everything;

impl Interests for Everything {
    fn bot(&self) -> &UserId {
        <&UserId>::try_from("@kw:x").unwrap()
    }
    fn control_room(&self) -> Option<&RoomId> {
        Some(<&RoomId>::try_from("!ctrl:x").unwrap())
    }
    fn is_managed(&self, _: &RoomId) -> bool {
        true
    }
    fn is_knocker(&self, _: &str) -> bool {
        true
    }
}

fuzz_target!(|body: &[u8]| {
    let Ok(events) = split_events(body) else { return };
    for json in events {
        let Ok(head) = EventHead::from_json(json) else { continue };
        if is_wanted(&head, &Everything)
            && let Ok(event) = serde_json::from_str::<serde_json::Value>(json)
        {
            let _ = knockwarden::control::message::command_text(&event, "@kw:x");
            let _ = knockwarden::control::message::reaction(&event);
        }
    }
});

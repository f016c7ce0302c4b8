//! A transaction body through intake: split into events, each read on its own (routing
//! fields, then the whole event where knockwarden would keep it), as
//! `knockwarden::pipeline::intake::take_events` does.
#![no_main]

use knockwarden::{
    events::{Body, Head, Interests, is_wanted},
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
    fn is_list_room(&self, _: &RoomId) -> bool {
        false
    }
}

fuzz_target!(|body: &[u8]| {
    let Ok(events) = split_events(body) else { return };
    for json in events {
        let Ok(head) = Head::parse(json) else { continue };
        if is_wanted(&head, &Everything)
            && let Ok(event) = head.into_event()
            && let Body::Message(message) = &event.body
        {
            let _ = knockwarden::events::command_text(message, "@kw:x");
        }
    }
});

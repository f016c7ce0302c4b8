//! A control-room message through the command parser: which messages are commands, the
//! code block taken out, the words parsed (a command, help, or an error).
#![no_main]

use knockwarden::events::command_text;
use knockwarden::control::{
    command::{Parsed, parse, split_block},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &str| {
    let message = knockwarden::events::Message { msgtype: Some("m.text".into()), body: Some(body.into()), ..Default::default() };
    if let Some(text) = command_text(&message, "@knockwarden:example.org") {
        let (line, _block) = split_block(&text);
        if let Parsed::Help(t) | Parsed::Error(t) = parse(&line) {
            let content = knockwarden::homeserver::notice_content(&t, &knockwarden::notices::escape(&t));
            let fitted = knockwarden::notices::fit(&content, knockwarden::notices::MAX_CONTENT_BYTES);
            assert!(serde_json::to_vec(&fitted).unwrap().len() <= knockwarden::notices::MAX_CONTENT_BYTES);
        }
    }
});

//! A policy file through the reader and the compiler (what `policy check` and the service
//! do); a policy that loads then decides and explains a few knocks.
#![no_main]

use knockwarden::policy::{Knock, PolicySet, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(set) = PolicySet::load(&[Source { path: "fuzz.yaml".into(), text: text.to_owned() }]) else { return };
    for p in set.policies() {
        for (user, reason) in [("@a:x", Some("hello there")), ("@bob:evil.example", None), ("@7:h:8448", Some(text))] {
            let k = Knock { user, room: "!r:x", reason, ..Default::default() };
            let decided = p.decide(&k);
            assert_eq!(decided, p.explain(&k).decision);
        }
    }
});

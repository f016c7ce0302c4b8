//! One slow, broken or hostile thing never stalls the rest: an alias that cannot be looked up,
//! a ban list that cannot be matched, and what is said about them.

use serde_json::{Value, json};

use crate::{
    control::{ROOM, homeserver, message},
    helpers::{AppOptions, CONTROL_ROOM, FakeHomeserver, MODERATOR, TestApp, eventually, knock_event, spawn_app_in},
};

/// The room named by ID: friends are let in, everyone else is turned away.
use crate::runner::POLICY as BY_ID;

/// A room named by an alias on a server whose homeserver refuses the look-up.
const BY_ALIAS: &str = r##"rooms: ["#other:example.org"]
default: deny
rules:
  - name: spam
    when: { reason: { contains: [spam] } }
    action: ban
"##;

/// The room the alias turns out to name.
const ALIASED: &str = "!x:test.local";

async fn start(hs: FakeHomeserver, policies: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app
}

/// `n` answers of `status` (403: refused for good; 502: the alias's server is down).
fn refused(status: u16, n: usize) -> Vec<(u16, Value, Option<String>)> {
    vec![(status, json!({"errcode": "M_UNKNOWN", "error": "You may not look this up"}), None); n]
}

async fn health(app: &TestApp) -> Value {
    app.client.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn an_alias_that_cannot_be_looked_up_delays_only_the_knocks_that_depend_on_it() {
    let hs = homeserver().await;
    // The alias's server is down: its look-up fails, many times over (tried again, with
    // back-off).
    hs.script("/directory/room/", refused(502, 10_000));
    let app = start(hs, &[("by-id.yaml", BY_ID), ("by-alias.yaml", BY_ALIAS)]).await;
    eventually("the look-up was refused", || !app.homeserver.requests_to("GET", "/directory/room/").is_empty()).await;

    // A knock in a room named by ID, a knock in a room that may be the alias's, and a command.
    app.knock_on("1", "$friend", "@friend:test.local", Some("a friend of Bob")).await;
    app.homeserver.set_knocking(ALIASED, "@maybe:test.local", "$maybe");
    app.push("2", vec![knock_event("$maybe", ALIASED, "@maybe:test.local", Some("hello"))]).await;
    app.push("3", vec![message("$help", MODERATOR, "!knock help")]).await;
    eventually("the knock in the room named by ID is decided", || !app.posted("invite").is_empty()).await;
    eventually("the command is answered", || !app.replies_to("$help").is_empty()).await;

    // The other knock waits, and /health says for what.
    let store = app.store.clone();
    eventually("the knock that may be the alias's waits", || {
        store.knocks().get(ALIASED, "@maybe:test.local").unwrap().is_some()
    })
    .await;
    eventually("/health counts it", || app.store.journal().backlog() == 1).await;
    let h = health(&app).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["unresolved_aliases"], json!(["#other:example.org"]), "{h}");
    assert_eq!(h["waiting_knocks"], 1, "{h}");
    assert!(app.homeserver.requests_to("POST", &format!("/rooms/{ALIASED}/")).is_empty(), "decided too early");

    // The alias can be looked up now: the waiting knock is decided by the policy it names.
    app.homeserver.set_alias("#other:example.org", ALIASED);
    app.homeserver.clear_scripts();
    eventually("the waiting knock is decided once the alias is known", || {
        !app.homeserver.requests_to("POST", &format!("/rooms/{ALIASED}/kick")).is_empty()
    })
    .await;
    eventually("nothing waits any more", || app.store.journal().backlog() == 0).await;
    let audit = app.store.audit().all().unwrap();
    let decided: Vec<(&str, &str)> = audit.iter().map(|e| (e.user_id.as_str(), e.policy.as_str())).collect();
    assert_eq!(decided, [("@friend:test.local", "by-id"), ("@maybe:test.local", "by-alias")]);
}

#[tokio::test]
async fn a_waiting_knock_withdrawn_meanwhile_is_not_decided() {
    let hs = homeserver().await;
    // Refused for good: the look-up goes to the failed list.
    hs.script("/directory/room/", refused(403, 10_000));
    let app = start(hs, &[("by-id.yaml", BY_ID), ("by-alias.yaml", BY_ALIAS)]).await;
    eventually("the look-up failed for good", || app.store.failures().all().unwrap().len() == 1).await;
    app.homeserver.set_knocking(ALIASED, "@gone:test.local", "$gone");
    app.push("1", vec![knock_event("$gone", ALIASED, "@gone:test.local", Some("hello"))]).await;
    eventually("the knock waits", || app.store.knocks().get(ALIASED, "@gone:test.local").unwrap().is_some()).await;
    // They withdraw before the alias is known.
    let leave = crate::helpers::member_event("$leave", ALIASED, "@gone:test.local", "@gone:test.local", "leave");
    app.push("2", vec![leave]).await;
    eventually("the withdrawal is taken in", || app.store.knocks().get(ALIASED, "@gone:test.local").unwrap().is_none())
        .await;
    // A moderator tries the look-up again once it can succeed: `!knock retry` is not held up.
    app.homeserver.set_alias("#other:example.org", ALIASED);
    app.homeserver.clear_scripts();
    app.push("3", vec![message("$retry", MODERATOR, "!knock retry 1")]).await;
    eventually("the waiting knock is dropped", || app.store.journal().backlog() == 0).await;
    assert!(app.store.audit().all().unwrap().is_empty(), "a withdrawn knock was decided");
    assert!(app.homeserver.requests_to("POST", &format!("/rooms/{ALIASED}/")).is_empty());
    // And a knock in the room named by ID was never held up.
    app.knock_on("4", "$f", "@f:test.local", Some("a friend")).await;
    eventually("invited", || !app.posted("invite").is_empty()).await;
}

#[tokio::test]
async fn a_knock_waiting_for_review_past_retention_is_not_decided_again_after_a_restart() {
    let hs = homeserver().await;
    hs.set_joined_rooms(&[CONTROL_ROOM, ROOM]);
    let retention = "retention:\n  events: 1s\n";
    let app = crate::control::start(tempfile::tempdir().unwrap(), hs, retention).await;
    app.knock_on("1", "$k", "@u:test.local", Some("hello")).await;
    app.review_notice(1).await;
    // The homeserver still lists the knock (a catch-up after a restart reads it again).
    app.homeserver.set_knocks(ROOM, vec![knock_event("$k", ROOM, "@u:test.local", Some("hello"))]);
    // Longer than `retention.events`, with pruning passes every 250 ms.
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let (dir, hs) = app.stop().await;
    let members = |hs: &FakeHomeserver| hs.requests_to("GET", &format!("/rooms/{ROOM}/members")).len();
    let caught_up = members(&hs);
    let app = crate::control::start(dir, hs, retention).await;
    eventually("the restart caught up on the room's knocks", || members(&app.homeserver) > caught_up).await;
    eventually("settled", || app.store.outbox().is_empty()).await;
    assert!(app.store.reviews().get(2).unwrap().is_none(), "decided again: a second review item");
    let item = app.store.reviews().get(1).unwrap().unwrap();
    assert!(item.closed.is_none(), "review #1 closed: {:?}", item.closed);
    assert_eq!(app.store.audit().all().unwrap().len(), 1);
}

/// Flips a byte of the journal's record that holds `needle` (a string of its payload).
fn flip_byte_of_record_with(db: &std::path::Path, needle: &str) {
    let path = db.join("journal").join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&path).unwrap();
    let at =
        bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).expect("the record is in the first segment");
    bytes[at + 1] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

fn damage_notices(app: &TestApp) -> Vec<String> {
    app.plain_notices().into_iter().filter(|n| n.contains("The journal is damaged")).collect()
}

#[tokio::test]
async fn a_damaged_journal_is_kept_aside_said_and_the_records_after_it_handled() {
    // Three knocks acknowledged and left in the journal, as a crash right after the 200s would.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    {
        let store = knockwarden::storage::Store::open(&db).unwrap();
        for (i, user) in ["@a:test.local", "@b:test.local", "@c:test.local"].iter().enumerate() {
            let ev = knock_event(&format!("$knock-{i}"), ROOM, user, Some("a friend"));
            let raw = serde_json::value::to_raw_value(&ev).unwrap();
            let origin = knockwarden::storage::Origin::Push { txn_id: format!("{i}") };
            store
                .journal()
                .append(&origin, Some(&[i as u8; 32]), vec![raw], vec![user.to_string()], vec![], |_| {})
                .unwrap();
        }
        store.flush_blocking().unwrap();
    }
    // A byte of the second record flips on disk.
    flip_byte_of_record_with(&db, "$knock-1");
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), BY_ID).unwrap();
    let hs = homeserver().await;
    for (i, user) in ["@a:test.local", "@b:test.local", "@c:test.local"].iter().enumerate() {
        hs.set_knocking(ROOM, user, &format!("$knock-{i}"));
    }
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    // The records before and after the damage are handled; the damaged one is said lost.
    eventually("the knocks around the damage are acted on", || app.posted("invite").len() == 2).await;
    let invited: Vec<String> =
        app.posted("invite").iter().map(|r| r.body["user_id"].as_str().unwrap().to_owned()).collect();
    assert!(
        invited.contains(&"@a:test.local".to_owned()) && invited.contains(&"@c:test.local".to_owned()),
        "{invited:?}"
    );
    eventually("the damage is told", || damage_notices(&app).len() == 1).await;
    let notice = &damage_notices(&app)[0];
    assert!(notice.contains("Records 1–1 could not be read"), "{notice}");
    let kept = db.join("journal-damaged");
    assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 1, "the damaged bytes are kept aside");
    assert!(notice.contains(kept.to_str().unwrap()), "{notice}");
    // Started again, twice: it starts, and the damage is not told again.
    let (dir, hs) = app.stop().await;
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    let (dir, hs) = app.stop().await;
    // A byte of a handled record flips too: said, with nothing lost.
    flip_byte_of_record_with(&db, "$knock-0");
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("the second damage is told", || damage_notices(&app).len() == 2).await;
    let notices = damage_notices(&app);
    assert!(notices[1].contains("had been handled already: nothing was lost"), "{}", notices[1]);
    assert_eq!(app.posted("invite").len(), 2, "nothing acted on again");
}

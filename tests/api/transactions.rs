//! Pushed transactions: real Synapse payloads, replays, reused txnIds, restarts.

use knockwarden::storage::{InboxRecord, Op, Origin, T};
use serde_json::json;

use crate::helpers::{AppOptions, FakeHomeserver, eventually, fixture_txn_body, knock_event, spawn_app, spawn_app_in};

#[tokio::test]
async fn synapse_knock_transactions_v10_v12_and_federated_are_taken_in() {
    let app = spawn_app().await;
    for (i, name) in
        ["local_v10_knock_txn.json", "local_v12_knock_txn.json", "federation_remote_knock_txn.json"].iter().enumerate()
    {
        let body = fixture_txn_body(name);
        let res = app.put_txn(&format!("{i}"), &body).await;
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({}));
    }
    let store = app.store.clone();
    eventually("three knocks recorded", || store.knocks().in_room(None).unwrap().len() == 3).await;
    let v12 = store.knocks().get("!yDTWb7wKownNOAQQIbza_KXFr_gVjWRY80QEvIjN52s", "@bob:test.local").unwrap().unwrap();
    assert_eq!(v12.reason.as_deref(), Some("please let me in"));
    assert_eq!(v12.displayname.as_deref(), Some("bob"));
    assert_eq!(v12.event_id, "$KTPxZyDLlxk2QA6EyGSefB5WeO2-LC-6CHH0OR7LVP8");
    let fed = store.knocks().get("!cakiXfIFjjxCuzwcPp:localhost:18148", "@bob:localhost:18248").unwrap().unwrap();
    assert_eq!(fed.reason.as_deref(), Some("please let me in"));
}

#[tokio::test]
async fn a_replayed_transaction_is_a_no_op() {
    let app = spawn_app().await;
    let body = fixture_txn_body("local_v10_knock_txn.json");
    assert_eq!(app.put_txn("13", &body).await.status(), 200);
    assert_eq!(app.put_txn("13", &body).await.status(), 200);
    assert_eq!(app.put_txn("13", &body).await.status(), 200);
    let store = app.store.clone();
    eventually("the knock is handled", || {
        store.journal().backlog() == 0 && store.counter("events_stored").unwrap() > 0
    })
    .await;
    assert_eq!(app.store.counter("events_stored").unwrap(), 1);
    assert_eq!(app.store.counter("events_duplicate").unwrap(), 0, "exact replays are not even re-read");
}

#[tokio::test]
async fn a_reused_txn_id_with_new_events_is_processed_and_old_events_are_not_redone() {
    let app = spawn_app().await;
    let room = "!room:test.local";
    let first = json!({"events": [knock_event("$k1", room, "@a:test.local", Some("hi"))]});
    // Synapse restarted: txnId 1 again, carrying the old event (at-least-once) and a new one.
    let second = json!({"events": [
        knock_event("$k1", room, "@a:test.local", Some("hi")),
        knock_event("$k2", room, "@b:test.local", None),
    ]});
    assert_eq!(app.put_txn("1", &first).await.status(), 200);
    assert_eq!(app.put_txn("1", &second).await.status(), 200);
    let store = app.store.clone();
    eventually("both knocks recorded", || store.knocks().in_room(Some(room)).unwrap().len() == 2).await;
    assert_eq!(store.counter("events_stored").unwrap(), 2);
    assert_eq!(store.counter("events_duplicate").unwrap(), 1);
}

#[tokio::test]
async fn unneeded_and_malformed_events_are_counted_and_dropped_without_failing_the_transaction() {
    let app = spawn_app().await;
    let body = json!({"events": [
        {"event_id": "$t", "room_id": "!elsewhere:test.local", "sender": "@a:test.local", "type": "m.room.topic", "state_key": "", "content": {"topic": "x"}},
        {"room_id": "!r:test.local", "type": "m.room.member"},
        {"event_id": "$m", "room_id": "!r:test.local", "sender": "not a user id", "type": "m.room.member", "state_key": "@x:y", "content": {"membership": "knock"}},
        knock_event("$ok", "!r:test.local", "@c:test.local", None),
    ]});
    assert_eq!(app.put_txn("5", &body).await.status(), 200);
    assert_eq!(app.store.counter("events_dropped").unwrap(), 3, "counted as they are dropped");
    let store = app.store.clone();
    eventually("the knock is taken in", || store.counter("events_stored").unwrap() == 1).await;
    assert_eq!(app.store.counter("events_dropped").unwrap(), 3);
}

#[tokio::test]
async fn a_journal_not_handled_yet_and_an_old_inbox_are_drained_on_restart() {
    // Leave a record in the journal, as a crash right after the 200 would, and an entry in
    // sled's inbox, as a database from before the journal has.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = knockwarden::storage::Store::open(&dir.path().join("db")).unwrap();
        let ev = knock_event("$left-behind", "!r:test.local", "@e:test.local", Some("from before the crash"));
        let raw = serde_json::value::to_raw_value(&ev).unwrap();
        store
            .journal()
            .append(
                &Origin::Push { txn_id: "99".into() },
                Some(&[0; 32]),
                vec![raw],
                vec!["@e:test.local".into()],
                vec![],
                |_| {},
            )
            .unwrap();
        let old = knock_event("$old", "!r:test.local", "@o:test.local", None);
        let entry = InboxRecord {
            received_ms: 1,
            origin: Origin::Push { txn_id: "1".into() },
            events: vec![serde_json::value::to_raw_value(&old).unwrap()],
            waiting: false,
        };
        store.commit(&[Op::put_json(T::Inbox, 5u64.to_be_bytes(), &entry)]).unwrap();
        store.flush_blocking().unwrap();
        assert_eq!(store.journal().backlog(), 2);
    }
    let app = spawn_app_in(dir, FakeHomeserver::start().await, AppOptions::default()).await;
    let store = app.store.clone();
    eventually("both knocks are handled after restart", || {
        store.knocks().get("!r:test.local", "@e:test.local").unwrap().is_some()
            && store.knocks().get("!r:test.local", "@o:test.local").unwrap().is_some()
    })
    .await;
    eventually("the inbox is empty", || store.journal().backlog() == 0).await;
    // And it is not taken in again if the homeserver resends it.
    let body = json!({"events": [knock_event("$left-behind", "!r:test.local", "@e:test.local", None)]});
    assert_eq!(app.put_txn("99", &body).await.status(), 200);
    eventually("the resent knock is found taken in", || store.counter("events_duplicate").unwrap() == 1).await;
    // The batch's counters are committed just before the journal learns how far it got.
    eventually("nothing is left to handle", || store.journal().backlog() == 0).await;
    assert_eq!(store.counter("events_stored").unwrap(), 1, "the old inbox's entry was taken in before");
}

#[tokio::test]
async fn state_survives_a_graceful_restart() {
    let app = spawn_app().await;
    let body = json!({"events": [knock_event("$k", "!r:test.local", "@f:test.local", None)]});
    assert_eq!(app.put_txn("1", &body).await.status(), 200);
    let store = app.store.clone();
    eventually("knock recorded", || store.knocks().get("!r:test.local", "@f:test.local").unwrap().is_some()).await;
    drop(store);
    let (dir, hs) = app.stop().await;
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    assert!(app.store.knocks().get("!r:test.local", "@f:test.local").unwrap().is_some());
    assert!(app.store.journal().was_seen("$k").unwrap());
}

//! The homeserver failing: rate limits, errors, outages, restarts with actions queued, and a
//! flaky homeserver under load; every knock acted on once.

use knockwarden::storage::Outcome;
use serde_json::{Value, json};

use crate::{
    helpers::{AppOptions, BOT, eventually, knock_event, member_event, spawn_app_in},
    pipeline::{ROOM, act_failed_once, app, settled, started},
};

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_until_done() {
    let app = app().await;
    app.homeserver.script(
        "/invite",
        [
            (429, json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 200}), None),
            (429, json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down"}), Some("1".to_owned())),
            (500, json!({"errcode": "M_UNKNOWN", "error": "boom"}), None),
            (502, json!({}), None),
        ],
    );
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    eventually("invited after the failures", || {
        app.homeserver.membership(ROOM, "@alice:test.local").as_deref() == Some("invite")
    })
    .await;
    assert_eq!(app.posts("invite").len(), 5, "four failures, one success, nothing more");
    eventually("settled", || settled(&app)).await;
    assert_eq!(app.store.audit().all().unwrap()[0].outcome, Outcome::Done);
}

#[tokio::test]
async fn a_homeserver_that_is_down_for_a_while_gets_every_knock_once_back() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.go_down().await;
    let users: Vec<String> = (0..20).map(|i| format!("@u{i}:test.local")).collect();
    for (i, u) in users.iter().enumerate() {
        app.knock(&format!("{i}"), &format!("$k{i}"), u, Some("let me in")).await;
    }
    eventually("actions are failing", || {
        app.store.outbox().all().unwrap().first().is_some_and(|(_, e)| e.attempts >= 1)
    })
    .await;
    let _back = app.homeserver.come_back().await;
    eventually("all invited", || app.posts("invite").len() >= 20 && settled(&app)).await;
    // Knockers are independent subjects: they are invited concurrently, in any order.
    let mut invited: Vec<String> =
        app.posts("invite").iter().map(|r| r.body["user_id"].as_str().unwrap().to_owned()).collect();
    invited.sort();
    let mut users = users;
    users.sort();
    assert_eq!(invited, users, "none lost, none doubled");
}

#[tokio::test]
async fn a_restart_with_a_non_empty_outbox_acts_once() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.go_down().await;
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    act_failed_once(&app).await;
    let (dir, hs) = app.stop().await;
    let hs = hs.come_back().await;
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("invited after the restart", || app.posts("invite").len() == 1 && settled(&app)).await;
    // The pushed invite event (the bot's own) closes the knock without acting again.
    let invited = member_event("$i", ROOM, BOT, "@alice:test.local", "invite");
    assert_eq!(app.put_txn("9", &json!({"events": [invited]})).await.status(), 200);
    eventually("knock closed", || app.store.knocks().get(ROOM, "@alice:test.local").unwrap().is_none()).await;
    assert_eq!(app.posts("invite").len(), 1);
    assert_eq!(app.store.audit().all().unwrap()[0].outcome, Outcome::Done);
}

#[tokio::test]
async fn a_thousand_knocks_against_a_flaky_homeserver_end_in_a_thousand_actions() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.set_flaky(true);
    let n = 1000;
    for chunk in 0..(n / 100) {
        let events: Vec<Value> = (0..100)
            .map(|i| {
                let k = chunk * 100 + i;
                let user = format!("@user{k}:test.local");
                app.homeserver.set_knocking(ROOM, &user, &format!("$k{k}"));
                knock_event(&format!("$k{k}"), ROOM, &user, Some("hello there"))
            })
            .collect();
        assert_eq!(app.put_txn(&format!("t{chunk}"), &json!({"events": events})).await.status(), 200);
    }
    let store = app.store.clone();
    let deadline = std::time::Duration::from_secs(120);
    let started = std::time::Instant::now();
    while !(store.audit().len() == n && settled(&app)) {
        assert!(
            started.elapsed() < deadline,
            "not done: {} decided, {} queued",
            store.audit().len(),
            store.outbox().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut invited: Vec<String> = app
        .homeserver
        .requests_to("POST", "/invite")
        .into_iter()
        .map(|r| r.body["user_id"].as_str().unwrap().to_owned())
        .collect();
    let attempts = invited.len();
    invited.sort();
    invited.dedup();
    assert_eq!(invited.len(), n, "every knocker invited");
    assert!(attempts >= n && attempts <= 2 * n, "{attempts} attempts");
    for k in 0..n {
        assert_eq!(app.homeserver.membership(ROOM, &format!("@user{k}:test.local")).as_deref(), Some("invite"));
    }
    assert!(store.audit().all().unwrap().iter().all(|e| e.outcome == Outcome::Done));
}

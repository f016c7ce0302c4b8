//! An admin's first hour: the control room can always be joined, and readiness says what is
//! missing.

use serde_json::{Value, json};

use crate::{
    control::homeserver,
    helpers::{AppOptions, BOT, CONTROL_ROOM, FakeHomeserver, TestApp, eventually, member_event, spawn_app_in},
};

/// The control room as the admin names it in the config.
const CONTROL_ALIAS: &str = "#control:test.local";

/// Someone in the control room with no power at all: the admin chose the room, so their
/// invitation is accepted all the same.
const INVITER: &str = "@rando:test.local";

async fn start_named_by_alias(dir: tempfile::TempDir, hs: FakeHomeserver) -> TestApp {
    let opts = AppOptions { control_room: CONTROL_ALIAS.to_owned(), ..Default::default() };
    spawn_app_in(dir, hs, opts).await
}

/// Joins asked for, and how many of them the homeserver granted so far.
fn joins(app: &TestApp) -> usize {
    app.homeserver.requests_to("POST", "/join/").len()
}

async fn ready(app: &TestApp) -> (u16, Value) {
    let res = app.client.get(format!("{}/ready", app.address)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Waits until the bot has tried to join the control room at least `n` times, and checks that
/// it is not ready and says why, with nothing in the failed list.
async fn refused_and_waiting(app: &TestApp, n: usize) {
    eventually("the join was tried (and refused)", || joins(app) >= n).await;
    let store = app.store.clone();
    let mut said = (0, Value::Null);
    for _ in 0..200 {
        said = ready(app).await;
        if said.1["status"].as_str().is_some_and(|s| s.contains("control room")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(said.0, 503, "not ready while outside the control room: {said:?}");
    assert!(said.1["status"].as_str().unwrap().contains("control room"), "{said:?}");
    assert!(
        store.failures().all().unwrap().is_empty(),
        "a refused join is not a failure: {:?}",
        store.failures().all().unwrap()
    );
}

/// The bot is invited (by anyone) to the control room: it joins within seconds and answers.
async fn invited_then_answers(app: &TestApp, txn: &str) {
    app.homeserver.refuse_joins(CONTROL_ALIAS, false);
    app.homeserver.refuse_joins(CONTROL_ROOM, false);
    let before = joins(app);
    let at = std::time::Instant::now();
    app.push(txn, vec![member_event(&format!("$invite{txn}"), CONTROL_ROOM, INVITER, BOT, "invite")]).await;
    eventually("the bot joins at the invitation", || joins(app) > before).await;
    assert!(at.elapsed() < std::time::Duration::from_secs(5), "joined {:?} after the invitation", at.elapsed());
    let reply = app.say(&format!("{txn}-help"), &format!("$help{txn}"), "!knock help").await;
    assert!(reply.contains("Usage: !knock"), "the help answers: {reply}");
    let (status, body) = ready(app).await;
    assert_eq!(status, 200, "ready once in the control room: {body}");
    let sent_unreachable = app.store.failures().all().unwrap();
    assert!(sent_unreachable.is_empty(), "nothing failed: {sent_unreachable:?}");
}

fn refusing_homeserver(hs: &FakeHomeserver) {
    hs.set_alias(CONTROL_ALIAS, CONTROL_ROOM);
    hs.refuse_joins(CONTROL_ALIAS, true);
    hs.refuse_joins(CONTROL_ROOM, true);
}

#[tokio::test]
async fn a_bot_not_invited_to_its_control_room_joins_when_invited_later() {
    let hs = homeserver().await;
    refusing_homeserver(&hs);
    let app = start_named_by_alias(tempfile::tempdir().unwrap(), hs).await;
    refused_and_waiting(&app, 1).await;
    // Nothing is posted in a room the bot is not in.
    assert!(app.homeserver.requests_to("PUT", "/send/").is_empty(), "no message before the join");
    invited_then_answers(&app, "1").await;
}

#[tokio::test]
async fn a_bot_not_invited_to_its_control_room_joins_when_invited_after_a_restart() {
    let hs = homeserver().await;
    refusing_homeserver(&hs);
    let app = start_named_by_alias(tempfile::tempdir().unwrap(), hs).await;
    refused_and_waiting(&app, 1).await;
    let (dir, hs) = app.stop().await;
    let app = start_named_by_alias(dir, hs).await;
    // Tried again on every start.
    let tried = joins(&app);
    refused_and_waiting(&app, tried + 1).await;
    invited_then_answers(&app, "1").await;
}

const BY_ALIAS: &str = r##"rooms: ["#support:test.local"]
default: review
rules:
  - name: listed
    when: { ban_list: "#bans:test.local" }
    action: ban
"##;

#[tokio::test]
async fn ready_names_the_aliases_and_ban_lists_not_looked_up_yet_and_health_stays_ok() {
    let hs = homeserver().await;
    // The directory does not answer yet (the aliases' server is down).
    let down = json!({"errcode": "M_UNKNOWN", "error": "down"});
    hs.script("/directory/room/", vec![(502, down.clone(), None); 10_000]);
    hs.script("/join/%23bans", vec![(502, down.clone(), None); 10_000]);
    hs.script("/join/#bans", vec![(502, down, None); 10_000]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/support.yaml"), BY_ALIAS).unwrap();
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    let mut said = (0, Value::Null);
    for _ in 0..500 {
        said = ready(&app).await;
        let reasons = said.1["reasons"].as_array().cloned().unwrap_or_default();
        if reasons.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = said;
    assert_eq!(status, 503, "{body}");
    let reasons: Vec<&str> = body["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons[0].contains("#support:test.local"), "the alias is named: {reasons:#?}");
    assert!(
        ["is not read yet", "could not be read"]
            .iter()
            .any(|w| reasons[1] == format!("the ban list #bans:test.local {w}")),
        "{reasons:#?}"
    );
    let health = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness does not fail");
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["not_ready"].as_array().unwrap().len(), 2, "{health}");
    assert_eq!(health["control_room"]["joined"], true, "{health}");

    // The directory and the list's server come back: ready.
    app.homeserver.clear_scripts();
    app.homeserver.set_alias("#support:test.local", "!support:test.local");
    app.homeserver.set_alias("#bans:test.local", "!bans:test.local");
    let mut said = (0, Value::Null);
    for _ in 0..1_500 {
        said = ready(&app).await;
        if said.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(said.0, 200, "{:?}", said.1);
}

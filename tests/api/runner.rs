//! The runner under faults and load: one knocker's trouble never delays another's, an action
//! answers one knock, and nothing a policy or a moderator asked for is lost.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use knockwarden::{
    homeserver::{Homeserver, HsError, MatrixHomeserver, MembershipChange, StateEvent},
    storage::{FailedItem, Outcome, Resolution},
};
use ruma::{OwnedEventId, OwnedRoomId, RoomAliasId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};

use crate::{
    control::{ROOM, homeserver, message},
    helpers::{AppOptions, FakeHomeserver, MODERATOR, TestApp, eventually, spawn_app_in, spawn_app_wrapping},
};

/// Friends are let in; everyone else is turned away.
pub(crate) const POLICY: &str = r#"rooms: ["!r:test.local"]
default: deny
rules:
  - name: friends
    when: { reason: { contains: [friend] } }
    action: accept
"#;

fn dir_with_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    dir
}

async fn started(app: TestApp) -> TestApp {
    eventually("start-up done", || {
        app.store.get_meta("control_room_id").unwrap().is_some() && app.store.outbox().is_empty()
    })
    .await;
    app
}

async fn start(extra_config: &str) -> TestApp {
    let opts = AppOptions { extra_config: extra_config.to_owned(), ..Default::default() };
    started(spawn_app_in(dir_with_policy(), homeserver().await, opts).await).await
}

/// Users the bot invited (each request, failed or not).
fn invited(app: &TestApp) -> Vec<String> {
    app.posted("invite").iter().map(|r| r.body["user_id"].as_str().unwrap().to_owned()).collect()
}

fn notices(app: &TestApp) -> Vec<String> {
    app.plain_notices()
}

fn settled(app: &TestApp) -> bool {
    app.store.outbox().is_empty() && app.store.audit().all().unwrap().iter().all(|e| e.outcome != Outcome::Pending)
}

#[tokio::test]
async fn a_knocker_whose_server_is_down_does_not_delay_the_others() {
    let app = start("").await;
    // Synapse answers 502 when the knocker's server cannot be reached; it stays down.
    app.homeserver.fail_user("@down:far.example", 502);
    app.knock_on("0", "$down", "@down:far.example", Some("a friend")).await;
    let store = app.store.clone();
    eventually("the first invite failed", || store.outbox().all().unwrap().iter().any(|(_, e)| e.attempts >= 1)).await;
    let others: Vec<String> = (0..20).map(|i| format!("@u{i}:test.local")).collect();
    for (i, u) in others.iter().enumerate() {
        app.knock_on(&format!("k{i}"), &format!("$k{i}"), u, Some("a friend")).await;
    }
    eventually("the others are invited", || {
        let done = invited(&app);
        others.iter().all(|u| done.contains(u))
    })
    .await;
    // The failing one is still being tried: not lost, not given up on (24h by default).
    eventually("only the failing one is left", || store.outbox().len() == 1).await;
    let queued = store.outbox().all().unwrap();
    assert!(queued[0].1.action.describe().starts_with("invite @down:far.example"), "{queued:#?}");
    assert!(queued[0].1.attempts >= 1);
    assert!(store.failures().all().unwrap().is_empty());
}

#[tokio::test]
async fn knockers_of_a_server_that_never_answers_hold_few_slots_and_delay_nobody() {
    let app = start("").await;
    // Synapse waits on dead.example's server for each invite; it never answers.
    app.homeserver.delay_users_of("dead.example", Duration::from_secs(120));
    let dead: Vec<String> = (0..40).map(|i| format!("@d{i}:dead.example")).collect();
    for (i, u) in dead.iter().enumerate() {
        app.knock_on(&format!("d{i}"), &format!("$d{i}"), u, Some("a friend")).await;
    }
    let to_dead = || invited(&app).iter().filter(|u| u.ends_with(":dead.example")).count();
    eventually("invites to dead.example are under way", || to_dead() >= 4).await;
    // An ordinary local knock and a command, while those hang.
    let sent = tokio::time::Instant::now();
    app.knock_on("ok", "$ok", "@ok:test.local", Some("a friend")).await;
    app.push("cmd", vec![message("$help", MODERATOR, "!knock help")]).await;
    eventually("the local knocker is invited", || invited(&app).contains(&"@ok:test.local".to_owned())).await;
    eventually("the command is answered", || !app.replies_to("$help").is_empty()).await;
    let waited = sent.elapsed();
    // Before, every one of the 32 request slots waited 30 s on dead.example.
    assert!(waited < Duration::from_secs(10), "waited {waited:?} behind dead.example's knockers");
    // dead.example's knockers hold at most `homeserver.max_requests_per_server` (4) requests.
    assert_eq!(to_dead(), 4, "{:?}", invited(&app));
}

#[tokio::test]
async fn a_request_unanswered_past_request_timeout_fails_and_is_tried_again() {
    let opts = AppOptions { homeserver_extra: "  request_timeout: 1s\n".into(), ..Default::default() };
    let app = started(spawn_app_in(dir_with_policy(), homeserver().await, opts).await).await;
    app.homeserver.delay_users_of("slow.example", Duration::from_secs(120));
    app.knock_on("s", "$s", "@s:slow.example", Some("a friend")).await;
    // The invite gets no answer (the fake carries it out, then holds the answer back): after
    // 1 s the attempt fails, as transient, and the action is tried again. A retry asks the
    // homeserver first, finds the invite done there, and is done. (Not watched through the
    // outbox entry waiting between the two: it waits a few milliseconds, less than a poll.)
    let hs = app.homeserver.clone();
    let tried_again = || {
        let invite = hs.requests_to("POST", "/invite").into_iter().next();
        let check = hs.requests_to("GET", "/state/m.room.member/").into_iter().last();
        invite.zip(check).filter(|(i, c)| c.at > i.at).map(|(i, c)| c.at - i.at)
    };
    eventually("the invite timed out and was tried again", || tried_again().is_some()).await;
    let after = tried_again().unwrap();
    assert!(after >= Duration::from_secs(1), "tried again only after the timeout, not {after:?} after the invite");
    let store = app.store.clone();
    eventually("done", || store.outbox().is_empty()).await;
    assert!(store.failures().all().unwrap().is_empty(), "a timeout is transient");
    assert_eq!(hs.requests_to("POST", "/invite").len(), 1, "the retry found the invite done, and did not invite again");
}

#[tokio::test]
async fn a_kick_held_up_by_a_rate_limit_does_not_hit_a_newer_knock() {
    let app = start("").await;
    let limited = json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2000});
    app.homeserver.script("/kick", [(429, limited, None)]);
    // A knock without a good reason: kicked, but the homeserver says wait.
    app.knock_on("1", "$k1", "@eve:x.example", Some("hello")).await;
    eventually("the kick was put off", || app.posted("kick").len() == 1).await;
    // Meanwhile she knocks again, with a reason the policy accepts.
    app.knock_on("2", "$k2", "@eve:x.example", Some("I am a friend of Bob")).await;
    eventually("invited", || invited(&app) == ["@eve:x.example"]).await;
    eventually("settled", || settled(&app)).await;
    assert_eq!(app.posted("kick").len(), 1, "the old knock's kick was not carried out on the new one");
    let audit = app.store.audit().all().unwrap();
    assert_eq!(audit[0].outcome, Outcome::Resolved(Resolution::KnockedAgain));
    assert_eq!(audit[1].outcome, Outcome::Done);
    assert_eq!(app.homeserver.membership(ROOM, "@eve:x.example").as_deref(), Some("invite"));
}

#[tokio::test]
async fn an_action_failing_past_give_up_after_is_kept_reported_and_can_be_retried() {
    let app = start("actions:\n  give_up_after: 1s\n").await;
    app.homeserver.fail_user("@far:x.example", 502);
    app.knock_on("1", "$k1", "@far:x.example", Some("a friend")).await;
    let store = app.store.clone();
    eventually("in the failed list", || store.failures().all().unwrap().len() == 1).await;
    // The failure's notice is queued with it: the outbox empties once that is posted.
    eventually("the outbox is empty", || store.outbox().is_empty()).await;
    assert_eq!(store.outbox().len(), 0);
    let f = &store.failures().all().unwrap()[0];
    assert!(f.error.starts_with("still failing after 1s: "), "{}", f.error);
    assert!(matches!(store.audit().all().unwrap()[0].outcome, Outcome::Failed(_)));
    eventually("one notice about it", || notices(&app).iter().any(|n| n.contains("accept failed"))).await;
    let about: Vec<String> = notices(&app).into_iter().filter(|n| n.contains("failed")).collect();
    assert_eq!(about.len(), 1, "{about:#?}");
    assert!(about[0].contains("@far:x.example") && about[0].contains("!knock retry 1"), "{}", about[0]);

    let r = app.say("c1", "$c1", "!knock failed").await;
    assert!(r.contains("1 invite @far:x.example to !r:test.local"), "{r}");
    assert!(r.contains("still failing after 1s"), "{r}");

    // Their server is back; a moderator puts the action back in the queue.
    app.homeserver.fail_user("@far:x.example", 0);
    let r = app.say("c2", "$c2", "!knock retry 1").await;
    assert!(r.starts_with("Back in the queue: 1 (invite @far:x.example"), "{r}");
    eventually("invited", || app.homeserver.membership(ROOM, "@far:x.example").as_deref() == Some("invite")).await;
    eventually("settled as done", || store.audit().all().unwrap()[0].outcome == Outcome::Done).await;
    assert!(store.failures().all().unwrap().is_empty());
    let r = app.say("c3", "$c3", "!knock retry 1").await;
    assert_eq!(r, "There is no failed action 1; !knock failed lists them.");
}

#[tokio::test]
async fn a_refusal_goes_to_the_failed_list_at_once() {
    let app = start("").await;
    app.homeserver.fail_user("@no:x.example", 403);
    app.knock_on("1", "$k1", "@no:x.example", Some("a friend")).await;
    let store = app.store.clone();
    eventually("in the failed list", || store.failures().all().unwrap().len() == 1).await;
    assert_eq!(app.posted("invite").len(), 1, "not retried");
    eventually("reported", || notices(&app).iter().any(|n| n.contains("Kept as failed action 1"))).await;
    let r = app.say("c1", "$c1", "!knock retry all").await;
    assert!(r.starts_with("Back in the queue: 1"), "{r}");
    // Still refused: back in the list, under a new number, reported again.
    eventually("failed again", || store.failures().all().unwrap().iter().any(|f| f.number == 2)).await;
    assert_eq!(app.posted("invite").len(), 2);
}

#[tokio::test]
async fn the_control_room_keeps_its_order_while_knocks_go_past_it() {
    let app = start("").await;
    // Every control-room message takes 250 ms; knocks should not wait for them.
    app.homeserver.delay("/send/", Duration::from_millis(250));
    let commands: Vec<Value> =
        (0..4).map(|i| message(&format!("$c{i}"), MODERATOR, &format!("!knock log {}", i + 1))).collect();
    app.push("cmds", commands).await;
    let users: Vec<String> = (0..5).map(|i| format!("@f{i}:test.local")).collect();
    for (i, u) in users.iter().enumerate() {
        app.knock_on(&format!("k{i}"), &format!("$k{i}"), u, Some("a friend")).await;
    }
    eventually("every command answered", || (0..4).all(|i| !app.replies_to(&format!("$c{i}")).is_empty())).await;
    // Replies in the order of the commands.
    let order: Vec<String> = app
        .sent("m.room.message")
        .iter()
        .filter_map(|r| r.body["m.relates_to"]["m.in_reply_to"]["event_id"].as_str().map(str::to_owned))
        .filter(|e| e.starts_with("$c"))
        .collect();
    assert_eq!(order, ["$c0", "$c1", "$c2", "$c3"]);
    // The invites went out while the control room was still busy.
    let last_reply = app.sent("m.room.message").iter().map(|r| r.at).max().unwrap();
    let posts = app.posted("invite");
    assert_eq!(posts.len(), users.len());
    assert!(posts.iter().all(|r| r.at < last_reply), "invites waited behind control-room messages");
}

fn fault(id: &str, kind: &str) -> Value {
    json!({"event_id": id, "room_id": ROOM, "sender": "@x:test.local", "type": "org.knockwarden.test.fault",
           "origin_server_ts": 1, "content": {"fault": kind}})
}

#[tokio::test]
async fn an_event_whose_handling_panics_is_kept_reported_and_the_next_goes_on() {
    let app = start("").await;
    let knock = crate::helpers::knock_event("$k1", ROOM, "@ann:test.local", Some("a friend"));
    app.homeserver.set_knocking(ROOM, "@ann:test.local", "$k1");
    app.push("1", vec![fault("$boom", "handler"), knock]).await;
    eventually("the next event is handled", || invited(&app) == ["@ann:test.local"]).await;
    let failed = app.store.failures().all().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(&failed[0].item, FailedItem::Event { item, .. } if knockwarden::events::event_id_of(item.event.get()) == "$boom")
    );
    assert!(failed[0].error.contains("fault injected"), "{}", failed[0].error);
    eventually("reported", || notices(&app).iter().any(|n| n.contains("Could not handle the event $boom"))).await;
    assert_eq!(app.client.get(format!("{}/health", app.address)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn health_says_so_when_a_task_has_stopped() {
    let app = start("").await;
    let health = || async {
        let res = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["oldest_action_age_ms"], Value::Null);
    app.push("1", vec![fault("$stop", "worker")]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = health().await;
        if status == 503 {
            assert_eq!(body["status"], "not running: worker", "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_reports_the_age_of_the_oldest_queued_action() {
    let app = start("").await;
    app.homeserver.fail_user("@slow:x.example", 502);
    app.knock_on("1", "$k1", "@slow:x.example", Some("a friend")).await;
    eventually("tried", || app.posted("invite").len() >= 2).await;
    let body: Value = app.client.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["outbox"], 1);
    assert!(body["oldest_action_age_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
}

/// The bot's client, with a bug: it panics when asked to invite `@panic:…`.
struct Buggy(MatrixHomeserver);

#[async_trait]
impl Homeserver for Buggy {
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError> {
        self.0.join(room).await
    }
    async fn membership(&self, c: MembershipChange, room: &RoomId, user: &UserId, reason: &str) -> Result<(), HsError> {
        if user.localpart() == "panic" {
            panic!("a bug in the client");
        }
        self.0.membership(c, room, user, reason).await
    }
    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError> {
        self.0.resolve_alias(alias).await
    }
    async fn leave(&self, room: &RoomId) -> Result<(), HsError> {
        self.0.leave(room).await
    }
    async fn ping(&self, id: &str) -> Result<Duration, HsError> {
        self.0.ping(id).await
    }
    async fn joined_rooms(&self) -> Result<Vec<OwnedRoomId>, HsError> {
        self.0.joined_rooms().await
    }
    async fn joined_members(&self, room: &RoomId) -> Result<Vec<String>, HsError> {
        self.0.joined_members(room).await
    }
    async fn knocking_members(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        self.0.knocking_members(room).await
    }
    async fn room_state(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        self.0.room_state(room).await
    }
    async fn send(&self, room: &RoomId, txn: &str, kind: &str, content: &Value) -> Result<OwnedEventId, HsError> {
        self.0.send(room, txn, kind, content).await
    }
    async fn state(&self, room: &RoomId, kind: &str, key: &str) -> Result<Option<StateEvent>, HsError> {
        self.0.state(room, kind, key).await
    }
}

#[tokio::test]
async fn an_action_that_panics_is_kept_reported_and_the_others_go_on() {
    let hs: FakeHomeserver = homeserver().await;
    let app = spawn_app_wrapping(dir_with_policy(), hs, AppOptions::default(), |c| Arc::new(Buggy(c))).await;
    let app = started(app).await;
    app.knock_on("1", "$k1", "@panic:test.local", Some("a friend")).await;
    app.knock_on("2", "$k2", "@fine:test.local", Some("a friend")).await;
    eventually("the other is invited", || invited(&app) == ["@fine:test.local"]).await;
    let store = app.store.clone();
    eventually("in the failed list", || store.failures().all().unwrap().len() == 1).await;
    let f = &store.failures().all().unwrap()[0];
    assert!(f.error.contains("a bug in the client"), "{}", f.error);
    eventually("reported", || notices(&app).iter().any(|n| n.contains("accept failed"))).await;
    // The runner is still running.
    let body: Value = app.client.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
}

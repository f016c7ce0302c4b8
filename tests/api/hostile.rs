//! Hostile input: what a room member, a remote server or a policy author can send must neither
//! stop knockwarden nor steer it wrongly.

use knockwarden::storage::T;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, BOT, CONTROL_ROOM, FakeHomeserver, MODERATOR, TestApp, eventually, fake_homeserver::Recorded,
    knock_event, member_event, spawn_app_in,
};

const ROOM: &str = "!r:test.local";
const ROOM2: &str = "!r2:test.local";

/// Largest event the homeserver takes (Synapse: 65,536 bytes for the whole event).
const EVENT_LIMIT: usize = 65_536;

async fn homeserver() -> FakeHomeserver {
    let hs = FakeHomeserver::start().await;
    hs.set_state(
        CONTROL_ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {"@owner:test.local": 100, MODERATOR: 50}}),
    );
    hs.set_membership(CONTROL_ROOM, MODERATOR, "join");
    hs
}

async fn start(policy: &str, extra_config: &str, hs: FakeHomeserver) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    let opts = AppOptions { extra_config: extra_config.to_owned(), ..Default::default() };
    let app = spawn_app_in(dir, hs, opts).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app
}

fn message(id: &str, room: &str, sender: &str, body: &str) -> Value {
    json!({"event_id": id, "room_id": room, "sender": sender, "type": "m.room.message",
           "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}})
}

/// A value nested `depth` levels deep.
fn nested(depth: usize) -> Value {
    let mut v = json!("bottom");
    for _ in 0..depth {
        v = json!({ "a": [v] });
    }
    v
}

impl TestApp {
    async fn push_ok(&self, txn: &str, events: Vec<Value>) {
        assert_eq!(self.put_txn(txn, &json!({"events": events})).await.status(), 200);
    }

    fn invites_to(&self, room: &str) -> Vec<Recorded> {
        self.homeserver.requests_to("POST", &format!("/rooms/{room}/invite"))
    }

    fn invited(&self, room: &str, user: &str) -> bool {
        self.invites_to(room).iter().any(|r| r.body["user_id"] == user)
    }

    fn control_messages(&self) -> Vec<Recorded> {
        self.homeserver.requests_to("PUT", &format!("/rooms/{CONTROL_ROOM}/send/m.room.message/"))
    }

    fn notice_texts(&self) -> Vec<String> {
        self.control_messages().into_iter().filter_map(|r| r.body["body"].as_str().map(str::to_owned)).collect()
    }

    fn hostile_replies_to(&self, event_id: &str) -> Vec<Recorded> {
        self.control_messages()
            .into_iter()
            .filter(|r| r.body["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id)
            .collect()
    }

    async fn hostile_reply_to(&self, event_id: &str) -> Recorded {
        eventually(&format!("a reply to {event_id}"), || !self.hostile_replies_to(event_id).is_empty()).await;
        self.hostile_replies_to(event_id).pop().unwrap()
    }
}

fn size(r: &Recorded) -> usize {
    serde_json::to_vec(&r.body).unwrap().len()
}

const ACCEPT_ALL: &str = "rooms: [\"!r:test.local\", \"!r2:test.local\"]\ndefault: accept\nrules:\n  - name: spam\n    when: { reason: { contains: [spam] } }\n    action: ban\n";

#[tokio::test]
async fn a_deeply_nested_event_costs_only_itself() {
    let app = start(ACCEPT_ALL, "", homeserver().await).await;
    app.homeserver.set_membership(ROOM, "@alice:test.local", "knock");
    app.homeserver.set_membership(ROOM, "@bob:test.local", "knock");
    let mut deep_message = message("$deep", ROOM, "@evil:test.local", "look");
    deep_message["content"]["x"] = nested(200);
    // One the bot would keep (a control-room command), nested just as deep.
    let mut deep_command = message("$deep-cmd", CONTROL_ROOM, MODERATOR, "!knock pending");
    deep_command["content"]["x"] = nested(200);
    let mut deep_knock = knock_event("$deep-knock", ROOM, "@bob:test.local", Some("hi"));
    deep_knock["content"]["x"] = nested(500);
    let events = vec![
        deep_message,
        deep_command,
        knock_event("$k", ROOM, "@alice:test.local", Some("hello, I am Alice")),
        deep_knock,
        json!({"event_id": "$wrong", "room_id": ROOM, "sender": "@a:test.local", "type": 7, "content": {}}),
        // Large, but readable: answered, and the answer fits in one event.
        json!({"event_id": "$huge", "room_id": CONTROL_ROOM, "sender": MODERATOR, "type": "m.room.message",
               "content": {"msgtype": "m.text", "body": format!("!knock {}", "x".repeat(70_000))}}),
    ];
    app.push_ok("1", events).await;
    eventually("the good knock is acted on", || app.invited(ROOM, "@alice:test.local")).await;
    assert_eq!(app.store.counter("events_malformed").unwrap(), 3);
    let huge = app.hostile_reply_to("$huge").await;
    assert!(huge.body["body"].as_str().unwrap().contains("unrecognized"), "{:?}", huge.body["body"]);
    assert!(size(&huge) < EVENT_LIMIT, "a reply of {} bytes", size(&huge));
    assert!(!app.invited(ROOM, "@bob:test.local"));
    // And the stream goes on.
    app.homeserver.set_membership(ROOM, "@carol:test.local", "knock");
    app.push_ok("2", vec![knock_event("$k2", ROOM, "@carol:test.local", Some("hi"))]).await;
    eventually("the next knock too", || app.invited(ROOM, "@carol:test.local")).await;
}

#[tokio::test]
async fn only_a_body_without_events_is_refused() {
    let app = start(ACCEPT_ALL, "", homeserver().await).await;
    assert_eq!(app.put_txn("1", &json!({"nothing": []})).await.status(), 400);
    assert_eq!(app.put_txn("2", &json!({"events": 3})).await.status(), 400);
    assert_eq!(app.put_txn("3", &json!({"events": [1, "two", null]})).await.status(), 200);
    assert_eq!(app.store.counter("events_malformed").unwrap(), 3);
}

#[tokio::test]
async fn a_catch_up_with_a_bad_event_still_takes_the_good_ones() {
    let hs = homeserver().await;
    let mut deep = knock_event("$deep", ROOM, "@bad:test.local", Some("x"));
    deep["content"]["x"] = nested(300);
    hs.set_knocks(ROOM, vec![deep, knock_event("$fine", ROOM, "@early:test.local", Some("good morning"))]);
    hs.set_membership(ROOM, "@early:test.local", "knock");
    hs.set_state(CONTROL_ROOM, "m.room.power_levels", "", "@owner:test.local", json!({"users": {MODERATOR: 50}}));
    let app = start(ACCEPT_ALL, "", hs).await;
    app.push_ok("1", vec![member_event("$inv", ROOM, MODERATOR, BOT, "invite")]).await;
    eventually("joined", || !app.homeserver.requests_to("POST", &format!("/join/{ROOM}")).is_empty()).await;
    app.push_ok("2", vec![member_event("$j", ROOM, BOT, BOT, "join")]).await;
    eventually("the good knock from the catch-up is acted on", || app.invited(ROOM, "@early:test.local")).await;
}

/// `\w{2,6}` passed the check but its single regex could not be built: the first knock the
/// rule had to look at panicked the worker.
const WORD_REGEXES: &str = r#"rooms: ["!r:test.local"]
default: deny
rules:
  - name: words
    when: { reason: { matches: '\w{2,6}' } }
    action: accept
  - name: digits
    when: { reason: { matches: '^[0-9]+$' } }
    action: ban
"#;

#[tokio::test]
async fn what_the_check_accepts_the_service_runs() {
    let checked = knockwarden::policy::PolicySet::load(&[knockwarden::policy::Source {
        path: "p.yaml".into(),
        text: WORD_REGEXES.into(),
    }]);
    let app = start(WORD_REGEXES, "", homeserver().await).await;
    match checked {
        Err(problems) => {
            // Refused: it must say where, and why.
            let text = knockwarden::policy::format_problems(&problems);
            assert!(text.contains("p.yaml:5:"), "{text}");
        }
        Ok(_) => {
            for (i, user) in ["@one:test.local", "@two:test.local"].iter().enumerate() {
                app.homeserver.set_membership(ROOM, user, "knock");
                let ev = knock_event(&format!("$k{i}"), ROOM, user, Some("hello there"));
                app.push_ok(&i.to_string(), vec![ev]).await;
                eventually(&format!("{user} invited"), || app.invited(ROOM, user)).await;
            }
        }
    }
}

const WAVE: &str = r#"rooms: ["!r:test.local", "!r2:test.local"]
default: accept
rules:
  - name: wave
    when: { room_knocks: { more_than: 1, within: 1s } }
    action: review
"#;

#[tokio::test]
async fn knock_counters_use_knockwardens_clock() {
    let app = start(WAVE, "", homeserver().await).await;
    let hs = &app.homeserver;
    let year_2100 = 4_102_444_800_000u64;
    // A knock dated in the future must not count as recent forever.
    hs.set_membership(ROOM, "@future:test.local", "knock");
    let mut future = knock_event("$future", ROOM, "@future:test.local", Some("hi"));
    future["origin_server_ts"] = json!(year_2100);
    app.push_ok("1", vec![future]).await;
    eventually("the first knock accepted", || app.invited(ROOM, "@future:test.local")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    hs.set_membership(ROOM, "@later:test.local", "knock");
    app.push_ok("2", vec![knock_event("$later", ROOM, "@later:test.local", Some("hi"))]).await;
    eventually("a knock 1.5 s later is no wave", || app.invited(ROOM, "@later:test.local")).await;

    // Knocks dated 1970 must count.
    hs.set_membership(ROOM2, "@old1:test.local", "knock");
    hs.set_membership(ROOM2, "@old2:test.local", "knock");
    let mut old1 = knock_event("$old1", ROOM2, "@old1:test.local", Some("hi"));
    old1["origin_server_ts"] = json!(1);
    let mut old2 = knock_event("$old2", ROOM2, "@old2:test.local", Some("hi"));
    old2["origin_server_ts"] = json!(2);
    app.push_ok("3", vec![old1, old2]).await;
    eventually("the second knock of the wave is sent to review", || {
        app.store.reviews().open().unwrap().iter().any(|r| r.user_id == "@old2:test.local")
    })
    .await;
    eventually("the first of them accepted", || app.invited(ROOM2, "@old1:test.local")).await;
    assert!(!app.invited(ROOM2, "@old2:test.local"));
}

#[tokio::test]
async fn no_policy_governs_the_control_room() {
    let app = start("rooms: \"*\"\ndefault: accept\nrules:\n  - name: spam\n    when: { reason: { contains: [spam] } }\n    action: ban\n", "", homeserver().await).await;
    app.homeserver.set_membership(CONTROL_ROOM, "@intruder:test.local", "knock");
    app.homeserver.set_membership(ROOM, "@guest:test.local", "knock");
    app.push_ok(
        "1",
        vec![
            knock_event("$c", CONTROL_ROOM, "@intruder:test.local", Some("let me in")),
            knock_event("$r", ROOM, "@guest:test.local", Some("hello")),
        ],
    )
    .await;
    eventually("the other room's knock is accepted", || app.invited(ROOM, "@guest:test.local")).await;
    eventually("the control room is told", || {
        app.notice_texts().iter().any(|t| t.contains("@intruder:test.local") && t.contains("control room"))
    })
    .await;
    assert!(app.invites_to(CONTROL_ROOM).is_empty(), "knockwarden let someone into the control room");
    let kicks = app.homeserver.requests_to("POST", &format!("/rooms/{CONTROL_ROOM}/kick"));
    assert!(kicks.is_empty());
}

#[tokio::test]
async fn a_moderator_who_left_can_no_longer_command() {
    let hs = homeserver().await;
    hs.set_membership(CONTROL_ROOM, "@listed:test.local", "leave");
    let app = start(ACCEPT_ALL, "", hs).await;
    app.push_ok("1", vec![message("$c1", CONTROL_ROOM, MODERATOR, "!knock pending")]).await;
    let first = app.hostile_reply_to("$c1").await;
    assert!(first.body["body"].as_str().unwrap().contains("No knocks"), "{:?}", first.body);

    // The moderator leaves; power levels still name them.
    app.homeserver.set_membership(CONTROL_ROOM, MODERATOR, "leave");
    app.push_ok(
        "2",
        vec![
            member_event("$leave", CONTROL_ROOM, MODERATOR, MODERATOR, "leave"),
            message("$c2", CONTROL_ROOM, MODERATOR, "!knock dry-run on"),
        ],
    )
    .await;
    let second = app.hostile_reply_to("$c2").await;
    assert!(second.body["body"].as_str().unwrap().contains("not a moderator"), "{:?}", second.body);
    assert_ne!(app.store.get_meta("dry_run").unwrap().as_deref(), Some("on"));
}

#[tokio::test]
async fn a_moderator_counts_before_the_control_rooms_members_are_fetched() {
    let hs = homeserver().await;
    // Joining the control room at start is slow: an invitation pushed meanwhile is answered
    // before the control room's members are fetched (which follows the join).
    hs.delay(&format!("/join/{CONTROL_ROOM}"), std::time::Duration::from_millis(800));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), ACCEPT_ALL).unwrap();
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    app.push_ok("1", vec![member_event("$inv", ROOM, MODERATOR, BOT, "invite")]).await;
    eventually("the bot joins at the moderator's invitation", || {
        !app.homeserver.requests_to("POST", &format!("/join/{ROOM}")).is_empty()
            || !app.homeserver.requests_to("POST", &format!("/rooms/{ROOM}/leave")).is_empty()
    })
    .await;
    assert!(app.homeserver.requests_to("POST", &format!("/rooms/{ROOM}/leave")).is_empty(), "declined");
}

#[tokio::test]
async fn a_listed_moderator_who_is_not_in_the_control_room_cannot_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), ACCEPT_ALL).unwrap();
    let opts = AppOptions { moderators: vec!["@listed:test.local".into()], ..Default::default() };
    let app = spawn_app_in(dir, homeserver().await, opts).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app.push_ok("1", vec![message("$c", CONTROL_ROOM, "@listed:test.local", "!knock pending")]).await;
    let reply = app.hostile_reply_to("$c").await;
    assert!(reply.body["body"].as_str().unwrap().contains("not a moderator"), "{:?}", reply.body);
}

#[tokio::test]
async fn state_events_without_an_empty_state_key_are_not_state() {
    let hs = homeserver().await;
    hs.set_state(ROOM, "m.room.create", "", MODERATOR, json!({"room_version": "10"}));
    hs.set_state(ROOM, "m.room.join_rules", "", MODERATOR, json!({"join_rule": "knock"}));
    hs.set_state(ROOM, "m.room.power_levels", "", MODERATOR, json!({"users": {BOT: 100}}));
    let app = start(ACCEPT_ALL, "", hs).await;
    app.push_ok("1", vec![member_event("$j", ROOM, BOT, BOT, "join")]).await;
    eventually("the room's state is known", || {
        app.store
            .rooms()
            .get(ROOM)
            .unwrap()
            .is_some_and(|r| r.join_rule.as_ref().map(|j| j.as_str()) == Some("knock") && r.power_levels.is_some())
    })
    .await;
    let fake_rule = json!({"event_id": "$fake-rule", "room_id": ROOM, "sender": "@evil:test.local",
        "type": "m.room.join_rules", "origin_server_ts": 1, "content": {"join_rule": "public"}});
    let fake_power = json!({"event_id": "$fake-power", "room_id": ROOM, "sender": "@evil:test.local",
        "type": "m.room.power_levels", "state_key": "x", "origin_server_ts": 1, "content": {"users": {BOT: 0}}});
    app.homeserver.set_membership(ROOM, "@after:test.local", "knock");
    app.push_ok("2", vec![fake_rule, fake_power, knock_event("$after", ROOM, "@after:test.local", Some("hi"))]).await;
    eventually("the knock after them is handled", || app.invited(ROOM, "@after:test.local")).await;
    let rec = app.store.rooms().get(ROOM).unwrap().unwrap();
    assert_eq!(rec.join_rule.as_ref().map(|j| j.as_str()), Some("knock"));
    assert_eq!(rec.power_levels.unwrap().users[BOT], 100);
    assert!(!app.notice_texts().iter().any(|t| t.contains("cannot work")), "{:#?}", app.notice_texts());
}

#[tokio::test]
async fn a_snapshot_never_overwrites_a_newer_pushed_change() {
    let hs = homeserver().await;
    hs.set_state(ROOM, "m.room.create", "", MODERATOR, json!({"room_version": "10"}));
    hs.set_state(ROOM, "m.room.join_rules", "", MODERATOR, json!({"join_rule": "knock"}));
    hs.set_state(ROOM, "m.room.power_levels", "", MODERATOR, json!({"users": {BOT: 100}}));
    // The snapshot of the power levels is slow to come back: taken before the change below.
    hs.delay(&format!("/rooms/{ROOM}/state/m.room.power_levels"), std::time::Duration::from_millis(600));
    let app = start(ACCEPT_ALL, "", hs).await;
    app.push_ok("1", vec![member_event("$j", ROOM, BOT, BOT, "join")]).await;
    eventually("the snapshot is being fetched", || {
        !app.homeserver.requests_to("GET", &format!("/rooms/{ROOM}/state/m.room.power_levels")).is_empty()
    })
    .await;
    let newer = json!({"event_id": "$pl2", "room_id": ROOM, "sender": MODERATOR, "type": "m.room.power_levels",
        "state_key": "", "origin_server_ts": 1, "content": {"users": {BOT: 100, "@new-mod:test.local": 50}}});
    app.push_ok("2", vec![newer]).await;
    eventually("the snapshot is done", || app.store.outbox().is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let rec = app.store.rooms().get(ROOM).unwrap().unwrap();
    assert_eq!(rec.power_levels.unwrap().users["@new-mod:test.local"], 50, "the pushed change stands");
}

const REVIEW_ALL: &str = "rooms: [\"!r:test.local\"]\ndefault: review\nrules:\n  - name: spam\n    when: { reason: { contains: [spam] } }\n    action: ban\n";

#[tokio::test]
async fn a_long_pending_list_fits_in_one_event() {
    let app = start(REVIEW_ALL, "", homeserver().await).await;
    let nasty: String = "\u{1}".repeat(300);
    let events: Vec<Value> = (0..20)
        .map(|i| {
            let user = format!("@u{i}:test.local");
            app.homeserver.set_membership(ROOM, &user, "knock");
            knock_event(&format!("$k{i}"), ROOM, &user, Some(&nasty))
        })
        .collect();
    app.push_ok("1", events).await;
    eventually("20 reviews", || app.store.reviews().open().unwrap().len() == 20).await;
    app.push_ok("2", vec![message("$p", CONTROL_ROOM, MODERATOR, "!knock pending")]).await;
    let reply = app.hostile_reply_to("$p").await;
    assert!(size(&reply) < EVENT_LIMIT, "a reply of {} bytes", size(&reply));
    assert!(reply.body["body"].as_str().unwrap().contains("20 knock(s) waiting"));
}

#[tokio::test]
async fn a_long_log_fits_in_one_event() {
    let app = start(ACCEPT_ALL, "", homeserver().await).await;
    let events: Vec<Value> = (0..100)
        .map(|i| {
            // User IDs of the full 255 bytes.
            let local = format!("u{i:03}{}", "x".repeat(255 - 1 - 4 - 1 - "test.local".len()));
            let user = format!("@{local}:test.local");
            assert_eq!(user.len(), 255);
            app.homeserver.set_membership(ROOM, &user, "knock");
            knock_event(&format!("$k{i}"), ROOM, &user, Some("hello"))
        })
        .collect();
    app.push_ok("1", events).await;
    eventually("100 decisions", || app.store.audit().len() == 100).await;
    app.push_ok("2", vec![message("$l", CONTROL_ROOM, MODERATOR, "!knock log 100")]).await;
    let reply = app.hostile_reply_to("$l").await;
    assert!(size(&reply) < EVENT_LIMIT, "a reply of {} bytes", size(&reply));
    assert!(reply.body["body"].as_str().unwrap().contains("decision(s)"));
}

#[tokio::test]
async fn a_reply_refused_as_too_large_is_sent_shorter() {
    let app = start(ACCEPT_ALL, "", homeserver().await).await;
    app.homeserver
        .script("/send/m.room.message/", [(413, json!({"errcode": "M_TOO_LARGE", "error": "event too large"}), None)]);
    app.push_ok("1", vec![message("$h", CONTROL_ROOM, MODERATOR, "!knock help")]).await;
    // The fake records the refused attempt too: wait for the one after it.
    eventually("a second try", || app.hostile_replies_to("$h").len() >= 2).await;
    let tries = app.hostile_replies_to("$h");
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert!(size(&tries[1]) < size(&tries[0]), "the second try is shorter");
}

#[tokio::test]
async fn health_writes_nothing() {
    let app = start(ACCEPT_ALL, "", homeserver().await).await;
    let res = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.store.get_meta("health").unwrap(), None, "GET /health wrote to the database");
}

#[tokio::test]
async fn storage_stays_bounded_under_a_long_stream() {
    let retention = "retention:\n  events: 1s\n  audit: 1s\n";
    let app = start(ACCEPT_ALL, retention, homeserver().await).await;
    // The bot was in a room and left it: its members are forgotten too.
    app.push_ok("m0", vec![member_event("$bj", ROOM2, BOT, BOT, "join")]).await;
    app.push_ok("m1", vec![member_event("$mj", ROOM2, "@member:test.local", "@member:test.local", "join")]).await;
    eventually("the member is known", || app.store.members().contains(ROOM2, "@member:test.local").unwrap()).await;
    app.push_ok("m2", vec![member_event("$bl", ROOM2, BOT, BOT, "leave")]).await;
    for round in 0..8 {
        let events: Vec<Value> = (0..25)
            .map(|i| {
                let user = format!("@r{round}u{i}:test.local");
                app.homeserver.set_membership(ROOM, &user, "knock");
                knock_event(&format!("$r{round}k{i}"), ROOM, &user, Some("hello"))
            })
            .collect();
        app.push_ok(&format!("t{round}"), events).await;
        eventually("the round is acted on", || app.store.outbox().is_empty() && app.store.journal().backlog() == 0)
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    // 200 knocks were taken in; what is kept is what the last second or two brought.
    eventually("old records are pruned", || {
        let s = &app.store;
        s.len(T::Seen) <= 100 && s.len(T::Txns) <= 6 && s.audit().len() <= 100
    })
    .await;
    // No policy counts knocks here: no knock time outlives the pass that finds it.
    eventually("knock times no window reaches are pruned", || {
        app.store.len(T::RoomKnockTimes) <= 25 && app.store.len(T::UserKnockTimes) <= 25
    })
    .await;
    eventually("members of a room the bot left are forgotten", || {
        !app.store.members().contains(ROOM2, "@member:test.local").unwrap()
    })
    .await;
}

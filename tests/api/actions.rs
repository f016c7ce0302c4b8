//! What each action does on the homeserver: the request sent, the knock checked first, what
//! counts as done, and what a refusal says.

use knockwarden::storage::{Origin, Outcome, Resolution, Store};
use serde_json::json;

use crate::{
    helpers::{AppOptions, BOT, FakeHomeserver, MODERATOR, eventually, knock_event, member_event, spawn_app_in},
    pipeline::{POLICY, ROOM, act_failed_once, app, app_with, settled, started},
};

#[tokio::test]
async fn each_action_sends_the_right_request() {
    let app = app().await;
    app.knock("1", "$a", "@alice:test.local", Some("hello, I work here")).await;
    app.knock("2", "$b", "@bob:elsewhere.example", None).await;
    app.knock("3", "$c", "@carol:elsewhere.example", Some("cheap SPAM here")).await;
    app.knock("4", "$d", "@dave:elsewhere.example", Some("I would like to help")).await;
    app.knock("5", "$e", "@erin:quiet.example", Some("hi")).await;
    eventually("every decision carried out", || settled(&app) && app.notices().len() >= 4).await;

    let invites = app.posts("invite");
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].body["user_id"], "@alice:test.local");
    assert_eq!(invites[0].body["reason"], "Knock accepted by knockwarden (rule locals)");
    let kicks = app.posts("kick");
    assert_eq!(kicks.len(), 1);
    assert_eq!(
        kicks[0].body,
        json!({"user_id": "@bob:elsewhere.example", "reason": "Tell us why, @bob:elsewhere.example"})
    );
    let bans = app.posts("ban");
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].body["user_id"], "@carol:elsewhere.example");
    for r in invites.iter().chain(&kicks).chain(&bans) {
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {}", app.registration().as_token).as_str()));
    }

    // The audit log answers "why": policy, version, rule, explanation, outcome.
    let audit = app.store.audit().all().unwrap();
    assert_eq!(audit.len(), 5);
    let alice = audit.iter().find(|e| e.user_id == "@alice:test.local").unwrap();
    assert_eq!((alice.policy.as_str(), alice.policy_version, alice.rule.as_deref()), ("p", 1, Some("locals")));
    assert!(alice.explanation.contains("server \"test.local\" matches"), "{}", alice.explanation);
    assert_eq!(alice.outcome, Outcome::Done);
    let dave = audit.iter().find(|e| e.user_id == "@dave:elsewhere.example").unwrap();
    assert_eq!((dave.rule.as_deref(), dave.review), (None, Some(1)));
    let erin = audit.iter().find(|e| e.user_id == "@erin:quiet.example").unwrap();
    assert_eq!(erin.outcome, Outcome::Nothing);

    // Notices: one per decision (notify: all), the review one with its number, none for ignore.
    let notices = app.notices();
    assert_eq!(notices.len(), 4, "{notices:#?}");
    let review = notices.iter().find(|n| n.starts_with("#1 ")).expect("a review notice");
    assert!(review.contains("@dave:elsewhere.example") && review.contains("I would like to help"), "{review}");
    assert!(review.contains("!knock approve 1"), "{review}");
    assert!(notices.iter().any(|n| n.contains("alice") && n.contains("accepted (invited)")), "{notices:#?}");
    assert!(notices.iter().all(|n| !n.contains("erin")));
    assert_eq!(app.store.reviews().open().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_power_is_reported_exactly_and_not_retried() {
    let hs = FakeHomeserver::start().await;
    hs.set_state(
        ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {BOT: 0}, "kick": 50, "ban": 50, "invite": 0}),
    );
    hs.script("/kick", [(403, json!({"errcode": "M_FORBIDDEN", "error": "You don't have permission to kick"}), None)]);
    let app = app_with(POLICY, AppOptions::default(), hs).await;
    // The bot learns the room's power levels when it joins.
    assert_eq!(app.put_txn("0", &json!({"events": [member_event("$j", ROOM, BOT, BOT, "join")]})).await.status(), 200);
    eventually("power levels known", || app.store.rooms().get(ROOM).unwrap().is_some_and(|r| r.power_levels.is_some()))
        .await;
    app.knock("1", "$b", "@bob:elsewhere.example", None).await;
    eventually("failure reported", || {
        app.notices().iter().any(|n| n.contains("knockwarden needs power level 50 to kick in !r:test.local (it has 0)"))
    })
    .await;
    eventually("settled", || settled(&app)).await;
    assert_eq!(app.posts("kick").len(), 1, "not retried");
    let e = app.store.audit().all().unwrap().into_iter().find(|e| e.user_id == "@bob:elsewhere.example").unwrap();
    assert!(matches!(e.outcome, Outcome::Failed(ref m) if m.contains("power level 50")), "{:?}", e.outcome);
    // The join itself also warned about the missing power, once.
    let warnings: Vec<_> = app.notices().into_iter().filter(|n| n.contains("Knocking cannot work")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("knockwarden needs power level 50 to ban"), "{}", warnings[0]);

    // A moderator raises the bot's power: the kick is tried again at once, and both are said.
    let raised = json!({"users": {BOT: 50}, "kick": 50, "ban": 50, "invite": 0});
    app.homeserver.set_state(ROOM, "m.room.power_levels", "", "@owner:test.local", raised.clone());
    let pl = json!({"event_id": "$pl2", "room_id": ROOM, "sender": "@owner:test.local", "state_key": "",
                    "type": "m.room.power_levels", "content": raised, "origin_server_ts": 2});
    assert_eq!(app.put_txn("2", &json!({"events": [pl]})).await.status(), 200);
    eventually("the kick is tried again", || app.posts("kick").len() == 2).await;
    eventually("the failed list is empty", || app.store.failures().all().unwrap().is_empty()).await;
    eventually("said", || {
        app.notices().iter().any(|n| n.contains("can now kick in !r:test.local: 1 failed action(s) retried"))
    })
    .await;
    assert!(app.notices().iter().any(|n| n.contains("works as configured now")), "{:#?}", app.notices());
    eventually("settled", || settled(&app)).await;
    let e = app.store.audit().all().unwrap().into_iter().find(|e| e.user_id == "@bob:elsewhere.example").unwrap();
    assert!(!matches!(e.outcome, Outcome::Failed(_)), "{:?}", e.outcome);
}

#[tokio::test]
async fn inviting_someone_already_in_the_room_counts_as_done() {
    let app = app().await;
    app.homeserver.script(
        "/invite",
        [(403, json!({"errcode": "M_FORBIDDEN", "error": "@alice:test.local is already in the room."}), None)],
    );
    // The homeserver shows her joined (she joined by another way meanwhile).
    let joined = member_event("$joined", ROOM, "@alice:test.local", "@alice:test.local", "join");
    app.homeserver.script("/state/m.room.member/", [(200, joined, None)]);
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    eventually("settled", || settled(&app)).await;
    assert_eq!(app.posts("invite").len(), 1, "not retried");
    assert_eq!(app.store.audit().all().unwrap()[0].outcome, Outcome::Done);
}

#[tokio::test]
async fn a_refused_invite_is_not_done_because_of_its_wording() {
    let app = app().await;
    // The same words, but the homeserver still shows her knocking: a real refusal.
    app.homeserver.script(
        "/invite",
        [(403, json!({"errcode": "M_FORBIDDEN", "error": "@alice:test.local is already in the room."}), None)],
    );
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    eventually("settled", || settled(&app)).await;
    assert!(matches!(app.store.audit().all().unwrap()[0].outcome, Outcome::Failed(_)));
    assert_eq!(app.store.failures().all().unwrap().len(), 1, "kept in the failed list");
}

#[tokio::test]
async fn a_retried_action_asks_the_homeserver_whether_the_knock_still_stands() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.go_down().await;
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    act_failed_once(&app).await;
    // The knocker withdraws; the homeserver knows, knockwarden has not been told yet.
    app.homeserver.set_membership(ROOM, "@alice:test.local", "leave");
    let _back = app.homeserver.come_back().await;
    eventually("settled", || settled(&app)).await;
    assert!(app.posts("invite").is_empty());
    let e = &app.store.audit().all().unwrap()[0];
    assert_eq!(
        e.outcome,
        Outcome::Cancelled(Resolution::NotKnocking {
            membership: Some(ruma::events::room::member::MembershipState::Leave)
        })
    );
}

#[tokio::test]
async fn a_knock_withdrawn_or_handled_by_a_person_first_is_not_acted_on() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.go_down().await;
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    app.knock("2", "$b", "@bob:test.local", Some("hi there")).await;
    // While the homeserver is away, alice withdraws and a moderator invites bob.
    app.homeserver.set_membership(ROOM, "@alice:test.local", "leave");
    app.homeserver.set_membership(ROOM, "@bob:test.local", "invite");
    let withdrawn = member_event("$w", ROOM, "@alice:test.local", "@alice:test.local", "leave");
    let invited = member_event("$i", ROOM, MODERATOR, "@bob:test.local", "invite");
    assert_eq!(app.put_txn("3", &json!({"events": [withdrawn, invited]})).await.status(), 200);
    // The worker runs on its own thread: it has read both changes before the homeserver is back.
    eventually("the changes are handled", || app.store.journal().backlog() == 0).await;
    let _back = app.homeserver.come_back().await;
    eventually("settled", || settled(&app)).await;
    assert!(app.posts("invite").is_empty(), "nobody was invited by knockwarden");
    let audit = app.store.audit().all().unwrap();
    let outcome = |u: &str| audit.iter().find(|e| e.user_id == u).unwrap().outcome.clone();
    assert_eq!(outcome("@alice:test.local"), Outcome::Resolved(Resolution::Withdrawn));
    assert_eq!(
        outcome("@bob:test.local"),
        Outcome::Resolved(Resolution::InvitedBy { by: MODERATOR.try_into().unwrap() })
    );
    assert!(app.store.knocks().get(ROOM, "@alice:test.local").unwrap().is_none());
}

/// A crash can lose the worker's last batch after its actions were carried out (sled makes
/// it durable a moment later): the events of the journal are handled again after the
/// restart. Their actions are checked against the homeserver first, so nobody is invited
/// twice.
#[tokio::test]
async fn a_knock_taken_in_before_a_restart_is_checked_with_the_homeserver_before_it_is_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    {
        let store = Store::open(&dir.path().join("db")).unwrap();
        let knock = knock_event("$a", ROOM, "@alice:test.local", Some("hi there"));
        let knock = serde_json::value::to_raw_value(&knock).unwrap();
        let origin = Origin::Push { txn_id: "1".into() };
        store
            .journal()
            .append(&origin, Some(&[1; 32]), vec![knock], vec!["@alice:test.local".into()], vec![], |_| {})
            .unwrap();
        store.flush_blocking().unwrap();
    }
    // The run before invited alice; its record of that was lost.
    let hs = FakeHomeserver::start().await;
    hs.set_membership(ROOM, "@alice:test.local", "invite");
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("settled", || settled(&app) && app.store.audit().len() == 1).await;
    assert!(app.posts("invite").is_empty(), "not invited twice");
    assert_eq!(app.store.audit().all().unwrap()[0].outcome, Outcome::Done);
}

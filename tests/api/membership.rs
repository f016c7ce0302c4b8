//! The bot's own membership: joining at moderators' invitations, declining others', and
//! catching up on knocks it could not see.

use serde_json::json;

use crate::helpers::{BOT, CONTROL_ROOM, MODERATOR, eventually, fixture, knock_event, member_event, spawn_app};

const ROOM: &str = "!managed:test.local";

#[tokio::test]
async fn joins_the_control_room_on_start() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    eventually("a join of the control room", || !hs.requests_to("POST", &format!("/join/{CONTROL_ROOM}")).is_empty())
        .await;
    let req = &hs.requests_to("POST", "/join/")[0];
    assert_eq!(req.authorization.as_deref(), Some(format!("Bearer {}", app.registration().as_token).as_str()));
}

#[tokio::test]
async fn joins_when_a_moderator_invites_and_catches_up_on_knocks() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    hs.set_state(CONTROL_ROOM, "m.room.power_levels", "", "@owner:test.local", fixture_power_levels());
    hs.set_knocks(ROOM, vec![knock_event("$before", ROOM, "@early:test.local", Some("knocked before the bot came"))]);
    joins_control_room(&app, MODERATOR).await;

    let invite = member_event("$inv", ROOM, MODERATOR, BOT, "invite");
    assert_eq!(app.put_txn("1", &json!({"events": [invite]})).await.status(), 200);
    eventually("the bot joins the room", || !hs.requests_to("POST", &format!("/join/{ROOM}")).is_empty()).await;

    let joined = member_event("$join", ROOM, BOT, BOT, "join");
    let knock = knock_event("$now", ROOM, "@late:test.local", None);
    assert_eq!(app.put_txn("2", &json!({"events": [joined, knock]})).await.status(), 200);
    let store = app.store.clone();
    eventually("both knocks known", || store.knocks().in_room(Some(ROOM)).unwrap().len() == 2).await;
    let members = hs.requests_to("GET", &format!("/rooms/{ROOM}/members"));
    assert!(!members.is_empty());
    assert!(members[0].query.contains("membership=knock"), "{}", members[0].query);
    let early = store.knocks().get(ROOM, "@early:test.local").unwrap().unwrap();
    assert_eq!(early.reason.as_deref(), Some("knocked before the bot came"));
    assert_eq!(store.rooms().joined().unwrap(), vec![ROOM.to_owned()]);
}

#[tokio::test]
async fn declines_invitations_from_non_moderators() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    hs.set_state(CONTROL_ROOM, "m.room.power_levels", "", "@owner:test.local", fixture_power_levels());
    let invite = member_event("$inv", ROOM, "@random:test.local", BOT, "invite");
    assert_eq!(app.put_txn("1", &json!({"events": [invite]})).await.status(), 200);
    eventually("the bot declines", || !hs.requests_to("POST", &format!("/rooms/{ROOM}/leave")).is_empty()).await;
    assert!(hs.requests_to("POST", &format!("/join/{ROOM}")).is_empty());
}

#[tokio::test]
async fn the_creator_of_a_v12_control_room_is_a_moderator() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    // v12: the creator has unlimited power and is not in the users map.
    hs.set_state(CONTROL_ROOM, "m.room.create", "", "@owner:test.local", json!({"room_version": "12"}));
    hs.set_state(
        CONTROL_ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {}, "users_default": 0}),
    );
    let store = app.store.clone();
    eventually("control room state fetched", || {
        store.rooms().get(CONTROL_ROOM).unwrap().is_some_and(|r| r.room_version.as_deref() == Some("12"))
    })
    .await;
    joins_control_room(&app, "@owner:test.local").await;
    let invite = member_event("$inv", ROOM, "@owner:test.local", BOT, "invite");
    assert_eq!(app.put_txn("1", &json!({"events": [invite]})).await.status(), 200);
    eventually("the bot joins", || !hs.requests_to("POST", &format!("/join/{ROOM}")).is_empty()).await;
}

#[tokio::test]
async fn a_resolved_knock_is_forgotten() {
    let app = spawn_app().await;
    let knock = knock_event("$k", ROOM, "@g:test.local", None);
    let joined = member_event("$j", ROOM, BOT, BOT, "join");
    assert_eq!(app.put_txn("1", &json!({"events": [joined, knock]})).await.status(), 200);
    let store = app.store.clone();
    eventually("knock recorded", || store.knocks().get(ROOM, "@g:test.local").unwrap().is_some()).await;
    let invited = member_event("$i", ROOM, MODERATOR, "@g:test.local", "invite");
    assert_eq!(app.put_txn("2", &json!({"events": [invited]})).await.status(), 200);
    eventually("knock resolved", || store.knocks().get(ROOM, "@g:test.local").unwrap().is_none()).await;
}

/// `user` joins the control room (moderators count while they are members).
async fn joins_control_room(app: &crate::helpers::TestApp, user: &str) {
    let join = member_event(&format!("$cj-{user}"), CONTROL_ROOM, user, user, "join");
    assert_eq!(app.put_txn(&format!("cj-{user}"), &json!({"events": [join]})).await.status(), 200);
}

fn fixture_power_levels() -> serde_json::Value {
    let mut pl = fixture("local_v10_power_levels.json");
    pl["users"][MODERATOR] = json!(50);
    pl
}

#[tokio::test]
async fn a_rate_limited_then_failing_homeserver_is_retried_until_the_join_succeeds() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    // The control-room join at start: 429 (with retry_after_ms), then a 500, then success.
    hs.script(
        &format!("/join/{CONTROL_ROOM}"),
        [
            (429, json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 300}), None),
            (500, json!({"errcode": "M_UNKNOWN", "error": "oops"}), None),
        ],
    );
    eventually("three join attempts", || hs.requests_to("POST", &format!("/join/{CONTROL_ROOM}")).len() >= 3).await;
    let store = app.store.clone();
    eventually("the outbox is empty", || store.outbox().is_empty()).await;
    assert_eq!(store.get_meta("control_room_id").unwrap().as_deref(), Some(CONTROL_ROOM));
    assert_eq!(hs.requests_to("POST", &format!("/join/{CONTROL_ROOM}")).len(), 3, "no extra attempt after success");
}

#[tokio::test]
async fn a_homeserver_that_is_down_gets_the_action_once_it_is_back() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    eventually("start-up join done", || app.store.outbox().is_empty()).await;
    joins_control_room(&app, MODERATOR).await;
    hs.go_down().await;
    hs.set_state(CONTROL_ROOM, "m.room.power_levels", "", "@owner:test.local", fixture_power_levels());
    let invite = member_event("$inv", ROOM, MODERATOR, BOT, "invite");
    assert_eq!(app.put_txn("1", &json!({"events": [invite]})).await.status(), 200);
    let store = app.store.clone();
    eventually("the action failed at least once", || {
        store.outbox().all().unwrap().first().is_some_and(|(_, e)| e.attempts >= 1 && e.last_error.is_some())
    })
    .await;
    let _back = hs.come_back().await;
    eventually("the bot joins once the homeserver is back", || {
        !hs.requests_to("POST", &format!("/join/{ROOM}")).is_empty()
    })
    .await;
    assert_eq!(hs.requests_to("POST", &format!("/join/{ROOM}")).len(), 1);
    assert!(hs.requests_to("POST", &format!("/join/{ROOM}"))[0].body.is_object());
}

#[tokio::test]
async fn a_refused_control_room_join_is_not_a_failure_and_is_not_retried_until_invited() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    let joins = || hs.requests_to("POST", &format!("/join/{CONTROL_ROOM}")).len();
    eventually("the first start's join", || joins() == 1).await;
    hs.refuse_joins(CONTROL_ROOM, true);
    let (dir, hs2) = app.stop().await;
    let app = crate::helpers::spawn_app_in(dir, hs2, Default::default()).await;
    eventually("the join is tried on start, and refused", || joins() == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(joins(), 2, "not retried with back-off: the bot waits for an invitation");
    assert!(app.store.failures().all().unwrap().is_empty());
    assert_eq!(app.store.counter("actions_failed").unwrap(), 0);
}

#[tokio::test]
async fn a_control_room_alias_is_resolved_by_joining_it() {
    let hs = crate::helpers::FakeHomeserver::start().await;
    hs.set_alias("#mods:test.local", "!resolved:test.local");
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::helpers::AppOptions { control_room: "#mods:test.local".into(), ..Default::default() };
    let app = crate::helpers::spawn_app_in(dir, hs.clone(), opts).await;
    let store = app.store.clone();
    eventually("the alias is resolved", || {
        store.get_meta("control_room_id").unwrap().as_deref() == Some("!resolved:test.local")
    })
    .await;
    assert!(
        !hs.requests_to("POST", "/join/%23mods:test.local").is_empty()
            || !hs.requests_to("POST", "/join/#mods").is_empty()
    );
    // Messages in the resolved control room are now kept; elsewhere they are not.
    let msg = |id: &str, room: &str| json!({"event_id": id, "room_id": room, "sender": MODERATOR, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "!knock help"}});
    let body = json!({"events": [msg("$in", "!resolved:test.local"), msg("$out", "!other:test.local")]});
    assert_eq!(app.put_txn("1", &body).await.status(), 200);
    eventually("the message in the control room is taken in", || store.journal().was_seen("$in").unwrap()).await;
    assert!(!store.journal().was_seen("$out").unwrap(), "the other is dropped (it came in the same record otherwise)");
}

#[tokio::test]
async fn members_are_learned_on_join_and_followed_and_knocks_are_counted() {
    let app = spawn_app().await;
    let hs = app.homeserver.clone();
    hs.set_members(ROOM, &[BOT, "@alice:test.local", "@bob:test.local"]);
    let joined = member_event("$j", ROOM, BOT, BOT, "join");
    assert_eq!(app.put_txn("1", &json!({"events": [joined]})).await.status(), 200);
    let store = app.store.clone();
    eventually("members fetched", || store.members().of(ROOM).unwrap().len() == 3).await;
    assert!(store.members().contains(ROOM, "@alice:test.local").unwrap());

    let left = member_event("$l", ROOM, "@bob:test.local", "@bob:test.local", "leave");
    let came = member_event("$c", ROOM, "@carol:test.local", "@carol:test.local", "join");
    let k1 = knock_event("$k1", ROOM, "@dave:elsewhere", None);
    let k2 = knock_event("$k2", ROOM, "@erin:elsewhere", None);
    assert_eq!(app.put_txn("2", &json!({"events": [left, came, k1, k2]})).await.status(), 200);
    eventually("memberships followed", || {
        !store.members().contains(ROOM, "@bob:test.local").unwrap()
            && store.members().contains(ROOM, "@carol:test.local").unwrap()
    })
    .await;
    eventually("knocks counted", || store.activity().room_knocks_since(ROOM, 0).unwrap() == 2).await;
    assert_eq!(store.activity().user_knocks_since("@dave:elsewhere", ROOM, 0).unwrap(), 1);
}

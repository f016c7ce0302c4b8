//! Moderators' power tools: bulk verdicts, lockdown during a wave, mentions in review
//! notices.

use serde_json::json;

use crate::control::{ROOM, homeserver, start, start_with};
use crate::helpers::{AppOptions, BOT, TestApp, eventually, member_event, spawn_app_in};

async fn app() -> TestApp {
    start(tempfile::tempdir().unwrap(), homeserver().await, "").await
}

/// `n` knocks, by `@u1..@un` on `server` (from review item `first` on); waits for their
/// review notices.
async fn knocks(app: &TestApp, txn: &str, server: &str, users: std::ops::RangeInclusive<u32>) {
    let expected = app.store.reviews().all().unwrap().len() as u64 + users.clone().count() as u64;
    for i in users {
        let user = format!("@u{i}:{server}");
        app.knock_on(&format!("{txn}-{i}"), &format!("$k-{server}-{i}"), &user, Some("let me in")).await;
    }
    app.review_notice(expected).await;
}

fn users_in(app: &TestApp, verb: &str) -> Vec<String> {
    let mut users: Vec<String> =
        app.posted(verb).iter().map(|r| r.body["user_id"].as_str().unwrap().to_owned()).collect();
    users.sort();
    users
}

#[tokio::test]
async fn bulk_approve_by_range_invites_each_and_replies_once() {
    let app = app().await;
    knocks(&app, "k", "elsewhere.example", 1..=5).await;
    let notices: Vec<String> = futures_notices(&app, 1..=5).await;

    let reply = app.say("c1", "$c1", "!knock approve #2-#4").await;
    assert!(reply.starts_with("Approved: 3 invited, 0 not pending, 0 failed."), "{reply}");
    assert!(reply.contains("#2 @u2:elsewhere.example") && reply.contains("#4 @u4:elsewhere.example"), "{reply}");
    assert_eq!(users_in(&app, "invite"), ["@u2:elsewhere.example", "@u3:elsewhere.example", "@u4:elsewhere.example"]);
    assert_eq!(app.reactions_on("$c1"), vec!["⏳", "✅"]);
    let open: Vec<u64> = app.store.reviews().open().unwrap().iter().map(|i| i.number).collect();
    assert_eq!(open, [1, 5], "the others are untouched");
    // Each item closes its own review notice.
    for n in [2, 3, 4] {
        let notice = &notices[n - 1];
        eventually(&format!("#{n}'s notice edited"), || !app.edits_of(notice).is_empty()).await;
        assert!(app.edits_of(notice)[0].contains("Closed: approved by @mod:test.local"));
    }
    assert!(app.edits_of(&notices[0]).is_empty() && app.edits_of(&notices[4]).is_empty());

    // A range over closed items names them as not pending, and does nothing twice.
    let reply = app.say("c2", "$c2", "!knock approve 3-5").await;
    assert!(reply.starts_with("Approved: 1 invited, 2 not pending, 0 failed."), "{reply}");
    assert!(reply.contains("#3 (already closed: approved by @mod:test.local)"), "{reply}");
    assert_eq!(app.posted("invite").len(), 4);
}

async fn futures_notices(app: &TestApp, numbers: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let mut out = Vec::new();
    for n in numbers {
        out.push(app.review_notice(n).await);
    }
    out
}

#[tokio::test]
async fn deny_from_a_server_with_a_reason_leaves_the_others_alone() {
    let app = app().await;
    knocks(&app, "a", "evil.example", 1..=3).await;
    knocks(&app, "b", "good.example", 4..=5).await;

    let reply = app.say("c1", "$c1", "!knock deny from evil.example spam wave").await;
    assert!(reply.starts_with("Denied: 3 kicked, 0 not pending, 0 failed."), "{reply}");
    assert_eq!(users_in(&app, "kick"), ["@u1:evil.example", "@u2:evil.example", "@u3:evil.example"]);
    assert!(app.posted("kick").iter().all(|r| r.body["reason"] == "spam wave"));
    let open: Vec<String> = app.store.reviews().open().unwrap().iter().map(|i| i.user_id.to_string()).collect();
    assert_eq!(open, ["@u4:good.example", "@u5:good.example"]);
    assert!(app.posted("invite").is_empty() && app.posted("ban").is_empty());
}

#[tokio::test]
async fn ban_of_two_users_and_one_not_pending() {
    let app = app().await;
    knocks(&app, "a", "evil.example", 1..=3).await;

    let reply = app.say("c1", "$c1", "!knock ban @u1:evil.example @u3:evil.example @nobody:evil.example bots").await;
    assert!(reply.starts_with("Banned: 2 banned, 1 not pending, 0 failed."), "{reply}");
    assert!(reply.contains("@nobody:evil.example (no pending knock)"), "{reply}");
    assert_eq!(users_in(&app, "ban"), ["@u1:evil.example", "@u3:evil.example"]);
    assert!(app.posted("ban").iter().all(|r| r.body["reason"] == "bots"));
    assert_eq!(app.reactions_on("$c1"), vec!["⏳", "✅"]);
    assert_eq!(app.store.reviews().open().unwrap().len(), 1);
}

#[tokio::test]
async fn all_over_twenty_asks_for_yes() {
    let app = app().await;
    knocks(&app, "a", "wave.example", 1..=22).await;

    let reply = app.say("c1", "$c1", "!knock deny all").await;
    assert!(
        reply.contains("22 pending knocks") && reply.contains("--yes") && reply.contains("nothing done"),
        "{reply}"
    );
    assert_eq!(app.reactions_on("$c1"), vec!["❌"]);
    assert!(app.posted("kick").is_empty());
    assert_eq!(app.store.reviews().open().unwrap().len(), 22);

    let reply = app.say("c2", "$c2", "!knock deny all --yes go away").await;
    assert!(reply.starts_with("Denied: 22 kicked, 0 not pending, 0 failed."), "{reply}");
    assert!(reply.contains("and 2 more"), "at most 20 named: {reply}");
    assert_eq!(app.posted("kick").len(), 22);
    assert!(app.store.reviews().open().unwrap().is_empty());
    assert_eq!(app.reactions_on("$c2"), vec!["⏳", "✅"]);
}

#[tokio::test]
async fn a_failed_knock_of_a_bulk_verdict_is_in_the_summary() {
    let app = app().await;
    knocks(&app, "a", "elsewhere.example", 1..=2).await;
    app.homeserver.script("/invite", [(403, json!({"errcode": "M_FORBIDDEN", "error": "not allowed"}), None)]);

    let reply = app.say("c1", "$c1", "!knock approve all").await;
    assert!(reply.starts_with("Approved: 1 invited, 0 not pending, 1 failed."), "{reply}");
    assert!(reply.contains("M_FORBIDDEN") && reply.contains("!knock retry"), "{reply}");
    assert_eq!(app.reactions_on("$c1"), vec!["⏳", "❌"]);
}

/// Friends are let in; any other fourth knock within a minute is a wave, which locks the
/// room down for 2s.
const WAVE_POLICY: &str = r#"rooms: ["!r:test.local"]
default: review
rules:
  - name: friend
    when: { server: friends.example }
    action: accept
  - name: wave
    when: { room_knocks: { more_than: 3, within: 1m } }
    action: review
    lockdown: 2s
"#;

/// The app with [`WAVE_POLICY`], the bot joined to ROOM.
async fn wave_app() -> TestApp {
    let app = start_with(tempfile::tempdir().unwrap(), homeserver().await, "", WAVE_POLICY).await;
    app.push("join", vec![member_event("$join", ROOM, BOT, BOT, "join")]).await;
    eventually("the bot is in the room", || app.store.rooms().joined().unwrap().iter().any(|r| r == ROOM)).await;
    app
}

/// The audit entry of `user`'s knock, once decided.
async fn decided(app: &TestApp, user: &str) -> knockwarden::storage::AuditEntry {
    eventually(&format!("{user}'s knock decided"), || {
        app.store.audit().all().unwrap().iter().any(|e| e.user_id == user)
    })
    .await;
    app.store.audit().all().unwrap().into_iter().rfind(|e| e.user_id == user).unwrap()
}

#[tokio::test]
async fn a_lockdown_by_command_holds_accepted_knocks_for_review_until_it_is_ended() {
    let app = wave_app().await;
    let reply = app.say("c1", "$c1", &format!("!knock lockdown {ROOM}")).await;
    assert!(reply.starts_with("🔒 Lockdown for 1h (by @mod:test.local): !r:test.local."), "{reply}");
    assert_eq!(app.reactions_on("$c1"), vec!["✅"]);
    let listed = app.say("c2", "$c2", "!knock lockdown").await;
    assert!(listed.contains("1 room(s) in lockdown") && listed.contains("by @mod:test.local"), "{listed}");
    assert!(listed.contains(" GMT (1h left)"), "the end time: {listed}");
    let rooms = app.say("c3", "$c3", "!knock rooms").await;
    assert!(rooms.contains("🔒 lockdown"), "{rooms}");

    app.knock_on("k1", "$k1", "@amy:friends.example", Some("hi")).await;
    let e = decided(&app, "@amy:friends.example").await;
    assert_eq!(e.action, knockwarden::policy::Action::Review, "held for review: {e:?}");
    assert!(e.rule.as_deref() == Some("friend") && e.explanation.contains("lockdown"), "{e:?}");
    app.review_notice(1).await;
    let notice = review_text(&app, 1);
    assert!(notice.contains("lockdown"), "the review notice says why: {notice}");
    assert!(app.posted("invite").is_empty());

    let reply = app.say("c4", "$c4", &format!("!knock lockdown off {ROOM}")).await;
    assert!(reply.starts_with("🔓 Lockdown ended by @mod:test.local: !r:test.local."), "{reply}");
    app.knock_on("k2", "$k2", "@bob:friends.example", Some("hi")).await;
    eventually("the next friend is invited", || !app.posted("invite").is_empty()).await;
    assert_eq!(app.posted("invite")[0].body["user_id"], "@bob:friends.example");
    let reply = app.say("c5", "$c5", "!knock lockdown off all").await;
    assert_eq!(reply, "No room is in lockdown.");
}

#[tokio::test]
async fn a_lockdown_is_kept_across_a_restart() {
    let app = wave_app().await;
    app.say("c1", "$c1", "!knock lockdown all 2h").await;
    let (dir, hs) = app.stop().await;
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    let listed = app.say("c2", "$c2", "!knock lockdown").await;
    assert!(listed.contains("!r:test.local") && listed.contains("GMT (2h left)"), "{listed}");
    let e = knockwarden::storage::now_ms();
    assert!(app.store.lockdowns().active(ROOM, e).unwrap().is_some());
}

#[tokio::test]
async fn a_wave_rule_locks_the_room_down_and_the_lockdown_ends_by_itself() {
    let app = wave_app().await;
    for i in 1..=3 {
        app.knock_on(&format!("w{i}"), &format!("$w{i}"), &format!("@w{i}:wave.example"), None).await;
    }
    app.review_notice(3).await;
    assert!(app.store.lockdowns().all().unwrap().is_empty(), "three knocks are no wave");
    app.knock_on("w4", "$w4", "@w4:wave.example", None).await;
    let e = decided(&app, "@w4:wave.example").await;
    assert_eq!(e.rule.as_deref(), Some("wave"));
    eventually("the lockdown begins", || {
        app.store.lockdowns().active(ROOM, knockwarden::storage::now_ms()).unwrap().is_some()
    })
    .await;
    eventually("a notice says so", || {
        app.plain_notices().iter().any(|n| n.starts_with("🔒 ") && n.contains("by rule wave of policy p"))
    })
    .await;

    // A friend's knock during the lockdown is held for review, and its notice says so.
    app.knock_on("f1", "$f1", "@amy:friends.example", Some("hi")).await;
    let e = decided(&app, "@amy:friends.example").await;
    assert_eq!((e.rule.as_deref(), e.action), (Some("friend"), knockwarden::policy::Action::Review), "{e:?}");
    assert!(e.explanation.contains("lockdown"), "{e:?}");
    app.review_notice(5).await;
    assert!(review_text(&app, 5).contains("lockdown"), "{}", review_text(&app, 5));
    assert!(app.posted("invite").is_empty());

    eventually("the lockdown ends after its time, with a notice", || {
        app.plain_notices().iter().any(|n| n.starts_with("🔓 The lockdown of !r:test.local is over"))
    })
    .await;
    assert!(app.store.lockdowns().all().unwrap().is_empty());
    // Over: the next friend is let in.
    app.knock_on("f2", "$f2", "@bo:friends.example", Some("hi")).await;
    eventually("the next friend is invited", || !app.posted("invite").is_empty()).await;
}

/// The plain text of review item `n`'s notice.
fn review_text(app: &TestApp, n: u64) -> String {
    app.plain_notices().into_iter().find(|b| b.starts_with(&format!("#{n} "))).unwrap_or_default()
}

#[tokio::test]
async fn review_notices_mention_the_joined_moderators() {
    let hs = homeserver().await;
    // A moderator by power who left the control room is not mentioned.
    hs.set_state(
        crate::helpers::CONTROL_ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {"@owner:test.local": 100, crate::helpers::MODERATOR: 50, "@gone:test.local": 50}}),
    );
    hs.set_membership(crate::helpers::CONTROL_ROOM, "@gone:test.local", "leave");
    let app = start(tempfile::tempdir().unwrap(), hs, "review:\n  mention: moderators\n").await;
    app.knock_on("k1", "$k1", "@amy:elsewhere.example", Some("hi")).await;
    app.review_notice(1).await;
    let sent = app.sent("m.room.message");
    let notice = sent.iter().find(|r| r.body["body"].as_str().is_some_and(|b| b.starts_with("#1 "))).unwrap();
    assert_eq!(notice.body["m.mentions"], json!({"user_ids": ["@mod:test.local", "@owner:test.local"]}));
    let html = notice.body["formatted_body"].as_str().unwrap();
    assert!(html.contains("<a href=\"https://matrix.to/#/@mod:test.local\">"), "{html}");
    assert!(!html.contains("@rando") && !html.contains("@gone"), "{html}");
    // Other notices mention nobody.
    let reply = app.say("c1", "$c1", "!knock pending").await;
    assert!(reply.contains("#1"));
    let sent = app.sent("m.room.message");
    let replies: Vec<_> = sent.iter().filter(|r| !r.body["body"].as_str().unwrap_or("").starts_with("#1 ")).collect();
    assert!(!replies.is_empty());
    assert!(replies.iter().all(|r| r.body["m.mentions"] == json!({})), "{replies:#?}");
}

#[tokio::test]
async fn review_notices_may_mention_the_room() {
    let app = start(tempfile::tempdir().unwrap(), homeserver().await, "review:\n  mention: room\n").await;
    app.knock_on("k1", "$k1", "@amy:elsewhere.example", Some("hi")).await;
    app.review_notice(1).await;
    let notice = review_text(&app, 1);
    assert!(notice.ends_with("@room"), "{notice}");
    let sent = app.sent("m.room.message");
    let n = sent.iter().find(|r| r.body["body"].as_str().is_some_and(|b| b.starts_with("#1 "))).unwrap();
    assert_eq!(n.body["m.mentions"], json!({"room": true}));
}

#[tokio::test]
async fn all_in_a_room_leaves_the_other_rooms_alone() {
    const OTHER: &str = "!other:test.local";
    let policy =
        "rooms: \"*\"\ndefault: review\nrules:\n  - {name: spam, when: {reason: {contains: [casino]}}, action: ban}\n";
    let app = start_with(tempfile::tempdir().unwrap(), homeserver().await, "", policy).await;
    knocks(&app, "a", "elsewhere.example", 1..=2).await;
    app.homeserver.set_knocking(OTHER, "@o:elsewhere.example", "$o");
    app.push("o", vec![crate::helpers::knock_event("$o", OTHER, "@o:elsewhere.example", None)]).await;
    app.review_notice(3).await;

    let reply = app.say("c1", "$c1", &format!("!knock deny all {ROOM} not now")).await;
    assert!(reply.starts_with("Denied: 2 kicked, 0 not pending, 0 failed."), "{reply}");
    assert_eq!(users_in(&app, "kick"), ["@u1:elsewhere.example", "@u2:elsewhere.example"]);
    let open: Vec<String> = app.store.reviews().open().unwrap().iter().map(|i| i.user_id.to_string()).collect();
    assert_eq!(open, ["@o:elsewhere.example"], "the knock on the other room is still pending");
}

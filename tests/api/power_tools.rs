//! Moderators' power tools: bulk verdicts, lockdown during a wave, mentions in review
//! notices.

use serde_json::json;

use crate::control::{homeserver, start};
use crate::helpers::{TestApp, eventually};

async fn app() -> TestApp {
    start(tempfile::tempdir().unwrap(), homeserver().await, "").await
}

/// `n` knocks, by `@u1..@un` on `server` (from review item `first` on); waits for their
/// review notices.
async fn knocks(app: &TestApp, txn: &str, server: &str, users: std::ops::RangeInclusive<u32>) {
    for i in users.clone() {
        let user = format!("@u{i}:{server}");
        app.knock_on(&format!("{txn}-{i}"), &format!("$k-{server}-{i}"), &user, Some("let me in")).await;
    }
    let count = app.store.reviews().all().unwrap().len() as u64;
    app.review_notice(count).await;
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

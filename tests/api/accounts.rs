//! `account:` conditions: what the homeserver's admin API says of a local knocker's account,
//! asked in the knocker's lane; and invites the homeserver refuses because the user blocks them.

use std::time::Duration;

use knockwarden::storage::{FailedItem, Outcome};
use serde_json::json;

use crate::{
    control::{homeserver, message},
    helpers::{AppOptions, FakeHomeserver, MODERATOR, TestApp, eventually, spawn_app_in},
};

const ADMIN_TOKEN: &str = "syt_admin_secret_token_0123456789";

const POLICY: &str = r#"rooms: ["!r:test.local"]
default: accept
rules:
  - name: cannot-know
    when: { account: { unknown: true } }
    action: review
  - name: shadow-banned
    when: { account: { shadow_banned: true } }
    action: deny
  - name: locked
    when: { account: { locked: true } }
    action: deny
  - name: new-account
    when: { account: { younger_than: 1d } }
    action: review
"#;

/// Seconds since the epoch, `ago` ago.
fn created(ago: Duration) -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - ago.as_secs()
}

async fn start(hs: FakeHomeserver, token: bool) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    let mut opts = AppOptions::default();
    if token {
        std::fs::write(dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        opts.homeserver_extra = "  admin_token_file: \"admin-token\"\n".into();
    }
    let app = spawn_app_in(dir, hs, opts).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app
}

/// The rule that decided `user`'s knock, once decided.
async fn decided(app: &TestApp, user: &str) -> (Option<String>, String) {
    let store = app.store.clone();
    eventually(&format!("{user}'s knock decided"), || store.audit().all().unwrap().iter().any(|e| e.user_id == user))
        .await;
    let e = store.audit().all().unwrap().into_iter().find(|e| e.user_id == user).unwrap();
    (e.rule.clone(), e.explanation.clone())
}

fn admin_lookups(app: &TestApp) -> usize {
    app.homeserver.requests_to("GET", "/_synapse/admin/v2/users/").len()
}

#[tokio::test]
async fn local_accounts_are_decided_by_what_the_admin_api_says_and_remote_ones_are_unknown() {
    let hs = homeserver().await;
    hs.enable_admin_api(ADMIN_TOKEN);
    let day = Duration::from_secs(86_400);
    hs.set_account("@new:test.local", json!({"creation_ts": created(Duration::from_secs(10))}));
    hs.set_account("@old:test.local", json!({"creation_ts": created(30 * day), "shadow_banned": false}));
    hs.set_account("@shadow:test.local", json!({"creation_ts": created(30 * day), "shadow_banned": true}));
    hs.set_account("@locked:test.local", json!({"creation_ts": created(30 * day), "locked": true}));
    let app = start(hs, true).await;
    for (i, user) in
        ["@new:test.local", "@old:test.local", "@shadow:test.local", "@locked:test.local", "@far:elsewhere.example"]
            .iter()
            .enumerate()
    {
        app.knock_on(&format!("{i}"), &format!("$k{i}"), user, Some("hello there")).await;
    }
    assert_eq!(decided(&app, "@new:test.local").await.0.as_deref(), Some("new-account"));
    assert_eq!(decided(&app, "@old:test.local").await.0, None, "an old account: the default, accept");
    assert_eq!(decided(&app, "@shadow:test.local").await.0.as_deref(), Some("shadow-banned"));
    assert_eq!(decided(&app, "@locked:test.local").await.0.as_deref(), Some("locked"));
    let (rule, why) = decided(&app, "@far:elsewhere.example").await;
    assert_eq!(rule.as_deref(), Some("cannot-know"));
    assert!(why.contains("not a local user"), "{why}");
    eventually("the old account invited", || app.posted("invite").len() == 1).await;
    eventually("the shadow-banned and locked ones turned away", || app.posted("kick").len() == 2).await;
    // One question per local knocker, with the admin's token; none about a remote one.
    assert_eq!(admin_lookups(&app), 4);
    let auth = app.homeserver.requests_to("GET", "/_synapse/admin/v2/users/")[0].authorization.clone();
    assert_eq!(auth.as_deref(), Some(format!("Bearer {ADMIN_TOKEN}").as_str()));

    // Asked again within 10 minutes (a second knock), the answer kept is used.
    app.knock_on("again", "$again", "@new:test.local", Some("hello again")).await;
    eventually("the second knock decided", || {
        app.store.audit().all().unwrap().iter().filter(|e| e.user_id == "@new:test.local").count() == 2
    })
    .await;
    assert_eq!(admin_lookups(&app), 4, "kept for 10 minutes");
    // `!knock explain` shows the facts used.
    let r = app.say("x", "$x", "!knock explain @shadow:test.local !r:test.local hi").await;
    assert!(r.contains("account: created") && r.contains("shadow-banned"), "{r}");
}

#[tokio::test]
async fn without_an_admin_token_every_account_is_unknown() {
    let hs = homeserver().await;
    hs.enable_admin_api(ADMIN_TOKEN);
    hs.set_account("@old:test.local", json!({"creation_ts": created(Duration::from_secs(86_400 * 30))}));
    let app = start(hs, false).await;
    app.knock_on("1", "$k1", "@old:test.local", Some("hello there")).await;
    let (rule, why) = decided(&app, "@old:test.local").await;
    assert_eq!(rule.as_deref(), Some("cannot-know"));
    assert!(why.contains("admin_token_file"), "{why}");
    assert_eq!(admin_lookups(&app), 0);
}

#[tokio::test]
async fn a_slow_or_failing_admin_api_delays_only_that_knock() {
    let hs = homeserver().await;
    hs.enable_admin_api(ADMIN_TOKEN);
    hs.set_account("@old:test.local", json!({"creation_ts": created(Duration::from_secs(86_400 * 30))}));
    hs.set_account("@slow:test.local", json!({"creation_ts": created(Duration::from_secs(86_400 * 30))}));
    // The admin API takes 3 s for one knocker, and fails for another.
    hs.delay("/_synapse/admin/v2/users/%40slow", Duration::from_secs(3));
    hs.script("/_synapse/admin/v2/users/%40broken", [(500, json!({"errcode": "M_UNKNOWN", "error": "db down"}), None)]);
    let app = start(hs, true).await;
    let started = std::time::Instant::now();
    app.knock_on("1", "$slow", "@slow:test.local", Some("hello there")).await;
    app.knock_on("2", "$broken", "@broken:test.local", Some("hello there")).await;
    app.knock_on("3", "$old", "@old:test.local", Some("hello there")).await;
    app.push("4", vec![message("$help", MODERATOR, "!knock help")]).await;
    let (rule, why) = decided(&app, "@broken:test.local").await;
    assert_eq!(rule.as_deref(), Some("cannot-know"), "a failure decides with unknown");
    assert!(why.contains("admin API failed") && why.contains("500"), "{why}");
    assert_eq!(decided(&app, "@old:test.local").await.0, None);
    app.reply_to("$help").await;
    let audit = app.store.audit().all().unwrap();
    assert!(
        !audit.iter().any(|e| e.user_id == "@slow:test.local"),
        "the slow one is still waiting ({:?} in)",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3), "the others went on: {:?}", started.elapsed());
    assert_eq!(decided(&app, "@slow:test.local").await.0, None, "then decided");
}

#[tokio::test]
async fn an_invite_the_user_blocks_goes_to_the_failed_list_at_once_with_why() {
    let hs = homeserver().await;
    let blocked = json!({"errcode": "M_INVITE_BLOCKED", "error": "The user does not accept invites from you"});
    hs.script("/invite", [(403, blocked, None)]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        "rooms: [\"!r:test.local\"]\nrules:\n  - { name: all, action: accept }\n",
    )
    .unwrap();
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app.knock_on("1", "$k1", "@private:x.example", Some("hello")).await;
    let store = app.store.clone();
    eventually("in the failed list", || store.failures().all().unwrap().len() == 1).await;
    let failed = store.failures().all().unwrap();
    assert!(matches!(&failed[0].item, FailedItem::Action { .. }));
    assert!(failed[0].error.contains("blocks invites"), "{}", failed[0].error);
    eventually("one notice", || app.plain_notices().iter().any(|n| n.contains("blocks invites"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.posted("invite").len(), 1, "not retried");
    assert_eq!(app.plain_notices().iter().filter(|n| n.contains("blocks invites")).count(), 1);
    let e = store.audit().all().unwrap().into_iter().next().unwrap();
    assert!(matches!(e.outcome, Outcome::Failed(ref m) if m.contains("M_INVITE_BLOCKED")), "{:?}", e.outcome);
    // `!knock retry 1` tries again (the user has allowed invites meanwhile).
    let r = app.say("r", "$r", "!knock retry 1").await;
    assert!(r.starts_with("Back in the queue"), "{r}");
    eventually("invited", || app.posted("invite").len() == 2).await;
}

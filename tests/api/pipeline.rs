//! The moderation pipeline: knocks decided by policy, notices, memberships followed, dry run,
//! and the intake's back-pressure; the helpers the action and fault tests share.

use knockwarden::storage::{Action, Outcome, Resolution};
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, BOT, CONTROL_ROOM, FakeHomeserver, MODERATOR, TestApp, eventually, knock_event, member_event,
    spawn_app_in,
};

pub(crate) const ROOM: &str = "!r:test.local";

pub(crate) const POLICY: &str = r#"rooms: ["!r:test.local"]
default: review
rules:
  - name: spam
    when: { reason: { contains: [spam] } }
    action: ban
  - name: no-reason
    when: { reason: { missing: true } }
    action: deny
    reason: "Tell us why, {user}"
  - name: locals
    when: { server: test.local }
    action: accept
  - name: quiet
    when: { server: quiet.example }
    action: ignore
"#;

pub(crate) async fn app_with(policy: &str, opts: AppOptions, hs: FakeHomeserver) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    spawn_app_in(dir, hs, opts).await
}

pub(crate) async fn app() -> TestApp {
    app_with(POLICY, AppOptions::default(), FakeHomeserver::start().await).await
}

impl TestApp {
    /// `user` knocks (the fake homeserver now says they are knocking) and the knock is pushed.
    pub async fn knock(&self, txn: &str, event_id: &str, user: &str, reason: Option<&str>) {
        self.homeserver.set_knocking(ROOM, user, event_id);
        let body = json!({"events": [knock_event(event_id, ROOM, user, reason)]});
        assert_eq!(self.put_txn(txn, &body).await.status(), 200);
    }

    pub(crate) fn posts(&self, verb: &str) -> Vec<crate::helpers::fake_homeserver::Recorded> {
        self.homeserver.requests_to("POST", &format!("/rooms/{ROOM}/{verb}"))
    }

    pub(crate) fn notices(&self) -> Vec<String> {
        self.homeserver
            .requests_to("PUT", &format!("/rooms/{CONTROL_ROOM}/send/m.room.message/"))
            .into_iter()
            .filter_map(|r| r.body["body"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Waits until an invite, kick or ban has failed at least once (the homeserver being down).
pub(crate) async fn act_failed_once(app: &TestApp) {
    eventually("an action failed once", || {
        app.store.outbox().all().unwrap().iter().any(|(_, e)| matches!(e.action, Action::Act { .. }) && e.attempts >= 1)
    })
    .await;
}

/// Start-up is over: the control room is joined and nothing is queued.
pub(crate) fn started(app: &TestApp) -> bool {
    app.store.get_meta("control_room_id").unwrap().is_some() && app.store.outbox().is_empty()
}

pub(crate) fn settled(app: &TestApp) -> bool {
    app.store.journal().backlog() == 0
        && app.store.audit().all().unwrap().iter().all(|e| e.outcome != Outcome::Pending || e.review.is_some())
        && app.store.outbox().is_empty()
}

/// The knock and what a moderator did about it arrive together, before the worker has
/// handled the knock: the intake keeps the change (it knows the knocker from the inbox).
#[tokio::test]
async fn a_change_right_behind_the_knock_is_kept() {
    let app = app().await;
    eventually("start-up done", || started(&app)).await;
    app.homeserver.go_down().await;
    let knock = knock_event("$k", ROOM, "@bob:test.local", Some("hi there"));
    let invited = member_event("$i", ROOM, MODERATOR, "@bob:test.local", "invite");
    assert_eq!(app.put_txn("1", &json!({"events": [knock, invited]})).await.status(), 200);
    eventually("handled", || app.store.journal().backlog() == 0).await;
    assert!(app.store.knocks().get(ROOM, "@bob:test.local").unwrap().is_none(), "the invite closed the knock");
    let audit = app.store.audit().all().unwrap();
    assert_eq!(audit[0].outcome, Outcome::Resolved(Resolution::InvitedBy { by: MODERATOR.try_into().unwrap() }));
}

#[tokio::test]
async fn dry_run_decides_audits_and_notifies_but_changes_nothing() {
    let app = app_with(&format!("dry_run: true\n{POLICY}"), AppOptions::default(), FakeHomeserver::start().await).await;
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    app.knock("2", "$b", "@bob:elsewhere.example", None).await;
    app.knock("3", "$c", "@carol:elsewhere.example", Some("spam")).await;
    eventually("three notices", || app.notices().len() == 3).await;
    for verb in ["invite", "kick", "ban"] {
        assert!(app.posts(verb).is_empty(), "{verb} sent in dry run");
    }
    let notices = app.notices().join("\n");
    assert!(
        notices.contains("would accept") && notices.contains("would deny") && notices.contains("would ban"),
        "{notices}"
    );
    assert!(app.store.audit().all().unwrap().iter().all(|e| e.dry_run && e.outcome == Outcome::DryRun));

    // The global switch does the same for a policy without dry_run.
    let app = app_with(
        POLICY,
        AppOptions { extra_config: "dry_run: true\n".into(), ..Default::default() },
        FakeHomeserver::start().await,
    )
    .await;
    app.knock("1", "$a", "@alice:test.local", Some("hi there")).await;
    eventually("notice", || app.notices().len() == 1).await;
    assert!(app.posts("invite").is_empty());
}

#[tokio::test]
async fn a_room_no_policy_governs_is_left_alone_and_aliases_are_resolved() {
    let hs = FakeHomeserver::start().await;
    hs.set_alias("#support:test.local", "!support:test.local");
    let policy = "rooms: [\"#support:test.local\"]\nrules:\n  - { name: all, action: accept }\n";
    let app = app_with(policy, AppOptions::default(), hs).await;
    eventually("alias resolved", || app.store.aliases().get("#support:test.local").unwrap().is_some()).await;
    let knocks = json!({"events": [
        knock_event("$a", "!support:test.local", "@a:test.local", Some("hi")),
        knock_event("$b", "!other:test.local", "@b:test.local", Some("hi")),
    ]});
    app.homeserver.set_membership("!support:test.local", "@a:test.local", "knock");
    assert_eq!(app.put_txn("1", &knocks).await.status(), 200);
    eventually("the governed knock is invited", || {
        !app.homeserver.requests_to("POST", "/rooms/!support:test.local/invite").is_empty()
    })
    .await;
    eventually("both knocks handled", || app.store.journal().backlog() == 0).await;
    assert_eq!(app.store.audit().len(), 1, "only the governed room's knock is decided");
    assert!(
        app.store.knocks().get("!other:test.local", "@b:test.local").unwrap().is_some(),
        "the other is only tracked"
    );
    // Notices name the room by its alias.
    eventually("notice", || app.notices().iter().any(|n| n.contains("#support:test.local"))).await;
}

#[tokio::test]
async fn user_text_in_notices_is_escaped_and_clipped() {
    let app = app().await;
    let long = format!("<script>alert(1)</script> {}", "x".repeat(1_000_000));
    app.knock("1", "$a", "@dave:elsewhere.example", Some(&long)).await;
    eventually("review notice", || app.notices().iter().any(|n| n.starts_with("#1 "))).await;
    let req = app
        .homeserver
        .requests_to("PUT", "/send/m.room.message/")
        .into_iter()
        .find(|r| r.body["body"].as_str().unwrap().starts_with("#1 "))
        .unwrap();
    let html = req.body["formatted_body"].as_str().unwrap();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    assert!(html.len() < 2_000, "a 1 MB reason makes a {} byte notice", html.len());
    assert!(req.body["body"].as_str().unwrap().len() < 2_000);
}

#[tokio::test]
async fn a_re_knock_supersedes_the_pending_review() {
    let app = app().await;
    app.knock("1", "$a", "@dave:elsewhere.example", Some("first try")).await;
    eventually("review #1", || app.store.reviews().open().unwrap().len() == 1).await;
    app.knock("2", "$b", "@dave:elsewhere.example", Some("second try")).await;
    eventually("review #2 replaces #1", || {
        app.store.reviews().open().unwrap().iter().map(|r| r.number).collect::<Vec<_>>() == vec![2]
    })
    .await;
    assert_eq!(app.store.reviews().get(1).unwrap().unwrap().closed, Some(Resolution::KnockedAgain));
    let first = app.store.audit().all().unwrap().into_iter().find(|e| e.review == Some(1)).unwrap();
    assert_eq!(first.outcome, Outcome::Resolved(Resolution::KnockedAgain));
}

#[tokio::test]
async fn member_of_matches_rooms_named_by_alias() {
    member_of_accepts_members_of("#general:test.local").await;
}

#[tokio::test]
async fn member_of_matches_rooms_named_by_id() {
    member_of_accepts_members_of("!general:test.local").await;
}

/// A policy accepts the members of `general` (named by alias or ID) and denies the others.
async fn member_of_accepts_members_of(general: &str) {
    let hs = FakeHomeserver::start().await;
    hs.set_alias("#general:test.local", "!general:test.local");
    hs.set_members("!general:test.local", &[BOT, "@friend:elsewhere.example"]);
    let policy = format!(
        "rooms: [\"!r:test.local\"]\ndefault: deny\nrules:\n  - {{ name: friends, when: {{ member_of: \"{general}\" }}, action: accept }}\n"
    );
    let app = app_with(&policy, AppOptions::default(), hs).await;
    // The bot is in #general and learns its members.
    let joined = member_event("$j", "!general:test.local", BOT, BOT, "join");
    assert_eq!(app.put_txn("0", &json!({"events": [joined]})).await.status(), 200);
    eventually("members known", || app.store.members().of("!general:test.local").unwrap().len() == 2).await;
    app.knock("1", "$a", "@friend:elsewhere.example", Some("hi")).await;
    app.knock("2", "$b", "@stranger:elsewhere.example", Some("hi")).await;
    eventually("settled", || app.store.audit().len() == 2 && settled(&app)).await;
    assert_eq!(app.posts("invite").len(), 1);
    assert_eq!(app.posts("invite")[0].body["user_id"], "@friend:elsewhere.example");
    assert_eq!(app.posts("kick")[0].body["user_id"], "@stranger:elsewhere.example");
}

#[tokio::test]
async fn a_join_rule_change_that_stops_knocking_is_warned_about_once() {
    let hs = FakeHomeserver::start().await;
    hs.set_state(ROOM, "m.room.create", "", "@owner:test.local", json!({"room_version": "10"}));
    hs.set_state(ROOM, "m.room.join_rules", "", "@owner:test.local", json!({"join_rule": "knock"}));
    hs.set_state(ROOM, "m.room.power_levels", "", "@owner:test.local", json!({"users": {BOT: 100}}));
    let app = app_with(POLICY, AppOptions::default(), hs).await;
    assert_eq!(app.put_txn("0", &json!({"events": [member_event("$j", ROOM, BOT, BOT, "join")]})).await.status(), 200);
    eventually("room state known", || {
        app.store.rooms().get(ROOM).unwrap().is_some_and(|r| r.join_rule.as_ref().map(|j| j.as_str()) == Some("knock"))
    })
    .await;
    let warnings =
        |app: &TestApp| app.notices().into_iter().filter(|n| n.contains("Knocking cannot work")).collect::<Vec<_>>();
    assert!(warnings(&app).is_empty(), "a knock room with enough power is fine");

    let rule = |id: &str, rule: &str| json!({"event_id": id, "room_id": ROOM, "sender": "@owner:test.local", "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": rule}});
    assert_eq!(app.put_txn("1", &json!({"events": [rule("$r1", "invite")]})).await.status(), 200);
    eventually("warned", || warnings(&app).len() == 1).await;
    assert!(warnings(&app)[0].contains("has join rule `invite`: nobody can knock there"), "{:?}", warnings(&app));
    // The same state again is not repeated; back to knock clears it.
    assert_eq!(app.put_txn("2", &json!({"events": [rule("$r2", "invite"), rule("$r3", "knock")]})).await.status(), 200);
    eventually("handled", || {
        app.store
            .rooms()
            .get(ROOM)
            .unwrap()
            .is_some_and(|r| r.join_rule.as_ref().map(|j| j.as_str()) == Some("knock") && r.warned.is_empty())
    })
    .await;
    assert_eq!(warnings(&app).len(), 1);
}

/// The worker cannot go on (held up, as by a slow disk) and the journal holds its most: the next transaction's 200 waits until the worker has
/// made room, so the backlog never grows past `BACKLOG_EVENTS`.
// Threads to spare: the periodic jobs wait for the held lock on the runtime's threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_homeserver_waits_while_the_worker_is_a_backlog_behind() {
    let hs = FakeHomeserver::start().await;
    let policy = "rooms: [\"!r:test.local\"]\nrules:\n  - { name: all, action: accept }\n";
    let app = app_with(policy, AppOptions::default(), hs.clone()).await;
    // The worker is held up (as by a slow disk): something else holds the store's write lock.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let store = app.store.clone();
    let holder = tokio::task::spawn_blocking(move || {
        store.serialized(|| {
            locked.send(()).unwrap();
            held.recv().unwrap();
        })
    });
    is_locked.await.unwrap();
    let joined = member_event("$j", ROOM, BOT, BOT, "join");
    let knock = knock_event("$k", ROOM, "@a:test.local", Some("hi"));
    assert_eq!(app.put_txn("0", &json!({"events": [joined, knock]})).await.status(), 200);
    // Members joining the managed room: kept, and cheap to handle.
    let per_txn = 100;
    let txns = knockwarden::pipeline::intake::BACKLOG_EVENTS / per_txn;
    for t in 0..txns {
        let events: Vec<Value> = (0..per_txn)
            .map(|i| {
                let user = format!("@m{t}x{i}:test.local");
                member_event(&format!("$m{t}x{i}"), ROOM, &user, &user, "join")
            })
            .collect();
        assert_eq!(app.put_txn(&format!("{}", t + 1), &json!({"events": events})).await.status(), 200);
    }
    assert!(app.intake.pending_events() >= knockwarden::pipeline::intake::BACKLOG_EVENTS);
    let last = json!({"events": [member_event("$last", ROOM, "@z:test.local", "@z:test.local", "join")]});
    let (address, token) = (app.address.clone(), app.hs_token.clone());
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .put(format!("{address}/_matrix/app/v1/transactions/last"))
            .bearer_auth(token)
            .json(&last)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered while the journal was full");
    assert!(app.intake.pending_events() < knockwarden::pipeline::intake::BACKLOG_EVENTS + per_txn);
    // The worker goes on: it drains, the 200 comes.
    release.send(()).unwrap();
    holder.await.unwrap();
    assert_eq!(waiting.await.unwrap(), 200);
    eventually("everything handled", || app.store.journal().backlog() == 0).await;
    assert!(app.store.journal().was_seen("$last").unwrap());
}

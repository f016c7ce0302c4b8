//! The moderation pipeline: knocks decided by policy and carried out on the homeserver,
//! exactly once, through rate limits, errors, outages and restarts.

use knockwarden::storage::{Action, Origin, Outcome, Resolution, Store};
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, BOT, CONTROL_ROOM, FakeHomeserver, MODERATOR, TestApp, eventually, knock_event, member_event,
    spawn_app_in,
};

const ROOM: &str = "!r:test.local";

const POLICY: &str = r#"rooms: ["!r:test.local"]
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

async fn app_with(policy: &str, opts: AppOptions, hs: FakeHomeserver) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    spawn_app_in(dir, hs, opts).await
}

async fn app() -> TestApp {
    app_with(POLICY, AppOptions::default(), FakeHomeserver::start().await).await
}

impl TestApp {
    /// `user` knocks (the fake homeserver now says they are knocking) and the knock is pushed.
    pub async fn knock(&self, txn: &str, event_id: &str, user: &str, reason: Option<&str>) {
        self.homeserver.set_knocking(ROOM, user, event_id);
        let body = json!({"events": [knock_event(event_id, ROOM, user, reason)]});
        assert_eq!(self.put_txn(txn, &body).await.status(), 200);
    }

    fn posts(&self, verb: &str) -> Vec<crate::helpers::fake_homeserver::Recorded> {
        self.homeserver.requests_to("POST", &format!("/rooms/{ROOM}/{verb}"))
    }

    fn notices(&self) -> Vec<String> {
        self.homeserver
            .requests_to("PUT", &format!("/rooms/{CONTROL_ROOM}/send/m.room.message/"))
            .into_iter()
            .filter_map(|r| r.body["body"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Waits until an invite, kick or ban has failed at least once (the homeserver being down).
async fn act_failed_once(app: &TestApp) {
    eventually("an action failed once", || {
        app.store.outbox_all().unwrap().iter().any(|(_, e)| matches!(e.action, Action::Act { .. }) && e.attempts >= 1)
    })
    .await;
}

/// Start-up is over: the control room is joined and nothing is queued.
fn started(app: &TestApp) -> bool {
    app.store.get_meta("control_room_id").unwrap().is_some() && app.store.outbox_len() == 0
}

fn settled(app: &TestApp) -> bool {
    app.store.inbox_len() == 0
        && app.store.audit_all().unwrap().iter().all(|e| e.outcome != Outcome::Pending || e.review.is_some())
        && app.store.outbox_len() == 0
}

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
    let audit = app.store.audit_all().unwrap();
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
    assert_eq!(app.store.open_reviews().unwrap().len(), 1);
}

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
    assert_eq!(app.store.audit_all().unwrap()[0].outcome, Outcome::Done);
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
    eventually("actions are failing", || app.store.outbox_all().unwrap().first().is_some_and(|(_, e)| e.attempts >= 1))
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
    eventually("power levels known", || app.store.room(ROOM).unwrap().is_some_and(|r| r.power_levels.is_some())).await;
    app.knock("1", "$b", "@bob:elsewhere.example", None).await;
    eventually("failure reported", || {
        app.notices().iter().any(|n| n.contains("knockwarden needs power level 50 to kick in !r:test.local (it has 0)"))
    })
    .await;
    eventually("settled", || settled(&app)).await;
    assert_eq!(app.posts("kick").len(), 1, "not retried");
    let e = app.store.audit_all().unwrap().into_iter().find(|e| e.user_id == "@bob:elsewhere.example").unwrap();
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
    eventually("the failed list is empty", || app.store.failed().unwrap().is_empty()).await;
    eventually("said", || {
        app.notices().iter().any(|n| n.contains("can now kick in !r:test.local: 1 failed action(s) retried"))
    })
    .await;
    assert!(app.notices().iter().any(|n| n.contains("works as configured now")), "{:#?}", app.notices());
    eventually("settled", || settled(&app)).await;
    let e = app.store.audit_all().unwrap().into_iter().find(|e| e.user_id == "@bob:elsewhere.example").unwrap();
    assert!(!matches!(e.outcome, Outcome::Failed(_)), "{:?}", e.outcome);
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
    eventually("handled", || app.store.inbox_len() == 0).await;
    assert!(app.store.knock(ROOM, "@bob:test.local").unwrap().is_none(), "the invite closed the knock");
    let audit = app.store.audit_all().unwrap();
    assert_eq!(audit[0].outcome, Outcome::Resolved(Resolution::InvitedBy { by: MODERATOR.try_into().unwrap() }));
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
    eventually("the changes are handled", || app.store.inbox_len() == 0).await;
    let _back = app.homeserver.come_back().await;
    eventually("settled", || settled(&app)).await;
    assert!(app.posts("invite").is_empty(), "nobody was invited by knockwarden");
    let audit = app.store.audit_all().unwrap();
    let outcome = |u: &str| audit.iter().find(|e| e.user_id == u).unwrap().outcome.clone();
    assert_eq!(outcome("@alice:test.local"), Outcome::Resolved(Resolution::Withdrawn));
    assert_eq!(
        outcome("@bob:test.local"),
        Outcome::Resolved(Resolution::InvitedBy { by: MODERATOR.try_into().unwrap() })
    );
    assert!(app.store.knock(ROOM, "@alice:test.local").unwrap().is_none());
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
    let e = &app.store.audit_all().unwrap()[0];
    assert_eq!(e.outcome, Outcome::Cancelled(Resolution::NotKnocking { membership: Some("leave".into()) }));
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
    assert!(app.store.audit_all().unwrap().iter().all(|e| e.dry_run && e.outcome == Outcome::DryRun));

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
    eventually("knock closed", || app.store.knock(ROOM, "@alice:test.local").unwrap().is_none()).await;
    assert_eq!(app.posts("invite").len(), 1);
    assert_eq!(app.store.audit_all().unwrap()[0].outcome, Outcome::Done);
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
    while !(store.audit_len() == n && settled(&app)) {
        assert!(started.elapsed() < deadline, "not done: {} decided, {} queued", store.audit_len(), store.outbox_len());
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
    assert!(store.audit_all().unwrap().iter().all(|e| e.outcome == Outcome::Done));
}

#[tokio::test]
async fn a_room_no_policy_governs_is_left_alone_and_aliases_are_resolved() {
    let hs = FakeHomeserver::start().await;
    hs.set_alias("#support:test.local", "!support:test.local");
    let policy = "rooms: [\"#support:test.local\"]\nrules:\n  - { name: all, action: accept }\n";
    let app = app_with(policy, AppOptions::default(), hs).await;
    eventually("alias resolved", || app.store.alias("#support:test.local").unwrap().is_some()).await;
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
    eventually("both knocks handled", || app.store.inbox_len() == 0).await;
    assert_eq!(app.store.audit_len(), 1, "only the governed room's knock is decided");
    assert!(app.store.knock("!other:test.local", "@b:test.local").unwrap().is_some(), "the other is only tracked");
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
    eventually("review #1", || app.store.open_reviews().unwrap().len() == 1).await;
    app.knock("2", "$b", "@dave:elsewhere.example", Some("second try")).await;
    eventually("review #2 replaces #1", || {
        app.store.open_reviews().unwrap().iter().map(|r| r.number).collect::<Vec<_>>() == vec![2]
    })
    .await;
    assert_eq!(app.store.review(1).unwrap().unwrap().closed, Some(Resolution::KnockedAgain));
    let first = app.store.audit_all().unwrap().into_iter().find(|e| e.review == Some(1)).unwrap();
    assert_eq!(first.outcome, Outcome::Resolved(Resolution::KnockedAgain));
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
    assert_eq!(app.store.audit_all().unwrap()[0].outcome, Outcome::Done);
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
    assert!(matches!(app.store.audit_all().unwrap()[0].outcome, Outcome::Failed(_)));
    assert_eq!(app.store.failed().unwrap().len(), 1, "kept in the failed list");
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
    eventually("members known", || app.store.members_of("!general:test.local").unwrap().len() == 2).await;
    app.knock("1", "$a", "@friend:elsewhere.example", Some("hi")).await;
    app.knock("2", "$b", "@stranger:elsewhere.example", Some("hi")).await;
    eventually("settled", || app.store.audit_len() == 2 && settled(&app)).await;
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
        app.store.room(ROOM).unwrap().is_some_and(|r| r.join_rule.as_deref() == Some("knock"))
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
        app.store.room(ROOM).unwrap().is_some_and(|r| r.join_rule.as_deref() == Some("knock") && r.warned.is_empty())
    })
    .await;
    assert_eq!(warnings(&app).len(), 1);
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
        store.journal_append(&origin, Some(&[1; 32]), vec![knock], vec!["@alice:test.local".into()], vec![]).unwrap();
        store.flush_blocking().unwrap();
    }
    // The run before invited alice; its record of that was lost.
    let hs = FakeHomeserver::start().await;
    hs.set_membership(ROOM, "@alice:test.local", "invite");
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("settled", || settled(&app) && app.store.audit_len() == 1).await;
    assert!(app.posts("invite").is_empty(), "not invited twice");
    assert_eq!(app.store.audit_all().unwrap()[0].outcome, Outcome::Done);
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
    let txns = knockwarden::storage::BACKLOG_EVENTS / per_txn;
    for t in 0..txns {
        let events: Vec<Value> = (0..per_txn)
            .map(|i| {
                let user = format!("@m{t}x{i}:test.local");
                member_event(&format!("$m{t}x{i}"), ROOM, &user, &user, "join")
            })
            .collect();
        assert_eq!(app.put_txn(&format!("{}", t + 1), &json!({"events": events})).await.status(), 200);
    }
    assert!(app.store.journal_pending_events() >= knockwarden::storage::BACKLOG_EVENTS);
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
    assert!(app.store.journal_pending_events() < knockwarden::storage::BACKLOG_EVENTS + per_txn);
    // The worker goes on: it drains, the 200 comes.
    release.send(()).unwrap();
    holder.await.unwrap();
    assert_eq!(waiting.await.unwrap(), 200);
    eventually("everything handled", || app.store.inbox_len() == 0).await;
    assert!(app.store.was_seen("$last").unwrap());
}

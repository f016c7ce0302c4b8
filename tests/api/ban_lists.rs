//! Ban lists: a policy room with user and server rules, followed by knockwarden and used to
//! decide knocks (the fake homeserver serves the list's state; changes arrive pushed).

use knockwarden::storage::{Outcome, Resolution, Store};
use serde_json::{Value, json};

use crate::{
    control::homeserver,
    helpers::{AppOptions, BOT, FakeHomeserver, TestApp, eventually, member_event, spawn_app_in},
};

const LIST: &str = "!bans:test.local";
const LIST_ALIAS: &str = "#bans:test.local";

const POLICY: &str = r##"rooms: ["!r:test.local"]
default: review
rules:
  - name: community-bans
    when:
      ban_list: ["#bans:test.local", "#nope:test.local"]
    action: ban
    reason: "Listed on {list}: {list_reason}"
"##;

fn rule_event(id: &str, kind: &str, state_key: &str, content: Value) -> Value {
    json!({"event_id": id, "room_id": LIST, "sender": "@listmod:test.local", "type": kind,
           "state_key": state_key, "content": content, "origin_server_ts": 1, "unsigned": {}})
}

/// A list with a user rule, a server rule, and one rule that would ban everyone.
fn list_homeserver(hs: &FakeHomeserver) {
    hs.set_alias(LIST_ALIAS, LIST);
    hs.put_state_event(rule_event(
        "$rule-mallory",
        "m.policy.rule.user",
        "rule:mallory",
        json!({"entity": "@mallory:elsewhere.example", "recommendation": "m.ban", "reason": "spam"}),
    ));
    hs.put_state_event(rule_event(
        "$rule-evil",
        "m.policy.rule.server",
        "rule:evil",
        json!({"entity": "*.evil.example", "recommendation": "m.ban", "reason": "abuse"}),
    ));
    hs.put_state_event(rule_event(
        "$rule-all",
        "m.policy.rule.user",
        "rule:all",
        json!({"entity": "@*:*", "recommendation": "m.ban", "reason": "oops"}),
    ));
    hs.put_state_event(
        json!({"event_id": "$create", "room_id": LIST, "sender": "@listmod:test.local", "type": "m.room.create", "state_key": "", "content": {}}),
    );
}

async fn start(dir: tempfile::TempDir, hs: FakeHomeserver) -> TestApp {
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app
}

async fn app() -> TestApp {
    let hs = homeserver().await;
    list_homeserver(&hs);
    let app = start(tempfile::tempdir().unwrap(), hs).await;
    eventually("the list is read", || app.store.lists().get(LIST).unwrap().is_some_and(|r| r.read_ms.is_some())).await;
    app
}

fn notices(app: &TestApp) -> Vec<String> {
    app.plain_notices()
}

fn bans(app: &TestApp) -> Vec<(String, String)> {
    app.posted("ban")
        .iter()
        .map(|r| (r.body["user_id"].as_str().unwrap().to_owned(), r.body["reason"].as_str().unwrap().to_owned()))
        .collect()
}

fn notices_with(app: &TestApp, text: &str) -> usize {
    notices(app).iter().filter(|n| n.contains(text)).count()
}

#[tokio::test]
async fn listed_users_and_users_of_listed_servers_are_banned_and_others_are_not() {
    let app = app().await;
    // Joined by alias, then read whole.
    let joins: Vec<String> = app.homeserver.requests_to("POST", "/join/").into_iter().map(|r| r.path).collect();
    assert!(joins.iter().any(|p| p.ends_with("/join/%23bans:test.local")), "{joins:?}");
    assert!(!app.homeserver.requests_to("GET", &format!("/rooms/{LIST}/state")).is_empty());
    eventually("the list is announced", || notices_with(&app, "Following the ban list #bans:test.local") == 1).await;
    let following = notices(&app).into_iter().find(|n| n.contains("Following")).unwrap();
    assert!(following.contains("1 user rules, 1 server rules"), "{following}");
    eventually("the over-broad rule is reported", || notices_with(&app, "would match everyone") == 1).await;
    eventually("the unknown list is reported", || notices_with(&app, "the alias #nope:test.local does not exist") == 1)
        .await;

    app.knock_on("1", "$k1", "@mallory:elsewhere.example", Some("hi")).await;
    app.knock_on("2", "$k2", "@eve:chat.evil.example", None).await;
    app.knock_on("3", "$k3", "@alice:good.example", Some("hello")).await;
    eventually("two bans", || bans(&app).len() == 2).await;
    let mut b = bans(&app);
    b.sort();
    assert_eq!(
        b,
        vec![
            ("@eve:chat.evil.example".to_owned(), "Listed on #bans:test.local: abuse".to_owned()),
            ("@mallory:elsewhere.example".to_owned(), "Listed on #bans:test.local: spam".to_owned()),
        ]
    );
    // The unlisted user is not caught by the rule that would ban everyone: waits for review.
    app.review_notice(1).await;
    let item = app.store.reviews().get(1).unwrap().unwrap();
    assert_eq!(item.user_id.as_str(), "@alice:good.example");
    assert_eq!(bans(&app).len(), 2);

    let lists = app.say("4", "$c1", "!knock lists").await;
    assert!(lists.contains("#bans:test.local (!bans:test.local) · 1 user rules, 1 server rules, 1 ignored"), "{lists}");
    assert!(lists.contains("used by p"), "{lists}");
    assert!(lists.starts_with("2 ban list(s)"), "{lists}");
    assert!(lists.contains("last change just now · read just now"), "{lists}");
    assert!(lists.contains("#nope:test.local · no such room"), "{lists}");
    // The bot's join of the list room (pushed, as Synapse does) does not make it a managed room.
    app.push("6", vec![member_event("$botjoin", LIST, BOT, BOT, "join")]).await;
    let rooms = app.say("7", "$c3", "!knock rooms").await;
    assert!(!rooms.contains("bans"), "{rooms}");
    let fetched: Vec<String> =
        app.homeserver.requests_to("GET", &format!("/rooms/{LIST}/")).into_iter().map(|r| r.path).collect();
    assert!(fetched.iter().all(|p| p.ends_with("/state")), "only the list is read: {fetched:?}");
    let why = app.say("5", "$c2", "!knock explain @mallory:elsewhere.example !r:test.local").await;
    assert!(
        why.contains(
            r#"ban list: #bans:test.local, user rule "@mallory:elsewhere.example" (m.policy.rule.user), reason "spam""#
        ),
        "{why}"
    );
}

#[tokio::test]
async fn a_rule_added_while_a_knock_waits_for_review_decides_it_again() {
    let app = app().await;
    app.knock_on("1", "$k1", "@bob:later.example", Some("hi")).await;
    let notice = app.review_notice(1).await;
    let first = app.store.reviews().get(1).unwrap().unwrap().audit_id;
    app.push(
        "2",
        vec![rule_event(
            "$rule-bob",
            "m.policy.rule.user",
            "rule:bob",
            json!({"entity": "@bob:later.example", "recommendation": "m.ban", "reason": "raid"}),
        )],
    )
    .await;
    eventually("bob is banned", || {
        bans(&app) == [("@bob:later.example".into(), "Listed on #bans:test.local: raid".into())]
    })
    .await;
    let item = app.store.reviews().get(1).unwrap().unwrap();
    assert!(matches!(item.closed, Some(Resolution::DecidedAgain { .. })), "{:?}", item.closed);
    let old = app.store.audit().get(first).unwrap().unwrap();
    assert!(matches!(old.outcome, Outcome::Resolved(Resolution::DecidedAgain { .. })), "{:?}", old.outcome);
    let new = app.store.audit().last(1).unwrap().remove(0);
    assert!(
        new.explanation.starts_with("decided again (#bans:test.local gained the rule @bob:later.example)"),
        "{}",
        new.explanation
    );
    eventually("the new entry is done", || app.store.audit().get(new.id).unwrap().unwrap().outcome == Outcome::Done)
        .await;
    let reply = app.reply_to(&notice).await;
    assert!(reply.contains("decided again (#bans:test.local gained the rule @bob:later.example): ban"), "{reply}");
    // A rule that bans nobody waiting decides nothing again.
    app.knock_on("3", "$k3", "@carol:fine.example", Some("hi")).await;
    app.review_notice(2).await;
    app.push(
        "4",
        vec![rule_event(
            "$rule-dan",
            "m.policy.rule.user",
            "rule:dan",
            json!({"entity": "@dan:*", "recommendation": "m.ban"}),
        )],
    )
    .await;
    eventually("the rule is kept", || app.store.lists().rules(LIST).unwrap().len() == 5).await;
    assert!(app.store.reviews().get(2).unwrap().unwrap().closed.is_none());
}

#[tokio::test]
async fn a_removed_or_redacted_rule_no_longer_bans() {
    let app = app().await;
    app.push(
        "1",
        vec![
            json!({"event_id": "$redact", "room_id": LIST, "sender": "@listmod:test.local", "type": "m.room.redaction",
                   "redacts": "$rule-mallory", "content": {"redacts": "$rule-mallory"}, "origin_server_ts": 1}),
            rule_event("$unrule-evil", "m.policy.rule.server", "rule:evil", json!({})),
        ],
    )
    .await;
    eventually("both rules are gone", || app.store.lists().rules(LIST).unwrap().len() == 1).await;
    app.knock_on("2", "$k1", "@mallory:elsewhere.example", Some("hi")).await;
    app.knock_on("3", "$k2", "@eve:chat.evil.example", Some("hi")).await;
    app.review_notice(2).await;
    assert!(bans(&app).is_empty());
    let lists = app.say("4", "$c1", "!knock lists").await;
    assert!(lists.contains("0 user rules, 0 server rules, 1 ignored"), "{lists}");
}

#[tokio::test]
async fn after_a_restart_with_the_list_unreachable_the_stored_copy_decides() {
    let app = app().await;
    eventually("the over-broad rule is reported", || notices_with(&app, "would match everyone") == 1).await;
    let (dir, hs) = app.stop().await;
    // A restart that reads the list again tells nothing new.
    let app = start(dir, hs).await;
    let reads = || app.homeserver.requests_to("GET", &format!("/rooms/{LIST}/state")).len();
    eventually("read again", || reads() == 2).await;
    eventually("read", || app.store.lists().get(LIST).unwrap().is_some_and(|r| r.error.is_none())).await;
    app.knock_on("1", "$k0", "@someone:good.example", None).await;
    app.review_notice(1).await;
    assert_eq!(notices_with(&app, "would match everyone"), 1, "told once");
    assert_eq!(notices_with(&app, "Following the ban list"), 1, "told once");
    let (dir, hs) = app.stop().await;
    // Now the list cannot be read.
    hs.script(&format!("/rooms/{LIST}/state"), (0..1000).map(|_| (502, json!({"errcode": "M_UNKNOWN"}), None)));
    let app = start(dir, hs).await;
    eventually("reported", || notices_with(&app, "Cannot read the ban list #bans:test.local now") == 1).await;
    let notice = notices(&app).into_iter().find(|n| n.contains("Cannot read")).unwrap();
    assert!(notice.contains("its stored copy (1 user rules, 1 server rules) is used meanwhile"), "{notice}");
    app.knock_on("2", "$k1", "@mallory:elsewhere.example", Some("hi")).await;
    eventually("banned by the stored copy", || {
        bans(&app) == [("@mallory:elsewhere.example".into(), "Listed on #bans:test.local: spam".into())]
    })
    .await;
    let lists = app.say("3", "$c1", "!knock lists").await;
    assert!(lists.contains("last read failed"), "{lists}");
    assert_eq!(notices_with(&app, "Cannot read the ban list"), 1, "reported once while it is retried");
}

#[tokio::test]
async fn policy_explain_on_the_command_line_reads_the_stored_lists() {
    let app = app().await;
    let (dir, _hs) = app.stop().await;
    let explain = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockwarden"))
            .env_remove("KNOCKWARDEN_CONFIG")
            .args(["policy", "explain", "--room", "!r:test.local", "--user", "@mallory:elsewhere.example", "-c"])
            .arg(dir.path().join("config.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = explain();
    assert!(stdout.contains("decision: ban"), "{stdout}");
    assert!(stdout.contains("reason:   Listed on #bans:test.local: spam"), "{stdout}");
    assert!(stdout.contains("lists:    the copies stored by the service"), "{stdout}");
    assert!(
        stdout.contains(
            r#"ban list: #bans:test.local, user rule "@mallory:elsewhere.example" (m.policy.rule.user), reason "spam""#
        ),
        "{stdout}"
    );
    // While the service holds the database, it says so (and `ban_list` does not hold).
    let store = Store::open(&dir.path().join("db")).unwrap();
    let stdout = explain();
    assert!(stdout.contains("the database is in use"), "{stdout}");
    assert!(stdout.contains("decision: review"), "{stdout}");
    drop(store);
}

#[tokio::test]
async fn a_list_named_by_room_id_is_joined_via_its_server() {
    let hs = homeserver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let policy = POLICY.replace(r##"["#bans:test.local", "#nope:test.local"]"##, r#""!remote-list:remote.example""#);
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    eventually("the remote list is read", || {
        app.store.lists().get("!remote-list:remote.example").unwrap().is_some_and(|r| r.read_ms.is_some())
    })
    .await;
    let join =
        app.homeserver.requests_to("POST", "/join/").into_iter().find(|r| r.path.contains("remote-list")).unwrap();
    assert!(join.path.ends_with("/join/!remote-list:remote.example"), "{}", join.path);
    assert!(join.query.contains("via=remote.example"), "over federation, via the room's server: {}", join.query);
}

/// Listed knockers are banned; everyone else is let in.
const OPEN_POLICY: &str = r##"rooms: ["!r:test.local"]
default: accept
rules:
  - name: community-bans
    when: { ban_list: ["#bans:test.local"] }
    action: ban
"##;

/// `n` pushed user ban rules (state keys `rule:{tag}{i}`), with the entities `entity(i)`.
fn user_bans(tag: &str, n: usize, entity: impl Fn(usize) -> String) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let content = json!({"entity": entity(i), "recommendation": "m.ban"});
            rule_event(&format!("$rule-{tag}{i}"), "m.policy.rule.user", &format!("rule:{tag}{i}"), content)
        })
        .collect()
}

/// A list banning every user of evil.example.
async fn open_app(extra_config: &str) -> TestApp {
    let hs = homeserver().await;
    hs.set_alias(LIST_ALIAS, LIST);
    hs.put_state_event(rule_event(
        "$rule-evil",
        "m.policy.rule.user",
        "rule:evil",
        json!({"entity": "*:evil.example", "recommendation": "m.ban", "reason": "abuse"}),
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), OPEN_POLICY).unwrap();
    let opts = AppOptions { extra_config: extra_config.to_owned(), ..Default::default() };
    let app = spawn_app_in(dir, hs, opts).await;
    eventually("the list is read", || app.store.lists().get(LIST).unwrap().is_some_and(|r| r.read_ms.is_some())).await;
    app
}

#[tokio::test]
async fn a_rule_with_a_huge_glob_is_ignored_and_the_list_keeps_banning() {
    let app = open_app("").await;
    // The list gains rules whose globs no user ID could match (a digit and 60,000 `?`): before,
    // the glob set failed to build, was replaced by an empty one, and the list banned nobody.
    app.push("1", user_bans("huge", 5, |i| format!("{i}{}", "?".repeat(60_000)))).await;
    app.knock_on("2", "$k", "@spammer:evil.example", Some("hi")).await;
    eventually("the listed knocker is banned", || bans(&app).len() == 1).await;
    assert!(app.posted("invite").is_empty(), "a listed knocker was invited");
    let rules = app.store.lists().rules(LIST).unwrap();
    assert_eq!(rules.iter().filter(|(k, r)| k.state_key.starts_with("rule:huge") && r.ignored.is_some()).count(), 5);
    // Said in one notice per pushed batch, with the rules shown cut short.
    eventually("the ignored rules are reported", || notices_with(&app, "60001 bytes long") == 1).await;
    let notice = notices(&app).into_iter().find(|n| n.contains("60001 bytes long")).unwrap();
    assert!(notice.len() < 5_000, "the notice quotes the rules whole: {} bytes", notice.len());
}

#[tokio::test]
async fn a_list_past_max_rules_is_unavailable_and_holds_knocks_for_review() {
    let app = open_app("ban_lists:\n  max_rules: 2\n").await;
    app.knock_on("1", "$k1", "@first:good.example", Some("hi")).await;
    eventually("an unlisted knocker is let in while the list is usable", || app.posted("invite").len() == 1).await;
    // The list grows past the cap.
    app.push("2", user_bans("", 2, |i| format!("@spam{i}:bad.example"))).await;
    eventually("the list is said to be unavailable, once", || notices_with(&app, "is unavailable") == 1).await;
    app.knock_on("3", "$k2", "@second:good.example", Some("hi")).await;
    app.review_notice(1).await;
    let item = app.store.reviews().get(1).unwrap().unwrap();
    assert_eq!(item.user_id.as_str(), "@second:good.example");
    assert_eq!(app.posted("invite").len(), 1, "not accepted on the word of an unavailable list");
    let audit = app.store.audit().all().unwrap();
    assert!(
        audit[1].explanation.contains("the ban list #bans:test.local is unavailable"),
        "{:?}",
        audit[1].explanation
    );
    let lists = app.say("4", "$c", "!knock lists").await;
    assert!(lists.contains("unavailable: it holds 3 rules, more than ban_lists.max_rules (2)"), "{lists}");
    // A rule removed: usable again, and said so.
    app.push("5", vec![rule_event("$gone", "m.policy.rule.user", "rule:0", json!({}))]).await;
    eventually("the list is said to be available again", || notices_with(&app, "is available again") == 1).await;
}

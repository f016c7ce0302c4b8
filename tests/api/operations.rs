//! Operations: the homeserver is the source of truth about the rooms the bot is in, and
//! `/ready` says when the start-up catch-up is done.

use std::time::Duration;

use knockwarden::storage::BotMembership;
use serde_json::Value;

use crate::{
    control::homeserver,
    helpers::{
        AppOptions, BOT, CONTROL_ROOM, FakeHomeserver, TestApp, eventually, knock_event, member_event, spawn_app_in,
    },
};

const ROOM: &str = "!support:test.local";
const POLICY: &str = "rooms: [\"!support:test.local\"]\nrules:\n  - { name: everyone, action: accept }\n";

fn dir_with_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    dir
}

async fn ready(app: &TestApp) -> (u16, Value) {
    let res = app.client.get(format!("{}/ready", app.address)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn until_ready(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ready(app).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_room_the_bot_is_in_but_the_store_never_saw_is_caught_up_on_start() {
    // A fresh database; the bot is already in the room, where someone knocked meanwhile.
    let hs: FakeHomeserver = homeserver().await;
    hs.set_joined_rooms(&[CONTROL_ROOM, ROOM]);
    hs.set_knocks(ROOM, vec![knock_event("$early", ROOM, "@early:x.example", Some("hi"))]);
    hs.set_knocking(ROOM, "@early:x.example", "$early");
    let app = spawn_app_in(dir_with_policy(), hs, AppOptions::default()).await;
    until_ready(&app).await;
    assert_eq!(app.store.rooms().bot_membership(ROOM).unwrap(), Some(BotMembership::Joined));
    eventually("the early knock is invited", || {
        app.homeserver.membership(ROOM, "@early:x.example").as_deref() == Some("invite")
    })
    .await;
    let r = app.say("1", "$c1", "!knock rooms").await;
    assert!(r.starts_with("1 managed room(s)"), "{r}");
    assert!(r.contains(ROOM), "{r}");
}

#[tokio::test]
async fn a_room_the_homeserver_says_the_bot_left_is_forgotten_on_start() {
    let hs: FakeHomeserver = homeserver().await;
    let app = spawn_app_in(dir_with_policy(), hs, AppOptions::default()).await;
    until_ready(&app).await;
    app.push("j", vec![member_event("$j", ROOM, BOT, BOT, "join")]).await;
    eventually("joined", || app.store.rooms().bot_membership(ROOM).unwrap() == Some(BotMembership::Joined)).await;
    eventually("caught up once", || !app.homeserver.requests_to("GET", &format!("/rooms/{ROOM}/members")).is_empty())
        .await;
    let (dir, hs) = app.stop().await;
    let catch_ups = hs.requests_to("GET", &format!("/rooms/{ROOM}/members")).len();
    // Removed from the room while knockwarden was not running.
    hs.set_joined_rooms(&[CONTROL_ROOM]);
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    until_ready(&app).await;
    assert_eq!(app.store.rooms().bot_membership(ROOM).unwrap(), Some(BotMembership::Left));
    let r = app.say("1", "$c1", "!knock rooms").await;
    assert_eq!(r, "knockwarden manages no room yet: a moderator invites it to one.");
    assert_eq!(
        app.homeserver.requests_to("GET", &format!("/rooms/{ROOM}/members")).len(),
        catch_ups,
        "no catch-up there"
    );
}

#[tokio::test]
async fn ready_waits_for_the_start_up_catch_up() {
    let hs: FakeHomeserver = homeserver().await;
    hs.set_joined_rooms(&[CONTROL_ROOM, ROOM]);
    hs.delay("/members", Duration::from_millis(800));
    let app = spawn_app_in(dir_with_policy(), hs, AppOptions::default()).await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "starting: catching up with the homeserver");
    until_ready(&app).await;
    assert!(!app.homeserver.requests_to("GET", &format!("/rooms/{ROOM}/members")).is_empty());
    // /health does not wait for it.
    let res = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_homeserver_that_cannot_reach_knockwarden_is_reported_with_what_to_check() {
    let hs: FakeHomeserver = homeserver().await;
    let failed = serde_json::json!({"errcode": "M_CONNECTION_FAILED", "error": "Connection refused"});
    hs.script("/appservice/knockwarden/ping", (0..3).map(|_| (502, failed.clone(), None)));
    let app = spawn_app_in(dir_with_policy(), hs, AppOptions::default()).await;
    eventually("reported in the control room", || {
        app.sent("m.room.message")
            .iter()
            .any(|r| r.body["body"].as_str().is_some_and(|b| b.contains("cannot reach knockwarden")))
    })
    .await;
    let notice: Vec<String> = app
        .sent("m.room.message")
        .iter()
        .filter_map(|r| r.body["body"].as_str().filter(|b| b.contains("ping")).map(str::to_owned))
        .collect();
    assert_eq!(notice.len(), 1, "{notice:#?}");
    assert!(notice[0].contains("registration's `url`") && notice[0].contains("appservice.listen"), "{}", notice[0]);
    assert_eq!(app.homeserver.requests_to("POST", "/appservice/knockwarden/ping").len(), 3, "tried three times");
    // Still running: knocks are handled; but not ready, and both say why.
    let health = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["ping"], "failed", "{health}");
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r.as_str().unwrap().contains("ping failed")), "{body}");
    assert_eq!(health["not_ready"].as_array().unwrap(), reasons);
}

#[tokio::test]
async fn a_working_ping_is_only_logged() {
    let hs: FakeHomeserver = homeserver().await;
    hs.script("/appservice/knockwarden/ping", [(200, serde_json::json!({"duration_ms": 4}), None)]);
    let app = spawn_app_in(dir_with_policy(), hs, AppOptions::default()).await;
    until_ready(&app).await;
    eventually("pinged", || app.homeserver.requests_to("POST", "/appservice/knockwarden/ping").len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.sent("m.room.message").iter().any(|r| r.body["body"].as_str().is_some_and(|b| b.contains("ping"))));
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let policy = "rooms: [\"!support:test.local\"]\ndefault: deny\nrules:\n  - { name: friends, when: { reason: { contains: [friend] } }, action: accept }\n";
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    let opts = AppOptions { extra_config: "metrics:\n  listen: \"127.0.0.1:0\"\n".into(), ..Default::default() };
    let app = spawn_app_in(dir, homeserver().await, opts).await;
    until_ready(&app).await;
    for (i, (user, reason)) in
        [("@a:x.example", "a friend"), ("@b:x.example", "friend of b"), ("@c:x.example", "spam")].iter().enumerate()
    {
        app.homeserver.set_knocking(ROOM, user, &format!("$k{i}"));
        let body = serde_json::json!({"events": [knock_event(&format!("$k{i}"), ROOM, user, Some(reason))]});
        assert_eq!(app.put_txn(&format!("t{i}"), &body).await.status(), 200);
    }
    // The homeserver sends the last one again.
    let again = serde_json::json!({"events": [knock_event("$k2", ROOM, "@c:x.example", Some("spam"))]});
    assert_eq!(app.put_txn("t2", &again).await.status(), 200);
    eventually("settled", || app.store.outbox().is_empty() && app.store.audit().len() == 3).await;
    eventually("acted", || app.homeserver.membership(ROOM, "@c:x.example").as_deref() == Some("leave")).await;
    let url = format!("{}/metrics", app.metrics_address.as_deref().expect("metrics are served"));
    let text = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    for line in [
        "knockwarden_transactions_total{outcome=\"taken\"} 3",
        "knockwarden_transactions_total{outcome=\"replayed\"} 1",
        "knockwarden_events_total{outcome=\"stored\"} 3",
        "knockwarden_knocks_decided_total{room=\"!support:test.local\",policy=\"p\",decision=\"accept\"} 2",
        "knockwarden_knocks_decided_total{room=\"!support:test.local\",policy=\"p\",decision=\"deny\"} 1",
        "knockwarden_actions_total{kind=\"invite\",outcome=\"done\"} 2",
        "knockwarden_actions_total{kind=\"kick\",outcome=\"done\"} 1",
        "knockwarden_homeserver_request_duration_seconds_count{endpoint=\"invite\",outcome=\"ok\"} 2",
        "knockwarden_decision_duration_seconds_count 3",
        // Every transaction is checked; the replay goes no further.
        "knockwarden_transaction_phase_duration_seconds_count{phase=\"check\"} 4",
        "knockwarden_transaction_phase_duration_seconds_count{phase=\"filter\"} 3",
        "knockwarden_transaction_phase_duration_seconds_count{phase=\"store\"} 3",
        "knockwarden_transaction_phase_duration_seconds_count{phase=\"flush\"} 3",
        "knockwarden_queue_depth{queue=\"outbox\"} 0",
        "knockwarden_failed_actions 0",
        "knockwarden_review_items_pending 0",
        "knockwarden_policy_version 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    let build = format!("knockwarden_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build), "missing {build} in\n{text}");
    // Not on the appservice port.
    let res = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

fn db_command(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockwarden"))
        .arg("db")
        .args(&args[..1])
        .arg("-c")
        .arg(config)
        .args(&args[1..])
        .env_remove("KNOCKWARDEN_CONFIG")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A directory tree made read-only while it lives: immutable (`chattr +i`, which binds root
/// too) where the tool and the file system allow, else without write permission.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn make(dir: &std::path::Path) -> Self {
        let immutable = std::process::Command::new("chattr")
            .args(["-R", "+i"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            let ok = std::process::Command::new("chmod").args(["-R", "a-w"]).arg(dir).status().unwrap().success();
            assert!(ok, "cannot make {} read-only", dir.display());
        }
        ReadOnly(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("chmod").args(["-R", "u+w"]).arg(&self.0).status();
    }
}

/// Every file under `dir`, with its contents.
fn tree_contents(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree_contents(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn db_stats_backup_and_restore_round_trip() {
    let app = spawn_app_in(dir_with_policy(), homeserver().await, AppOptions::default()).await;
    until_ready(&app).await;
    app.homeserver.set_knocking(ROOM, "@a:x.example", "$k1");
    let body = serde_json::json!({"events": [knock_event("$k1", ROOM, "@a:x.example", Some("hi"))]});
    assert_eq!(app.put_txn("1", &body).await.status(), 200);
    eventually("decided", || app.store.audit().len() == 1 && app.store.outbox().is_empty()).await;
    let config = app.dir.path().join("config.yaml");

    // While knockwarden runs, the database is in use.
    let (ok, text) = db_command(&config, &["stats"]);
    assert!(!ok && text.contains("the database is in use by a running knockwarden: stop it first"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "one line, no Rust dump: {text}");
    assert!(!text.contains("Os {"), "{text}");

    let (dir, hs) = app.stop().await;
    let (ok, text) = db_command(&config, &["stats"]);
    assert!(ok, "{text}");
    assert!(text.lines().any(|l| l.starts_with("audit ") && l.split_whitespace().nth(1) == Some("1")), "{text}");
    assert!(text.contains("on disk: "), "{text}");

    let backup = dir.path().join("backup");
    let (ok, text) = db_command(&config, &["backup", backup.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = db_command(&config, &["backup", backup.to_str().unwrap()]);
    assert!(!ok && text.contains("already exists"), "{text}");
    let (ok, text) = db_command(&config, &["restore", backup.to_str().unwrap()]);
    assert!(!ok && text.contains("a database is there; move it away first"), "{text}");

    // Lose the database; restore it; everything is there. The backup is only read (it may be
    // on read-only media): every file of it is as it was.
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let before = tree_contents(&backup);
    let read_only = ReadOnly::make(&backup);
    let (ok, text) = db_command(&config, &["restore", backup.to_str().unwrap()]);
    assert!(ok, "{text}");
    drop(read_only);
    assert!(before == tree_contents(&backup), "restoring wrote to the backup");
    let app = spawn_app_in(dir, hs, AppOptions::default()).await;
    assert_eq!(app.store.audit().len(), 1);
    assert!(app.store.journal().was_seen("$k1").unwrap());
}

/// `contrib/knockwarden.service` passes `systemd-analyze verify` without a warning (with the
/// test's binary in `ExecStart`, which must exist). Checked where the tool is installed.
#[test]
fn the_systemd_unit_verifies() {
    let Ok(tool) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed here; the unit was not verified");
        return;
    };
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/knockwarden.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/knockwarden serve -c /etc/knockwarden/config.yaml"));
    for key in [
        "Type=exec",
        "Restart=on-failure",
        "User=knockwarden",
        "StateDirectory=knockwarden",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knockwarden.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/knockwarden", env!("CARGO_BIN_EXE_knockwarden"))).unwrap();
    let out = std::process::Command::new(tool).arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}

#[tokio::test]
async fn a_database_from_a_newer_knockwarden_is_refused_at_start() {
    let hs = FakeHomeserver::start().await;
    let dir = dir_with_policy();
    let config = crate::helpers::write_config(dir.path(), &hs.url(), &AppOptions::default());
    {
        let store = knockwarden::storage::Store::open(&dir.path().join("db")).unwrap();
        store.set_meta("format", &(knockwarden::storage::FORMAT + 1).to_string()).unwrap();
        store.flush_blocking().unwrap();
    }
    // The database lock of the handle just closed is released a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knockwarden"))
        .args(["serve", "-c"])
        .arg(&config)
        .env_remove("KNOCKWARDEN_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let expected = format!(
        "the database was written by a newer knockwarden (format {}; this one reads up to {})",
        knockwarden::storage::FORMAT + 1,
        knockwarden::storage::FORMAT
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

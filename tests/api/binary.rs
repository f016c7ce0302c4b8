//! The real `knockwarden` binary: command line, start-up errors, signals, crashes.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;

use crate::helpers::{AppOptions, FakeHomeserver, knock_event, write_config};

fn knockwarden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_knockwarden"));
    cmd.env_remove("KNOCKWARDEN_CONFIG").env("RUST_LOG", "info");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes a config for the binary with a fixed port; returns (config path, port).
fn binary_config(dir: &Path, hs_url: &str) -> (std::path::PathBuf, u16) {
    let path = write_config(dir, hs_url, &AppOptions::default());
    let port = free_port();
    let text = std::fs::read_to_string(&path).unwrap().replace("127.0.0.1:0\"", &format!("127.0.0.1:{port}\""));
    std::fs::write(&path, text).unwrap();
    (path, port)
}

/// The room of [`accepting_binary`]'s policy.
const ACCEPTING_ROOM: &str = "!r:test.local";

/// A config for the binary in `dir` whose policy accepts every knock on [`ACCEPTING_ROOM`];
/// returns (config path, port, registration).
fn accepting_binary(
    dir: &Path,
    hs: &FakeHomeserver,
) -> (std::path::PathBuf, u16, knockwarden::registration::AppRegistration) {
    let (config, port) = binary_config(dir, &hs.url());
    let policy = format!("rooms: [\"{ACCEPTING_ROOM}\"]\nrules:\n  - {{ name: all, action: accept }}\n");
    std::fs::write(dir.join("policies/p.yaml"), policy).unwrap();
    let reg = knockwarden::registration::AppRegistration::load(
        &dir.join("registration.yaml"),
        ruma::server_name!("test.local"),
    )
    .unwrap();
    (config, port, reg)
}

struct Running {
    child: Child,
    port: u16,
}

impl Running {
    fn start(config: &Path, port: u16) -> Self {
        Self::start_logging(config, port, Stdio::null())
    }

    /// Starts with debug logging to `stderr`.
    fn start_logging(config: &Path, port: u16, stderr: impl Into<Stdio>) -> Self {
        let child = knockwarden()
            .args(["serve", "-c"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Running { child, port }
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(res) = client.get(format!("http://127.0.0.1:{}/health", self.port)).send().await
                && res.status() == 200
            {
                return;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "knockwarden exited early");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("knockwarden did not become healthy");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok);
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("knockwarden did not exit");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Clean up exactly the process this test started.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn version_and_help_on_every_subcommand() {
    let out = knockwarden().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("knockwarden "));
    for sub in [&["serve"][..], &["generate-registration"]] {
        let out = knockwarden().args(sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--config"), "{sub:?}");
    }
}

#[test]
fn completions_and_the_manual_page_are_printed() {
    for (shell, mark) in
        [("bash", "_knockwarden()"), ("zsh", "#compdef knockwarden"), ("fish", "complete -c knockwarden")]
    {
        let out = knockwarden().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(text.contains(mark), "{shell}: {text}");
        assert!(text.contains("doctor") && text.contains("generate-registration"), "{shell} completes the subcommands");
    }
    let out = knockwarden().arg("manpage").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(man.contains(".TH knockwarden 1") && man.contains("doctor"), "{man}");
    let out = knockwarden().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success(), "an unknown shell is refused");
}

/// What the Debian package ships beside the binary is what this binary and the checked-in
/// files say: the completions and the manual page as the binary prints them, the unit and the
/// config as `contrib/knockwarden.service` and `config.example.yaml` with only their paths
/// changed. Regenerate the printed ones with
/// `for s in bash zsh fish; do knockwarden completions $s; done` (into `contrib/completions/`:
/// `knockwarden.bash`, `_knockwarden`, `knockwarden.fish`) and `knockwarden manpage >
/// contrib/knockwarden.1`.
#[test]
fn the_packaged_files_are_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let printed = |args: &[&str]| String::from_utf8(knockwarden().args(args).output().unwrap().stdout).unwrap();
    for (args, file) in [
        (&["completions", "bash"][..], "contrib/completions/knockwarden.bash"),
        (&["completions", "zsh"], "contrib/completions/_knockwarden"),
        (&["completions", "fish"], "contrib/completions/knockwarden.fish"),
        (&["manpage"], "contrib/knockwarden.1"),
    ] {
        let checked_in = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(checked_in == printed(args), "{file} is stale: `knockwarden {} > {file}`", args.join(" "));
    }
    // Past their opening comments, the packaged unit and config are the manual ones with their
    // paths changed.
    let body = |file: &str| {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        text.lines().skip_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(
        body("contrib/debian/knockwarden.service"),
        body("contrib/knockwarden.service")
            .replace("ExecStart=/usr/local/bin/knockwarden ", "ExecStart=/usr/bin/knockwarden ")
    );
    // The version is said alike in Cargo.toml, the changelog and the package's changelog.
    let version = env!("CARGO_PKG_VERSION");
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("\n## [{version}] - ")), "CHANGELOG.md has no entry for {version}");
    let debian = std::fs::read_to_string(root.join("contrib/debian/changelog")).unwrap();
    assert!(debian.starts_with(&format!("knockwarden ({version}-1) ")), "contrib/debian/changelog is not at {version}");
    assert_eq!(
        body("contrib/debian/config.yaml"),
        body("config.example.yaml").replace("database: \"data/knockwarden\"", "database: \"/var/lib/knockwarden/db\"")
    );
}

/// The binary runs on jemalloc with the settings of `knockwarden::memory` (jemalloc prints
/// its options at exit when asked to, and warns on a setting it does not know).
#[test]
fn the_binary_runs_on_jemalloc_with_its_settings() {
    let out = knockwarden().arg("--version").env("_RJEM_MALLOC_CONF", "stats_print:true").output().unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.narenas: 1", "opt.dirty_decay_ms: 100", "opt.muzzy_decay_ms: 0", "opt.background_thread: true"]
    {
        assert!(stats.contains(option), "{option} not in jemalloc's statistics:\n{stats}");
    }
    assert!(!stats.contains("<jemalloc>"), "jemalloc warned:\n{stats}");
}

#[test]
fn generate_registration_writes_a_private_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml")).unwrap();
    std::fs::write(&config, example).unwrap();

    let out = knockwarden().arg("generate-registration").arg("-c").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reg_path = dir.path().join("registration.yaml");
    let mode = std::fs::metadata(&reg_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let reg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&reg_path).unwrap()).unwrap();
    assert_eq!(reg["id"].as_str(), Some("knockwarden"));
    assert_eq!(reg["url"].as_str(), Some("http://127.0.0.1:9993"));
    assert_eq!(reg["sender_localpart"].as_str(), Some("knockwarden"));
    assert_eq!(reg["rate_limited"].as_bool(), Some(false));
    for key in ["as_token", "hs_token"] {
        let t = reg[key].as_str().unwrap();
        assert_eq!(t.len(), 64, "{key}");
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    }
    let ns = &reg["namespaces"]["users"][0];
    assert_eq!(ns["exclusive"].as_bool(), Some(true));
    assert_eq!(ns["regex"].as_str(), Some("^@knockwarden:example\\.org$"));

    let again = knockwarden().arg("generate-registration").arg("-c").arg(&config).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let out_path = dir.path().join("other.yaml");
    let out = knockwarden()
        .args(["generate-registration", "--url", "http://kw:1", "--id", "kw", "--localpart", "warden", "-o"])
        .arg(&out_path)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(reg["url"].as_str(), Some("http://kw:1"));
    assert_eq!(reg["id"].as_str(), Some("kw"));
    assert_eq!(reg["namespaces"]["users"][0]["regex"].as_str(), Some("^@warden:example\\.org$"));

    let forced = knockwarden().arg("generate-registration").arg("--force").arg("-c").arg(&config).output().unwrap();
    assert!(forced.status.success());
}

#[test]
fn a_bad_config_stops_start_up_with_one_message_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = binary_config(dir.path(), "http://127.0.0.1:1");
    let good = std::fs::read_to_string(&config).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (good.replace("notify: all", "notify: all\nnotfy: all"), "unknown field `notfy`"),
        (good.replace("server_name: \"test.local\"", "server_name: \"a b\""), "homeserver.server_name"),
        (good.replace("registration: \"registration.yaml\"", "registration: \"missing.yaml\""), "missing.yaml"),
    ];
    for (text, expect) in cases {
        std::fs::write(&config, &text).unwrap();
        let out = knockwarden().args(["serve", "-c"]).arg(&config).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&config.display().to_string()), "{err}");
        assert!(err.contains(expect), "{err}");
        assert!(!dir.path().join("db").exists(), "the database was created for a bad config");
    }
    let out = knockwarden().args(["serve", "-c", "/nonexistent/config.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yaml: cannot read"));
    // $KNOCKWARDEN_CONFIG is the default for -c.
    let out = knockwarden().arg("serve").env("KNOCKWARDEN_CONFIG", "/nonexistent/env.yaml").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/env.yaml"));
}

#[tokio::test]
async fn sigterm_and_sigint_stop_cleanly_with_exit_0() {
    let hs = FakeHomeserver::start().await;
    for sig in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (config, port) = binary_config(dir.path(), &hs.url());
        let mut kw = Running::start(&config, port);
        kw.wait_healthy().await;
        kw.signal(sig);
        let status = kw.wait_exit();
        assert_eq!(status.code(), Some(0), "{sig}");
    }
}

#[tokio::test]
async fn a_knock_acknowledged_before_a_crash_is_handled_after_restart() {
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = binary_config(dir.path(), &hs.url());
    let reg = knockwarden::registration::AppRegistration::load(
        &dir.path().join("registration.yaml"),
        ruma::server_name!("test.local"),
    )
    .unwrap();
    let mut kw = Running::start(&config, port);
    kw.wait_healthy().await;
    let client = reqwest::Client::new();
    let events: Vec<_> =
        (0..50).map(|i| knock_event(&format!("$k{i}"), "!r:test.local", &format!("@u{i}:test.local"), None)).collect();
    let res = client
        .put(format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions/1"))
        .bearer_auth(&reg.hs_token)
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    kw.signal("-KILL");
    kw.wait_exit();

    let mut kw = Running::start(&config, port);
    kw.wait_healthy().await;
    let mut drained = false;
    for _ in 0..400 {
        let health: serde_json::Value =
            client.get(format!("http://127.0.0.1:{port}/health")).send().await.unwrap().json().await.unwrap();
        if health["inbox"] == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(drained, "the restarted knockwarden drains the inbox");
    kw.signal("-TERM");
    assert_eq!(kw.wait_exit().code(), Some(0));
    let store = knockwarden::storage::Store::open(&dir.path().join("db")).unwrap();
    assert_eq!(
        store.knocks().in_room(Some("!r:test.local")).unwrap().len(),
        50,
        "every acknowledged knock survived the crash"
    );
    assert_eq!(store.journal().backlog(), 0);
}

#[tokio::test]
async fn tokens_never_appear_in_the_logs() {
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = binary_config(dir.path(), &hs.url());
    // With an admin token, and a policy that makes the knock below ask the admin API.
    let admin_token = "syt_the_admin_token_never_logged_42";
    std::fs::write(dir.path().join("admin-token"), admin_token).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "  server_name: \"test.local\"\n",
        "  server_name: \"test.local\"\n  admin_token_file: \"admin-token\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let policy = "rooms: [\"!r:test.local\"]\ndefault: review\nrules:\n  - { name: old, when: { account: { older_than: 1d } }, action: accept }\n";
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    hs.enable_admin_api(admin_token);
    hs.set_account("@u:test.local", json!({"creation_ts": 1_000_000_000u64}));
    let reg = knockwarden::registration::AppRegistration::load(
        &dir.path().join("registration.yaml"),
        ruma::server_name!("test.local"),
    )
    .unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut kw = Running::start_logging(&config, port, std::fs::File::create(&log_path).unwrap());
    kw.wait_healthy().await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/_matrix/app/v1");
    let body = json!({"events": [knock_event("$k", "!r:test.local", "@u:test.local", None)]});
    // The token in the query (legacy), in the header, and a wrong one.
    let ok =
        client.put(format!("{base}/transactions/1?access_token={}", reg.hs_token)).json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let ok = client.post(format!("{base}/ping")).bearer_auth(&reg.hs_token).json(&json!({})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let bad = client
        .put(format!("{base}/transactions/2?access_token=wrong-{}", reg.as_token))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    // The bot has used its as_token with the homeserver (the start-up join).
    for _ in 0..200 {
        if !hs.requests_to("POST", "/join/").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!hs.requests_to("POST", "/join/").is_empty());
    kw.signal("-TERM");
    assert_eq!(kw.wait_exit().code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("/_matrix/app/v1/transactions/1"), "requests are logged:\n{log}");
    assert!(!log.contains(&reg.hs_token), "the hs_token is in the logs");
    assert!(!log.contains(&reg.as_token), "the as_token is in the logs");
    assert!(!log.contains(admin_token), "the admin token is in the logs");
    assert_eq!(hs.requests_to("GET", "/_synapse/admin/v2/users/").len(), 1, "the admin API was asked");
    assert!(!log.contains('\x1b'), "no colour codes in a log file:\n{log}");
    assert!(!log.contains("upgrading"), "a new database is not upgraded:\n{log}");
}

/// Killed (SIGKILL) again and again while transactions stream in, sometimes with one in
/// flight, and restarted each time, with what was not acknowledged sent again as Synapse
/// does: every knock is invited, exactly once.
#[tokio::test]
async fn killed_again_and_again_under_load_every_knock_is_invited_exactly_once() {
    const ROOM: &str = ACCEPTING_ROOM;
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port, reg) = accepting_binary(dir.path(), &hs);
    let client = reqwest::Client::new();
    let url = |txn: usize| format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions/{txn}");
    let (txns, per_txn) = (40, 10);
    let body = |t: usize| {
        let events: Vec<_> = (0..per_txn)
            .map(|i| knock_event(&format!("$k{t}x{i}"), ROOM, &format!("@u{t}x{i}:test.local"), Some("hi")))
            .collect();
        json!({"events": events})
    };
    for t in 0..txns {
        for i in 0..per_txn {
            hs.set_knocking(ROOM, &format!("@u{t}x{i}:test.local"), &format!("$k{t}x{i}"));
        }
    }
    let mut kw = Running::start(&config, port);
    kw.wait_healthy().await;
    let (mut t, mut kills, mut resending) = (0, 0, false);
    while t < txns {
        let put = client.put(url(t)).bearer_auth(&reg.hs_token).json(&body(t)).send();
        if t % 8 == 5 && !resending {
            // Killed with this transaction in flight, or just after its 200, or while the
            // worker and the runner are busy with the ones before.
            let sending = tokio::spawn(put);
            tokio::time::sleep(Duration::from_millis((t as u64 * 7) % 5)).await;
            kw.signal("-KILL");
            kw.wait_exit();
            kills += 1;
            let acked = matches!(sending.await.unwrap(), Ok(res) if res.status() == 200);
            kw = Running::start(&config, port);
            kw.wait_healthy().await;
            if !acked {
                // Not acknowledged: sent again, same txnId, same body.
                resending = true;
                continue;
            }
        } else {
            assert_eq!(put.await.unwrap().status(), 200);
        }
        (t, resending) = (t + 1, false);
    }
    assert_eq!(kills, 5);
    let everyone = txns * per_txn;
    let invited_once = || {
        let mut counts = std::collections::HashMap::new();
        for r in hs.requests_to("POST", "/invite") {
            *counts.entry(r.body["user_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
        counts
    };
    for _ in 0..1200 {
        if invited_once().len() == everyone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed once more, then everything sent again (as after Synapse's own restart, whose
    // transaction IDs start again): all of it is known, nothing is done again.
    kw.signal("-KILL");
    kw.wait_exit();
    let mut kw = Running::start(&config, port);
    kw.wait_healthy().await;
    for t in 0..txns {
        let res = client.put(url(t)).bearer_auth(&reg.hs_token).json(&body(t)).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    for _ in 0..1200 {
        let health: serde_json::Value =
            client.get(format!("http://127.0.0.1:{port}/health")).send().await.unwrap().json().await.unwrap();
        if health["inbox"] == 0 && health["outbox"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more for anything done twice to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = invited_once();
    assert_eq!(counts.len(), everyone, "every knock invited");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} invited more than once, e.g. {:?}", twice.len(), &twice[..twice.len().min(3)]);
    kw.signal("-TERM");
    assert_eq!(kw.wait_exit().code(), Some(0));
}

/// Killed (SIGKILL) right after acting on a knock, ten times: the control-room notice about
/// each knock is posted once (one transaction ID), whatever the crash lost.
#[tokio::test]
async fn killed_right_after_acting_no_notice_is_posted_twice() {
    const ROOM: &str = ACCEPTING_ROOM;
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port, reg) = accepting_binary(dir.path(), &hs);
    let client = reqwest::Client::new();
    let mut kw = Running::start(&config, port);
    kw.wait_healthy().await;
    let users: Vec<String> = (0..10).map(|i| format!("@k{i}:test.local")).collect();
    for (i, user) in users.iter().enumerate() {
        hs.set_knocking(ROOM, user, &format!("$k{i}"));
        let body = json!({"events": [knock_event(&format!("$k{i}"), ROOM, user, Some("hi"))]});
        let url = format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions/{i}");
        assert_eq!(client.put(url).bearer_auth(&reg.hs_token).json(&body).send().await.unwrap().status(), 200);
        // Killed the moment the invite reaches the homeserver.
        let invited = || hs.requests_to("POST", "/invite").iter().any(|r| r.body["user_id"] == user.as_str());
        for _ in 0..4_000 {
            if invited() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        kw.signal("-KILL");
        kw.wait_exit();
        kw = Running::start(&config, port);
        kw.wait_healthy().await;
    }
    // Everything settles: each knocker's notice posted, once.
    let notices_about = |user: &str| -> std::collections::BTreeSet<String> {
        hs.requests_to("PUT", "/send/m.room.message/")
            .into_iter()
            .filter(|r| r.body["body"].as_str().is_some_and(|b| b.contains(user)))
            .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    for _ in 0..1200 {
        if users.iter().all(|u| !notices_about(u).is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for user in &users {
        let txns = notices_about(user);
        assert_eq!(txns.len(), 1, "{user}'s notice was posted under {} transaction IDs: {txns:?}", txns.len());
    }
    kw.signal("-TERM");
    assert_eq!(kw.wait_exit().code(), Some(0));
}

/// A tmpfs of `mb` MiB mounted at `dir` while it lives (root only).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u32) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns it.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The disk holding the database fills while knockwarden runs, then space is freed: storage
/// fails, knockwarden stops with an error (a service manager starts it again: here the test
/// does, as `Restart=on-failure` would), and within 60 s of the space being freed every knock
/// acknowledged is acted on, exactly once, with no person involved. Needs root, to mount a
/// tmpfs of its own: run as another user, it says so and checks nothing.
#[tokio::test]
async fn a_full_disk_ends_in_a_restart_and_everything_is_acted_on_once_space_is_freed() {
    const ROOM: &str = ACCEPTING_ROOM;
    let outer = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(outer.path(), 160) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root; this test runs in CI, which is root");
        return;
    };
    let dir = outer.path();
    let hs = FakeHomeserver::start().await;
    let (config, port, reg) = accepting_binary(dir, &hs);
    let client = reqwest::Client::new();
    // Its log, beside the tmpfs (kept there for as long as the test runs).
    let logs = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(logs.path().join("knockwarden.log")).unwrap();
    let start = || Running::start_logging(&config, port, log.try_clone().unwrap());
    let mut kw = start();
    kw.wait_healthy().await;
    let mut restarts = 0;
    // Sends transaction `t` until it is acknowledged, as Synapse does; starts knockwarden again
    // whenever it has stopped (a second later, as a service manager would).
    let user = |t: usize, i: usize| format!("@u{t}x{i}:test.local");
    let mut send = async |kw: &mut Running, t: usize, deadline: tokio::time::Instant| {
        let events: Vec<_> =
            (0..5).map(|i| knock_event(&format!("$k{t}x{i}"), ROOM, &user(t, i), Some("hi"))).collect();
        for i in 0..5 {
            hs.set_knocking(ROOM, &user(t, i), &format!("$k{t}x{i}"));
        }
        let url = format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions/{t}");
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = kw.child.try_wait().unwrap() {
                assert!(!status.success(), "stopped with success while storage failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                *kw = start();
                restarts += 1;
                continue;
            }
            let res = client.put(&url).bearer_auth(&reg.hs_token).json(&json!({"events": events})).send().await;
            if res.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    let soon = || tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(send(&mut kw, 0, soon()).await);
    // The disk fills; knocks keep coming (each sent until acknowledged, or for 10 s).
    let filler = fill(dir);
    let mut acked = vec![0];
    for t in 1..6 {
        if send(&mut kw, t, tokio::time::Instant::now() + Duration::from_secs(10)).await {
            acked.push(t);
        }
    }
    // Space is freed: within 60 s, everything sent is acknowledged and acted on, once.
    std::fs::remove_file(&filler).unwrap();
    let freed = tokio::time::Instant::now();
    for t in 1..6 {
        if !acked.contains(&t) {
            assert!(send(&mut kw, t, freed + Duration::from_secs(60)).await, "transaction {t} never acknowledged");
            acked.push(t);
        }
    }
    let invites = || {
        let mut counts = std::collections::HashMap::new();
        for r in hs.requests_to("POST", "/invite") {
            *counts.entry(r.body["user_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
        counts
    };
    while invites().len() < 30 && freed.elapsed() < Duration::from_secs(60) {
        if kw.child.try_wait().unwrap().is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            kw = start();
            restarts += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = invites();
    assert_eq!(counts.len(), 30, "not every knock acted on within 60 s of the space being freed ({restarts} restarts)");
    assert!(counts.values().all(|&n| n == 1), "a knock acted on twice: {counts:?}");
    assert!(restarts >= 1, "storage failed, yet knockwarden never stopped");
    kw.signal("-TERM");
    kw.wait_exit();
}

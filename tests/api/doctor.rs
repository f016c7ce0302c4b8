//! `knockwarden doctor` against the fake homeserver: every check holds on a good setup, and
//! each broken piece gives its own ✗ line and a non-zero exit.

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use knockwarden::registration::NewRegistration;
use ruma::server_name;
use serde_json::{Value, json};

use crate::helpers::{BOT, CONTROL_ROOM, FakeHomeserver};

const ROOM: &str = "!r:test.local";

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    hs: FakeHomeserver,
}

/// A working installation: config, registration (0600), a policy, a homeserver that knows the
/// registration, a bot in the control room and in ROOM with the power it needs.
async fn setup() -> Setup {
    setup_with_config(|hs_url, port| {
        format!(
            "homeserver:\n  url: \"{hs_url}\"\n  server_name: \"test.local\"\nappservice:\n  listen: \"127.0.0.1:{port}\"\ndatabase: \"db\"\npolicies: \"policies\"\ncontrol_room: \"#control:test.local\"\n"
        )
    })
    .await
}

/// Like [`setup`], with the config that `config(homeserver URL, appservice port)` writes (it
/// must name the registration `registration.yaml`, the policies `policies` and the control
/// room `#control:test.local`).
pub(crate) async fn setup_with_config(config: impl FnOnce(&str, u16) -> String) -> Setup {
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let reg = NewRegistration {
        id: "knockwarden",
        url: &url,
        localpart: "knockwarden",
        server_name: server_name!("test.local"),
    };
    reg.write(&dir.path().join("registration.yaml"), false).unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&hs.url(), port)).unwrap();
    let config = config_path;
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), format!("rooms: [\"{ROOM}\"]\ndefault: review\nrules:\n  - {{ name: locals, when: {{ server: test.local }}, action: accept }}\n")).unwrap();
    let written = knockwarden::registration::AppRegistration::load(
        &dir.path().join("registration.yaml"),
        server_name!("test.local"),
    )
    .unwrap();
    hs.register_appservice(&url, &written.as_token, &written.hs_token);
    hs.set_alias("#control:test.local", CONTROL_ROOM);
    hs.set_joined_rooms(&[CONTROL_ROOM, ROOM]);
    hs.set_state(
        ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {BOT: 50}, "invite": 0, "kick": 50, "ban": 50}),
    );
    Setup { dir, config, hs }
}

impl Setup {
    async fn doctor(&self, args: &[&str]) -> (bool, String) {
        crate::helpers::doctor(&self.config, args).await
    }

    /// The registration as written.
    fn registration(&self) -> knockwarden::registration::AppRegistration {
        knockwarden::registration::AppRegistration::load(
            &self.dir.path().join("registration.yaml"),
            server_name!("test.local"),
        )
        .unwrap()
    }

    /// The one ✗ line, checking that every other check holds or was skipped.
    async fn fails_only(&self, name: &str) -> String {
        let (ok, out) = self.doctor(&[]).await;
        assert!(!ok, "exit status 0 with a broken {name}:\n{out}");
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with('✗')).collect();
        assert_eq!(failed.len(), 1, "{out}");
        assert!(failed[0].starts_with(&format!("✗ {name}")), "{out}");
        failed[0].to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_good_setup_every_check_holds_and_json_says_the_same() {
    let s = setup().await;
    let (ok, out) = s.doctor(&[]).await;
    assert!(ok, "{out}");
    let names: Vec<&str> = out.lines().map(|l| l.split(": ").next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "✓ config",
            "✓ registration",
            "✓ policies",
            "✓ database",
            "✓ homeserver",
            "✓ as_token",
            "✓ ping",
            "✓ control room",
            &format!("✓ power in {ROOM}")
        ],
        "{out}"
    );
    assert!(out.contains("doctor answered for the stopped service"), "{out}");
    let (ok, json) = s.doctor(&["--json"]).await;
    assert!(ok);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), 9);
    assert!(v["checks"].as_array().unwrap().iter().all(|c| c["status"] == "ok"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_as_token_is_named() {
    let s = setup().await;
    let reg = s.registration();
    // The homeserver's copy has other tokens (the registration was regenerated since).
    s.hs.register_appservice(&reg.url.clone().unwrap(), "another-as-token", &reg.hs_token);
    let (ok, out) = s.doctor(&[]).await;
    assert!(!ok);
    let line = out.lines().find(|l| l.starts_with("✗ as_token")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("app_service_config_files"), "{line}");
    assert!(out.lines().any(|l| l.starts_with("– control room")), "what needs the token is skipped: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hs_token_fails_the_ping() {
    let s = setup().await;
    let reg = s.registration();
    s.hs.register_appservice(&reg.url.clone().unwrap(), &reg.as_token, "another-hs-token");
    let line = s.fails_only("ping").await;
    assert!(line.contains("hs_token"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_others_can_read_is_named() {
    let s = setup().await;
    let path = s.dir.path().join("registration.yaml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = s.fails_only("registration").await;
    assert!(line.contains("mode 0644") && line.contains("chmod 600"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_error_is_named() {
    let s = setup().await;
    std::fs::write(
        s.dir.path().join("policies/p.yaml"),
        "rooms: [\"!r:test.local\"]\ndefualt: review\nrules:\n  - { name: a, action: accept }\n",
    )
    .unwrap();
    let line = s.fails_only("policies").await;
    assert!(line.contains("defualt") && line.contains("policy check"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_without_power_in_a_room_is_named() {
    let s = setup().await;
    s.hs.set_state(
        ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {BOT: 0}, "invite": 50, "kick": 50, "ban": 50}),
    );
    let line = s.fails_only(&format!("power in {ROOM}")).await;
    assert!(
        line.contains("needs 50 to invite, kick, ban") && line.contains("give @knockwarden:test.local power level 50"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_outside_its_control_room_is_named() {
    let s = setup().await;
    s.hs.set_joined_rooms(&[ROOM]);
    let line = s.fails_only("control room").await;
    assert!(line.contains("invite @knockwarden:test.local"), "{line}");
}

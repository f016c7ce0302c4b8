//! Policies on disk: the shipped examples, `policy check` and `explain`, versions, hot reload.

use std::process::Command;

use knockwarden::{
    live_policies::{LivePolicies, Reload},
    storage::Store,
};

use crate::helpers::{AppOptions, CONTROL_ROOM, FakeHomeserver, eventually, spawn_app_in};

fn knockwarden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_knockwarden"));
    cmd.env_remove("KNOCKWARDEN_CONFIG");
    cmd
}

const GOOD: &str = "rooms: [\"!r:test.local\"]\ndefault: review\nrules:\n  - name: locals\n    when: { server: test.local }\n    action: accept\n";
const GOOD_V2: &str = "rooms: [\"!r:test.local\"]\ndefault: deny\nrules:\n  - name: locals\n    when: { server: test.local }\n    action: accept\n";
const BROKEN: &str =
    "rooms: [\"!r:test.local\"]\nrules:\n  - name: locals\n    when: { servr: test.local }\n    action: accept\n";

#[test]
fn the_shipped_policies_pass_policy_check_and_the_examples_are_not_loaded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let out = knockwarden().args(["policy", "check", dir]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The directory a new admin copies: one policy, naming no alias (nothing to look up).
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("my-room.yaml: ok: policy `my-room`"), "{stdout}");
    assert!(!stdout.contains('#'), "no alias to look up: {stdout}");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples");
    let out = knockwarden().args(["policy", "check", examples]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for name in ["community", "support", "strict"] {
        assert!(stdout.contains(&format!("{name}.yaml: ok: policy `{name}`")), "{stdout}");
    }
}

#[test]
fn policy_check_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "rooms: [\"#x:y\"]\nrules:\n  - name: a\n    when: { servr: x, user_regex: \"(\" }\n    action: acept\n",
    )
    .unwrap();
    let out = knockwarden().args(["policy", "check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = file.display();
    assert!(stdout.contains(&format!("{f}:4:13: unknown key `servr` in `when`; did you mean `server`?")), "{stdout}");
    assert!(stdout.contains(&format!("{f}:4:35: `user_regex`: invalid regex")), "{stdout}");
    assert!(stdout.contains(&format!("{f}:5:13: unknown action `acept`")), "{stdout}");
    assert!(stdout.contains("     action: acept"), "the offending line is quoted: {stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 problems found"));
}

#[test]
fn policy_check_defaults_to_the_configured_directory_and_explain_explains() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::write_config(dir.path(), "http://127.0.0.1:1", &AppOptions::default());
    std::fs::write(dir.path().join("policies/p.yaml"), GOOD).unwrap();
    let out = knockwarden().args(["policy", "check", "-c"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("p.yaml: ok: policy `p`, 1 rule, default review"));

    let out = knockwarden()
        .args([
            "policy",
            "explain",
            "--room",
            "!r:test.local",
            "--user",
            "@eve:elsewhere.example",
            "--reason",
            "hello",
            "-c",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("decision: review"), "{stdout}");
    assert!(stdout.contains("policy:   p ("), "{stdout}");
    assert!(stdout.contains("rule:     none matched"), "{stdout}");
    assert!(stdout.contains("1. locals: no: server \"elsewhere.example\" does not match [\"test.local\"]"), "{stdout}");

    let out = knockwarden()
        .args(["policy", "explain", "--room", "!other:test.local", "--user", "@eve:x", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("No policy governs !other:test.local"));
}

#[test]
fn explain_for_a_room_id_finds_the_policy_that_names_it_by_alias() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::write_config(dir.path(), "http://127.0.0.1:1", &AppOptions::default());
    let by_alias = GOOD.replace("!r:test.local", "#support:test.local");
    std::fs::write(dir.path().join("policies/p.yaml"), by_alias).unwrap();
    let explain = |room: &str| {
        let out = knockwarden()
            .args(["policy", "explain", "--room", room, "--user", "@eve:test.local", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No database yet: the policy names the room by alias, and the output says so.
    let said = explain("!r:test.local");
    assert!(said.contains("No policy governs !r:test.local"), "{said}");
    assert!(said.contains("policies name rooms by alias (#support:test.local)") && said.contains("--room"), "{said}");
    assert!(explain("#support:test.local").contains("decision: accept"), "by its alias");

    // The service looked the alias up: the room ID finds the policy.
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.commit(&[knockwarden::storage::Aliases::put("#support:test.local", Some("!r:test.local"))]).unwrap();
    store.flush_blocking().unwrap();
    drop(store);
    let said = explain("!r:test.local");
    assert!(said.contains("decision: accept") && said.contains("policy:   p ("), "{said}");
}

#[test]
fn policy_versions_rollback_and_a_refused_start() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir(&pdir).unwrap();
    let file = pdir.join("p.yaml");
    std::fs::write(&file, GOOD).unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let live = LivePolicies::start(&pdir, store.clone()).unwrap();
    assert_eq!(live.current().version, 1);
    let k = knockwarden::policy::Knock { user: "@a:test.local", room: "!r:test.local", ..Default::default() };
    let d = live.current().set.policy_for("!r:test.local", &[]).unwrap().decide(&k);
    assert_eq!(
        (d.policy.as_str(), d.version, d.rule.as_deref()),
        ("p", 1, Some("locals")),
        "decisions name policy, version and rule"
    );

    std::fs::write(&file, GOOD_V2).unwrap();
    assert!(matches!(live.reload().unwrap(), Reload::Activated { version: 2 }));
    assert!(matches!(live.reload().unwrap(), Reload::Unchanged { version: 2 }));
    std::fs::write(&file, BROKEN).unwrap();
    match live.reload().unwrap() {
        Reload::Refused { problems, active } => {
            assert_eq!(active, 2);
            assert!(problems[0].message.contains("servr"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(live.current().version, 2, "a refused set leaves the running version active");

    assert_eq!(live.rollback(1).unwrap(), 3);
    let active = live.current();
    assert_eq!(active.set.policies()[0].default, knockwarden::policy::Action::Review);
    let v3 = store.policies().get(3).unwrap().unwrap();
    assert_eq!(v3.origin, "rollback to 1");
    assert_eq!(v3.sources[0].text, GOOD);
    assert!(live.rollback(99).unwrap_err().to_string().contains("does not exist"));
    drop(live);

    // Restarting with broken files falls back to the stored active version...
    let live = LivePolicies::start(&pdir, store.clone()).unwrap();
    assert_eq!(live.current().version, 3);
    drop(live);
    drop(store);
    // ...and with nothing stored, start-up fails with the problems.
    let fresh = tempfile::tempdir().unwrap();
    let err = LivePolicies::start(&pdir, Store::open(fresh.path()).unwrap()).unwrap_err().to_string();
    assert!(err.contains("p.yaml:4:13: unknown key `servr`"), "{err}");
}

fn notices_containing(hs: &FakeHomeserver, needle: &str) -> usize {
    hs.requests_to("PUT", &format!("/rooms/{CONTROL_ROOM}/send/m.room.message/"))
        .iter()
        .filter(|r| r.body["body"].as_str().is_some_and(|b| b.contains(needle)))
        .count()
}

#[tokio::test]
async fn an_invalid_edit_is_refused_and_reported_then_a_valid_edit_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let file = dir.path().join("policies/p.yaml");
    std::fs::write(&file, GOOD).unwrap();
    let hs = FakeHomeserver::start().await;
    let app = spawn_app_in(dir, hs.clone(), AppOptions::default()).await;
    let store = app.store.clone();
    assert_eq!(store.policies().active().unwrap(), Some(1));

    // An editor's save: truncate, then write in pieces.
    std::fs::write(&file, "").unwrap();
    std::fs::write(&file, &BROKEN[..20]).unwrap();
    std::fs::write(&file, BROKEN).unwrap();
    eventually("the refusal is reported in the control room", || notices_containing(&hs, "policy files refused") == 1)
        .await;
    let notice = hs
        .requests_to("PUT", "/send/m.room.message/")
        .into_iter()
        .find(|r| r.body["body"].as_str().unwrap().contains("refused"))
        .unwrap();
    assert!(notice.body["body"].as_str().unwrap().contains("p.yaml:4:13: unknown key `servr`"));
    assert_eq!(notice.body["msgtype"], "m.notice");
    assert!(notice.body["formatted_body"].as_str().unwrap().contains("<pre><code>"));
    assert_eq!(store.policies().active().unwrap(), Some(1));

    std::fs::write(&file, GOOD_V2).unwrap();
    eventually("the valid edit is live", || store.policies().active().unwrap() == Some(2)).await;
    eventually("and announced", || notices_containing(&hs, "policy version 2 is active") == 1).await;
}

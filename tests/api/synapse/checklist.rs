//! An admin's first hour on a fresh Synapse: the README's checklist ("Running it for your
//! homeserver"), step by step, and the service user of docs/OPERATIONS.md with the file modes
//! documented there.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    client::{User, enc},
    homeserver::Synapse,
    knockwarden::Knockwarden,
    process::free_port,
    wait_for,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The text of step `n` of the README's checklist (the test checks that it says what the test
/// does, so the two cannot drift apart).
fn step(n: u32) -> String {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = readme.split("## Running it for your homeserver").nth(1).expect("the checklist section");
    let section = section.split("\n## ").next().unwrap();
    let start = section.find(&format!("\n{n}. ")).unwrap_or_else(|| panic!("the checklist has no step {n}"));
    let rest = &section[start + 1..];
    let end = rest.find(&format!("\n{}. ", n + 1)).unwrap_or(rest.len());
    rest[..end].to_owned()
}

fn says(n: u32, what: &[&str]) {
    // Words as a reader sees them: line breaks and indentation are spaces.
    let text = step(n).split_whitespace().collect::<Vec<_>>().join(" ");
    for w in what {
        assert!(text.contains(w), "step {n} of the README does not say `{w}`:\n{text}");
    }
}

fn knockwarden(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_knockwarden"))
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("KNOCKWARDEN_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Replaces one line of `text` (which must be there) by another.
fn set_line(text: &str, old: &str, new: &str) -> String {
    assert!(text.lines().any(|l| l == old), "config.example.yaml has no line `{old}`");
    text.lines().map(|l| if l == old { new } else { l }).collect::<Vec<_>>().join("\n") + "\n"
}

async fn ready(port: u16) -> (u16, Value) {
    let res = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// The bot's messages in `room`, as `reader` sees them.
async fn bot_says(reader: &User, room: &str, bot: &str, needles: &[&str]) -> Value {
    wait_for(&format!("the bot to say {needles:?}"), || async {
        reader.messages(room).await.into_iter().find(|e| {
            let body = e["content"]["body"].as_str().unwrap_or("");
            e["sender"] == bot && e["type"] == "m.room.message" && needles.iter().all(|n| body.contains(n))
        })
    })
    .await
}

async fn membership_is(reader: &User, room: &str, user: &str, membership: &str) {
    wait_for(&format!("{user} to be {membership} in {room}"), || async {
        (reader.membership(room, user).await.0.as_deref() == Some(membership)).then_some(())
    })
    .await
}

/// Says `text` in `room`; returns the bot's reply.
async fn command(user: &User, room: &str, text: &str) -> String {
    let asked = user.say(room, text).await;
    let reply = wait_for(&format!("the reply to {text}"), || async {
        let messages = user.messages(room).await;
        messages.into_iter().find(|e| e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked.as_str())
    })
    .await;
    reply["content"]["body"].as_str().unwrap().to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_the_readme_checklist_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let kw_dir = dir.path().join("knockwarden");
    std::fs::create_dir_all(&kw_dir).unwrap();
    // A fresh Synapse, knowing nothing of knockwarden yet.
    let mut hs = Synapse::configure(&dir.path().join("synapse"), None, None);
    hs.start().await;
    let (url, server) = (hs.url(), hs.server_name.clone());
    let bot = format!("@knockwarden:{server}");
    let (owner, moderator, knocker) =
        tokio::join!(User::register(&url, "owner"), User::register(&url, "moderator"), User::register(&url, "knocker"));

    // 1. Build: this test runs the binary cargo built.
    says(1, &["cargo build --release"]);

    // 2. The control room (an address, the moderators with power 50) and the knock-only room
    //    (the `knock` join rule; the moderators are members).
    says(
        2,
        &["control room", "#knockwarden:example.org", "power level 50", "Ask to join", "Do not invite the bot yet"],
    );
    let control = owner
        .create_room(json!({
            "preset": "private_chat", "room_alias_name": "knockwarden", "name": "knockwarden",
            "invite": [&moderator.id], "power_level_content_override": {"users": {&moderator.id: 50}}
        }))
        .await;
    assert_eq!(moderator.join(&control).await.0, 200);
    let lobby = owner
        .create_room(json!({
            "preset": "private_chat", "name": "lobby", "invite": [&moderator.id],
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
        }))
        .await;
    assert_eq!(moderator.join(&lobby).await.0, 200);

    // 3. The config: the example, with four keys set.
    says(3, &["cp config.example.yaml config.yaml", "homeserver.url", "homeserver.server_name", "control_room"]);
    let port = free_port();
    let example = std::fs::read_to_string(Path::new(ROOT).join("config.example.yaml")).unwrap();
    let config = set_line(&example, "  url: \"http://127.0.0.1:8008\"", &format!("  url: \"{url}\""));
    let config = set_line(&config, "  server_name: \"example.org\"", &format!("  server_name: \"{server}\""));
    let config = set_line(&config, "  listen: \"127.0.0.1:9993\"", &format!("  listen: \"127.0.0.1:{port}\""));
    let config =
        set_line(&config, "control_room: \"!ctrl:example.org\"", &format!("control_room: \"#knockwarden:{server}\""));
    let config_path = kw_dir.join("config.yaml");
    std::fs::write(&config_path, config).unwrap();

    // 4. The policy: the shipped one, with the room filled in; checked.
    says(4, &["policies/my-room.yaml", "rooms:", "knockwarden policy check -c config.yaml"]);
    copy_dir(&Path::new(ROOT).join("policies"), &kw_dir.join("policies"));
    let policy_path = kw_dir.join("policies/my-room.yaml");
    let policy = std::fs::read_to_string(&policy_path).unwrap();
    assert!(policy.contains("!replace-with-your-room-id:example.org"), "{policy}");
    std::fs::write(&policy_path, policy.replace("!replace-with-your-room-id:example.org", &lobby)).unwrap();
    let (ok, out) = knockwarden(&["policy", "check"], &config_path);
    assert!(ok && out.contains("my-room.yaml: ok: policy `my-room`"), "{out}");

    // 5. The registration.
    says(5, &["knockwarden generate-registration -c config.yaml", "registration.yaml", "0600"]);
    let (ok, out) = knockwarden(&["generate-registration"], &config_path);
    assert!(ok, "{out}");
    let registration = kw_dir.join("registration.yaml");
    assert_eq!(std::fs::metadata(&registration).unwrap().permissions().mode() & 0o777, 0o600);

    // 6. Synapse's own copy, listed in homeserver.yaml; Synapse restarted.
    says(6, &["install -m 0600", "app_service_config_files", "restart Synapse"]);
    let synapse_copy = hs.dir.join("knockwarden.yaml");
    std::fs::copy(&registration, &synapse_copy).unwrap();
    std::fs::set_permissions(&synapse_copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    hs.add_appservice(&synapse_copy);
    hs.stop();
    hs.start().await;

    // 7. knockwarden starts, and says it waits for the control room.
    says(7, &["knockwarden serve -c config.yaml", "/ready", "invite the bot there"]);
    let mut kw = Knockwarden::written(&kw_dir, &config_path, &registration, port, &server);
    kw.start().await;
    let (status, body) = wait_for("/ready to ask for an invitation to the control room", || async {
        let (status, body) = ready(port).await;
        body["status"].as_str().is_some_and(|s| s.contains("invite the bot there")).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503, "{body}");

    // 8. Invited to the control room, it joins within seconds.
    says(8, &["/invite @knockwarden:example.org", "whoever invites it"]);
    let invited = std::time::Instant::now();
    owner.invite(&control, &bot).await;
    membership_is(&owner, &control, &bot, "join").await;
    assert!(invited.elapsed() < Duration::from_secs(15), "joined {:?} after the invitation", invited.elapsed());

    // 9. A moderator invites it to the knock-only room: it joins and says what power it lacks.
    says(9, &["Invite the bot to the knock-only room", "as a moderator"]);
    moderator.invite(&lobby, &bot).await;
    membership_is(&owner, &lobby, &bot, "join").await;
    bot_says(&moderator, &control, &bot, &["Knocking cannot work as configured", "needs power level 50 to kick"]).await;

    // 10. The power level change the README gives.
    says(10, &["\"users\": {\"@knockwarden:example.org\": 50}", "works as configured now"]);
    let path = format!("v3/rooms/{}/state/m.room.power_levels/", enc(&lobby));
    let mut pl = owner.ok(reqwest::Method::GET, &path, None).await;
    pl["users"][&bot] = json!(50);
    owner.ok(reqwest::Method::PUT, &path, Some(pl)).await;
    bot_says(&moderator, &control, &bot, &["works as configured now"]).await;

    // 11. Ready; `!knock rooms`; a knock reviewed and approved.
    says(11, &["{\"status\":\"ready\"}", "!knock rooms", "!knock approve 1"]);
    let (status, body) = wait_for("/ready", || async {
        let (status, body) = ready(port).await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    let rooms = command(&moderator, &control, "!knock rooms").await;
    assert!(rooms.contains("invite ✓, kick ✓, ban ✓") && rooms.contains("my-room"), "{rooms}");
    let (status, v) = knocker.knock(&lobby, Some("Hello! A friend told me about this room."), None).await;
    assert_eq!(status, 200, "{v}");
    bot_says(&moderator, &control, &bot, &["#1", &knocker.id, "waiting for review"]).await;
    moderator.say(&control, "!knock approve 1").await;
    membership_is(&owner, &lobby, &knocker.id, "invite").await;
    kw.crash();
    hs.stop();
}

/// The uid and gid the test gives the service user (`knockwarden` in the docs); no account
/// is created for it.
const SERVICE_UID: u32 = 64_123;

/// Runs `chown` and `chmod` as the docs' `install -o/-g -m` lines do.
fn own(path: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `setpriv` to the service user, as the unit's `User=`/`Group=` (killed with the test).
fn as_service_user(binary: &Path, config: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={SERVICE_UID}"))
        .arg(format!("--regid={SERVICE_UID}"))
        .args(["--clear-groups", "--pdeathsig", "KILL", "--"])
        .arg(binary)
        .args(["serve", "-c"])
        .arg(config);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_the_service_user_starts_with_the_documented_file_modes() {
    let ops = std::fs::read_to_string(Path::new(ROOT).join("docs/OPERATIONS.md")).unwrap();
    for line in [
        "install -d -m 0750 -g knockwarden /etc/knockwarden /etc/knockwarden/policies",
        "install -m 0640 -g knockwarden config.yaml /etc/knockwarden/",
        "install -m 0640 -g knockwarden policies/*.yaml /etc/knockwarden/policies/",
        "install -m 0600 -o knockwarden -g knockwarden registration.yaml /etc/knockwarden/",
    ] {
        assert!(ops.contains(line), "docs/OPERATIONS.md no longer says `{line}`");
    }
    let unit = std::fs::read_to_string(Path::new(ROOT).join("contrib/knockwarden.service")).unwrap();
    assert!(unit.contains("\nUser=knockwarden\n") && unit.contains("\nStateDirectoryMode=0700\n"));

    // A root the service user can walk: /usr/local/bin, /etc/knockwarden, /var/lib/knockwarden.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (bin, etc, state) = (root.join("bin"), root.join("etc/knockwarden"), root.join("var/lib/knockwarden"));
    for d in [&bin, &etc.join("policies"), &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in [root.join("etc"), root.join("var"), root.join("var/lib")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let binary = bin.join("knockwarden");
    std::fs::copy(env!("CARGO_BIN_EXE_knockwarden"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut hs = Synapse::configure(&root.join("synapse"), Some(&root.join("synapse/knockwarden.yaml")), None);
    let server = hs.server_name.clone();
    let port = free_port();
    let config = etc.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "homeserver:\n  url: \"{}\"\n  server_name: \"{server}\"\nappservice:\n  listen: \"127.0.0.1:{port}\"\n  registration: \"registration.yaml\"\ndatabase: \"{}\"\npolicies: \"policies\"\ncontrol_room: \"#control:{server}\"\n",
            hs.url(),
            state.join("db").display()
        ),
    )
    .unwrap();
    let policy = std::fs::read_to_string(Path::new(ROOT).join("policies/my-room.yaml")).unwrap();
    std::fs::write(etc.join("policies/my-room.yaml"), policy).unwrap();
    let (ok, out) = knockwarden(&["generate-registration"], &config);
    assert!(ok, "{out}");
    let registration = etc.join("registration.yaml");
    // Synapse's own copy (Synapse runs as this test's user here).
    std::fs::copy(&registration, root.join("synapse/knockwarden.yaml")).unwrap();

    // The modes of the docs: the directories and the config and policies readable by the
    // group, the state directory the user's own (as systemd makes it).
    let g = SERVICE_UID;
    own(&etc, 0, g, 0o750);
    own(&etc.join("policies"), 0, g, 0o750);
    own(&config, 0, g, 0o640);
    own(&etc.join("policies/my-room.yaml"), 0, g, 0o640);
    own(&state, SERVICE_UID, g, 0o700);

    // As the systemd steps used to leave it (root's, 0600): refused with what to do.
    let out = as_service_user(&binary, &config).env_remove("KNOCKWARDEN_CONFIG").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a registration it cannot read: {stderr}");
    assert!(
        stderr.contains("cannot read the registration")
            && stderr.contains("must own it")
            && stderr.contains("OPERATIONS.md"),
        "{stderr}"
    );

    // As documented: the user's own, 0600.
    own(&registration, SERVICE_UID, g, 0o600);
    hs.start().await;
    let owner = User::register(&hs.url(), "owner").await;
    let bot = format!("@knockwarden:{server}");
    let control =
        owner.create_room(json!({"preset": "private_chat", "room_alias_name": "control", "invite": [&bot]})).await;
    let mut kw = Knockwarden::written(root, &config, &registration, port, &server);
    kw.start_command(as_service_user(&binary, &config)).await;
    wait_for("ready", || async { (ready(port).await.0 == 200).then_some(()) }).await;
    let help = command(&owner, &control, "!knock help").await;
    assert!(help.contains("Usage: !knock"), "{help}");
    // What it wrote is its own, and private.
    let db = state.join("db");
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!(meta.uid(), SERVICE_UID, "the database belongs to the service user");
    let files: Vec<PathBuf> = std::fs::read_dir(&db).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!files.is_empty());
    kw.crash();
    hs.stop();
}

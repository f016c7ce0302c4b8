//! End to end on a real Synapse (installed from PyPI into a venv cached under `target/`) and
//! the real `knockwarden` binary, both as child processes. Test users are plain HTTP clients.
//! Every assertion reads what the homeserver reports (memberships, control-room messages),
//! not knockwarden's own belief. If Synapse cannot be installed or started, the tests fail.

mod checklist;
mod client;
mod homeserver;
mod knockwarden;
mod process;

use std::{future::Future, time::Duration};

use serde_json::{Value, json};

use self::{
    client::User,
    homeserver::{Synapse, Tls},
    knockwarden::Knockwarden,
};

/// Polls `f` until it gives a value (up to 60 s).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A Synapse with knockwarden registered and running, a control room (owner, a moderator with
/// power 50, a member with power 0) and managed rooms.
struct Env {
    hs: Synapse,
    kw: Knockwarden,
    owner: User,
    moderator: User,
    pleb: User,
    control: String,
    /// Managed rooms by alias localpart.
    rooms: Vec<(String, String)>,
    // Last: removed after the processes stop.
    _dir: tempfile::TempDir,
}

/// A managed room to create: alias localpart, room version, join rule, whether the bot gets
/// power 100 (else it has 0, with kick and ban at 50), whether it is a space.
struct RoomSpec {
    alias: &'static str,
    version: &'static str,
    join_rule: &'static str,
    bot_power: bool,
    space: bool,
}

const LOBBY: RoomSpec = RoomSpec { alias: "lobby", version: "10", join_rule: "knock", bot_power: true, space: false };

impl Env {
    /// Sets everything up; `policies` maps the server name to (file name, YAML) pairs.
    async fn start(rooms: &[RoomSpec], policies: impl Fn(&str) -> Vec<(&'static str, String)>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut hs =
            Synapse::configure(&dir.path().join("synapse"), Some(&dir.path().join("kw/registration.yaml")), None);
        let server = hs.server_name.clone();
        let mut kw = Knockwarden::configure(
            &dir.path().join("kw"),
            &server,
            hs.port,
            &format!("#control:{server}"),
            &policies(&server),
            "",
        );
        hs.start().await;
        let url = hs.url();
        let (owner, moderator, pleb) = tokio::join!(
            User::register(&url, "owner"),
            User::register(&url, "moderator"),
            User::register(&url, "pleb")
        );
        let control = owner
            .create_room(json!({
                "preset": "private_chat", "room_alias_name": "control", "name": "knockwarden control",
                "invite": [&kw.bot, &moderator.id, &pleb.id],
                "power_level_content_override": {"users": {&moderator.id: 50}}
            }))
            .await;
        assert_eq!(moderator.join(&control).await.0, 200);
        assert_eq!(pleb.join(&control).await.0, 200);
        let mut created = Vec::new();
        for spec in rooms {
            created.push((spec.alias.to_owned(), create_managed(&owner, &kw.bot, spec).await));
        }
        kw.start().await;
        let env = Env { hs, kw, owner, moderator, pleb, control, rooms: created, _dir: dir };
        env.ping().await;
        for (_, room) in &env.rooms {
            env.wait_membership(room, &env.kw.bot, "join").await;
        }
        env
    }

    fn room(&self, alias: &str) -> &str {
        &self.rooms.iter().find(|(a, _)| a == alias).unwrap().1
    }

    fn alias(&self, localpart: &str) -> String {
        format!("#{localpart}:{}", self.hs.server_name)
    }

    /// Asks Synapse to ping knockwarden, which also makes it retry queued transactions now.
    async fn ping(&self) {
        ping(&self.hs.url(), &self.kw.bot, &self.kw.as_token).await;
    }

    /// Waits until the homeserver reports `membership` for `user` in `room`; returns the reason.
    async fn wait_membership(&self, room: &str, user: &str, membership: &str) -> Option<String> {
        wait_for(&format!("{user} to be {membership} in {room}"), || async {
            let (m, reason) = self.owner.membership(room, user).await;
            (m.as_deref() == Some(membership)).then_some(reason)
        })
        .await
    }

    async fn register(&self, name: &str) -> User {
        User::register(&self.hs.url(), name).await
    }

    /// The bot's messages in the control room.
    async fn bot_messages(&self) -> Vec<Value> {
        let bot = self.kw.bot.clone();
        self.moderator
            .messages(&self.control)
            .await
            .into_iter()
            .filter(|e| e["type"] == "m.room.message" && e["sender"] == bot.as_str())
            .collect()
    }

    /// Waits for a bot notice whose body contains every `needle`; returns it.
    async fn notice(&self, needles: &[&str]) -> Value {
        wait_for(&format!("a control-room notice with {needles:?}"), || async {
            self.bot_messages().await.into_iter().find(|e| {
                let body = e["content"]["body"].as_str().unwrap_or("");
                needles.iter().all(|n| body.contains(n))
            })
        })
        .await
    }

    /// Waits for the review notice of `user`; returns (event ID, number).
    async fn review_notice(&self, user: &str) -> (String, u64) {
        let e = self.notice(&[user, "waiting for review"]).await;
        let body = e["content"]["body"].as_str().unwrap();
        let number = body.strip_prefix('#').and_then(|b| b.split(' ').next()).and_then(|n| n.parse().ok());
        (e["event_id"].as_str().unwrap().to_owned(), number.unwrap_or_else(|| panic!("no number in {body}")))
    }

    /// Waits for the bot's reply to `event`; returns its body.
    async fn reply_to(&self, event: &str) -> String {
        wait_for(&format!("a reply to {event}"), || async {
            self.bot_messages()
                .await
                .into_iter()
                .find(|e| e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event)
                .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        })
        .await
    }

    /// How many times the bot set `user`'s membership in `room` to `membership`.
    async fn bot_changes(&self, room: &str, user: &str, membership: &str) -> usize {
        self.owner
            .messages(room)
            .await
            .iter()
            .filter(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == user
                    && e["sender"] == self.kw.bot.as_str()
                    && e["content"]["membership"] == membership
            })
            .count()
    }
}

async fn create_managed(owner: &User, bot: &str, spec: &RoomSpec) -> String {
    let mut users = serde_json::Map::new();
    if spec.version != "12" {
        users.insert(owner.id.clone(), json!(100));
    }
    if spec.bot_power {
        users.insert(bot.to_owned(), json!(100));
    }
    let mut join_rules = json!({"join_rule": spec.join_rule});
    if spec.join_rule == "knock_restricted" {
        join_rules["allow"] = json!([]);
    }
    let mut create = json!({
        "preset": "private_chat", "room_version": spec.version, "room_alias_name": spec.alias,
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": join_rules}],
        "power_level_content_override": {"users": users, "kick": 50, "ban": 50, "invite": 0},
        "invite": [bot]
    });
    if spec.space {
        create["creation_content"] = json!({"type": "m.space"});
    }
    owner.create_room(create).await
}

const RULES: &str = r#"default: review
rules:
  - name: spam
    when: { reason: { contains: [casino] } }
    action: ban
    reason: "Spam"
  - name: no-reason
    when: { reason: { missing: true } }
    action: deny
    reason: "Please tell us who you are"
  - name: friends
    when: { reason: { contains: [friend] } }
    action: accept
"#;

fn lobby_policy(server: &str) -> Vec<(&'static str, String)> {
    vec![("lobby.yaml", format!("rooms: [\"#lobby:{server}\"]\n{RULES}"))]
}

/// Scenarios 1-8: rules, reviews by command and reaction, non-moderators, aliases and long
/// reasons, withdrawal, and a person acting first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_rules_reviews_and_people() {
    let env = Env::start(&[LOBBY], lobby_policy).await;
    let lobby = env.room("lobby").to_owned();
    let alias = env.alias("lobby");

    // 1. Accepted by rule (knocking by alias): invited, then joins.
    let alice = env.register("alice").await;
    assert_eq!(alice.knock(&alias, Some("I am a friend of the owner"), None).await.0, 200);
    env.wait_membership(&lobby, &alice.id, "invite").await;
    assert_eq!(alice.join(&lobby).await.0, 200);
    env.wait_membership(&lobby, &alice.id, "join").await;

    // 2. Denied by rule (no reason): kicked with our reason; may knock again.
    let bob = env.register("bob").await;
    assert_eq!(bob.knock(&alias, None, None).await.0, 200);
    let reason = env.wait_membership(&lobby, &bob.id, "leave").await;
    assert_eq!(reason.as_deref(), Some("Please tell us who you are"));
    assert_eq!(bob.knock(&alias, Some("sorry, I am Bob from the meetup"), None).await.0, 200);
    env.review_notice(&bob.id).await;

    // 3. Banned by rule.
    let carol = env.register("carol").await;
    assert_eq!(carol.knock(&alias, Some("cheap casino chips"), None).await.0, 200);
    env.wait_membership(&lobby, &carol.id, "ban").await;

    // 4. Review: approved by command; another denied by reaction.
    let dave = env.register("dave").await;
    assert_eq!(dave.knock(&alias, Some("hello there"), None).await.0, 200);
    env.review_notice(&dave.id).await;
    let cmd = env.moderator.say(&env.control, &format!("!knock approve {}", dave.id)).await;
    let reply = env.reply_to(&cmd).await;
    assert!(reply.contains(&format!("{} invited to", dave.id)), "{reply}");
    env.wait_membership(&lobby, &dave.id, "invite").await;
    let erin = env.register("erin").await;
    assert_eq!(erin.knock(&alias, Some("hi, it is erin"), None).await.0, 200);
    let (notice, _) = env.review_notice(&erin.id).await;
    env.moderator.react(&env.control, &notice, "❌").await;
    env.wait_membership(&lobby, &erin.id, "leave").await;
    let reply = env.reply_to(&notice).await;
    assert!(reply.contains("denied by @moderator"), "{reply}");

    // 5. A non-moderator's approve changes nothing.
    let frank = env.register("frank").await;
    assert_eq!(frank.knock(&alias, Some("hello"), None).await.0, 200);
    let (_, n) = env.review_notice(&frank.id).await;
    let cmd = env.pleb.say(&env.control, &format!("!knock approve {n}")).await;
    let reply = env.reply_to(&cmd).await;
    assert!(reply.contains("is not a moderator"), "{reply}");
    assert_eq!(env.owner.membership(&lobby, &frank.id).await.0.as_deref(), Some("knock"));

    // 6. A 10,000-character reason (by room ID this time).
    let gus = env.register("gus").await;
    let long = format!("I am a friend. {}", "x".repeat(10_000 - 15));
    assert_eq!(long.chars().count(), 10_000);
    assert_eq!(gus.knock(&lobby, Some(&long), None).await.0, 200);
    env.wait_membership(&lobby, &gus.id, "invite").await;

    // 7. Withdrawn while pending: the item closes as withdrawn.
    let hank = env.register("hank").await;
    assert_eq!(hank.knock(&alias, Some("hi"), None).await.0, 200);
    let (notice, _) = env.review_notice(&hank.id).await;
    hank.leave(&lobby).await;
    let reply = env.reply_to(&notice).await;
    assert!(reply.ends_with(": withdrawn"), "{reply}");

    // 8. A person invites a pending knocker: the item closes as accepted by them.
    let ivy = env.register("ivy").await;
    assert_eq!(ivy.knock(&alias, Some("hi"), None).await.0, 200);
    let (notice, _) = env.review_notice(&ivy.id).await;
    env.owner.invite(&lobby, &ivy.id).await;
    let reply = env.reply_to(&notice).await;
    assert!(reply.ends_with(&format!(": accepted by {}", env.owner.id)), "{reply}");
}

/// Scenario 9: policy files edited on disk take effect without a restart; a broken edit keeps
/// the old policy and is reported in the control room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_policy_edits_apply_without_restart() {
    let env = Env::start(&[LOBBY], lobby_policy).await;
    let lobby = env.room("lobby").to_owned();
    let alias = env.alias("lobby");
    let file = env.kw.dir.join("policies/lobby.yaml");

    let a = env.register("a").await;
    assert_eq!(a.knock(&alias, Some("please let me in"), None).await.0, 200);
    env.review_notice(&a.id).await;

    let edited = std::fs::read_to_string(&file).unwrap().replace("contains: [friend]", "contains: [friend, please]");
    std::fs::write(&file, &edited).unwrap();
    env.notice(&["policy version 2 is active"]).await;
    let b = env.register("b").await;
    assert_eq!(b.knock(&alias, Some("please let me in"), None).await.0, 200);
    env.wait_membership(&lobby, &b.id, "invite").await;

    std::fs::write(&file, edited.replace("action: accept", "action: acept")).unwrap();
    let refused = env.notice(&["refused", "lobby.yaml:"]).await;
    let body = refused["content"]["body"].as_str().unwrap();
    assert!(body.contains("version 2 stays active") && body.contains("accept"), "{body}");
    let c = env.register("c").await;
    assert_eq!(c.knock(&alias, Some("please let me in"), None).await.0, 200);
    env.wait_membership(&lobby, &c.id, "invite").await;
}

/// Scenario 12: a ban list (a moderator's policy room with `m.policy.rule.user` state) named
/// by a policy: the listed user is banned when they knock, an unlisted one waits for review,
/// and a rule added to the list later decides that waiting knock again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_ban_lists_ban_listed_knockers() {
    let env = Env::start(&[LOBBY], lobby_policy).await;
    let lobby = env.room("lobby").to_owned();
    let alias = env.alias("lobby");
    let (listed, unlisted) = (env.register("listed").await, env.register("unlisted").await);
    let list = env
        .moderator
        .create_room(json!({
            "preset": "public_chat", "room_alias_name": "bans", "name": "community bans",
            "initial_state": [{"type": "m.policy.rule.user", "state_key": "rule:1",
                               "content": {"entity": &listed.id, "recommendation": "m.ban", "reason": "spam"}}]
        }))
        .await;
    let bans = env.alias("bans");
    let file = env.kw.dir.join("policies/lobby.yaml");
    let policy = format!(
        "rooms: [\"{alias}\"]\ndefault: review\nrules:\n  - name: community-bans\n    when: {{ ban_list: \"{bans}\" }}\n    action: ban\n    reason: \"Listed on {{list}}: {{list_reason}}\"\n"
    );
    std::fs::write(&file, policy).unwrap();
    env.notice(&[&format!("Following the ban list {bans}"), "1 user rules"]).await;
    wait_for("the bot to join the list", || async {
        (env.moderator.membership(&list, &env.kw.bot).await.0.as_deref() == Some("join")).then_some(())
    })
    .await;
    let cmd = env.moderator.say(&env.control, "!knock rooms").await;
    let rooms = env.reply_to(&cmd).await;
    assert!(rooms.contains("lobby") && !rooms.contains("bans"), "a list room is not managed: {rooms}");

    assert_eq!(listed.knock(&alias, Some("hello"), None).await.0, 200);
    let reason = env.wait_membership(&lobby, &listed.id, "ban").await;
    assert_eq!(reason.as_deref(), Some(format!("Listed on {bans}: spam").as_str()));
    assert_eq!(unlisted.knock(&alias, Some("hello"), None).await.0, 200);
    let (notice, _) = env.review_notice(&unlisted.id).await;
    assert_eq!(env.owner.membership(&lobby, &unlisted.id).await.0.as_deref(), Some("knock"));

    // The list gains a rule: the waiting knock is decided again.
    let path = format!("v3/rooms/{}/state/m.policy.rule.user/rule:2", client::enc(&list));
    let content = json!({"entity": &unlisted.id, "recommendation": "m.ban", "reason": "raid"});
    env.moderator.ok(reqwest::Method::PUT, &path, Some(content)).await;
    let reason = env.wait_membership(&lobby, &unlisted.id, "ban").await;
    assert_eq!(reason.as_deref(), Some(format!("Listed on {bans}: raid").as_str()));
    let reply = env.reply_to(&notice).await;
    assert!(reply.contains(&format!("decided again ({bans} gained the rule {})", unlisted.id)), "{reply}");
}

/// Scenarios 10 and 11: knockwarden killed while knocks arrive, then Synapse restarted: every
/// knock is acted on once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_crashes_and_restarts_lose_nothing_and_double_nothing() {
    let mut env = Env::start(&[LOBBY], lobby_policy).await;
    let lobby = env.room("lobby").to_owned();
    let alias = env.alias("lobby");

    env.kw.crash();
    let mut knockers = Vec::new();
    for i in 0..5 {
        let u = env.register(&format!("k{i}")).await;
        assert_eq!(u.knock(&alias, Some("a friend of the house"), None).await.0, 200);
        knockers.push(u);
    }
    env.kw.start().await;
    env.ping().await;
    for u in &knockers {
        env.wait_membership(&lobby, &u.id, "invite").await;
    }

    // Synapse restarts (its transaction IDs start again); later knocks are handled.
    env.hs.stop();
    env.hs.start().await;
    env.ping().await;
    let late = env.register("late").await;
    assert_eq!(late.knock(&alias, Some("friend, late"), None).await.0, 200);
    env.wait_membership(&lobby, &late.id, "invite").await;

    // Resent transactions and the start-up catch-up did not make anything happen twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for u in knockers.iter().chain([&late]) {
        assert_eq!(env.bot_changes(&lobby, &u.id, "invite").await, 1, "{} invited once", u.id);
    }
}

/// The homeserver is the source of truth about rooms: knockwarden started on an empty database,
/// for a bot already in a knock room, learns of the room and catches up on a knock made while
/// it was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_an_empty_database_learns_the_bots_rooms_from_the_homeserver() {
    let mut env = Env::start(&[LOBBY], lobby_policy).await;
    let lobby = env.room("lobby").to_owned();
    let alias = env.alias("lobby");
    env.kw.crash();
    std::fs::remove_dir_all(env.kw.dir.join("db")).unwrap();
    let u = env.register("newcomer").await;
    assert_eq!(u.knock(&alias, Some("a friend of the house"), None).await.0, 200);
    env.kw.start().await;
    env.wait_membership(&lobby, &u.id, "invite").await;
    // It knows the room, though no event about the bot's membership reached the new database.
    let cmd = env.moderator.say(&env.control, "!knock rooms").await;
    let reply = env.reply_to(&cmd).await;
    assert!(reply.starts_with("1 managed room(s)"), "{reply}");
    assert!(reply.contains(&alias), "{reply}");
}

/// Scenarios 12 and 13: room versions 10 and 12, `knock_restricted`, and a bot without power
/// to kick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_room_versions_join_rules_and_missing_power() {
    let rooms = [
        RoomSpec { alias: "v12", version: "12", join_rule: "knock", bot_power: true, space: false },
        RoomSpec { alias: "restricted", version: "10", join_rule: "knock_restricted", bot_power: true, space: false },
        RoomSpec { alias: "weak", version: "10", join_rule: "knock", bot_power: false, space: false },
    ];
    let env = Env::start(&rooms, |_| vec![("all.yaml", format!("rooms: [\"*\"]\n{RULES}"))]).await;
    let u = env.register("u").await;
    for alias in ["v12", "restricted"] {
        let room = env.room(alias).to_owned();
        assert_eq!(u.knock(&room, Some("a friend"), None).await.0, 200, "{alias}");
        env.wait_membership(&room, &u.id, "invite").await;
        let reviewed = env.register(&format!("r-{alias}")).await;
        assert_eq!(reviewed.knock(&room, None, None).await.0, 200);
        env.wait_membership(&room, &reviewed.id, "leave").await;
    }
    let weak = env.room("weak").to_owned();
    let w = env.register("w").await;
    assert_eq!(w.knock(&weak, None, None).await.0, 200);
    let n = env.notice(&["deny failed", "knockwarden needs power level 50 to kick in", "(it has 0)"]).await;
    assert!(n["content"]["body"].as_str().unwrap().contains(&w.id));
    assert_eq!(env.owner.membership(&weak, &w.id).await.0.as_deref(), Some("knock"));
}

/// A space with the knock join rule is governed like any room: a knock on it is decided by
/// policy and accepted with an invite, the knocker joins, and `!knock rooms` marks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_a_knock_on_a_space_is_accepted_by_policy() {
    let hub = RoomSpec { alias: "hub", version: "10", join_rule: "knock", bot_power: true, space: true };
    let env = Env::start(&[hub], |server| vec![("hub.yaml", format!("rooms: [\"#hub:{server}\"]\n{RULES}"))]).await;
    let space = env.room("hub").to_owned();
    let path = format!("v3/rooms/{}/state/m.room.create/", space.replace('!', "%21").replace(':', "%3A"));
    let created = env.owner.ok(reqwest::Method::GET, &path, None).await;
    assert_eq!(created["type"], "m.space", "{created}");

    let u = env.register("spacefriend").await;
    assert_eq!(u.knock(&env.alias("hub"), Some("a friend of the space"), None).await.0, 200);
    env.wait_membership(&space, &u.id, "invite").await;
    assert_eq!(u.join(&space).await.0, 200);
    env.wait_membership(&space, &u.id, "join").await;

    let cmd = env.moderator.say(&env.control, "!knock rooms").await;
    let reply = env.reply_to(&cmd).await;
    assert!(reply.contains(&format!("{} (space)", env.alias("hub"))), "{reply}");
}

/// Scenario 14: over federation. A user of server B knocks on a room of server A
/// (make_knock/send_knock); the bot on A accepts and the user joins from B; another user of B
/// is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_knocks_over_federation() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::generate(dir.path());
    let mut a = Synapse::configure(&dir.path().join("a"), Some(&dir.path().join("kw/registration.yaml")), Some(&tls));
    let mut b = Synapse::configure(&dir.path().join("b"), None, Some(&tls));
    let server_a = a.server_name.clone();
    let mut kw = Knockwarden::configure(
        &dir.path().join("kw"),
        &server_a,
        a.port,
        &format!("#control:{server_a}"),
        &lobby_policy(&server_a),
        "",
    );
    tokio::join!(a.start(), b.start());
    let owner = User::register(&a.url(), "owner").await;
    let control =
        owner.create_room(json!({"preset": "private_chat", "room_alias_name": "control", "invite": [&kw.bot]})).await;
    let lobby = create_managed(&owner, &kw.bot, &LOBBY).await;
    kw.start().await;
    ping(&a.url(), &kw.bot, &kw.as_token).await;
    wait_for("the bot joins the lobby", || async {
        (owner.membership(&lobby, &kw.bot).await.0.as_deref() == Some("join")).then_some(())
    })
    .await;
    let _control = control;

    let alias = format!("#lobby:{server_a}");
    let remote = User::register(&b.url(), "remote").await;
    assert!(remote.id.ends_with(&format!(":{}", b.server_name)));
    let (status, v) = remote.knock(&alias, Some("a friend from B"), None).await;
    assert_eq!(status, 200, "knock over federation: {v}");
    wait_for("the remote knocker is invited (seen on A)", || async {
        (owner.membership(&lobby, &remote.id).await.0.as_deref() == Some("invite")).then_some(())
    })
    .await;
    wait_for("the remote knocker joins from B", || async {
        let (status, _) = remote.join(&alias).await;
        (status == 200).then_some(())
    })
    .await;
    wait_for("joined, as A sees it", || async {
        (owner.membership(&lobby, &remote.id).await.0.as_deref() == Some("join")).then_some(())
    })
    .await;

    let other = User::register(&b.url(), "other").await;
    let (status, v) = other.knock(&lobby, None, Some(&server_a)).await;
    assert_eq!(status, 200, "knock by room ID with server_name: {v}");
    wait_for("the other remote knocker is denied (seen on A)", || async {
        (owner.membership(&lobby, &other.id).await.0.as_deref() == Some("leave")).then_some(())
    })
    .await;
}

/// `knockwarden doctor` in this suite's setup: every check holds while knockwarden runs (it
/// reads `/health` and `/ready`) and once it is stopped (it answers the homeserver's ping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_doctor_holds_while_knockwarden_runs_and_when_it_is_stopped() {
    let mut env = Env::start(&[LOBBY], lobby_policy).await;
    let (ok, out) = crate::helpers::doctor(&env.kw.config, &[]).await;
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with('✓')).count(), 9, "{out}");
    assert!(out.contains("in use by the running knockwarden"), "{out}");
    env.kw.proc.take().unwrap().stop();
    let (ok, out) = crate::helpers::doctor(&env.kw.config, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("doctor answered for the stopped service")
            && out.contains(&format!("format {}", ::knockwarden::storage::FORMAT)),
        "{out}"
    );
}

const HALL: RoomSpec = RoomSpec { alias: "hall", version: "10", join_rule: "knock", bot_power: true, space: false };

/// `account:` conditions on real Synapse: a server admin's token in `admin_token_file`; a
/// fresh local account is younger than an hour (reviewed in the lobby) and not older than one
/// (the hall's rule does not match: its default turns it away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_a_fresh_local_account_is_known_to_be_young() {
    let policies = |server: &str| {
        let rule = |room: &str, cond: &str, action: &str| {
            format!(
                "rooms: [\"#{room}:{server}\"]\ndefault: deny\nrules:\n  - name: by-age\n    when: {{ account: {{ {cond}: 1h }} }}\n    action: {action}\n"
            )
        };
        vec![
            ("lobby.yaml", rule("lobby", "younger_than", "review")),
            ("hall.yaml", rule("hall", "older_than", "accept")),
        ]
    };
    let mut env = Env::start(&[LOBBY, HALL], policies).await;
    // Given the admin token, and started again.
    env.kw.proc.take().unwrap().stop();
    let admin = User::register_admin(&env.hs.url(), "admin").await;
    std::fs::write(env.kw.dir.join("admin-token"), &admin.token).unwrap();
    let config = std::fs::read_to_string(&env.kw.config).unwrap();
    let server_line = format!("  server_name: \"{}\"\n", env.hs.server_name);
    assert!(config.contains(&server_line));
    let config = config.replace(&server_line, &format!("{server_line}  admin_token_file: \"admin-token\"\n"));
    std::fs::write(&env.kw.config, config).unwrap();
    env.kw.start().await;
    env.ping().await;

    let fresh = env.register("fresh").await;
    // This Synapse gives `creation_ts` in seconds, as knockwarden reads it.
    let path = format!("{}/_synapse/admin/v2/users/{}", env.hs.url(), client::enc(&fresh.id));
    let rec: Value =
        reqwest::Client::new().get(path).bearer_auth(&admin.token).send().await.unwrap().json().await.unwrap();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let created = rec["creation_ts"].as_u64().unwrap();
    assert!(created <= now_s && now_s - created < 600, "creation_ts {created} is not seconds near {now_s}");
    let (lobby, hall) = (env.room("lobby").to_owned(), env.room("hall").to_owned());
    assert_eq!(fresh.knock(&lobby, Some("Hello, I am new here"), None).await.0, 200);
    let (_, number) = env.review_notice(&fresh.id).await;
    assert!(number >= 1);
    assert_eq!(fresh.knock(&hall, Some("Hello, I am new here"), None).await.0, 200);
    env.wait_membership(&hall, &fresh.id, "leave").await;
    let log = std::fs::read_to_string(env.kw.dir.join("knockwarden.log")).unwrap();
    assert!(!log.contains(&admin.token), "the admin token is in the log");
}

/// `scripts/demo.sh`'s steps (after its build and install): one user let in, one refused, both
/// reported in the control room; then `stop` stops exactly what it started.
#[test]
fn the_demo_lets_one_in_and_refuses_one() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.py");
    let run = |step: &str| {
        std::process::Command::new(homeserver::python())
            .arg(&script)
            .arg(step)
            .arg(&demo)
            .env("KNOCKWARDEN_BIN", env!("CARGO_BIN_EXE_knockwarden"))
            .output()
            .unwrap()
    };
    let out = run("start");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let stopped = run("stop");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("@alice:localhost  invite"), "{text}");
    assert!(text.contains("@bob:localhost    leave"), "{text}");
    assert!(text.contains("→ denied (kicked) · rule too-short"), "{text}");
    assert!(text.contains("Stop them with: scripts/demo.sh stop"), "{text}");
    let stopped = String::from_utf8_lossy(&stopped.stdout).into_owned();
    assert!(stopped.contains("stopped knockwarden") && stopped.contains("stopped synapse"), "{stopped}");
}

/// Asks Synapse to ping knockwarden. knockwarden pings itself at start; Synapse fails two pings
/// in flight at once (502 "AlreadyCancelled"), so a collision is tried again.
async fn ping(hs_url: &str, bot: &str, as_token: &str) {
    let bot = User::with_token(hs_url, bot, as_token);
    let mut tries = 0;
    loop {
        let (status, v) = bot.call(reqwest::Method::POST, "v1/appservice/knockwarden/ping", Some(json!({}))).await;
        tries += 1;
        if status == 502 && tries < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "appservice ping: {v}");
        return;
    }
}

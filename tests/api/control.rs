//! The control room: moderators' commands and reactions arrive as pushed events; the fake
//! homeserver receives the invites, kicks and bans, replies, reactions and edits.

use knockwarden::storage::{Outcome, Resolution};
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, CONTROL_ROOM, FakeHomeserver, MODERATOR, TestApp, eventually, fake_homeserver::Recorded, spawn_app_in,
};

pub(crate) const ROOM: &str = "!r:test.local";
const OTHER: &str = "!other:test.local";
const RANDO: &str = "@rando:test.local";

const POLICY: &str = r#"rooms: ["!r:test.local"]
default: review
rules:
  - name: spam
    when: { reason: { contains: [spam] } }
    action: ban
"#;

/// A homeserver whose control room gives the moderator power level 50.
pub(crate) async fn homeserver() -> FakeHomeserver {
    let hs = FakeHomeserver::start().await;
    hs.set_state(
        CONTROL_ROOM,
        "m.room.power_levels",
        "",
        "@owner:test.local",
        json!({"users": {"@owner:test.local": 100, MODERATOR: 50, RANDO: 0}}),
    );
    // Moderators count while they are members of the control room.
    for user in ["@owner:test.local", MODERATOR, RANDO] {
        hs.set_membership(CONTROL_ROOM, user, "join");
    }
    hs
}

pub(crate) async fn start(dir: tempfile::TempDir, hs: FakeHomeserver, extra_config: &str) -> TestApp {
    start_with(dir, hs, extra_config, POLICY).await
}

/// [`start`] with another policy.
pub(crate) async fn start_with(
    dir: tempfile::TempDir,
    hs: FakeHomeserver,
    extra_config: &str,
    policy: &str,
) -> TestApp {
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policy).unwrap();
    let opts = AppOptions { extra_config: extra_config.to_owned(), ..Default::default() };
    let app = spawn_app_in(dir, hs, opts).await;
    eventually("start-up done", || app.store.get_meta("control_room_id").unwrap().is_some()).await;
    app
}

async fn app() -> TestApp {
    start(tempfile::tempdir().unwrap(), homeserver().await, "").await
}

pub(crate) fn message(id: &str, sender: &str, body: &str) -> Value {
    json!({"event_id": id, "room_id": CONTROL_ROOM, "sender": sender, "type": "m.room.message",
           "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}})
}

fn reaction(id: &str, sender: &str, on: &str, key: &str) -> Value {
    json!({"event_id": id, "room_id": CONTROL_ROOM, "sender": sender, "type": "m.reaction", "origin_server_ts": 1,
           "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": on, "key": key}}})
}

impl TestApp {
    pub(crate) async fn push(&self, txn: &str, events: Vec<Value>) {
        assert_eq!(self.put_txn(txn, &json!({"events": events})).await.status(), 200);
    }

    /// `user` knocks on ROOM (the fake homeserver then says they are knocking).
    pub(crate) async fn knock_on(&self, txn: &str, id: &str, user: &str, reason: Option<&str>) {
        self.homeserver.set_knocking(ROOM, user, id);
        self.push(txn, vec![crate::helpers::knock_event(id, ROOM, user, reason)]).await;
    }

    /// Waits for review item `n` to be announced; returns its notice's event ID.
    pub(crate) async fn review_notice(&self, n: u64) -> String {
        let store = self.store.clone();
        eventually(&format!("review #{n} announced"), || {
            store.reviews().get(n).unwrap().is_some_and(|i| i.notice_event.is_some())
        })
        .await;
        self.store.reviews().get(n).unwrap().unwrap().notice_event.unwrap().to_string()
    }

    /// The plain bodies of the bot's control-room messages that are not replies or edits.
    pub(crate) fn plain_notices(&self) -> Vec<String> {
        self.sent("m.room.message")
            .into_iter()
            .filter(|r| r.body.get("m.relates_to").is_none())
            .map(|r| r.body["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub(crate) fn sent(&self, kind: &str) -> Vec<Recorded> {
        self.homeserver.requests_to("PUT", &format!("/rooms/{CONTROL_ROOM}/send/{kind}/"))
    }

    /// Bodies of the notices replying to `event_id`.
    pub(crate) fn replies_to(&self, event_id: &str) -> Vec<String> {
        self.sent("m.room.message")
            .into_iter()
            .filter(|r| r.body["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id)
            .map(|r| r.body["body"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) async fn reply_to(&self, event_id: &str) -> String {
        eventually(&format!("a reply to {event_id}"), || !self.replies_to(event_id).is_empty()).await;
        let replies = self.replies_to(event_id);
        assert_eq!(replies.len(), 1, "one message per command: {replies:#?}");
        replies.into_iter().next().unwrap()
    }

    /// The reaction keys the bot put on `event_id`.
    pub(crate) fn reactions_on(&self, event_id: &str) -> Vec<String> {
        self.sent("m.reaction")
            .into_iter()
            .filter(|r| r.body["m.relates_to"]["event_id"] == event_id)
            .map(|r| r.body["m.relates_to"]["key"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The edits of `event_id`: their new plain text.
    pub(crate) fn edits_of(&self, event_id: &str) -> Vec<String> {
        self.sent("m.room.message")
            .into_iter()
            .filter(|r| {
                r.body["m.relates_to"]["rel_type"] == "m.replace" && r.body["m.relates_to"]["event_id"] == event_id
            })
            .map(|r| r.body["m.new_content"]["body"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn posted(&self, verb: &str) -> Vec<Recorded> {
        self.homeserver.requests_to("POST", &format!("/rooms/{ROOM}/{verb}"))
    }

    /// A moderator's command; returns the one reply.
    pub(crate) async fn say(&self, txn: &str, id: &str, body: &str) -> String {
        self.push(txn, vec![message(id, MODERATOR, body)]).await;
        let reply = self.reply_to(id).await;
        eventually("the command's ✅/❌", || self.reactions_on(id).iter().any(|k| k == "✅" || k == "❌")).await;
        reply
    }
}

#[tokio::test]
async fn a_moderator_approves_by_number_and_the_notice_is_edited() {
    let app = app().await;
    app.knock_on("1", "$k1", "@dave:elsewhere.example", Some("I would like to help")).await;
    let notice = app.review_notice(1).await;

    let reply = app.say("2", "$c1", "!knock approve #1").await;
    assert_eq!(
        reply, "#1 @dave:elsewhere.example invited to !r:test.local (approved by @mod:test.local)",
        "the reply names the item, the user, the room and who decided"
    );
    let invites = app.posted("invite");
    assert_eq!(invites.len(), 1);
    assert_eq!(
        invites[0].body,
        json!({"user_id": "@dave:elsewhere.example", "reason": "Knock approved by @mod:test.local"})
    );
    assert_eq!(app.reactions_on("$c1"), vec!["⏳", "✅"], "⏳ while carried out, then ✅");

    let item = app.store.reviews().get(1).unwrap().unwrap();
    assert_eq!(item.closed.map(|c| c.to_string()).as_deref(), Some("approved by @mod:test.local"));
    let audit = app.store.audit().get(item.audit_id).unwrap().unwrap();
    assert_eq!(audit.outcome, Outcome::Resolved(Resolution::Approved { by: MODERATOR.try_into().unwrap() }));
    eventually("the review notice is edited", || !app.edits_of(&notice).is_empty()).await;
    let edit = &app.edits_of(&notice)[0];
    assert!(edit.starts_with("#1 dave (@dave:elsewhere.example) knocked on !r:test.local"), "{edit}");
    assert!(edit.contains("Closed: approved by @mod:test.local") && !edit.contains("react"), "{edit}");

    // The bot's own invite, pushed back, does not close the item a second time.
    let invited = crate::helpers::member_event("$i", ROOM, crate::helpers::BOT, "@dave:elsewhere.example", "invite");
    app.push("3", vec![invited]).await;
    // The time it took counts towards the median in stats.
    let stats = app.say("5", "$c3", "!knock stats").await;
    assert!(
        stats.contains("median time to resolve a review: ") && !stats.contains("no review resolved yet"),
        "{stats}"
    );
    let again = app.say("4", "$c2", "!knock approve 1").await;
    assert_eq!(again, "#1 is already closed: approved by @mod:test.local.");
    assert_eq!(app.reactions_on("$c2"), vec!["❌"]);
    assert_eq!(app.posted("invite").len(), 1, "nothing done twice");
}

#[tokio::test]
async fn deny_and_ban_take_users_rooms_and_reasons() {
    let app = app().await;
    app.knock_on("1", "$k1", "@erin:elsewhere.example", None).await;
    app.knock_on("2", "$k2", "@frank:elsewhere.example", Some("hello")).await;
    app.knock_on("3", "$k3", "@gina:test.local", Some("hi")).await;
    app.review_notice(3).await;

    let r = app.say("4", "$c1", "!knock deny @erin:elsewhere.example not today, <sorry>").await;
    assert_eq!(r, "#1 @erin:elsewhere.example kicked from !r:test.local (denied by @mod:test.local)");
    assert_eq!(
        app.posted("kick")[0].body,
        json!({"user_id": "@erin:elsewhere.example", "reason": "not today, <sorry>"})
    );

    let r = app.say("5", "$c2", &format!("!knock ban #2 {ROOM} spam wave")).await;
    assert!(r.starts_with("#2 @frank:elsewhere.example banned from"), "{r}");
    assert_eq!(app.posted("ban")[0].body["reason"], "spam wave");

    // A user ID without a server is one of ours.
    let r = app.say("6", "$c3", "!knock deny @gina").await;
    assert!(r.starts_with("#3 @gina:test.local kicked"), "{r}");
    assert_eq!(app.posted("kick")[1].body["reason"], "Knock denied by @mod:test.local");
    assert!(app.store.reviews().open().unwrap().is_empty());
}

#[tokio::test]
async fn errors_are_specific_and_escaped() {
    let app = app().await;
    app.knock_on("1", "$k1", "@hal:elsewhere.example", Some("<script>alert(1)</script>")).await;
    app.review_notice(1).await;
    // The same user knocking on a second room.
    app.homeserver.set_membership(OTHER, "@hal:elsewhere.example", "knock");
    app.push("2", vec![crate::helpers::knock_event("$k2", OTHER, "@hal:elsewhere.example", None)]).await;
    eventually("both knocks known", || app.store.knocks().of("@hal:elsewhere.example").unwrap().len() == 2).await;

    let r = app.say("3", "$c1", "!knock aprove 1").await;
    assert!(r.contains("unrecognized subcommand 'aprove'") && r.contains("'approve'"), "{r}");
    let r = app.say("4", "$c2", "!knock approve").await;
    assert!(r.contains("required") && r.contains("<TARGET>"), "{r}");
    let r = app.say("5", "$c3", "!knock approve @hal:elsewhere.example").await;
    assert!(r.contains("is knocking on 2 rooms") && r.contains(ROOM) && r.contains(OTHER), "{r}");
    let r = app.say("6", "$c4", "!knock approve 99").await;
    assert!(r.contains("There is no review item #99"), "{r}");
    let r = app.say("7", "$c5", "!knock approve @nobody:test.local").await;
    assert!(r.contains("@nobody:test.local has no pending knock"), "{r}");
    let r = app.say("8", "$c6", "!knock approve @hal:elsewhere.example #nowhere:test.local").await;
    assert!(r.contains("Unknown room #nowhere:test.local"), "{r}");
    // The homeserver's refusal, with its errcode.
    app.homeserver.script("/invite", [(403, json!({"errcode": "M_FORBIDDEN", "error": "not allowed"}), None)]);
    let r = app.say("9", "$c7", &format!("!knock approve @hal:elsewhere.example {ROOM}")).await;
    assert!(r.contains("Not approved") && r.contains("M_FORBIDDEN"), "{r}");
    assert_eq!(app.reactions_on("$c7"), vec!["⏳", "❌"]);
    assert!(app.store.reviews().get(1).unwrap().unwrap().closed.is_none(), "still open after a refusal");

    // User text is escaped in the HTML.
    app.say("10", "$c8", "!knock pending").await;
    let html: Vec<String> = app
        .sent("m.room.message")
        .into_iter()
        .filter(|r| r.body["m.relates_to"]["m.in_reply_to"]["event_id"] == "$c8")
        .map(|r| r.body["formatted_body"].as_str().unwrap().to_owned())
        .collect();
    assert!(html[0].contains("&lt;script&gt;") && !html[0].contains("<script>"), "{}", html[0]);
}

#[tokio::test]
async fn a_non_moderator_changes_nothing_and_is_told_once() {
    let app = app().await;
    app.knock_on("1", "$k1", "@ivy:elsewhere.example", Some("hi")).await;
    let notice = app.review_notice(1).await;
    app.push("2", vec![message("$c1", RANDO, "!knock approve 1")]).await;
    let r = app.reply_to("$c1").await;
    assert!(r.starts_with("@rando:test.local is not a moderator, so nothing was done"), "{r}");
    // Told once: their reaction, and a flood of commands, change nothing and get no reply.
    app.push("3", vec![reaction("$r1", RANDO, &notice, "✅")]).await;
    let flood: Vec<Value> = (0..20).map(|i| message(&format!("$f{i}"), RANDO, "!knock help")).collect();
    app.push("3b", flood).await;
    // Messages that are not commands, the bot's own messages and other rooms' are ignored.
    let mut not_commands = vec![
        message("$m1", RANDO, "good morning"),
        message("$m2", crate::helpers::BOT, "!knock approve 1"),
        json!({"event_id": "$m3", "room_id": ROOM, "sender": MODERATOR, "type": "m.room.message", "origin_server_ts": 1,
               "content": {"msgtype": "m.text", "body": "!knock approve 1"}}),
    ];
    not_commands.push(message("$c2", MODERATOR, "!knock pending"));
    app.push("4", not_commands).await;
    let r = app.reply_to("$c2").await;
    assert!(r.contains("#1 @ivy:elsewhere.example"), "still pending: {r}");
    for id in ["$m1", "$m2", "$m3"] {
        assert!(app.replies_to(id).is_empty() && app.reactions_on(id).is_empty(), "{id} was answered");
    }
    let told = app
        .sent("m.room.message")
        .iter()
        .filter(|r| r.body["body"].as_str().unwrap().contains("is not a moderator"))
        .count();
    assert_eq!(told, 1, "a non-moderator is told once per 10 minutes");
    assert!(app.posted("invite").is_empty());
    assert!(app.store.reviews().get(1).unwrap().unwrap().closed.is_none());

    // Power levels are followed from pushed events: given 50, the same member may command.
    let promoted = json!({"event_id": "$pl", "room_id": CONTROL_ROOM, "sender": "@owner:test.local",
        "type": "m.room.power_levels", "state_key": "", "origin_server_ts": 1,
        "content": {"users": {"@owner:test.local": 100, MODERATOR: 50, RANDO: 50}}});
    app.push("5", vec![promoted, message("$c3", RANDO, "!knock approve 1")]).await;
    let r = app.reply_to("$c3").await;
    assert_eq!(r, "#1 @ivy:elsewhere.example invited to !r:test.local (approved by @rando:test.local)");
}

#[tokio::test]
async fn reactions_on_review_notices_approve_deny_and_ban() {
    let app = app().await;
    for (i, u) in ["@a:x.example", "@b:x.example", "@c:x.example"].iter().enumerate() {
        app.knock_on(&format!("k{i}"), &format!("$k{i}"), u, Some("please")).await;
    }
    let (n1, n2, n3) = (app.review_notice(1).await, app.review_notice(2).await, app.review_notice(3).await);
    app.push(
        "r",
        vec![
            reaction("$r1", MODERATOR, &n1, "✅"),
            reaction("$r2", MODERATOR, &n2, "❌"),
            reaction("$r3", MODERATOR, &n3, "🔨"),
            reaction("$r4", MODERATOR, &n3, "👍"),
        ],
    )
    .await;
    assert_eq!(app.reply_to(&n1).await, "#1 @a:x.example invited to !r:test.local (approved by @mod:test.local)");
    assert_eq!(app.reply_to(&n2).await, "#2 @b:x.example kicked from !r:test.local (denied by @mod:test.local)");
    assert_eq!(app.reply_to(&n3).await, "#3 @c:x.example banned from !r:test.local (banned by @mod:test.local)");
    assert_eq!(app.posted("invite").len(), 1);
    assert_eq!(app.posted("kick").len(), 1);
    assert_eq!(app.posted("ban").len(), 1);
    assert!(app.store.reviews().open().unwrap().is_empty());
    eventually("the notices are edited", || [&n1, &n2, &n3].iter().all(|n| !app.edits_of(n).is_empty())).await;
}

#[tokio::test]
async fn items_resolved_outside_knockwarden_are_reported_on_their_notice() {
    let app = app().await;
    app.knock_on("1", "$k1", "@jo:x.example", Some("hi")).await;
    app.knock_on("2", "$k2", "@kim:x.example", Some("hi")).await;
    let (n1, n2) = (app.review_notice(1).await, app.review_notice(2).await);
    let withdrew = crate::helpers::member_event("$w", ROOM, "@jo:x.example", "@jo:x.example", "leave");
    let invited = crate::helpers::member_event("$i", ROOM, "@owner:test.local", "@kim:x.example", "invite");
    app.push("3", vec![withdrew, invited]).await;
    assert_eq!(app.reply_to(&n1).await, "#1 @jo:x.example on !r:test.local: withdrawn");
    assert_eq!(app.reply_to(&n2).await, "#2 @kim:x.example on !r:test.local: accepted by @owner:test.local");
    eventually("edited", || !app.edits_of(&n1).is_empty() && !app.edits_of(&n2).is_empty()).await;
    assert!(app.edits_of(&n2)[0].contains("Closed: accepted by @owner:test.local"));
}

#[tokio::test]
async fn policies_are_set_from_the_room_checked_kept_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let hs = homeserver().await;
    let app = start(dir, hs, "").await;

    let broken = "!knock policy set lobby\n```yaml\nrooms: [\"!other:test.local\"]\ndefault: acept\n```";
    let r = app.say("1", "$c1", broken).await;
    assert!(r.starts_with("Policy lobby refused; nothing changed:"), "{r}");
    assert!(r.contains("control-room/lobby.yaml:2:10") && r.contains("accept"), "quoted with its line: {r}");
    assert_eq!(app.store.policies().active().unwrap(), Some(1));

    let r = app.say("2", "$c2", "!knock policy set p\n```yaml\nrooms: [\"*\"]\ndefault: deny\n```").await;
    assert!(r.contains("A policy file already defines p (") && r.contains("p.yaml"), "{r}");
    let r = app.say("3", "$c3", "!knock policy set lobby").await;
    assert!(r.contains("Put the policy in a code block"), "{r}");

    let good = "!knock policy set lobby\n```yaml\nrooms: [\"!other:test.local\"]\ndefault: accept\nrules:\n  - name: never\n    when: { server: never.example }\n    action: deny\n```";
    let r = app.say("4", "$c4", good).await;
    assert_eq!(r, "Policy lobby is set; version 2 is active (undo: !knock policy rollback 1).");
    // It governs its room at once.
    app.homeserver.set_membership(OTHER, "@lu:x.example", "knock");
    app.push("5", vec![crate::helpers::knock_event("$k1", OTHER, "@lu:x.example", None)]).await;
    eventually("accepted by the new policy", || {
        !app.homeserver.requests_to("POST", &format!("/rooms/{OTHER}/invite")).is_empty()
    })
    .await;

    // A reload (files unchanged) and a restart keep it.
    let r = app.say("6", "$c5", "!knock policy reload").await;
    assert_eq!(r, "policies unchanged (version 2)");
    let (dir, hs) = app.stop().await;
    let app = start(dir, hs, "").await;
    assert_eq!(app.store.policies().active().unwrap(), Some(2), "no new version at start");
    let r = app.say("7", "$c6", "!knock policy list").await;
    assert!(r.contains("Policy version 2 is active") && r.contains("lobby (set from the control room)"), "{r}");
    let r = app.say("8", "$c7", "!knock policy show lobby").await;
    assert!(r.contains("default: accept"), "{r}");
    let r = app.say("9", "$c8", "!knock policy history").await;
    assert!(r.contains("v2 (active)") && r.contains("lobby set by @mod:test.local") && r.contains("v1"), "{r}");
    let r = app.say("10", "$c9", "!knock policy history lobby").await;
    assert!(r.contains("v2") && !r.contains("v1 "), "{r}");

    let r = app.say("11", "$c10", "!knock policy rollback 1").await;
    assert!(r.starts_with("Policy version 3 is active: a copy of version 1"), "{r}");
    assert!(app.store.policies().set_in_room().unwrap().is_empty(), "the room's policies went back too");
    let r = app.say("12", "$c11", "!knock policy list").await;
    assert!(!r.contains("lobby"), "{r}");
    let r = app.say("13", "$c12", "!knock policy rollback 77").await;
    assert!(r.contains("policy version 77 does not exist"), "{r}");
}

#[tokio::test]
async fn unreviewed_items_expire_and_are_denied_when_configured() {
    let config = "review:\n  expire_after: 1s\n  on_expiry: deny\n";
    let app = start(tempfile::tempdir().unwrap(), homeserver().await, config).await;
    app.knock_on("1", "$k1", "@max:x.example", Some("hello")).await;
    let notice = app.review_notice(1).await;
    eventually("kicked on expiry", || !app.posted("kick").is_empty()).await;
    assert_eq!(
        app.posted("kick")[0].body,
        json!({"user_id": "@max:x.example", "reason": "Knock not reviewed within 1s"})
    );
    let r = app.reply_to(&notice).await;
    assert_eq!(r, "#1 @max:x.example on !r:test.local: expired after 1s without review: denied");
    let item = app.store.reviews().get(1).unwrap().unwrap();
    eventually("settled", || app.store.audit().get(item.audit_id).unwrap().unwrap().outcome == Outcome::Done).await;
}

#[tokio::test]
async fn unreviewed_items_expire_and_stay_knocking_by_default() {
    let config = "review:\n  expire_after: 1s\n";
    let app = start(tempfile::tempdir().unwrap(), homeserver().await, config).await;
    app.knock_on("1", "$k1", "@ned:x.example", Some("hello")).await;
    let notice = app.review_notice(1).await;
    let r = app.reply_to(&notice).await;
    assert_eq!(r, "#1 @ned:x.example on !r:test.local: expired after 1s without review");
    assert!(app.posted("kick").is_empty());
    // Still knocking: a moderator may still let them in by user ID.
    let r = app.say("2", "$c1", "!knock approve @ned:x.example").await;
    assert!(r.starts_with("@ned:x.example invited"), "{r}");
}

#[tokio::test]
async fn read_only_commands_answer_in_one_message() {
    let app = app().await;
    app.push("j", vec![crate::helpers::member_event("$j", ROOM, crate::helpers::BOT, crate::helpers::BOT, "join")])
        .await;
    for i in 0..23 {
        app.knock_on(&format!("k{i}"), &format!("$k{i}"), &format!("@u{i}:x.example"), Some("let me in")).await;
    }
    app.knock_on("s", "$spam", "@spammer:x.example", Some("buy spam")).await;
    app.review_notice(23).await;

    let r = app.say("1", "$c1", "!knock pending").await;
    assert!(r.starts_with("23 knock(s) waiting for review (page 1 of 2)"), "{r}");
    assert_eq!(r.lines().filter(|l| l.starts_with('#')).count(), 20, "{r}");
    assert!(r.ends_with("…and 3 more: !knock pending 2"), "{r}");
    let r = app.say("2", "$c2", "!knock pending 2").await;
    assert_eq!(r.lines().filter(|l| l.starts_with('#')).count(), 3, "{r}");

    let r = app.say("3", "$c3", "!knock log 3").await;
    assert!(r.starts_with("Last 3 decision(s), newest first"), "{r}");
    assert!(r.contains("@spammer:x.example on !r:test.local → ban (policy p v1, rule spam)"), "{r}");
    let r = app.say("4", "$c4", "!knock stats").await;
    assert!(r.contains("24 knock(s)") && r.contains("review 23") && r.contains("ban 1"), "{r}");
    assert!(r.contains("waiting for review now: 23"), "{r}");
    let r = app.say("5", "$c5", "!knock stats 30d").await;
    assert!(r.starts_with("Last 30d"), "{r}");
    let r = app.say("6", "$c6", "!knock rooms").await;
    assert!(r.contains("!r:test.local") && r.contains("policy p") && r.contains("23 pending"), "{r}");
    let r = app.say("7", "$c7", "!knock explain @zed:x.example !r:test.local cheap spam").await;
    assert!(r.contains("→ ban") && r.contains("rule spam"), "{r}");
    let r = app.say("8", "$c8", "!knock help").await;
    assert!(r.contains("Usage: !knock") && r.contains("dry-run"), "{r}");
    let r = app.say("9", "$c9", "!knock help deny").await;
    assert!(r.contains("Usage: !knock deny <TARGET>"), "{r}");
    // A mention of the bot works as the prefix.
    let r = app.say("10", "$c10", &format!("{}: dry-run status", crate::helpers::BOT)).await;
    assert!(r.starts_with("Dry run is off"), "{r}");
}

#[tokio::test]
async fn dry_run_is_switched_at_run_time_and_kept() {
    let app = app().await;
    let r = app.say("1", "$c1", "!knock dry-run on").await;
    assert!(r.starts_with("Dry run is now on (set by @mod:test.local)"), "{r}");
    app.knock_on("2", "$k1", "@sam:x.example", Some("spam spam")).await;
    eventually("decided", || app.store.audit().all().unwrap().len() == 1).await;
    assert_eq!(app.store.audit().all().unwrap()[0].outcome, Outcome::DryRun);
    let (dir, hs) = app.stop().await;
    let app = start(dir, hs, "").await;
    let r = app.say("3", "$c2", "!knock dry-run status").await;
    assert!(r.starts_with("Dry run is on") && r.contains("run-time switch on"), "{r}");
    app.say("4", "$c3", "!knock dry-run off").await;
    app.knock_on("5", "$k2", "@tia:x.example", Some("spam")).await;
    eventually("banned for real", || !app.posted("ban").is_empty()).await;
    assert!(app.posted("ban").iter().all(|r| r.body["user_id"] == "@tia:x.example"));
}

#[tokio::test]
async fn a_verdict_on_someone_no_longer_knocking_does_nothing_and_closes_the_item() {
    let app = app().await;
    app.knock_on("1", "$k1", "@oz:x.example", Some("hi")).await;
    let notice = app.review_notice(1).await;
    // The knocker left, and the homeserver has not told us yet.
    app.homeserver.set_membership(ROOM, "@oz:x.example", "leave");
    let r = app.say("2", "$c1", "!knock ban 1").await;
    assert_eq!(r, "#1 Nothing done for @oz:x.example: no longer knocking (membership: leave).");
    assert!(app.posted("ban").is_empty());
    assert_eq!(app.reactions_on("$c1"), vec!["⏳", "❌"]);
    assert!(app.store.reviews().get(1).unwrap().unwrap().closed.unwrap().to_string().contains("no longer knocking"));
    eventually("the notice is edited", || !app.edits_of(&notice).is_empty()).await;
}

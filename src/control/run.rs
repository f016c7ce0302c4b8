//! Carrying out control-room commands and verdict reactions.
//!
//! Every command gets exactly one reply (an `m.notice` replying to it) and ends with a ✅ or
//! ❌ reaction; a command that acts on the homeserver gets ⏳ first. The reply and reactions
//! are queued as follow-up actions, so they are sent even if the homeserver stumbles. A
//! transient homeserver failure while acting fails the whole command, which the executor
//! retries: the ⏳ reaction keeps its transaction ID (the homeserver posts it once) and the
//! membership check before acting keeps it from acting twice.

use ruma::{OwnedRoomId, OwnedUserId, RoomAliasId};

use super::{
    command::{self, Command, DryRunMode, Parsed, PolicyCommand, RoomArg, Target},
    message::Verdict,
};
use crate::{
    duration,
    homeserver::{HsError, MembershipChange},
    live_policies::{self, SetOutcome},
    notices::{self, Msg},
    pipeline::{
        DRY_RUN_KEY, Shared,
        executor::{self, ActionError},
        knocks::{self, Context},
    },
    policy::{Action as PolicyAction, format_problems},
    power,
    storage::{Action, Outcome, ReviewItem, Store, now_ms},
};

/// Items shown per page of `!knock pending`.
pub const PAGE: usize = 20;

/// What a command came to: the reply, whether it succeeded, and more actions to queue.
struct Done {
    reply: Msg,
    ok: bool,
    follow_ups: Vec<Action>,
}

impl Done {
    fn ok(reply: Msg) -> Self {
        Done { reply, ok: true, follow_ups: vec![] }
    }
    fn failed(reply: Msg) -> Self {
        Done { reply, ok: false, follow_ups: vec![] }
    }
    fn text(ok: bool, text: &str) -> Self {
        let mut m = Msg::new();
        m.text(text);
        Done { reply: m, ok, follow_ups: vec![] }
    }
}

/// A failure the moderator can act on: told as the reply, with a ❌.
type Refusal = Done;

/// Runs a command sent by `sender` in message `event_id`; returns the actions to queue.
pub async fn command(
    shared: &Shared,
    seq: u64,
    event_id: &str,
    sender: &str,
    text: &str,
) -> Result<Vec<Action>, ActionError> {
    if !executor::is_moderator(shared, sender).await? {
        tracing::warn!(sender, "a command from someone who is not a moderator; nothing done");
        return Ok(vec![not_a_moderator(shared, sender).reply_to(event_id)]);
    }
    let (line, block) = command::split_block(text);
    tracing::info!(sender, command = %line.trim(), "control-room command");
    let done = match command::parse(&line) {
        Parsed::Help(help) => {
            let mut m = Msg::new();
            m.pre(&help);
            Done::ok(m)
        }
        Parsed::Error(e) => {
            let mut m = Msg::new();
            m.pre(&e);
            Done::failed(m)
        }
        Parsed::Command(cmd) => {
            let ctx = Ctx { shared, seq, sender, reply_to: event_id, by_reaction: false };
            ctx.run(cmd, block).await?
        }
    };
    let mut out = vec![done.reply.reply_to(event_id), notices::react(event_id, if done.ok { "✅" } else { "❌" })];
    out.extend(done.follow_ups);
    Ok(out)
}

/// Handles a reaction on a control-room event: ✅ approves, ❌ denies, 🔨 bans the review
/// item whose notice it is on. Other reactions, and reactions on other events, are ignored.
pub async fn reaction(
    shared: &Shared,
    seq: u64,
    sender: &str,
    target: &str,
    key: &str,
) -> Result<Vec<Action>, ActionError> {
    let Some(verdict) = Verdict::from_key(key) else { return Ok(vec![]) };
    let Some(item) = shared.store.review_by_notice(target)? else { return Ok(vec![]) };
    if !executor::is_moderator(shared, sender).await? {
        tracing::warn!(sender, "a verdict reaction from someone who is not a moderator; nothing done");
        return Ok(vec![not_a_moderator(shared, sender).reply_to(target)]);
    }
    tracing::info!(sender, number = item.number, ?verdict, "verdict by reaction");
    let ctx = Ctx { shared, seq, sender, reply_to: target, by_reaction: true };
    let done = ctx.decide(verdict, Target::Review(item.number), None, None).await?;
    let mut out = vec![done.reply.reply_to(target)];
    out.extend(done.follow_ups);
    Ok(out)
}

fn not_a_moderator(shared: &Shared, sender: &str) -> Msg {
    let mut m = Msg::new();
    m.text(&format!(
        "{sender} is not a moderator, so nothing was done. Moderators are the members of this room with power level {} or more, and those members listed in knockwarden's config.",
        shared.config.moderators.power_level
    ));
    m
}

/// The edit (and, with `reply`, the reply) that reports a closed review item on its notice.
pub fn review_closed(shared: &Shared, number: u64, reply: bool) -> Result<Vec<Action>, ActionError> {
    let store = &shared.store;
    let Some(item) = store.review(number)? else { return Ok(vec![]) };
    let Some(how) = item.closed.as_deref() else { return Ok(vec![]) };
    let Some(entry) = store.audit(item.audit_id)? else { return Ok(vec![]) };
    let label = knocks::room_label(store, &item.room_id);
    let mut out = Vec::new();
    if let Some(notice) = &item.notice_event {
        let outcome = notices::verdict(entry.action, entry.dry_run);
        out.push(knocks::entry_notice(store, &entry, outcome, Some(number), Some(how)).replacing(notice));
    }
    if reply {
        let mut m = Msg::new();
        m.bold(&format!("#{number}")).text(&format!(" {} on {label}: {how}", item.user_id));
        out.push(match &item.notice_event {
            Some(notice) => m.reply_to(notice),
            None => m.notice(),
        });
    }
    Ok(out)
}

/// The knock a moderator means.
struct Found {
    room: OwnedRoomId,
    user: OwnedUserId,
    review: Option<ReviewItem>,
    audit_id: Option<u64>,
}

/// One command being carried out.
struct Ctx<'a> {
    shared: &'a Shared,
    seq: u64,
    sender: &'a str,
    /// The event replies go to (the command, or the review notice reacted to).
    reply_to: &'a str,
    by_reaction: bool,
}

impl Ctx<'_> {
    fn store(&self) -> &Store {
        &self.shared.store
    }

    async fn run(&self, cmd: Command, block: Option<String>) -> Result<Done, ActionError> {
        Ok(match cmd {
            Command::Pending { page } => self.pending(page as usize)?,
            Command::Approve { target, room } => self.decide(Verdict::Approve, target, room, None).await?,
            Command::Deny { target, rest } => {
                let (room, reason) = command::room_and_reason(&rest);
                self.decide(Verdict::Deny, target, room, reason).await?
            }
            Command::Ban { target, rest } => {
                let (room, reason) = command::room_and_reason(&rest);
                self.decide(Verdict::Ban, target, room, reason).await?
            }
            Command::Explain { user, room, reason } => {
                let reason = reason.join(" ");
                self.explain(&user.0, &room, (!reason.is_empty()).then_some(reason.as_str())).await?
            }
            Command::Policy { command } => self.policy(command, block)?,
            Command::Rooms => self.rooms()?,
            Command::Stats { window } => self.stats(window)?,
            Command::Log { n } => self.log(n as usize)?,
            Command::DryRun { mode } => self.dry_run(mode)?,
        })
    }

    /// Finds the room a room argument names: an ID as is, an alias from the cache or the
    /// homeserver's directory.
    async fn resolve_room(&self, room: &RoomArg) -> Result<Result<OwnedRoomId, Refusal>, ActionError> {
        let alias = match <&RoomAliasId>::try_from(&*room.0) {
            Ok(alias) => alias,
            Err(_) => return Ok(Ok(OwnedRoomId::try_from(room.0.as_str()).expect("a room ID"))),
        };
        if let Some(Some(id)) = self.store().alias(alias.as_str())? {
            return Ok(Ok(OwnedRoomId::try_from(id.as_str()).map_err(|e| ActionError::Permanent(e.to_string()))?));
        }
        match self.shared.homeserver.resolve_alias(alias).await {
            Ok(id) => {
                self.store().commit(&[Store::put_alias(alias.as_str(), Some(id.as_str()))])?;
                Ok(Ok(id))
            }
            Err(HsError::Api { status: 404, .. }) => {
                Ok(Err(Done::text(false, &format!("Unknown room {alias}: the homeserver has no such alias."))))
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(Err(refused(&format!("look up {alias}"), &e))),
        }
    }

    async fn find(&self, target: Target, room: Option<RoomArg>) -> Result<Result<Found, Refusal>, ActionError> {
        let store = self.store();
        let room_id = match &room {
            Some(r) => match self.resolve_room(r).await? {
                Ok(id) => Some(id),
                Err(refusal) => return Ok(Err(refusal)),
            },
            None => None,
        };
        match target {
            Target::Review(n) => {
                let Some(item) = store.review(n)? else {
                    return Ok(Err(Done::text(
                        false,
                        &format!("There is no review item #{n}; !knock pending lists the open ones."),
                    )));
                };
                if let Some(how) = &item.closed {
                    return Ok(Err(Done::text(false, &format!("#{n} is already closed: {how}."))));
                }
                if let (Some(want), Some(r)) = (&room_id, &room)
                    && want.as_str() != item.room_id
                {
                    let label = knocks::room_label(store, &item.room_id);
                    return Ok(Err(Done::text(false, &format!("#{n} is a knock on {label}, not on {}.", r.0))));
                }
                let parse = |e: ruma::IdParseError| ActionError::Permanent(e.to_string());
                Ok(Ok(Found {
                    room: OwnedRoomId::try_from(item.room_id.as_str()).map_err(parse)?,
                    user: OwnedUserId::try_from(item.user_id.as_str()).map_err(parse)?,
                    audit_id: Some(item.audit_id),
                    review: Some(item),
                }))
            }
            Target::User(u) => {
                let user = match Target::user_id(&u, self.shared.config.homeserver.server_name.as_str()) {
                    Ok(user) => user,
                    Err(e) => return Ok(Err(Done::text(false, &e))),
                };
                let mut knocks = store.knocks_of(user.as_str())?;
                if let Some(want) = &room_id {
                    knocks.retain(|k| k.room_id == want.as_str());
                }
                match knocks.as_slice() {
                    [] => {
                        let where_ = room.map(|r| format!(" on {}", r.0)).unwrap_or_default();
                        Ok(Err(Done::text(
                            false,
                            &format!("{user} has no pending knock{where_}; !knock pending lists the open reviews."),
                        )))
                    }
                    [k] => {
                        let parse = |e: ruma::IdParseError| ActionError::Permanent(e.to_string());
                        Ok(Ok(Found {
                            room: OwnedRoomId::try_from(k.room_id.as_str()).map_err(parse)?,
                            review: store.open_review_for(&k.room_id, user.as_str())?,
                            audit_id: k.audit_id,
                            user,
                        }))
                    }
                    many => {
                        let rooms: Vec<String> = many.iter().map(|k| knocks::room_label(store, &k.room_id)).collect();
                        Ok(Err(Done::text(
                            false,
                            &format!(
                                "{user} is knocking on {} rooms: {}. Say which one, e.g. !knock approve {user} {}",
                                rooms.len(),
                                rooms.join(", "),
                                rooms[0]
                            ),
                        )))
                    }
                }
            }
        }
    }

    /// Approve, deny or ban a knock.
    async fn decide(
        &self,
        verdict: Verdict,
        target: Target,
        room: Option<RoomArg>,
        reason: Option<String>,
    ) -> Result<Done, ActionError> {
        let found = match self.find(target, room).await? {
            Ok(f) => f,
            Err(refusal) => return Ok(refusal),
        };
        let shared = self.shared;
        let (change, verb, done_text) = match verdict {
            Verdict::Approve => (MembershipChange::Invite, "approved", "invited to"),
            Verdict::Deny => (MembershipChange::Kick, "denied", "kicked from"),
            Verdict::Ban => (MembershipChange::Ban, "banned", "banned from"),
        };
        let how = format!("{verb} by {}", self.sender);
        let reason = reason.unwrap_or_else(|| match verdict {
            Verdict::Approve => format!("Knock approved by {}", self.sender),
            Verdict::Deny => format!("Knock denied by {}", self.sender),
            Verdict::Ban => format!("Banned by {}", self.sender),
        });
        if !self.by_reaction
            && let Some(control) = shared.control_room_id()
        {
            let Action::Send { event_type, content } = notices::react(self.reply_to, "⏳") else { unreachable!() };
            shared.homeserver.send(&control, &format!("kw{}-wait", self.seq), &event_type, &content).await?;
        }
        let label = knocks::room_label(self.store(), found.room.as_str());
        let number = found.review.as_ref().map(|r| format!("#{} ", r.number)).unwrap_or_default();
        let outcome =
            executor::act(shared, change, &found.room, &found.user, &reason, found.audit_id.unwrap_or(0), false)
                .await?;
        match outcome {
            Outcome::Done => {
                self.close(found.review.as_ref(), &how)?;
                if let Some(id) = found.audit_id {
                    self.store().settle(id, Outcome::Resolved(how.clone()), now_ms())?;
                }
                Ok(Done::text(true, &format!("{number}{} {done_text} {label} ({how})", found.user)))
            }
            Outcome::Cancelled(why) => {
                // Whatever happened to the knock, there is nothing left to review.
                self.close(found.review.as_ref(), &why)?;
                Ok(Done::text(false, &format!("{number}Nothing done: {why}.")))
            }
            Outcome::Failed(why) => Ok(Done::text(false, &format!("{number}Not {verb}: {why}"))),
            other => Ok(Done::text(false, &format!("{number}Not {verb}: {other:?}"))),
        }
    }

    /// Closes a review item (if any, and still open) and edits its notice to say how.
    fn close(&self, item: Option<&ReviewItem>, how: &str) -> Result<(), ActionError> {
        if let Some(item) = item {
            let edit = self.store().outbox_push(Action::ReviewClosed { number: item.number, reply: false })?;
            self.store().close_review(item.number, how, &[edit])?;
        }
        Ok(())
    }

    fn pending(&self, page: usize) -> Result<Done, ActionError> {
        let store = self.store();
        let open = store.open_reviews()?;
        if open.is_empty() {
            return Ok(Done::text(true, "No knocks are waiting for review."));
        }
        let pages = open.len().div_ceil(PAGE);
        let start = (page - 1) * PAGE;
        if start >= open.len() {
            return Ok(Done::text(false, &format!("There are only {pages} page(s) of pending knocks.")));
        }
        let now = now_ms();
        let mut m = Msg::new();
        m.bold(&format!("{} knock(s) waiting for review", open.len()));
        if pages > 1 {
            m.text(&format!(" (page {page} of {pages})"));
        }
        for item in open.iter().skip(start).take(PAGE) {
            m.line().bold(&format!("#{}", item.number));
            m.text(&format!(" {} on {} · ", item.user_id, knocks::room_label(store, &item.room_id)));
            match item.reason.as_deref().filter(|r| !r.trim().is_empty()) {
                Some(r) => m.quote(r),
                None => m.text("no reason given"),
            };
            m.text(&format!(" · {}", ago(now, item.created_ms)));
        }
        let more = open.len().saturating_sub(start + PAGE);
        if more > 0 {
            m.line().text(&format!("…and {more} more: !knock pending {}", page + 1));
        }
        Ok(Done::ok(m))
    }

    async fn explain(&self, user: &ruma::UserId, room: &RoomArg, reason: Option<&str>) -> Result<Done, ActionError> {
        let room_id = match self.resolve_room(room).await? {
            Ok(id) => id,
            Err(refusal) => return Ok(refusal),
        };
        let store = self.store();
        let active = self.shared.policies.current();
        let mut aliases = store.aliases_of(room_id.as_str())?;
        if room.0.as_str().starts_with('#') && !aliases.iter().any(|a| a == room.0.as_str()) {
            aliases.push(room.0.to_string());
        }
        let Some(policy) = knocks::governing_policy(self.shared, &active.set, room_id.as_str(), &aliases) else {
            return Ok(Done::text(true, &format!("No policy governs {}: a knock there is left alone.", room.0)));
        };
        let ctx = Context::gather(store, &active.set, room_id.as_str(), &aliases, user.as_str(), now_ms())?;
        let trace = policy.explain(&ctx.knock(user.as_str(), reason, None));
        let d = &trace.decision;
        let mut m = Msg::new();
        m.text(&format!("A knock by {user} on {} ", ctx.label));
        match reason {
            Some(r) => m.text("with the reason ").quote(r),
            None => m.text("without a reason"),
        };
        m.line().text("→ ").bold(d.action.as_str());
        if self.shared.dry_run(d.dry_run) {
            m.text(" (dry run: only reported)");
        }
        m.text(" · rule ").code(d.rule.as_deref().unwrap_or("none matched: the default"));
        m.text(" · policy ").code(&d.policy).text(&format!(" v{}", d.version));
        if let Some(r) = &d.reason {
            m.line().text("reason sent: ").quote(r);
        }
        m.line().text(&format!("why: {}", d.explanation));
        if !trace.rules.is_empty() {
            let lines: Vec<String> = trace
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    format!("{}. {}: {}: {}", i + 1, r.rule, if r.matched { "MATCHES" } else { "no" }, r.detail)
                })
                .collect();
            m.pre(&lines.join("\n"));
        }
        Ok(Done::ok(m))
    }

    fn policy(&self, cmd: PolicyCommand, block: Option<String>) -> Result<Done, ActionError> {
        let live = &self.shared.policies;
        let store = self.store();
        let policy_err = |e: live_policies::PolicyError| match e {
            live_policies::PolicyError::Store(e) => ActionError::Store(e),
            other => ActionError::Permanent(other.to_string()),
        };
        Ok(match cmd {
            PolicyCommand::List => {
                let active = live.current();
                let mut m = Msg::new();
                m.bold(&format!("Policy version {} is active", active.version));
                if active.set.policies().is_empty() {
                    m.line().text("No policies: knocks are left alone.");
                }
                for s in active.set.summaries() {
                    m.line().code(&s.policy).text(&format!(
                        " ({}) · rooms {} · {} rule(s) · default {}",
                        from_where(&s.path),
                        s.rooms.join(", "),
                        s.rules,
                        s.default
                    ));
                }
                Done::ok(m)
            }
            PolicyCommand::Show { name } => {
                let active = live.current();
                let Some(p) = active.set.policy(&name) else {
                    return Ok(Done::text(
                        false,
                        &format!("No active policy is named {name}; see !knock policy list."),
                    ));
                };
                let version = store.policy_version(active.version)?;
                let text = version
                    .and_then(|v| v.sources.into_iter().find(|s| s.path == p.file))
                    .map(|s| s.text)
                    .unwrap_or_default();
                let mut m = Msg::new();
                m.code(&name).text(&format!(" ({}), version {}:", from_where(&p.file), active.version));
                m.pre(&clip_block(&text));
                Done::ok(m)
            }
            PolicyCommand::Reload => {
                let outcome = live.reload();
                let ok = matches!(
                    outcome,
                    Ok(live_policies::Reload::Activated { .. } | live_policies::Reload::Unchanged { .. })
                );
                let text = live_policies::describe(&outcome);
                let mut done = block_reply(ok, &text);
                if matches!(outcome, Ok(live_policies::Reload::Activated { .. })) {
                    done.follow_ups.push(Action::ResolveAliases);
                }
                done
            }
            PolicyCommand::History { name } => {
                let versions = store.policy_versions()?;
                let active = store.active_policy_version()?;
                let now = now_ms();
                let mut m = Msg::new();
                let mut shown = 0;
                let mut lines = Vec::new();
                // With NAME: that policy's text in each version, to keep the versions that changed it.
                let texts: Vec<Option<&str>> = match &name {
                    Some(n) => versions
                        .iter()
                        .map(|v| v.sources.iter().find(|s| &s.policy_name() == n).map(|s| s.text.as_str()))
                        .collect(),
                    None => vec![],
                };
                for (i, v) in versions.iter().enumerate().rev() {
                    if name.is_some() && texts[i] == i.checked_sub(1).and_then(|j| texts[j]) {
                        continue;
                    }
                    shown += 1;
                    if shown > 15 {
                        break;
                    }
                    let mark = if Some(v.number) == active { " (active)" } else { "" };
                    lines.push(format!("v{}{mark} · {} · {}", v.number, ago(now, v.created_ms), v.origin));
                }
                match &name {
                    Some(n) => m.bold(&format!("Versions that changed {n}, newest first")),
                    None => m.bold("Policy versions, newest first"),
                };
                if lines.is_empty() {
                    m.line().text("none kept");
                }
                for l in lines {
                    m.line().text(&l);
                }
                m.line().text("Go back with !knock policy rollback VERSION.");
                Done::ok(m)
            }
            PolicyCommand::Rollback { version } => match live.rollback(version) {
                Ok(new) => {
                    let mut done = Done::text(
                        true,
                        &format!(
                            "Policy version {new} is active: a copy of version {version}, set by {}.",
                            self.sender
                        ),
                    );
                    done.follow_ups.push(Action::ResolveAliases);
                    done
                }
                Err(e @ (live_policies::PolicyError::NoSuchVersion(_) | live_policies::PolicyError::Stale { .. })) => {
                    block_reply(false, &e.to_string())
                }
                Err(e) => return Err(policy_err(e)),
            },
            PolicyCommand::Set { name } => {
                let Some(text) = block else {
                    return Ok(Done::text(
                        false,
                        &format!(
                            "Put the policy in a code block after the command: !knock policy set {name} then ```yaml, the policy, and ```."
                        ),
                    ));
                };
                match live.set_room_policy(&name, &text, self.sender).map_err(policy_err)? {
                    SetOutcome::Activated { version } => {
                        let mut done = Done::text(
                            true,
                            &format!(
                                "Policy {name} is set; version {version} is active (undo: !knock policy rollback {}).",
                                version - 1
                            ),
                        );
                        done.follow_ups.push(Action::ResolveAliases);
                        done
                    }
                    SetOutcome::Unchanged { version } => Done::text(
                        true,
                        &format!("Policy {name} already reads exactly so; version {version} stays active."),
                    ),
                    SetOutcome::Refused { problems } => block_reply(
                        false,
                        &format!("Policy {name} refused; nothing changed:\n{}", format_problems(&problems)),
                    ),
                    SetOutcome::FileOwned { file } => Done::text(
                        false,
                        &format!(
                            "A policy file already defines {name} ({file}); edit the file, or choose another name."
                        ),
                    ),
                    SetOutcome::NameMismatch => Done::text(
                        false,
                        &format!(
                            "The block names its policy differently; leave out `name:` or make it `name: {name}`."
                        ),
                    ),
                    SetOutcome::BadName => Done::text(
                        false,
                        &format!("`{name}` cannot name a policy: use letters, digits, - and _ (at most 64)."),
                    ),
                }
            }
        })
    }

    fn rooms(&self) -> Result<Done, ActionError> {
        let store = self.store();
        let control = self.shared.control_room_id();
        let active = self.shared.policies.current();
        let open = store.open_reviews()?;
        let bot = self.shared.bot.as_str();
        let rooms: Vec<String> = store
            .joined_rooms()?
            .into_iter()
            .filter(|r| Some(r.as_str()) != control.as_ref().map(|c| c.as_str()))
            .collect();
        if rooms.is_empty() {
            return Ok(Done::text(true, "knockwarden manages no room yet: a moderator invites it to one."));
        }
        let mut m = Msg::new();
        m.bold(&format!("{} managed room(s)", rooms.len()));
        for room in &rooms {
            let rec = store.room(room)?.unwrap_or_default();
            let pl = rec.power_levels.as_ref();
            let have = power::user_level(pl, &rec.creators, bot);
            let can: Vec<String> = ["invite", "kick", "ban"]
                .iter()
                .map(|v| format!("{v} {}", if have >= power::action_level(pl, v) { "✓" } else { "✗" }))
                .collect();
            let aliases = store.aliases_of(room)?;
            let policy = active.set.policy_for(room, &aliases).map(|p| p.name.clone()).unwrap_or_else(|| "none".into());
            let pending = open.iter().filter(|i| &i.room_id == room).count();
            m.line().bold(&knocks::room_label(store, room));
            m.text(&format!(
                " · join rule {} · version {} · {} · policy ",
                rec.join_rule.as_deref().unwrap_or("unknown"),
                rec.room_version.as_deref().unwrap_or("unknown"),
                can.join(", "),
            ));
            m.code(&policy).text(&format!(" · {pending} pending"));
        }
        Ok(Done::ok(m))
    }

    fn stats(&self, window: command::Window) -> Result<Done, ActionError> {
        let store = self.store();
        let now = now_ms();
        let since = now.saturating_sub(window.millis());
        let entries: Vec<_> = store.audit_all()?.into_iter().filter(|e| e.time_ms >= since).collect();
        let mut by_action = Vec::new();
        for a in
            [PolicyAction::Accept, PolicyAction::Deny, PolicyAction::Ban, PolicyAction::Review, PolicyAction::Ignore]
        {
            by_action.push(format!("{a} {}", entries.iter().filter(|e| e.action == a).count()));
        }
        let count = |f: &dyn Fn(&Outcome) -> bool| entries.iter().filter(|e| f(&e.outcome)).count();
        let outcomes = [
            format!("done {}", count(&|o| *o == Outcome::Done)),
            format!("resolved by people {}", count(&|o| matches!(o, Outcome::Resolved(_)))),
            format!("dry run {}", count(&|o| *o == Outcome::DryRun)),
            format!("nothing to do {}", count(&|o| *o == Outcome::Nothing)),
            format!("cancelled {}", count(&|o| matches!(o, Outcome::Cancelled(_)))),
            format!("failed {}", count(&|o| matches!(o, Outcome::Failed(_)))),
            format!("pending {}", count(&|o| *o == Outcome::Pending)),
        ];
        let mut times: Vec<u64> = store
            .reviews()?
            .into_iter()
            .filter(|r| r.created_ms >= since)
            .filter_map(|r| r.closed_ms.map(|c| c.saturating_sub(r.created_ms)))
            .collect();
        times.sort_unstable();
        let median = match times.len() {
            0 => "no review resolved yet".to_owned(),
            n if n % 2 == 1 => human(times[n / 2]),
            n => human((times[n / 2 - 1] + times[n / 2]) / 2),
        };
        let mut m = Msg::new();
        m.bold(&format!("Last {}: {} knock(s)", window.label(), entries.len()));
        m.line().text(&format!("decisions: {}", by_action.join(", ")));
        m.line().text(&format!("outcomes: {}", outcomes.join(", ")));
        m.line().text(&format!("waiting for review now: {}", store.open_reviews()?.len()));
        m.line().text(&format!("median time to resolve a review: {median}"));
        Ok(Done::ok(m))
    }

    fn log(&self, n: usize) -> Result<Done, ActionError> {
        let store = self.store();
        let entries = store.audit_last(n)?;
        if entries.is_empty() {
            return Ok(Done::text(true, "The audit log is empty: no knock has been decided yet."));
        }
        let now = now_ms();
        let mut m = Msg::new();
        m.bold(&format!("Last {} decision(s), newest first", entries.len()));
        for e in &entries {
            m.line().text(&format!(
                "{} · {} on {} → {}{} (policy {} v{}, rule {}) · {}",
                ago(now, e.time_ms),
                e.user_id,
                knocks::room_label(store, &e.room_id),
                e.action,
                e.review.map(|r| format!(" #{r}")).unwrap_or_default(),
                e.policy,
                e.policy_version,
                e.rule.as_deref().unwrap_or("default"),
                outcome_text(&e.outcome),
            ));
        }
        Ok(Done::ok(m))
    }

    fn dry_run(&self, mode: DryRunMode) -> Result<Done, ActionError> {
        let store = self.store();
        let config = self.shared.config.dry_run;
        match mode {
            DryRunMode::On | DryRunMode::Off => {
                let on = mode == DryRunMode::On;
                store.set_meta(DRY_RUN_KEY, if on { "on" } else { "off" })?;
                tracing::info!(by = self.sender, on, "dry run switched");
                let mut text = format!(
                    "Dry run is now {} (set by {}): {}",
                    if on { "on" } else { "off" },
                    self.sender,
                    if on { "decisions are only reported." } else { "decisions are carried out." }
                );
                if !on && config {
                    text.push_str(" But the config's dry_run: true still holds, so nothing is carried out.");
                }
                Ok(Done::text(true, &text))
            }
            DryRunMode::Status => {
                let switch = store.get_meta(DRY_RUN_KEY)?.unwrap_or_else(|| "off".into());
                let on = config || switch == "on";
                let text = format!(
                    "Dry run is {}: config dry_run {}, run-time switch {switch}. Policies may also set dry_run for their rooms.",
                    if on { "on" } else { "off" },
                    config
                );
                Ok(Done::text(true, &text))
            }
        }
    }
}

/// A reply whose text (e.g. policy problems) is best shown as a block.
fn block_reply(ok: bool, text: &str) -> Done {
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut m = Msg::new();
    m.text(head);
    if !rest.is_empty() {
        m.pre(&clip_block(rest));
    }
    Done { reply: m, ok, follow_ups: vec![] }
}

/// The homeserver's refusal, with its errcode.
fn refused(what: &str, e: &HsError) -> Done {
    let text = match e {
        HsError::Api { errcode, message, .. } => format!("The homeserver refused to {what}: {errcode}: {message}"),
        other => format!("Could not {what}: {other}"),
    };
    Done::text(false, &text)
}

/// Where a policy comes from, for people.
fn from_where(path: &str) -> String {
    match live_policies::room_policy_name(path) {
        Some(_) => "set from the control room".to_owned(),
        None => format!("file {path}"),
    }
}

/// Longest block (policy source, problems) shown in a reply.
const MAX_BLOCK: usize = 8_000;

fn clip_block(text: &str) -> String {
    if text.chars().count() <= MAX_BLOCK {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_BLOCK).collect();
    out.push_str("\n… (cut)");
    out
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Pending => "pending".into(),
        Outcome::Done => "done".into(),
        Outcome::DryRun => "dry run".into(),
        Outcome::Nothing => "nothing to do".into(),
        Outcome::Cancelled(why) => format!("cancelled: {}", notices::clip(why)),
        Outcome::Failed(why) => format!("failed: {}", notices::clip(why)),
        Outcome::Resolved(how) => notices::clip(how),
    }
}

/// "3h ago", "just now".
fn ago(now: u64, then: u64) -> String {
    let ms = now.saturating_sub(then);
    if ms < 60_000 { "just now".into() } else { format!("{} ago", human(ms)) }
}

/// A length of time in its largest whole unit: 45s, 12m, 3h, 2d.
fn human(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        return format!("{s}s");
    }
    let d = std::time::Duration::from_secs(match s {
        s if s < 3600 => s / 60 * 60,
        s if s < 86_400 => s / 3600 * 3600,
        s => s / 86_400 * 86_400,
    });
    duration::format(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        assert_eq!(ago(10_000, 5_000), "just now");
        assert_eq!(ago(4 * 3_600_000 + 120_000, 0), "4h ago");
        assert_eq!(human(90_000), "1m");
        assert_eq!(human(3 * 86_400_000 + 5), "3d");
        assert_eq!(human(7 * 86_400_000), "1w");
        assert_eq!(human(12_000), "12s");
    }

    #[test]
    fn long_blocks_are_cut() {
        let long = "x".repeat(MAX_BLOCK + 10);
        assert!(clip_block(&long).ends_with("… (cut)"));
        assert_eq!(clip_block("short"), "short");
    }
}

//! Knocks: deciding them, and following what happens to them.
//!
//! A knock is decided with the active policy version from what is known of it (user, server,
//! room, reason, display name, knock counters, the knocker's memberships). The decision is
//! written to the audit log, and what it leads to (an invite, kick or ban; a review item; a
//! notice) to the outbox, in the same transaction that takes the knock out of the inbox.
//! Later membership changes of the knocker close the knock: accepted, withdrawn, denied or
//! banned by someone, or by knockwarden itself.

use serde_json::Value;

use crate::app::Shared;
use crate::{
    config::Notify,
    events::EventHead,
    homeserver::MembershipChange,
    notices,
    policy::{Action as Verdict, Knock, PolicySet},
    storage::{
        Action, AuditEntry, InboxEvent, KnockRecord, Op, Outcome, Resolution, ReviewItem, Store, StoreError, now_ms,
    },
};

/// What handling a knock came to.
pub enum Knocked {
    /// Writes to commit with the inbox removal.
    Ops(Vec<Op>),
    /// Deciding it needs what is not known yet (an alias not looked up, a ban list not read):
    /// it waits, put aside, while the worker goes on. `ops` record the knock itself, so that
    /// the knocker's later membership changes close it as they would any knock.
    Waits {
        on: String,
        ops: Vec<Op>,
        /// The knocker's account, to be looked up (in their lane) before it is decided.
        lookup: Option<Action>,
    },
}

/// Longest reason or display name kept in the audit log.
const MAX_AUDIT_TEXT: usize = 1_000;

fn clip(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| if t.chars().count() > max { t.chars().take(max).collect::<String>() + "…" } else { t })
}

/// The least of `aliases` (those that are aliases) that has not been looked up yet.
fn first_unresolved<'a>(
    store: &Store,
    aliases: impl Iterator<Item = &'a String>,
) -> Result<Option<&'a String>, StoreError> {
    let mut unresolved = None;
    for a in aliases.filter(|a| a.starts_with('#')) {
        if store.alias(a)?.is_none() && unresolved.is_none_or(|u: &String| a < u) {
            unresolved = Some(a);
        }
    }
    Ok(unresolved)
}

/// The aliases the active policies name that have not been looked up yet (for `/health`).
pub fn unresolved_aliases(shared: &Shared) -> Vec<String> {
    let active = shared.policies.current();
    let store = &shared.store;
    active.set.aliases().iter().filter(|a| store.alias(a).is_ok_and(|r| r.is_none())).cloned().collect()
}

/// The alias a knock in `room` (known by `aliases`) waits for, if any: one not looked up
/// yet that may name the policy governing the room (no policy names the room by what is
/// known of it), or a room the `member_of` conditions of its policy ask about. Knocks in
/// rooms named otherwise are decided at once, whatever happens to that alias.
fn waits_for_alias(
    store: &Store,
    set: &PolicySet,
    room: &str,
    aliases: &[String],
) -> Result<Option<String>, StoreError> {
    let named = set.policy_named_for(room, aliases);
    if named.is_none()
        && let Some(a) = first_unresolved(store, set.room_aliases())?
    {
        return Ok(Some(a.clone()));
    }
    let Some(policy) = set.policy_for(room, aliases) else { return Ok(None) };
    let member_of: Vec<String> = policy.member_of_rooms().collect();
    Ok(first_unresolved(store, member_of.iter())?.cloned())
}

/// A room as shown to people: its first known alias, else its ID.
pub fn room_label(store: &Store, room: impl AsRef<str>) -> String {
    let room = room.as_ref();
    store.aliases_of(room).ok().and_then(|a| a.into_iter().next()).unwrap_or_else(|| room.to_owned())
}

/// The notice about an audited decision: `outcome` says what came of it; `review` numbers a
/// review item, `closed` says how it ended.
pub fn entry_notice(
    store: &Store,
    e: &AuditEntry,
    outcome: &str,
    review: Option<u64>,
    closed: Option<&str>,
) -> notices::Msg {
    notices::knock(&notices::KnockNotice {
        user: e.user_id.as_str(),
        room: &room_label(store, &e.room_id),
        reason: e.reason.as_deref(),
        displayname: e.displayname.as_deref(),
        outcome,
        rule: e.rule.as_deref(),
        policy: &e.policy,
        version: e.policy_version,
        review,
        closed,
    })
}

/// The reason sent with an invite, kick or ban when the rule gives none.
fn default_reason(action: Verdict, rule: Option<&str>) -> String {
    let by = match rule {
        Some(r) => format!("rule {r}"),
        None => "the room's policy".to_owned(),
    };
    match action {
        Verdict::Accept => format!("Knock accepted by knockwarden ({by})"),
        Verdict::Deny => format!("Knock denied by knockwarden ({by})"),
        _ => format!("Banned by knockwarden ({by})"),
    }
}

/// The policy that governs `room`: never one for the control room, which is left to the
/// people in it, and a `"*"` policy does not cover the ban lists knockwarden follows (it is in
/// them to read them).
pub fn governing_policy<'p>(
    shared: &Shared,
    set: &'p PolicySet,
    room: &str,
    aliases: &[String],
) -> Option<&'p crate::policy::CompiledPolicy> {
    if shared.control_room_id().is_some_and(|c| c.as_str() == room) {
        return None;
    }
    if shared.lists.is_list_room(room) {
        return set.policy_named_for(room, aliases);
    }
    set.policy_for(room, aliases)
}

/// What is known around a knock, for deciding it (or explaining what would be decided).
pub struct Context {
    /// The room as the policies and people name it: its first alias, else its ID.
    pub label: String,
    pub room_counts: Vec<(std::time::Duration, u64)>,
    pub user_counts: Vec<(std::time::Duration, u64)>,
    /// Of the rooms the policies' `member_of` conditions name, those the knocker is in (as
    /// the policies name them).
    pub member_of: Vec<String>,
}

impl Context {
    /// Knock counters and the knocker's memberships. `aliases` are the room's known aliases (the
    /// first names it). With `one_more`, the counters count one more knock: the one being
    /// decided, not recorded yet.
    pub fn gather(
        store: &Store,
        set: &PolicySet,
        room: &str,
        aliases: &[String],
        user: &str,
        now: u64,
        one_more: bool,
    ) -> Result<Self, StoreError> {
        let extra = u64::from(one_more);
        let windows = set.windows();
        let mut room_counts = Vec::with_capacity(windows.len());
        let mut user_counts = Vec::with_capacity(windows.len());
        for w in windows {
            let since = now.saturating_sub(w.as_millis() as u64);
            room_counts.push((*w, store.room_knocks_since(room, since)? + extra));
            user_counts.push((*w, store.user_knocks_since(user, room, since)? + extra));
        }
        // Only the rooms the policies name can matter: each is looked up (an alias through
        // what it resolves to), not every room the knocker is in.
        let mut member_of = Vec::new();
        for named in set.member_of_rooms() {
            let room_id = if named.starts_with('#') { store.alias(named)?.flatten() } else { Some(named.clone()) };
            if let Some(room_id) = room_id
                && store.is_member(&room_id, user)?
            {
                member_of.push(named.clone());
            }
        }
        let label = aliases.first().cloned().unwrap_or_else(|| room.to_owned());
        Ok(Context { label, room_counts, user_counts, member_of })
    }

    pub fn knock<'a>(&'a self, user: &'a str, reason: Option<&'a str>, displayname: Option<&'a str>) -> Knock<'a> {
        Knock {
            user,
            room: &self.label,
            reason,
            displayname,
            member_of: &self.member_of,
            room_knocks: &self.room_counts,
            user_knocks: &self.user_counts,
            lists: None,
            account: None,
        }
    }
}

impl<'a> Knock<'a> {
    /// The same knock, decided against these ban lists.
    pub fn with_lists(self, lists: &'a dyn crate::policy::ListSource) -> Self {
        Knock { lists: Some(lists), ..self }
    }
}

/// Decides a knock.
pub fn on_knock(shared: &Shared, entry: &InboxEvent, head: &EventHead, user: &str) -> Result<Knocked, StoreError> {
    let store = &shared.store;
    let event = &entry.item.event;
    let room = head.room_id.as_str();
    let Ok(user_id) = ruma::OwnedUserId::try_from(user) else {
        tracing::warn!(room, state_key = user, event_id = %head.event_id, "a knock whose state key is not a user ID; dropped");
        return Ok(Knocked::Ops(vec![]));
    };
    let active = shared.policies.current();
    let content = event.get("content");
    let text = |k: &str| content.and_then(|c| c.get(k)).and_then(Value::as_str).map(str::to_owned);
    let now = now_ms();
    let ts = event.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(0);
    // Counters go by knockwarden's clock: the event's own timestamp is whatever the sending
    // server chose (a knock dated 2100 would count as recent forever, one dated 1970 never).
    let received = entry.item.received_ms;
    let mut rec = KnockRecord {
        room_id: head.room_id.clone(),
        user_id: user_id.clone(),
        event_id: head.event_id.clone(),
        reason: text("reason"),
        displayname: text("displayname"),
        origin_server_ts: ts,
        audit_id: None,
    };
    // A knock that waited: decided only if it is still the knocker's knock (they may have
    // knocked again, withdrawn, or been let in or out by a person meanwhile).
    let current = store.knock(room, user)?;
    let is_current = current.as_ref().is_some_and(|k| k.event_id == head.event_id);
    if entry.waiting && !is_current {
        tracing::info!(room, user, event_id = %head.event_id, "a knock that waited is no longer the knocker's: dropped");
        return Ok(Knocked::Ops(vec![]));
    }
    // The knock the store holds for them, taken in again (its seen ID forgotten): not a new
    // knock, and not decided again.
    if !entry.waiting && is_current {
        tracing::info!(room, user, event_id = %head.event_id, "a knock taken in again is the knocker's current knock: nothing to do");
        return Ok(Knocked::Ops(vec![]));
    }
    // Several knocks of one inbox entry share its number: each counts under a number of its
    // own. Counted once decided (not while it waits).
    let knock_time = Store::record_knock_time(room, user, received, store.next_id()?);
    let mut ops = Vec::new();
    // A knock while already knocking: the earlier one is superseded.
    if let Some(earlier) = current {
        if let Some(id) = earlier.audit_id
            && let Some((_, op)) = store.settle_op(id, Outcome::Resolved(Resolution::KnockedAgain), now, is_pending)?
        {
            ops.push(op);
        }
        if let Some(item) = store.open_review_for(room, user)?
            && let Some(closing) = store.close_review_ops(item.number, Resolution::KnockedAgain)?
        {
            ops.extend(closing);
            ops.push(store.outbox_push(Action::ReviewClosed { number: item.number, reply: false })?);
        }
    }
    let aliases = store.aliases_of(room)?;
    if shared.control_room_id().as_deref() == Some(head.room_id.as_ref()) {
        tracing::info!(room, user, "a knock on the control room: left to the people there");
        ops.extend(knock_time);
        ops.extend(Store::put_knock(&rec));
        let mut m = notices::Msg::new();
        m.bold(user).text(" knocked on the control room");
        if let Some(r) = rec.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            m.text(": ").quote(r);
        }
        m.line().text("No policy governs the control room: knockwarden leaves this knock to the people here.");
        ops.push(store.outbox_push(m.notice())?);
        return Ok(Knocked::Ops(ops));
    }
    if let Some(alias) = waits_for_alias(store, &active.set, room, &aliases)? {
        tracing::debug!(room, user, %alias, "the knock waits until a policy's alias is looked up");
        ops.extend(Store::put_knock(&rec));
        return Ok(Knocked::Waits { on: alias, ops, lookup: None });
    }
    let Some(policy) = governing_policy(shared, &active.set, room, &aliases) else {
        tracing::debug!(room, user, "knock in a room no policy governs: left alone");
        ops.extend(knock_time);
        ops.extend(Store::put_knock(&rec));
        return Ok(Knocked::Ops(ops));
    };

    // The ban lists the policy names must have been read (or found unreadable) once.
    if let Some(list) = shared.lists.untried(policy.ban_lists()) {
        tracing::debug!(room, user, %list, "the knock waits until a ban list is read");
        ops.extend(Store::put_knock(&rec));
        return Ok(Knocked::Waits { on: list.clone(), ops, lookup: None });
    }
    // `account:` conditions go by what the homeserver says of a local knocker's account: it
    // is asked in the knocker's lane, and the knock waits for the answer.
    let account = match policy.uses_account() {
        false => None,
        true => match shared.accounts.facts(&user_id, now) {
            Some(facts) => Some(facts),
            None => {
                tracing::debug!(room, user, "the knock waits until the knocker's account is looked up");
                ops.extend(Store::put_knock(&rec));
                let lookup = Action::LookupAccount { room_id: head.room_id.clone(), user_id: user_id.clone() };
                return Ok(Knocked::Waits { on: format!("the account of {user}"), ops, lookup: Some(lookup) });
            }
        },
    };
    ops.extend(knock_time);
    // What the policies need to know, counting this knock (not committed yet) in.
    let ctx = Context::gather(store, &active.set, room, &aliases, user, now, true)?;
    let label = ctx.label.clone();
    let started = std::time::Instant::now();
    let view = shared.lists.view();
    let knock = ctx.knock(user, rec.reason.as_deref(), rec.displayname.as_deref()).with_lists(&view);
    let d = policy.decide(&Knock { account: account.as_ref(), ..knock });
    drop(view);
    let metrics = &shared.metrics;
    metrics.decision.observe(started.elapsed().as_secs_f64());
    let labels =
        crate::metrics::KnockLabels { room: label.clone(), policy: d.policy.clone(), decision: d.action.as_str() };
    metrics.knocks.get_or_create(&labels).inc();
    tracing::info!(room, user, policy = %d.policy, version = d.version, rule = ?d.rule, action = %d.action, "knock decided");
    enact(shared, &mut rec, &d, &label, now, None, &mut ops)?;
    Ok(Knocked::Ops(ops))
}

/// Writes a decision on a knock: its audit entry (with `why_again` when a knock is decided
/// again), and what it leads to (an invite, kick or ban; a review item; a notice).
fn enact(
    shared: &Shared,
    rec: &mut KnockRecord,
    d: &crate::policy::Decision,
    label: &str,
    now: u64,
    why_again: Option<&str>,
    ops: &mut Vec<Op>,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let user = rec.user_id.as_str();
    let dry_run = shared.dry_run(d.dry_run);
    let notify = d.notify.unwrap_or(match shared.config.notify {
        Notify::All => d.action != Verdict::Ignore,
        Notify::Review => d.action == Verdict::Review,
        Notify::None => false,
    });
    let audit_id = store.next_id()?;
    rec.audit_id = Some(audit_id);
    let mut audit = AuditEntry {
        id: audit_id,
        time_ms: now,
        room_id: rec.room_id.clone(),
        user_id: rec.user_id.clone(),
        event_id: rec.event_id.clone(),
        reason: clip(rec.reason.clone(), MAX_AUDIT_TEXT),
        displayname: clip(rec.displayname.clone(), MAX_AUDIT_TEXT),
        policy: d.policy.clone(),
        policy_version: d.version,
        rule: d.rule.clone(),
        action: d.action,
        explanation: match why_again {
            Some(why) => format!("decided again ({why}): {}", d.explanation),
            None => d.explanation.clone(),
        },
        dry_run,
        review: None,
        outcome: Outcome::Pending,
        settled_ms: None,
    };
    let change = match d.action {
        Verdict::Accept => Some(MembershipChange::Invite),
        Verdict::Deny => Some(MembershipChange::Kick),
        Verdict::Ban => Some(MembershipChange::Ban),
        Verdict::Review | Verdict::Ignore => None,
    };
    let notice = || {
        notices::knock(&notices::KnockNotice {
            user,
            room: label,
            reason: rec.reason.as_deref(),
            displayname: rec.displayname.as_deref(),
            outcome: notices::verdict(d.action, dry_run),
            rule: d.rule.as_deref(),
            policy: &d.policy,
            version: d.version,
            review: None,
            closed: None,
        })
        .notice()
    };
    match (change, d.action) {
        _ if dry_run => {
            audit.outcome = Outcome::DryRun;
            audit.settled_ms = Some(now);
            if notify {
                ops.push(store.outbox_push(notice())?);
            }
        }
        (Some(change), _) => {
            let reason = d.reason.clone().unwrap_or_else(|| default_reason(d.action, d.rule.as_deref()));
            let act = Action::Act {
                change,
                room_id: rec.room_id.clone(),
                user_id: rec.user_id.clone(),
                reason,
                audit_id: Some(audit_id),
                notify,
                knock_event: Some(rec.event_id.clone()),
                verdict: None,
            };
            ops.push(store.outbox_push(act)?);
        }
        (None, Verdict::Review) => {
            let (number, reserve) = store.reserve_review_number()?;
            ops.push(reserve);
            audit.review = Some(number);
            ops.extend(Store::put_review(&ReviewItem {
                number,
                audit_id,
                room_id: rec.room_id.clone(),
                user_id: rec.user_id.clone(),
                event_id: rec.event_id.clone(),
                reason: clip(rec.reason.clone(), MAX_AUDIT_TEXT),
                created_ms: now,
                notice_event: None,
                closed: None,
                closed_ms: None,
            }));
            if notify {
                ops.push(store.outbox_push(Action::ReviewNotice { number })?);
            }
        }
        (None, _) => {
            audit.outcome = Outcome::Nothing;
            audit.settled_ms = Some(now);
            if notify {
                ops.push(store.outbox_push(notice())?);
            }
        }
    }
    ops.push(Store::put_audit(&audit));
    ops.extend(Store::put_knock(rec));
    Ok(())
}

/// Decides again the knocks waiting for review whose knockers a ban list rule that just came
/// into force (`banned`: whether it bans a user) matches. A knock the policy now decides
/// otherwise than `review` has its review item closed (the control room is told) and the new
/// decision carried out, audited as decided again; the others keep waiting.
pub fn redecide_reviews(shared: &Shared, banned: &dyn Fn(&str) -> bool, why: &str) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    let active = shared.policies.current();
    let now = now_ms();
    let mut ops = Vec::new();
    for item in store.open_reviews()? {
        if !banned(item.user_id.as_str()) {
            continue;
        }
        let (room, user) = (item.room_id.as_str(), item.user_id.as_str());
        let Some(mut rec) = store.knock(room, user)? else { continue };
        if rec.event_id != item.event_id {
            continue;
        }
        let aliases = store.aliases_of(room)?;
        let Some(policy) = governing_policy(shared, &active.set, room, &aliases) else { continue };
        // Decided again only with the account's facts at hand (never by asking the network).
        let account = match policy.uses_account() {
            false => None,
            true => match shared.accounts.facts(&item.user_id, now) {
                Some(f) => Some(f),
                None => continue,
            },
        };
        let ctx = Context::gather(store, &active.set, room, &aliases, user, now, false)?;
        let view = shared.lists.view();
        let knock = ctx.knock(user, rec.reason.as_deref(), rec.displayname.as_deref()).with_lists(&view);
        let d = policy.decide(&Knock { account: account.as_ref(), ..knock });
        drop(view);
        if d.action == Verdict::Review {
            continue;
        }
        tracing::info!(room, user, review = item.number, action = %d.action, why, "knock decided again");
        let how = Resolution::DecidedAgain { why: why.to_owned(), action: d.action };
        if let Some(id) = rec.audit_id
            && let Some((_, op)) = store.settle_op(id, Outcome::Resolved(how.clone()), now, is_pending)?
        {
            ops.push(op);
        }
        if let Some(closing) = store.close_review_ops(item.number, how)? {
            ops.extend(closing);
            ops.push(store.outbox_push(Action::ReviewClosed { number: item.number, reply: true })?);
        }
        let label = ctx.label.clone();
        enact(shared, &mut rec, &d, &label, now, Some(why), &mut ops)?;
    }
    Ok(ops)
}

/// A knocker's membership changed away from `knock`: close the knock, its audit entry (unless
/// knockwarden itself acted: the runner settles those) and its review item.
pub fn on_change(shared: &Shared, head: &EventHead, user: &str, membership: &str) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    let room = head.room_id.as_str();
    let Some(rec) = store.knock(room, user)? else { return Ok(vec![]) };
    let sender = head.sender.as_str();
    let by_bot = sender == shared.bot.as_str();
    let by = head.sender.clone();
    let how = match membership {
        "invite" | "leave" | "ban" if by_bot => Resolution::ByKnockwarden { membership: membership.to_owned() },
        "invite" => Resolution::InvitedBy { by },
        "join" => Resolution::Joined,
        "leave" if sender == user => Resolution::Withdrawn,
        "leave" => Resolution::KickedBy { by },
        "ban" => Resolution::BannedBy { by },
        other => Resolution::Membership { membership: other.to_owned() },
    };
    tracing::info!(room, user, how = %how, "knock closed");
    let mut ops = Store::del_knock(room, user);
    // What knockwarden did itself is settled, and its review item closed, by whatever did it
    // (the runner, for a policy, a verdict or expiry), with who decided.
    if by_bot {
        return Ok(ops);
    }
    if let Some(id) = rec.audit_id
        && let Some((_, op)) = store.settle_op(id, Outcome::Resolved(how.clone()), now_ms(), is_pending)?
    {
        ops.push(op);
    }
    if let Some(item) = store.open_review_for(room, user)?
        && let Some(closing) = store.close_review_ops(item.number, how)?
    {
        ops.extend(closing);
        ops.push(store.outbox_push(Action::ReviewClosed { number: item.number, reply: true })?);
    }
    Ok(ops)
}

fn is_pending(o: &Outcome) -> bool {
    *o == Outcome::Pending
}

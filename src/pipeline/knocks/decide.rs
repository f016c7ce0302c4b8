//! Deciding a knock as it arrives: the knocker's earlier knock superseded, the control room
//! left to its people, the inputs waited for, then the active policy's decision enacted.

use super::{
    Knocked,
    enact::enact,
    inputs::{Context, governing_policy, waits_for_alias},
    lifecycle::is_pending,
};
use crate::{
    app::Shared,
    events::Member,
    notices,
    pipeline::worker::InboxEvent,
    policy::Knock,
    storage::{Action, Activity, KnockRecord, Knocks, LockdownCause, Outcome, Resolution, StoreError, now_ms},
};

/// Decides a knock.
pub fn on_knock(shared: &Shared, entry: &InboxEvent, member: &Member) -> Result<Knocked, StoreError> {
    let store = &shared.store;
    let head = &entry.event;
    let (room, user) = (head.room_id.as_str(), member.user.as_str());
    let Ok(user_id) = ruma::OwnedUserId::try_from(user) else {
        tracing::warn!(room, state_key = user, event_id = %head.event_id, "a knock whose state key is not a user ID; dropped");
        return Ok(Knocked::Ops(vec![]));
    };
    let active = shared.policies.current();
    let now = now_ms();
    // Counters go by knockwarden's clock: the event's own timestamp is whatever the sending
    // server chose (a knock dated 2100 would count as recent forever, one dated 1970 never).
    let received = entry.item.received_ms;
    let mut rec = KnockRecord {
        room_id: head.room_id.clone(),
        user_id: user_id.clone(),
        event_id: head.event_id.clone(),
        reason: member.reason.clone(),
        displayname: member.displayname.clone(),
        origin_server_ts: head.origin_server_ts,
        audit_id: None,
    };
    // A knock that waited: decided only if it is still the knocker's knock (they may have
    // knocked again, withdrawn, or been let in or out by a person meanwhile).
    let current = store.knocks().get(room, user)?;
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
    let knock_time = Activity::record(room, user, received, store.next_id()?);
    let mut ops = Vec::new();
    // A knock while already knocking: the earlier one is superseded.
    if let Some(earlier) = current {
        if let Some(id) = earlier.audit_id
            && let Some((_, op)) =
                store.audit().settle_op(id, Outcome::Resolved(Resolution::KnockedAgain), now, is_pending)?
        {
            ops.push(op);
        }
        if let Some(item) = store.reviews().open_for(room, user)?
            && let Some(closing) = store.reviews().close_ops(item.number, Resolution::KnockedAgain)?
        {
            ops.extend(closing);
            ops.push(store.outbox().push(Action::ReviewClosed { number: item.number, reply: false })?);
        }
    }
    let aliases = store.aliases().of(room)?;
    if shared.control_room_id().as_deref() == Some(head.room_id.as_ref()) {
        tracing::info!(room, user, "a knock on the control room: left to the people there");
        ops.extend(knock_time);
        ops.extend(Knocks::put(&rec));
        let mut m = notices::Msg::new();
        m.bold(user).text(" knocked on the control room");
        if let Some(r) = rec.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            m.text(": ").quote(r);
        }
        m.line().text("No policy governs the control room: knockwarden leaves this knock to the people here.");
        ops.push(store.outbox().push(m.notice())?);
        return Ok(Knocked::Ops(ops));
    }
    if let Some(alias) = waits_for_alias(store, &active.set, room, &aliases)? {
        tracing::debug!(room, user, %alias, "the knock waits until a policy's alias is looked up");
        ops.extend(Knocks::put(&rec));
        return Ok(Knocked::Waits { on: alias, ops, lookup: None });
    }
    let Some(policy) = governing_policy(shared, &active.set, room, &aliases) else {
        tracing::debug!(room, user, "knock in a room no policy governs: left alone");
        ops.extend(knock_time);
        ops.extend(Knocks::put(&rec));
        return Ok(Knocked::Ops(ops));
    };

    // The ban lists the policy names must have been read (or found unreadable) once.
    if let Some(list) = shared.lists.untried(policy.ban_lists()) {
        tracing::debug!(room, user, %list, "the knock waits until a ban list is read");
        ops.extend(Knocks::put(&rec));
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
                ops.extend(Knocks::put(&rec));
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
    // A rule with `lockdown:` puts the room in lockdown (or extends it) with this knock.
    if let (Some(length), Some(rule)) = (d.lockdown, &d.rule)
        && !shared.dry_run(d.dry_run)
    {
        let cause = LockdownCause::Rule { policy: d.policy.clone(), rule: rule.clone() };
        ops.extend(crate::lockdown::begin_ops(store, &head.room_id, length, cause, now)?);
    }
    enact(shared, &mut rec, &d, &label, now, None, &mut ops)?;
    Ok(Knocked::Ops(ops))
}

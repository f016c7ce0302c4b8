//! The worker: drains the inbox, oldest first, on a thread of its own.
//!
//! Each event becomes a list of writes (state, audit entries, review items, outbox actions).
//! Up to `BATCH` (128) events are handled in one batch ([`Store::batch`]): each event's reads see
//! what the events before it wrote, and the writes of all of them, with the removal of their
//! inbox entries, are committed in one sled transaction. A crash either leaves the events in
//! the inbox (they are handled again after restart) or has fully handled them: nothing is
//! handled twice. What the handling reads stays true until that commit
//! ([`Store::serialized`]).
//!
//! A panic while handling one event is caught: what it wrote is undone, the event goes to the
//! failed list, with a notice, and the worker goes on with the next.

use std::panic::AssertUnwindSafe;

use serde_json::Value;

use super::{
    Shared,
    knocks::{self, Knocked},
    wait_for,
};
use crate::{
    control,
    events::EventHead,
    notices::Msg,
    room_state,
    storage::{Action, FailedItem, InboxEntry, InboxEvent, InboxItem, Op, Store, StoreError},
    supervise::panic_message,
};

/// Most entries handled in one go on the blocking thread before the worker looks at
/// `stopping` again and lets its results (actions queued) be taken up.
const BATCH: usize = 128;

/// Runs until the service stops, finishing the event in hand first.
///
/// Handling is synchronous (sled, deciding), so it runs on one thread of its own for the
/// worker's whole life, never on the async runtime's threads. Run there, it kept a runtime
/// thread busy for as long as the inbox was not empty, and the runner, woken from that thread,
/// waited for the whole inbox before it carried out a single action. One thread, not one per
/// batch: each thread that decides builds its own caches of the policies' regex sets (several
/// MiB with 10,000 rules).
pub async fn run(shared: Shared) {
    let runtime = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || work(&shared, &runtime)).await {
        Ok(()) => {}
        // A panic not caught per event (debug builds' worker fault): the worker stops.
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => {}
    }
}

/// The worker's loop, on its own thread; waits (on `runtime`) when there is nothing to do.
fn work(shared: &Shared, runtime: &tokio::runtime::Handle) {
    let mut stopping = shared.stopping.clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        match drain_batch(shared, BATCH) {
            Ok(Drained::Handled | Drained::Queued) => continue,
            Ok(Drained::Empty) => {
                if !runtime.block_on(wait_for(&shared.inbox_ready, &mut stopping)) {
                    return;
                }
            }
            Ok(Drained::Blocked) => {
                tracing::debug!("waiting for the policies' aliases to be resolved");
                let go_on = runtime.block_on(async {
                    tokio::select! {
                        _ = shared.inbox_ready.notified() => true,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => true,
                        _ = stopping.changed() => false,
                    }
                });
                if !go_on {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed while handling the inbox; retrying in 1 s");
                runtime.block_on(tokio::time::sleep(std::time::Duration::from_secs(1)));
            }
        }
    }
}

/// What handling inbox entries came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Handled,
    /// Handled, and actions were queued.
    Queued,
    Empty,
    /// The oldest entry must wait (e.g. for policy aliases to be resolved).
    Blocked,
}

/// Handles inbox entries, oldest first, in one batch: one sled transaction for all of them
/// ([`Store::batch`]), each event's reads seeing what the ones before it wrote. Takes up to
/// `max` events (an entry is not split for it), and stops early when the inbox is empty, an
/// event must wait (what is left of its entry stays in the inbox), or the service is
/// stopping. Returns [`Drained::Handled`] if anything was handled, else why nothing was.
fn drain_batch(shared: &Shared, max: usize) -> Result<Drained, StoreError> {
    let store = &shared.store;
    let (mut handled, mut queued) = (0usize, false);
    let mut after = None;
    let stop = store.serialized(|| {
        store.batch(|| {
            while handled < max {
                let Some(entry) = store.inbox_next(after)? else {
                    return Ok(Drained::Empty);
                };
                for (index, raw) in entry.record.events.iter().enumerate() {
                    let Some(event) = read_event(&entry, raw) else { continue };
                    match drain_one(shared, &event)? {
                        Drained::Queued => queued = true,
                        Drained::Handled => {}
                        Drained::Blocked => {
                            if index > 0 {
                                store.commit(&[Store::inbox_rest(&entry, index)])?;
                            }
                            return Ok(Drained::Blocked);
                        }
                        Drained::Empty => {}
                    }
                    handled += 1;
                }
                store.commit(&[Store::inbox_done(entry.seq)])?;
                after = Some(entry.seq);
                if *shared.stopping.borrow() {
                    break;
                }
            }
            Ok(Drained::Handled)
        })
    });
    // What the batch queued is in the outbox only now.
    if queued && stop.is_ok() {
        shared.outbox_ready.notify_one();
    }
    let stop = stop?;
    Ok(if handled > 0 { Drained::Handled } else { stop })
}

/// One event of an inbox entry, read; `None` (with a warning) if it cannot be read (intake
/// reads every event before keeping it, so only a damaged database has one).
fn read_event(entry: &InboxEntry, raw: &serde_json::value::RawValue) -> Option<InboxEvent> {
    match serde_json::from_str(raw.get()) {
        Ok(event) => {
            let r = &entry.record;
            let item = InboxItem { received_ms: r.received_ms, origin: r.origin.clone(), event };
            Some(InboxEvent { seq: entry.seq, item })
        }
        Err(e) => {
            tracing::warn!(seq = entry.seq, error = %e, "an inbox event cannot be read; dropping it");
            None
        }
    }
}

/// Handles one event, inside the worker's batch: its writes are staged, or, should its
/// handling panic, only its failure.
fn drain_one(shared: &Shared, entry: &InboxEvent) -> Result<Drained, StoreError> {
    let store = &shared.store;
    let mark = store.staged_mark();
    let ops = std::panic::catch_unwind(AssertUnwindSafe(|| handle(shared, entry)));
    let ops = match ops {
        Ok(Ok(Handled::Ops(ops))) => ops,
        Ok(Ok(Handled::NotReady)) => {
            store.unstage_to(mark);
            return Ok(Drained::Blocked);
        }
        Ok(Err(e)) => return Err(e),
        Err(panic) => {
            #[cfg(debug_assertions)]
            if panic.is::<WorkerFault>() {
                std::panic::resume_unwind(panic);
            }
            // Nothing of what the handling wrote before it panicked is kept.
            store.unstage_to(mark);
            fail_event(shared, entry, &panic_message(&*panic))?;
            return Ok(Drained::Queued);
        }
    };
    let queued = ops.iter().any(|op| matches!(op, Op::Put { tree: crate::storage::T::Outbox, .. }));
    store.commit(&ops)?;
    Ok(if queued { Drained::Queued } else { Drained::Handled })
}

/// Moves an event whose handling panicked to the failed list, with a notice.
fn fail_event(shared: &Shared, entry: &InboxEvent, panic: &str) -> Result<(), StoreError> {
    let event_id = entry.item.event.get("event_id").and_then(Value::as_str).unwrap_or("(no ID)").to_owned();
    let why = format!("knockwarden failed while handling it (a bug): {panic}");
    tracing::error!(event_id, error = %why, "handling an event panicked; it is kept in the failed list");
    let store = &shared.store;
    let failed = FailedItem::Event { seq: entry.seq, item: entry.item.clone() };
    store.fail(failed, &why, |number| {
        let mut m = Msg::new();
        m.text(&format!("⚠️ Could not handle the event {event_id}: {why}"));
        m.line().text(&format!("Kept as failed item {number}: !knock retry {number} tries again."));
        Ok(vec![store.outbox_push(m.failure_notice())?])
    })?;
    shared.outbox_ready.notify_one();
    Ok(())
}

/// What handling an inbox entry came to.
enum Handled {
    Ops(Vec<Op>),
    /// Not yet: leave it at the head of the inbox and try again later.
    NotReady,
}

fn handle(shared: &Shared, entry: &InboxEvent) -> Result<Handled, StoreError> {
    let event = &entry.item.event;
    let head = match EventHead::parse(event) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "inbox entry is not an event; dropping it");
            return Ok(Handled::Ops(vec![]));
        }
    };
    let room = head.room_id.as_str();
    let control = shared.control_room_id();
    let in_control = control.as_deref().map(|c| c.as_str()) == Some(room);
    let store = &shared.store;
    let mut ops = Vec::new();
    // A ban list room is only read: its rules, nothing else (not even the bot's own join,
    // which the read of the list made).
    if !in_control && shared.lists.is_list_room(room) {
        return Ok(Handled::Ops(super::lists::on_event(shared, &head, event)?));
    }
    match head.kind.as_str() {
        "m.room.member" if head.is_membership_of(&shared.bot) => match head.membership.as_deref() {
            Some("invite") => {
                let action = if in_control || is_configured_control_alias_target(shared, event) {
                    Action::JoinControlRoom
                } else {
                    Action::AnswerInvite { room_id: head.room_id.clone(), inviter: head.sender.clone() }
                };
                tracing::info!(room, inviter = %head.sender, "invited");
                ops.push(store.outbox_push(action)?);
            }
            Some("join") => {
                tracing::info!(room, "joined");
                ops.push(store.outbox_push(Action::FetchRoomState { room_id: head.room_id.clone() })?);
                ops.push(store.outbox_push(Action::FetchMembers { room_id: head.room_id.clone() })?);
                ops.push(store.outbox_push(Action::CatchUp { room_id: head.room_id.clone() })?);
            }
            Some(m) => {
                tracing::info!(room, membership = m, by = %head.sender, "the bot's membership changed")
            }
            None => {}
        },
        "m.room.member" => {
            let Some(user) = head.state_key.as_deref() else {
                return Ok(Handled::Ops(ops));
            };
            // Who is joined where, for policies' `member_of`.
            ops.extend(Store::set_member(room, user, head.membership.as_deref() == Some("join")));
            match head.membership.as_deref() {
                Some("knock") => match knocks::on_knock(shared, entry, &head, user)? {
                    Knocked::Ops(more) => ops.extend(more),
                    Knocked::NotReady => return Ok(Handled::NotReady),
                },
                Some(m) => ops.extend(knocks::on_change(shared, &head, user, m)?),
                None => {}
            }
        }
        // Room state has an empty state key: an event of these types with another (or none)
        // is not the room's state, whoever sent it.
        "m.room.power_levels" | "m.room.join_rules" | "m.room.create" if head.is_room_state() => {
            let content = event.get("content").cloned().unwrap_or(Value::Null);
            let sender = head.sender.to_string();
            let mark = store.next_id()?;
            let mut rec = store.room(room)?.unwrap_or_default();
            room_state::apply(&mut rec, &head.kind, content, &sender);
            rec.pushed.insert(head.kind.clone(), mark);
            if !in_control && store.bot_membership(room)? == Some(crate::storage::BotMembership::Joined) {
                let (_, notice) = room_state::check_warnings(shared, room, &mut rec);
                if let Some(n) = notice {
                    ops.push(store.outbox_push(n)?);
                }
            }
            ops.push(Store::put_room(room, &rec));
        }
        // The bot never answers itself.
        "m.room.message" | "m.reaction" if in_control && head.sender == shared.bot => {}
        "m.room.message" if in_control => {
            if let Some(text) = control::message::command_text(event, shared.bot.as_str()) {
                let (event_id, sender) = (head.event_id.clone(), head.sender.clone());
                ops.push(store.outbox_push(Action::Command { event_id, sender, text })?);
            }
        }
        "m.reaction" if in_control => {
            if let Some((target, key)) = control::message::reaction(event)
                && control::message::Verdict::from_key(&key).is_some()
                && let Ok(target) = ruma::OwnedEventId::try_from(target)
            {
                let sender = head.sender.clone();
                ops.push(store.outbox_push(Action::Reaction { sender, target, key })?);
            }
        }
        #[cfg(debug_assertions)]
        crate::events::FAULT_EVENT_TYPE => fault(event),
        _ => tracing::debug!(room, kind = %head.kind, "nothing to do"),
    }
    Ok(Handled::Ops(ops))
}

/// Debug builds only: injects the fault an [`crate::events::FAULT_EVENT_TYPE`] event asks for.
#[cfg(debug_assertions)]
fn fault(event: &Value) {
    match event.pointer("/content/fault").and_then(Value::as_str) {
        Some("handler") => panic!("fault injected while handling an event"),
        Some("worker") => std::panic::resume_unwind(Box::new(WorkerFault)),
        _ => {}
    }
}

/// The panic payload that stops the worker (it is not caught per event).
#[cfg(debug_assertions)]
struct WorkerFault;

/// Whether an invite is to the control room given as an alias that is not resolved yet: the
/// invite's stripped state names the room's canonical alias.
fn is_configured_control_alias_target(shared: &Shared, invite: &Value) -> bool {
    let Ok(alias) = ruma::RoomAliasId::parse(shared.config.control_room.as_str()) else {
        return false;
    };
    let state = invite.get("invite_room_state").or_else(|| invite.pointer("/unsigned/invite_room_state"));
    state.and_then(Value::as_array).is_some_and(|evs| {
        evs.iter().any(|e| {
            e.get("type").and_then(Value::as_str) == Some("m.room.canonical_alias")
                && e.pointer("/content/alias").and_then(Value::as_str) == Some(alias.as_str())
        })
    })
}

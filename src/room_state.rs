//! What knockwarden knows of a room's state (create event, join rule, power levels): applied
//! from pushed events by the worker, fetched from the homeserver when the bot joins, and the
//! warnings posted when knocking cannot work as configured.

use std::collections::BTreeMap;

use ruma::RoomId;

use crate::{
    app::Shared,
    events::{RoomState, StateKind},
    notices, power,
    runner::ActionError,
    storage::{Action, FailCause, Op, Queue, RoomRecord, Rooms, StoreError},
};

/// Applies a state event's content to what we know of the room.
pub fn apply(rec: &mut RoomRecord, state: &RoomState, sender: &str) {
    match state {
        RoomState::PowerLevels(pl) => rec.power_levels = Some(pl.clone()),
        RoomState::JoinRules(rules) => rec.join_rule = rules.join_rule.clone(),
        RoomState::Create(create) => {
            let version = create.room_version.clone().unwrap_or_else(|| "1".to_owned());
            if crate::rooms::creators_have_infinite_power(&version) {
                let mut creators = vec![sender.to_owned()];
                creators.extend(create.additional_creators.iter().cloned());
                rec.creators = creators;
            }
            rec.room_version = Some(version);
            rec.room_type = create.room_type.clone();
        }
    }
}

/// Reads a room's create event, join rule and power levels into the store. A state event
/// pushed while the snapshot was being fetched is newer than it: that one is kept.
pub async fn fetch(shared: &Shared, room: &RoomId) -> Result<(), ActionError> {
    let began = shared.store.next_id()?;
    for kind in StateKind::ALL {
        if let Some(ev) = shared.homeserver.state(room, kind.as_str(), "").await? {
            let state = match ev.room_state(kind) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(%room, kind = kind.as_str(), error = %e, "the room's state event cannot be read; left as it was");
                    continue;
                }
            };
            // The create event's sender is the creator; old versions also name it in content.
            let creator = match &state {
                RoomState::Create(c) => c.creator.clone(),
                _ => None,
            };
            let sender = ev.sender.or(creator).unwrap_or_default();
            shared.store.rooms().update(room.as_str(), |rec| {
                if rec.pushed.get(kind.as_str()).is_some_and(|&at| at > began) {
                    tracing::debug!(%room, kind = kind.as_str(), "a newer pushed state event stands; the snapshot is not applied");
                } else {
                    apply(rec, &state, &sender);
                }
            })?;
        }
    }
    Ok(())
}

/// Brings `rec.warned` up to date with what cannot work in a managed room; returns whether
/// it changed, and the control-room notice to queue about new warnings. The caller writes
/// `rec` (the warnings are posted once per change).
pub fn check_warnings(shared: &Shared, room: &str, rec: &mut RoomRecord) -> (bool, Option<Action>) {
    let warnings = crate::rooms::warnings(rec, shared.bot.as_str(), &crate::notices::room_label(&shared.store, room));
    if warnings == rec.warned {
        return (false, None);
    }
    let had = std::mem::replace(&mut rec.warned, warnings.clone());
    if warnings.is_empty() {
        let label = crate::notices::room_label(&shared.store, room);
        tracing::info!(room, "knocking works as configured now");
        let text = format!("✅ Knocking in {label} works as configured now (before: {}).", had.join("; "));
        return (true, Some(notices::with_block(&text, None)));
    }
    for w in &warnings {
        tracing::warn!(room, "{w}");
    }
    let text = warnings.join("\n");
    (true, Some(notices::with_block("⚠️ Knocking cannot work as configured:", Some(&text))))
}

/// Checks the warnings of a room as the store holds it, writing what changed, and puts back
/// in the queue what failed for lack of a power the bot has now (after a fetch).
pub fn warn_if_changed(shared: &Shared, room: &str) -> Result<(), StoreError> {
    let store = &shared.store;
    store.serialized(|| {
        let mut rec = store.rooms().get(room)?.unwrap_or_default();
        let mut ops = power_regained(shared, room, &rec)?;
        let (changed, notice) = check_warnings(shared, room, &mut rec);
        if changed {
            ops.push(Rooms::put(room, &rec));
        }
        if let Some(n) = notice {
            ops.push(store.outbox().push(n)?);
        }
        store.commit(&ops)
    })
}

/// Puts back in the queue the failed actions in `room` that the bot lacked the power for and
/// has now (as `rec` says), and returns the writes of a notice saying so, one line per power.
/// Runs under [`Store::serialized`] (the worker, or [`warn_if_changed`]).
pub fn power_regained(shared: &Shared, room: &str, rec: &RoomRecord) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    if store.queue_depth(Queue::Failed) == 0 {
        return Ok(vec![]);
    }
    let pl = rec.power_levels.as_ref();
    let have = power::user_level(pl, &rec.creators, shared.bot.as_str());
    let mut by_change: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for f in store.failures().all()? {
        if let Some(FailCause::NoPower { room_id, change }) = &f.cause
            && room_id.as_str() == room
            && have >= power::action_level(pl, change.as_str())
        {
            by_change.entry(change.as_str()).or_default().push(f.number);
        }
    }
    if by_change.is_empty() {
        return Ok(vec![]);
    }
    let label = crate::notices::room_label(store, room);
    let mut lines = Vec::new();
    for (change, numbers) in &by_change {
        for n in numbers {
            store.failures().retry(*n)?;
        }
        tracing::info!(
            room,
            change,
            count = numbers.len(),
            "the bot has the power now: failed actions put back in the queue"
        );
        lines.push(format!("✅ knockwarden can now {change} in {label}: {} failed action(s) retried.", numbers.len()));
    }
    shared.outbox_ready.notify_one();
    Ok(vec![store.outbox().push(notices::with_block(&lines.join("\n"), None))?])
}

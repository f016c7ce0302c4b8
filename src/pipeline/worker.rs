//! The worker: drains the inbox, oldest first.
//!
//! Each event becomes a list of writes (state, outbox actions) committed in the same sled
//! transaction that removes it from the inbox, so a crash either leaves the event in the inbox
//! (it is handled again after restart) or has fully handled it: nothing is handled twice.

use serde_json::Value;

use super::{
    CONTROL_ROOM_KEY, Shared,
    knocks::{self, Knocked},
    wait_for,
};
use crate::{
    control,
    events::EventHead,
    notices,
    storage::{Action, InboxEntry, Op, RoomRecord, Store, StoreError},
};

/// Runs until the service stops, finishing the event in hand first.
pub async fn run(shared: Shared) {
    let mut stopping = shared.stopping.clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        match drain_one(&shared) {
            Ok(Drained::Handled) => continue,
            Ok(Drained::Empty) => {
                if !wait_for(&shared.inbox_ready, &mut stopping).await {
                    return;
                }
            }
            Ok(Drained::Blocked) => {
                tracing::debug!("waiting for the policies' aliases to be resolved");
                tokio::select! {
                    _ = shared.inbox_ready.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stopping.changed() => return,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed while handling the inbox; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// What [`drain_one`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Handled,
    Empty,
    /// The oldest entry must wait (e.g. for policy aliases to be resolved).
    Blocked,
}

/// Handles the oldest inbox entry.
pub fn drain_one(shared: &Shared) -> Result<Drained, StoreError> {
    let Some(entry) = shared.store.inbox_first()? else {
        return Ok(Drained::Empty);
    };
    let mut ops = match handle(shared, &entry)? {
        Handled::Ops(ops) => ops,
        Handled::NotReady => return Ok(Drained::Blocked),
    };
    let queued = ops.iter().any(|op| matches!(op, Op::Put { tree: crate::storage::T::Outbox, .. }));
    ops.push(Store::inbox_done(entry.seq));
    shared.store.commit(&ops)?;
    if queued {
        shared.outbox_ready.notify_one();
    }
    Ok(Drained::Handled)
}

/// What handling an inbox entry came to.
enum Handled {
    Ops(Vec<Op>),
    /// Not yet: leave it at the head of the inbox and try again later.
    NotReady,
}

fn handle(shared: &Shared, entry: &InboxEntry) -> Result<Handled, StoreError> {
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
    match head.kind.as_str() {
        "m.room.member" if head.is_membership_of(&shared.bot) => match head.membership.as_deref() {
            Some("invite") => {
                let action = if in_control || is_configured_control_alias_target(shared, event) {
                    Action::JoinControlRoom
                } else {
                    Action::AnswerInvite { room_id: room.to_owned(), inviter: head.sender.to_string() }
                };
                tracing::info!(room, inviter = %head.sender, "invited");
                ops.push(store.outbox_push(action)?);
            }
            Some("join") => {
                tracing::info!(room, "joined");
                ops.push(store.outbox_push(Action::FetchRoomState { room_id: room.to_owned() })?);
                ops.push(store.outbox_push(Action::FetchMembers { room_id: room.to_owned() })?);
                ops.push(store.outbox_push(Action::CatchUp { room_id: room.to_owned() })?);
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
            let rec = store.update_room(room, |rec| {
                apply_state(rec, &head.kind, content, &sender);
                rec.pushed.insert(head.kind.clone(), mark);
            })?;
            if !in_control && store.bot_membership(room)? == Some(crate::storage::BotMembership::Joined) {
                ops.extend(warn_if_changed(shared, room, &rec)?);
            }
        }
        // The bot never answers itself.
        "m.room.message" | "m.reaction" if in_control && head.sender == shared.bot => {}
        "m.room.message" if in_control => {
            if let Some(text) = control::message::command_text(event, shared.bot.as_str()) {
                let (event_id, sender) = (head.event_id.to_string(), head.sender.to_string());
                ops.push(store.outbox_push(Action::Command { event_id, sender, text })?);
            }
        }
        "m.reaction" if in_control => {
            if let Some((target, key)) = control::message::reaction(event)
                && control::message::Verdict::from_key(&key).is_some()
            {
                let sender = head.sender.to_string();
                ops.push(store.outbox_push(Action::Reaction { sender, target, key })?);
            }
        }
        _ => tracing::debug!(room, kind = %head.kind, "nothing to do"),
    }
    Ok(Handled::Ops(ops))
}

/// Warns in the control room when knocking cannot work in a managed room, once per change.
pub fn warn_if_changed(shared: &Shared, room: &str, rec: &RoomRecord) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    let warnings = crate::rooms::warnings(rec, shared.bot.as_str(), &knocks::room_label(store, room));
    if warnings == rec.warned {
        return Ok(vec![]);
    }
    store.update_room(room, |r| r.warned = warnings.clone())?;
    if warnings.is_empty() {
        return Ok(vec![]);
    }
    for w in &warnings {
        tracing::warn!(room, "{w}");
    }
    let text = warnings.join("\n");
    Ok(vec![store.outbox_push(notices::with_block("⚠️ Knocking cannot work as configured:", Some(&text)))?])
}

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

/// Applies a state event's content to what we know of the room.
pub fn apply_state(rec: &mut crate::storage::RoomRecord, kind: &str, content: Value, sender: &str) {
    match kind {
        "m.room.power_levels" => rec.power_levels = Some(content),
        "m.room.join_rules" => {
            rec.join_rule = content.get("join_rule").and_then(Value::as_str).map(str::to_owned);
        }
        "m.room.create" => {
            let version = content.get("room_version").and_then(Value::as_str).unwrap_or("1").to_owned();
            if crate::rooms::creators_have_infinite_power(&version) {
                let mut creators = vec![sender.to_owned()];
                if let Some(extra) = content.get("additional_creators").and_then(Value::as_array) {
                    creators.extend(extra.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                rec.creators = creators;
            }
            rec.room_version = Some(version);
        }
        _ => {}
    }
}

/// Keeps the resolved control room ID.
pub fn remember_control_room(store: &Store, room_id: &str) -> Result<(), StoreError> {
    store.set_meta(CONTROL_ROOM_KEY, room_id)
}

//! Routing: the one `match` on what an event is, and what each kind leads to (writes, and
//! actions queued). Runs in the worker's batch ([`super::worker`]); pure of the network.

use ruma::events::room::member::MembershipState;

use super::knocks::{self, Knocked};
use crate::app::Shared;
use crate::{
    events::{Body, Event, Member},
    room_state,
    storage::{Action, InboxItem, Op, Rooms, StoreError},
};

/// One event of an inbox entry or journal record, read (once) for handling.
#[derive(Debug, Clone)]
pub struct InboxEvent {
    /// The sequence number of its entry in sled's inbox, if it came from there (not from the
    /// journal).
    pub inbox_entry: Option<u64>,
    /// A knock that was put aside to wait ([`crate::storage::Parked::put`]): it is decided only if it is still
    /// the knocker's knock.
    pub waiting: bool,
    /// As stored (kept so, should it wait or fail).
    pub item: InboxItem,
    /// As read, for handling.
    pub event: Event,
}

/// What handling an inbox entry came to.
pub(super) enum Handled {
    Ops(Vec<Op>),
    /// A knock that cannot be decided yet (`on` names what it waits for); `ops` record it.
    Waits {
        on: String,
        ops: Vec<Op>,
        lookup: Option<Action>,
    },
}

/// Handles one event: the one `match` on what it is.
pub(super) fn handle(shared: &Shared, entry: &InboxEvent) -> Result<Handled, StoreError> {
    let event = &entry.event;
    let room = event.room_id.as_str();
    let control = shared.control_room_id();
    let in_control = control.as_deref() == Some(event.room_id.as_ref());
    let store = &shared.store;
    // A ban list room is only read: its rules, nothing else (not even the bot's own join,
    // which the read of the list made).
    if !in_control && shared.lists.is_list_room(room) {
        return Ok(Handled::Ops(super::lists::on_event(shared, event)?));
    }
    let mut ops = Vec::new();
    match &event.body {
        Body::Member(member) if member.user == shared.bot.as_str() => {
            ops.extend(on_bot_membership(shared, event, member, in_control)?);
        }
        Body::Member(member) => {
            let user = member.user.as_str();
            // Who is joined where, for policies' `member_of`.
            ops.extend(store.members().change(room, user, member.membership == MembershipState::Join)?);
            if member.membership == MembershipState::Knock {
                match knocks::on_knock(shared, entry, member)? {
                    Knocked::Ops(more) => ops.extend(more),
                    Knocked::Waits { on, ops: more, lookup } => {
                        ops.extend(more);
                        return Ok(Handled::Waits { on, ops, lookup });
                    }
                }
            } else {
                ops.extend(knocks::on_change(shared, event, member)?);
            }
        }
        Body::RoomState(state) => {
            let mark = store.next_id()?;
            let mut rec = store.rooms().get(room)?.unwrap_or_default();
            room_state::apply(&mut rec, state, event.sender.as_str());
            rec.pushed.insert(state.kind().as_str().to_owned(), mark);
            if !in_control && store.rooms().bot_membership(room)? == Some(crate::storage::BotMembership::Joined) {
                ops.extend(room_state::power_regained(shared, room, &rec)?);
                let (_, notice) = room_state::check_warnings(shared, room, &mut rec);
                if let Some(n) = notice {
                    ops.push(store.outbox().push(n)?);
                }
            }
            ops.push(Rooms::put(room, &rec));
        }
        // The bot never answers itself.
        Body::Message(_) | Body::Reaction(_) if in_control && event.sender == shared.bot => {}
        Body::Message(message) if in_control => {
            if let Some(text) = crate::events::command_text(message, shared.bot.as_str()) {
                let (event_id, sender) = (event.event_id.clone(), event.sender.clone());
                ops.push(store.outbox().push(Action::Command { event_id, sender, text })?);
            }
        }
        Body::Reaction(Some(annotation)) if in_control => {
            if crate::events::Verdict::from_key(&annotation.key).is_some()
                && let Ok(target) = ruma::OwnedEventId::try_from(annotation.event_id.as_str())
            {
                let (sender, key) = (event.sender.clone(), annotation.key.clone());
                ops.push(store.outbox().push(Action::Reaction { sender, target, key })?);
            }
        }
        #[cfg(debug_assertions)]
        Body::Fault(fault) => inject(fault.as_deref()),
        _ => tracing::debug!(room, event_id = %event.event_id, "nothing to do"),
    }
    Ok(Handled::Ops(ops))
}

/// The bot's own membership changed.
fn on_bot_membership(shared: &Shared, event: &Event, member: &Member, in_control: bool) -> Result<Vec<Op>, StoreError> {
    let (store, room, by) = (&shared.store, event.room_id.as_str(), &event.sender);
    let mut ops = Vec::new();
    match &member.membership {
        MembershipState::Invite => {
            tracing::info!(room, inviter = %by, "invited");
            // The configured control room is joined whoever invites (the admin chose it).
            // While the bot is not in it, any invitation may be to it (an alias names it,
            // and the invitation need not say so): the join is tried again, and the
            // invitation is answered once it is known whether it was to that room.
            let to_control = in_control || is_configured_control_alias_target(shared, member);
            if to_control || !shared.readiness.is_control_room_joined() {
                ops.push(store.outbox().push(Action::JoinControlRoom)?);
            }
            if !to_control {
                let answer = Action::AnswerInvite { room_id: event.room_id.clone(), inviter: by.clone() };
                ops.push(store.outbox().push(answer)?);
            }
        }
        MembershipState::Join => {
            tracing::info!(room, "joined");
            ops.push(store.outbox().push(Action::FetchRoomState { room_id: event.room_id.clone() })?);
            ops.push(store.outbox().push(Action::FetchMembers { room_id: event.room_id.clone() })?);
            ops.push(store.outbox().push(Action::CatchUp { room_id: event.room_id.clone() })?);
        }
        m @ (MembershipState::Leave | MembershipState::Ban) if in_control => {
            tracing::warn!(room, membership = %m, %by, "the bot is no longer in the control room: invite it again");
            let why = format!("the bot's membership became {m} (by {by})");
            shared.readiness.set_control_room(crate::readiness::ControlRoom::NotJoined { why });
            // Tried once more: the room may be public, or the event older than a join
            // made since (it then only confirms it); refused, it waits for an invitation.
            ops.push(store.outbox().push(Action::JoinControlRoom)?);
        }
        m => tracing::info!(room, membership = %m, %by, "the bot's membership changed"),
    }
    Ok(ops)
}

/// Debug builds only: injects the fault an [`crate::events::FAULT_EVENT_TYPE`] event asks for.
#[cfg(debug_assertions)]
fn inject(fault: Option<&str>) {
    match fault {
        Some("handler") => panic!("fault injected while handling an event"),
        Some("worker") => std::panic::resume_unwind(Box::new(WorkerFault)),
        _ => {}
    }
}

/// The panic payload that stops the worker (it is not caught per event).
#[cfg(debug_assertions)]
pub(super) struct WorkerFault;

/// Whether an invite is to the control room given as an alias that is not resolved yet: the
/// invite's stripped state names the room's canonical alias.
fn is_configured_control_alias_target(shared: &Shared, invite: &Member) -> bool {
    let Ok(alias) = ruma::RoomAliasId::parse(shared.config.control_room.as_str()) else {
        return false;
    };
    invite.invite_alias.as_deref() == Some(alias.as_str())
}

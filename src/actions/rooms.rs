//! Rooms: joining the control room, answering invitations, reading a room's state and
//! members, catching up on knocks, resolving the policies' aliases.

use std::collections::BTreeSet;

use ruma::{OwnedRoomId, RoomAliasId, RoomId, UserId};

use crate::{
    app::Shared,
    control::moderators,
    homeserver::HsError,
    notices,
    pipeline::intake,
    readiness::ControlRoom,
    room_state,
    runner::ActionError,
    storage::{Action, BotMembership, Members, Origin, Rooms},
};

/// Joins the control room (on every start, and whenever the bot is invited while not in it).
/// A refusal (the room is invite-only and the bot not invited yet) is not a failure: the bot
/// waits for an invitation, which the worker turns into another join; `/ready` says so
/// meanwhile. Until the join, what needs the control room waits (see
/// [`crate::runner::lanes`]).
pub async fn join_control_room(shared: &Shared) -> Result<Vec<Action>, ActionError> {
    let name = &shared.config.control_room;
    let id = match shared.homeserver.join(name).await {
        Ok(id) => id,
        Err(e) => {
            let why = format!("the homeserver refused the join ({e})");
            if e.is_transient() {
                shared.readiness.set_control_room(ControlRoom::NotJoined { why: format!("cannot join it yet ({e})") });
                return Err(e.into());
            }
            tracing::warn!(
                room = %name,
                bot = %shared.bot,
                error = %e,
                "cannot join the control room: invite the bot there; it joins when invited, and tries again on every start"
            );
            shared.readiness.set_control_room(ControlRoom::NotJoined { why });
            return Ok(vec![]);
        }
    };
    shared.store.set_meta(crate::app::CONTROL_ROOM_KEY, id.as_str())?;
    shared.readiness.set_control_room(ControlRoom::Joined(id.clone()));
    shared.outbox_ready.notify_one();
    tracing::info!(room = %id, "in the control room");
    // Its power levels say who may steer knockwarden, its members who still can.
    Ok(vec![Action::FetchRoomState { room_id: id.clone() }, Action::FetchMembers { room_id: id }])
}

pub async fn answer_invite(shared: &Shared, room: &RoomId, inviter: &UserId) -> Result<Vec<Action>, ActionError> {
    // An invitation to the control room given as an alias: joined already (this action waits
    // for that join), whoever invited.
    if shared.control_room_id().as_deref() == Some(room) {
        return Ok(vec![]);
    }
    if moderators::is_moderator(shared, inviter.as_str()).await? {
        shared.homeserver.join(<&ruma::RoomOrAliasId>::from(room)).await?;
        tracing::info!(%room, %inviter, "joined at a moderator's invitation");
    } else {
        shared.homeserver.leave(room).await?;
        tracing::warn!(%room, %inviter, "declined an invitation from a non-moderator");
    }
    Ok(vec![])
}

/// Makes the store agree with the homeserver on which rooms the bot is in (the homeserver is
/// the source of truth: a database restored from a backup, or started afresh, does not know
/// of rooms the bot joined), then reads each joined room's state, members and the knocks made
/// while knockwarden was not running. A room that cannot be read now is queued to be read
/// again. Marks knockwarden ready (`/ready`) when done.
pub async fn reconcile(shared: &Shared) -> Result<Vec<Action>, ActionError> {
    let store = &shared.store;
    let known: BTreeSet<String> = store.rooms().joined()?.into_iter().collect();
    let joined: BTreeSet<OwnedRoomId> = match shared.homeserver.joined_rooms().await {
        Ok(rooms) => rooms.into_iter().collect(),
        // A homeserver without the endpoint (it is in every spec version: none should) says
        // nothing; the store's view stands.
        Err(HsError::Api { status: 404, errcode, .. }) if errcode == "M_UNRECOGNIZED" => {
            tracing::warn!("the homeserver does not answer joined_rooms; going by the rooms the store knows");
            known.iter().filter_map(|r| OwnedRoomId::try_from(r.as_str()).ok()).collect()
        }
        Err(e) => return Err(e.into()),
    };
    let mut ops = Vec::new();
    for gone in known.iter().filter(|r| !joined.iter().any(|j| j.as_str() == r.as_str())) {
        tracing::info!(room = %gone, "the homeserver says the bot is no longer in this room");
        ops.push(Rooms::put_bot_membership(gone, BotMembership::Left));
    }
    let mut new = Vec::new();
    for room in joined.iter().filter(|j| !known.contains(j.as_str())) {
        tracing::info!(%room, "the homeserver says the bot is in this room; it was not on record");
        ops.push(Rooms::put_bot_membership(room.as_str(), BotMembership::Joined));
        new.push(room.clone());
    }
    store.commit(&ops)?;
    let control = shared.control_room_id();
    let mut follow_ups = Vec::new();
    for room in &joined {
        if new.contains(room) && !shared.lists.is_list_room(room.as_str()) {
            follow_ups.push(Action::FetchMembers { room_id: room.clone() });
        }
        // The control room, and ban lists (read by their own action), are not managed rooms.
        if control.as_ref() == Some(room) || shared.lists.is_list_room(room.as_str()) {
            continue;
        }
        // Each room on its own: one that fails is read again later, the others go on.
        if let Err(e) = fetch_state(shared, room).await {
            tracing::warn!(%room, error = %e, "cannot read the room's state now; queued");
            follow_ups.push(Action::FetchRoomState { room_id: room.clone() });
        }
        if let Err(e) = catch_up(shared, room).await {
            tracing::warn!(%room, error = %e, "cannot catch up on the room's knocks now; queued");
            follow_ups.push(Action::CatchUp { room_id: room.clone() });
        }
    }
    tracing::info!(rooms = joined.len(), "rooms reconciled with the homeserver; caught up");
    shared.tasks.set_ready();
    Ok(follow_ups)
}

/// Fetches knocks the bot could not see and takes them in, like pushed ones.
pub async fn catch_up(shared: &Shared, room: &RoomId) -> Result<Vec<Action>, ActionError> {
    let knocks = shared.homeserver.knocking_members(room).await?;
    let n = knocks.len();
    let origin = Origin::CatchUp { room_id: room.to_string() };
    let taken = intake::take_events(shared, &origin, knocks.iter().map(|k| k.get())).await?;
    tracing::info!(%room, knocking = n, kept = taken.kept, "caught up on knocks");
    Ok(vec![])
}

pub async fn fetch_members(shared: &Shared, room: &RoomId) -> Result<Vec<Action>, ActionError> {
    let members = shared.homeserver.joined_members(room).await?;
    let ops: Vec<_> = members.iter().flat_map(|u| Members::set(room.as_str(), u, true)).collect();
    shared.store.commit(&ops)?;
    tracing::debug!(%room, members = members.len(), "learned the members");
    Ok(vec![])
}

pub async fn fetch_state(shared: &Shared, room: &RoomId) -> Result<Vec<Action>, ActionError> {
    room_state::fetch(shared, room).await?;
    let is_control = shared.control_room_id().as_deref() == Some(room);
    if !is_control
        && !shared.lists.is_list_room(room.as_str())
        && shared.store.rooms().bot_membership(room.as_str())? == Some(BotMembership::Joined)
    {
        room_state::warn_if_changed(shared, room.as_str())?;
        shared.outbox_ready.notify_one();
    }
    Ok(vec![])
}

/// Looks up every alias the active policies name, so knocks can be matched to policies.
pub async fn resolve_aliases(shared: &Shared) -> Result<Vec<Action>, ActionError> {
    let active = shared.policies.current();
    let store = &shared.store;
    let mut failed = None;
    for a in active.set.aliases() {
        let Ok(alias) = RoomAliasId::parse(a) else { continue };
        let ops = match shared.homeserver.resolve_alias(&alias).await {
            Ok(room) => vec![crate::storage::Aliases::put(a, Some(room.as_str()))],
            Err(HsError::Api { status: 404, .. }) => {
                tracing::warn!(alias = %a, "a policy names an alias that does not exist");
                let mut ops = vec![crate::storage::Aliases::put(a, None)];
                // Said once, not at every look-up.
                if store.aliases().get(a)? != Some(None) {
                    let text = format!(
                        "⚠️ A policy names the room {a}, which does not exist: knocks there cannot be matched to it."
                    );
                    ops.push(store.outbox().push(notices::with_block(&text, None))?);
                }
                ops
            }
            Err(e) => {
                // The others are looked up all the same: only knocks that may depend on this
                // one wait for it.
                tracing::warn!(alias = %a, error = %e, "cannot look up an alias a policy names; knocks that depend on it wait");
                failed.get_or_insert(e);
                continue;
            }
        };
        // Each as it comes: a knock waiting for it need not wait for the others.
        store.commit(&ops)?;
        shared.outbox_ready.notify_one();
        shared.inputs_changed();
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(vec![]),
    }
}

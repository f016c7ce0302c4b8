//! Who may steer knockwarden: members of the control room with enough power, or listed in
//! `moderators.users`.

use ruma::RoomId;

use crate::{app::Shared, homeserver::HsError, notices::Msg, power, room_state, runner::ActionError, storage::Members};

/// Whether `user` is joined to `room`: as the store knows it (from the members fetched on
/// joining, and the membership events pushed since), else as the homeserver says (the fetch
/// may not have run yet: an invitation can be answered before it).
async fn is_member(shared: &Shared, room: &RoomId, user: &str) -> Result<bool, ActionError> {
    if shared.store.members().contains(room.as_str(), user)? {
        return Ok(true);
    }
    let ev = shared.homeserver.state(room, "m.room.member", user).await?;
    let joined = ev.and_then(|e| e.membership()) == Some(crate::events::MembershipState::Join);
    if joined {
        shared.store.commit(&Members::set(room.as_str(), user, true))?;
    }
    Ok(joined)
}

/// Whether `user` may steer knockwarden: joined to the control room, and listed in
/// `moderators.users` or with at least `moderators.power_level` there. A moderator who left or
/// was banned no longer counts.
pub async fn is_moderator(shared: &Shared, user: &str) -> Result<bool, ActionError> {
    let Some(control) = shared.control_room_id() else {
        return Err(ActionError::Homeserver(HsError::Transport("the control room is not joined yet".into())));
    };
    if !is_member(shared, &control, user).await? {
        return Ok(false);
    }
    let cfg = &shared.config.moderators;
    if cfg.users.iter().any(|u| u.as_str() == user) {
        return Ok(true);
    }
    let mut rec = shared.store.rooms().get(control.as_str())?.unwrap_or_default();
    if rec.power_levels.is_none() {
        room_state::fetch(shared, &control).await?;
        rec = shared.store.rooms().get(control.as_str())?.unwrap_or_default();
    }
    Ok(power::user_level(rec.power_levels.as_ref(), &rec.creators, user) >= cfg.power_level)
}

/// The joined members of the control room who count as moderators, as the store knows them
/// (for `review.mention: moderators`; the bot itself is not one).
pub fn joined_moderators(shared: &Shared) -> Result<Vec<ruma::OwnedUserId>, crate::storage::StoreError> {
    let Some(control) = shared.control_room_id() else { return Ok(vec![]) };
    let cfg = &shared.config.moderators;
    let rec = shared.store.rooms().get(control.as_str())?.unwrap_or_default();
    Ok(shared
        .store
        .members()
        .of(control.as_str())?
        .into_iter()
        .filter(|u| u.as_str() != shared.bot.as_str())
        .filter(|u| {
            cfg.users.iter().any(|m| m.as_str() == u)
                || power::user_level(rec.power_levels.as_ref(), &rec.creators, u) >= cfg.power_level
        })
        .filter_map(|u| ruma::OwnedUserId::try_from(u).ok())
        .collect())
}

/// The reply to someone who is not a moderator, unless they were told in the last 10 minutes.
pub fn refuse(shared: &Shared, sender: &str, reply_to: &str) -> Vec<crate::storage::Action> {
    if !shared.told.tell(sender, crate::storage::now_ms()) {
        tracing::debug!(sender, "not a moderator, told recently: no reply");
        return vec![];
    }
    vec![not_a_moderator(shared, sender).reply_to(reply_to)]
}

/// The reply to someone who is not a moderator.
pub fn not_a_moderator(shared: &Shared, sender: &str) -> Msg {
    let mut m = Msg::new();
    m.text(&format!(
        "{sender} is not a moderator, so nothing was done. Moderators are the members of this room with power level {} or more, and those members listed in knockwarden's config.",
        shared.config.moderators.power_level
    ));
    m
}

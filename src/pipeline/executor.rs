//! The executor: carries out the outbox, oldest first, on the homeserver.
//!
//! A transient failure (429, 5xx, no answer) keeps the action at the head of the outbox and
//! retries it after the delay the homeserver asked for, or an exponential back-off with jitter
//! capped at 5 minutes; later actions wait behind it, so actions happen in order. A permanent
//! failure is logged and the action dropped.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ruma::{OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};

use super::{Shared, intake, knocks, wait_for, worker};
use crate::{
    homeserver::{HsError, MembershipChange, notice_content},
    notices, power,
    storage::{Action, AuditEntry, BotMembership, Op, Origin, OutboxEntry, Outcome, Store, now_ms},
};

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The first wait: short, so one failed call among good ones costs little; it doubles (with
/// jitter) on every further failure and reaches the cap after about 15 failures.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Delay before attempt number `attempts + 1`, after `attempts` failures.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_BACKOFF);
    }
    ExponentialBuilder::default()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Homeserver(#[from] HsError),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    /// Not retryable, and not the homeserver's fault.
    #[error("{0}")]
    Permanent(String),
}

impl ActionError {
    fn is_transient(&self) -> bool {
        match self {
            ActionError::Homeserver(e) => e.is_transient(),
            ActionError::Store(_) => true,
            ActionError::Permanent(_) => false,
        }
    }
}

/// Runs until the service stops, finishing the action in hand first.
pub async fn run(shared: Shared) {
    let mut stopping = shared.stopping.clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        let head = match shared.store.outbox_first() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((seq, entry)) = head else {
            if !wait_for(&shared.outbox_ready, &mut stopping).await {
                return;
            }
            continue;
        };
        let now = now_ms();
        if entry.not_before_ms > now {
            let wait = Duration::from_millis(entry.not_before_ms - now);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => return,
            }
            continue;
        }
        step(&shared, seq, entry).await;
    }
}

/// Tries one action and records the outcome.
async fn step(shared: &Shared, seq: u64, mut entry: OutboxEntry) {
    // Fresh: queued by this process and not failed yet, so the store is as current as the
    // pushed events (see `act`).
    let fresh = entry.attempts == 0 && entry.created_ms >= shared.started_ms;
    let result = execute(shared, seq, &entry.action, fresh).await;
    let store = &shared.store;
    let outcome = match result {
        Ok(follow_ups) => {
            let mut ops: Vec<Op> = vec![Store::outbox_done(seq)];
            for a in follow_ups {
                match store.outbox_push(a) {
                    Ok(op) => ops.push(op),
                    Err(e) => tracing::error!(error = %e, "cannot queue a follow-up action"),
                }
            }
            store.commit(&ops)
        }
        Err(e) if e.is_transient() => {
            entry.attempts += 1;
            let retry_after = match &e {
                ActionError::Homeserver(h) => h.retry_after(),
                _ => None,
            };
            let delay = backoff(entry.attempts, retry_after);
            entry.not_before_ms = now_ms() + delay.as_millis() as u64;
            entry.last_error = Some(e.to_string());
            tracing::warn!(action = ?entry.action, attempts = entry.attempts, error = %e, retry_in_ms = delay.as_millis() as u64, "action failed; will retry");
            store.outbox_retry_later(seq, &entry)
        }
        Err(e) => {
            tracing::error!(action = ?entry.action, error = %e, "action failed for good; dropping it");
            store.commit(&[Store::outbox_done(seq), Op::Add { counter: "actions_failed".into(), by: 1 }])
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "cannot record the outcome of an action");
    }
}

fn room_id(s: &str) -> Result<OwnedRoomId, ActionError> {
    OwnedRoomId::try_from(s).map_err(|e| ActionError::Permanent(format!("bad room ID {s}: {e}")))
}

/// Carries out one action; returns follow-up actions. `seq` identifies the outbox entry (used
/// as the transaction ID of messages, so a retried send is not posted twice).
async fn execute(shared: &Shared, seq: u64, action: &Action, fresh: bool) -> Result<Vec<Action>, ActionError> {
    let hs = &shared.homeserver;
    match action {
        Action::JoinControlRoom => {
            let id = hs.join(&shared.config.control_room).await?;
            worker::remember_control_room(&shared.store, id.as_str())?;
            tracing::info!(room = %id, "in the control room");
            // Its power levels say who may steer knockwarden, its members who still can.
            Ok(vec![
                Action::FetchRoomState { room_id: id.to_string() },
                Action::FetchMembers { room_id: id.to_string() },
            ])
        }
        Action::AnswerInvite { room_id: room, inviter } => {
            let room = room_id(room)?;
            if is_moderator(shared, inviter).await? {
                hs.join(<&ruma::RoomOrAliasId>::from(&*room)).await?;
                tracing::info!(%room, %inviter, "joined at a moderator's invitation");
            } else {
                hs.leave(&room).await?;
                tracing::warn!(%room, %inviter, "declined an invitation from a non-moderator");
            }
            Ok(vec![])
        }
        Action::CatchUp { room_id: room } => {
            let room = room_id(room)?;
            let knocks = hs.knocking_members(&room).await?;
            let n = knocks.len();
            let origin = Origin::CatchUp { room_id: room.to_string() };
            let (outcome, _, _) = intake::take_events(shared, &origin, None, knocks.iter().map(|k| k.get()))?;
            shared.store.flush().await?;
            if outcome.stored > 0 {
                shared.inbox_ready.notify_one();
            }
            tracing::info!(%room, knocking = n, new = outcome.stored, "caught up on knocks");
            Ok(vec![])
        }
        Action::Notice { plain, html } => {
            let Some(control) = shared.control_room_id() else {
                return Err(HsError::Transport("the control room is not joined yet".into()).into());
            };
            send_fitted(shared, &control, seq, "m.room.message", &notice_content(plain, html)).await?;
            Ok(vec![])
        }
        Action::FetchMembers { room_id: room } => {
            let room = room_id(room)?;
            let members = hs.joined_members(&room).await?;
            let ops: Vec<_> = members.iter().flat_map(|u| Store::set_member(room.as_str(), u, true)).collect();
            shared.store.commit(&ops)?;
            tracing::debug!(%room, members = members.len(), "learned the members");
            Ok(vec![])
        }
        Action::FetchRoomState { room_id: room } => {
            let room = room_id(room)?;
            fetch_room_state(shared, &room).await?;
            let store = &shared.store;
            let is_control = shared.control_room_id().as_deref() == Some(room.as_ref());
            if !is_control && store.bot_membership(room.as_str())? == Some(BotMembership::Joined) {
                let rec = store.room(room.as_str())?.unwrap_or_default();
                store.commit(&worker::warn_if_changed(shared, room.as_str(), &rec)?)?;
            }
            Ok(vec![])
        }
        Action::ResolveAliases => resolve_aliases(shared).await,
        Action::Command { event_id, sender, text } => {
            crate::control::run::command(shared, seq, event_id, sender, text).await
        }
        Action::Reaction { sender, target, key } => {
            crate::control::run::reaction(shared, seq, sender, target, key).await
        }
        Action::Send { event_type, content } => {
            let Some(control) = shared.control_room_id() else {
                return Err(HsError::Transport("the control room is not joined yet".into()).into());
            };
            send_fitted(shared, &control, seq, event_type, content).await?;
            Ok(vec![])
        }
        Action::ReviewClosed { number, reply } => crate::control::run::review_closed(shared, *number, *reply),
        Action::Act { change, room_id: room, user_id: user, reason, audit_id, notify } => {
            let room = room_id(room)?;
            let user = OwnedUserId::try_from(user.as_str()).map_err(|e| ActionError::Permanent(e.to_string()))?;
            let outcome = act(shared, *change, &room, &user, reason, *audit_id, fresh).await?;
            let now = now_ms();
            // A person (or the knocker) may have settled it meanwhile: their word stands.
            let entry = shared.store.settle_pending(*audit_id, outcome.clone(), now)?;
            let failed = matches!(outcome, Outcome::Failed(_));
            match (entry, *notify || failed) {
                (Some(e), true) => Ok(vec![outcome_notice(shared, &e, &outcome)]),
                _ => Ok(vec![]),
            }
        }
        Action::ReviewNotice { number } => {
            let store = &shared.store;
            let Some(item) = store.review(*number)? else { return Ok(vec![]) };
            let Some(entry) = store.audit(item.audit_id)? else { return Ok(vec![]) };
            let Some(control) = shared.control_room_id() else {
                return Err(HsError::Transport("the control room is not joined yet".into()).into());
            };
            let outcome = notices::verdict(entry.action, entry.dry_run);
            let notices::Msg { plain, html } = knocks::entry_notice(store, &entry, outcome, Some(*number), None);
            let event = send_fitted(shared, &control, seq, "m.room.message", &notice_content(&plain, &html)).await?;
            store.update_review(*number, |item| item.notice_event = Some(event.to_string()))?;
            Ok(vec![])
        }
    }
}

/// Sends a control-room message, fitted to the homeserver's event size limit
/// ([`notices::fit`]). Should the homeserver still refuse it as too large (413), it is sent
/// again, shorter each time: a reply may be cut, but it always arrives. Each try has its own
/// transaction ID (a refused one created no event); the first is `kw{seq}`, so a retried
/// action is posted once.
async fn send_fitted(
    shared: &Shared,
    room: &RoomId,
    seq: u64,
    event_type: &str,
    content: &serde_json::Value,
) -> Result<ruma::OwnedEventId, HsError> {
    let mut budget = notices::MAX_CONTENT_BYTES;
    let mut attempt = 0;
    loop {
        let txn = if attempt == 0 { format!("kw{seq}") } else { format!("kw{seq}-fit{attempt}") };
        let fitted = notices::fit(content, budget);
        match shared.homeserver.send(room, &txn, event_type, &fitted).await {
            Err(HsError::Api { status: 413, .. }) if budget > 1_000 => {
                let sent = serde_json::to_vec(&fitted).map(|b| b.len()).unwrap_or(budget);
                tracing::warn!(bytes = sent, "the homeserver refused a message as too large; sending it shorter");
                budget = sent.min(budget) / 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Looks up every alias the active policies name, so knocks can be matched to policies.
async fn resolve_aliases(shared: &Shared) -> Result<Vec<Action>, ActionError> {
    let active = shared.policies.current();
    let mut ops = Vec::new();
    let mut follow_ups = Vec::new();
    for a in active.set.aliases() {
        let Ok(alias) = RoomAliasId::parse(&a) else { continue };
        match shared.homeserver.resolve_alias(&alias).await {
            Ok(room) => ops.push(Store::put_alias(&a, Some(room.as_str()))),
            Err(HsError::Api { status: 404, .. }) => {
                tracing::warn!(alias = %a, "a policy names an alias that does not exist");
                ops.push(Store::put_alias(&a, None));
                follow_ups.push(notices::with_block(
                    &format!(
                        "⚠️ A policy names the room {a}, which does not exist: knocks there cannot be matched to it."
                    ),
                    None,
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    shared.store.commit(&ops)?;
    shared.inbox_ready.notify_one();
    Ok(follow_ups)
}

/// Invites, kicks or bans a knocker, unless they are no longer knocking. Transient failures
/// are errors (retried); everything else is an outcome.
pub(crate) async fn act(
    shared: &Shared,
    change: MembershipChange,
    room: &RoomId,
    user: &UserId,
    reason: &str,
    audit_id: u64,
    fresh: bool,
) -> Result<Outcome, ActionError> {
    let hs = &shared.homeserver;
    // Act only on someone still knocking. For a fresh action the store knows: the worker has
    // applied every membership change pushed so far, and closes the knock record when the
    // knocker withdraws or someone else acts. Otherwise (a retry, or an action left by an
    // earlier run, which may have been carried out just before a crash) ask the homeserver.
    let (membership, by_bot) = if fresh {
        let knocking = shared.store.knock(room.as_str(), user.as_str())?.is_some_and(|k| k.audit_id == Some(audit_id));
        (Some(if knocking { "knock".to_owned() } else { "not knocking any more".to_owned() }), false)
    } else {
        let ev = hs.state(room, "m.room.member", user.as_str()).await?;
        let by_bot = ev.as_ref().and_then(|e| e.sender.as_deref()) == Some(shared.bot.as_str());
        (ev.and_then(|ev| ev.content.get("membership").and_then(|m| m.as_str()).map(str::to_owned)), by_bot)
    };
    match (change, membership.as_deref()) {
        (_, Some("knock")) => {}
        // Already invited or in the room: what the invite was for has happened.
        (MembershipChange::Invite, Some("invite" | "join")) => return Ok(Outcome::Done),
        // Done by the bot already: an attempt that succeeded just before a crash.
        (MembershipChange::Kick, Some("leave")) | (MembershipChange::Ban, Some("ban")) if by_bot => {
            return Ok(Outcome::Done);
        }
        (_, m) => {
            return Ok(Outcome::Cancelled(format!(
                "{user} is no longer knocking (membership: {})",
                m.unwrap_or("none")
            )));
        }
    }
    match hs.membership(change, room, user, reason).await {
        Ok(()) => Ok(Outcome::Done),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(HsError::Api { status: 403, message, .. })
            if change == MembershipChange::Invite && message.contains("already in the room") =>
        {
            Ok(Outcome::Done)
        }
        Err(e) => Ok(Outcome::Failed(refusal(shared, change, room, &e))),
    }
}

/// Says exactly why the homeserver refused: missing power if that is it.
fn refusal(shared: &Shared, change: MembershipChange, room: &RoomId, e: &HsError) -> String {
    let rec = shared.store.room(room.as_str()).ok().flatten().unwrap_or_default();
    let pl = rec.power_levels.as_ref();
    let need = power::action_level(pl, change.as_str());
    let have = power::user_level(pl, &rec.creators, shared.bot.as_str());
    let label = knocks::room_label(&shared.store, room.as_str());
    if e.status() == Some(403) && have < need {
        format!("knockwarden needs power level {need} to {} in {label} (it has {have})", change.as_str())
    } else {
        format!("the homeserver refused to {} in {label}: {e}", change.as_str())
    }
}

/// The notice about what came of a decision.
fn outcome_notice(shared: &Shared, e: &AuditEntry, outcome: &Outcome) -> Action {
    let text = match outcome {
        Outcome::Done => notices::verdict(e.action, false).to_owned(),
        Outcome::Cancelled(why) => format!("{} not done: {why}", e.action),
        Outcome::Failed(why) => format!("⚠️ {} failed: {why}", e.action),
        other => format!("{other:?}"),
    };
    knocks::entry_notice(&shared.store, e, &text, None, None).notice()
}

/// Reads a room's create event, join rule and power levels into the store. A state event
/// pushed while the snapshot was being fetched is newer than it: that one is kept.
async fn fetch_room_state(shared: &Shared, room: &RoomId) -> Result<(), ActionError> {
    let began = shared.store.next_id()?;
    for kind in ["m.room.create", "m.room.join_rules", "m.room.power_levels"] {
        if let Some(ev) = shared.homeserver.state(room, kind, "").await? {
            // The create event's sender is the creator; old versions also name it in content.
            let sender = ev
                .sender
                .or_else(|| ev.content.get("creator").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_default();
            shared.store.update_room(room.as_str(), |rec| {
                if rec.pushed.get(kind).is_some_and(|&at| at > began) {
                    tracing::debug!(%room, kind, "a newer pushed state event stands; the snapshot is not applied");
                } else {
                    worker::apply_state(rec, kind, ev.content, &sender);
                }
            })?;
        }
    }
    Ok(())
}

/// Whether `user` is joined to `room`: as the store knows it (from the members fetched on
/// joining, and the membership events pushed since), else as the homeserver says (the fetch
/// may not have run yet: an invitation can be answered before it).
async fn is_member(shared: &Shared, room: &RoomId, user: &str) -> Result<bool, ActionError> {
    if shared.store.is_member(room.as_str(), user)? {
        return Ok(true);
    }
    let ev = shared.homeserver.state(room, "m.room.member", user).await?;
    let joined = ev.is_some_and(|e| e.content.get("membership").and_then(|m| m.as_str()) == Some("join"));
    if joined {
        shared.store.commit(&Store::set_member(room.as_str(), user, true))?;
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
    let mut rec = shared.store.room(control.as_str())?.unwrap_or_default();
    if rec.power_levels.is_none() {
        fetch_room_state(shared, &control).await?;
        rec = shared.store.room(control.as_str())?.unwrap_or_default();
    }
    Ok(power::user_level(rec.power_levels.as_ref(), &rec.creators, user) >= cfg.power_level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(20));
        assert!(backoff(12, None) >= Duration::from_secs(10));
        assert!(backoff(30, None) <= MAX_BACKOFF);
        assert_eq!(backoff(3, Some(Duration::from_millis(1200))), Duration::from_millis(1200));
        assert_eq!(backoff(3, Some(Duration::from_secs(9999))), MAX_BACKOFF);
    }
}

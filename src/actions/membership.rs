//! Invite, kick or ban a knocker: the one way a decision on a knock is carried out, whether
//! a policy, a moderator or review expiry made it.
//!
//! Before acting, the knock the action answers must still be the knocker's membership: for an
//! action queued by this process that has not failed, the store says so (the worker has
//! applied every membership change pushed so far); for an action of an earlier run, or after
//! a failure, the homeserver does (the attempt before may have succeeded just before a crash,
//! and the knocker may have knocked again meanwhile). A moderator's verdict always asks the
//! homeserver: it may come long after the knock, and one request per verdict costs nothing.
//! Otherwise the action is cancelled and the audit entry says why.
//!
//! "Already in the room" is recognised by the membership, not by the homeserver's wording: a
//! refused invite of someone the homeserver shows invited or joined is done.

use crate::events::MembershipState;
use ruma::{RoomId, UserId};

use crate::{
    app::Shared,
    control::verdicts::{self, Finished},
    homeserver::{HsError, MembershipChange},
    notices, power,
    runner::ActionError,
    storage::{Action, AuditEntry, FailCause, Op, Outcome, Resolution, Store, StoreError, now_ms},
};

/// What came of an invite, kick or ban.
pub enum Acted {
    /// Carried out (or found done: an earlier attempt got through).
    Done,
    /// Not carried out, and why.
    NothingDone(Resolution),
}

/// Whether the action still answers the knocker's current knock.
enum Check {
    Go,
    Done,
    Stop(Resolution),
}

pub async fn perform(shared: &Shared, action: &Action, fresh: bool) -> Result<Acted, ActionError> {
    let Action::Act { change, room_id: room, user_id: user, reason, audit_id, knock_event, verdict, .. } = action
    else {
        return Err(ActionError::Permanent(format!("not an invite, kick or ban: {}", action.describe())));
    };
    let (room, user) = (room.clone(), user.clone());
    let check = if fresh && verdict.is_none() {
        check_store(shared, &room, &user, knock_event.as_deref().map(|e| e.as_str()), *audit_id)?
    } else {
        check_homeserver(shared, *change, &room, &user, knock_event.as_deref().map(|e| e.as_str())).await?
    };
    match check {
        Check::Go => {}
        Check::Done => return Ok(Acted::Done),
        Check::Stop(why) => return Ok(Acted::NothingDone(why)),
    }
    match shared.homeserver.membership(*change, &room, &user, reason).await {
        Ok(()) => Ok(Acted::Done),
        Err(e) if e.is_transient() => Err(e.into()),
        // The user blocks invites (MSC4380): not retried; a person must ask them to allow it.
        Err(HsError::Api { errcode, .. }) if *change == MembershipChange::Invite && errcode == "M_INVITE_BLOCKED" => {
            let label = crate::notices::room_label(&shared.store, room.as_str());
            Err(ActionError::Permanent(format!(
                "{user} blocks invites (M_INVITE_BLOCKED): they must allow invites from {label} or its server before they can be let in; then !knock retry tries again"
            )))
        }
        // Inviting someone already invited or joined: what the invite was for has happened.
        Err(e @ HsError::Api { status: 403, .. }) if *change == MembershipChange::Invite => {
            let now = shared.homeserver.state(&room, "m.room.member", user.as_str()).await?;
            match now.as_ref().and_then(|ev| ev.membership()) {
                Some(MembershipState::Invite | MembershipState::Join) => Ok(Acted::Done),
                _ => Err(refusal(shared, *change, &room, &e)),
            }
        }
        Err(e) => Err(refusal(shared, *change, &room, &e)),
    }
}

/// The store's word, for a fresh action: the knock on record must be the one answered.
fn check_store(
    shared: &Shared,
    room: &RoomId,
    user: &UserId,
    knock_event: Option<&str>,
    audit_id: Option<u64>,
) -> Result<Check, ActionError> {
    let rec = shared.store.knocks().get(room.as_str(), user.as_str())?;
    Ok(match (rec, knock_event) {
        (Some(r), Some(k)) if r.event_id == k => Check::Go,
        // Queued by an older version, without the knock's event: its decision identifies it.
        (Some(r), None) if r.audit_id == audit_id => Check::Go,
        (Some(_), _) => Check::Stop(Resolution::KnockedAgain),
        (None, _) => Check::Stop(Resolution::NotKnocking { membership: None }),
    })
}

/// The homeserver's word, for an action of an earlier run or after a failure.
async fn check_homeserver(
    shared: &Shared,
    change: MembershipChange,
    room: &RoomId,
    user: &UserId,
    knock_event: Option<&str>,
) -> Result<Check, ActionError> {
    let ev = shared.homeserver.state(room, "m.room.member", user.as_str()).await?;
    let by_bot = ev.as_ref().and_then(|e| e.sender.as_deref()) == Some(shared.bot.as_str());
    let current = ev.as_ref().and_then(|e| e.event_id.as_deref());
    let membership = ev.as_ref().and_then(|e| e.membership());
    Ok(match (change, &membership) {
        (_, Some(MembershipState::Knock)) => match (knock_event, current) {
            (Some(k), Some(c)) if k != c => Check::Stop(Resolution::KnockedAgain),
            _ => Check::Go,
        },
        // Already invited or in the room: what the invite was for has happened.
        (MembershipChange::Invite, Some(MembershipState::Invite | MembershipState::Join)) => Check::Done,
        // Done by the bot already: an attempt that succeeded just before a crash.
        (MembershipChange::Kick, Some(MembershipState::Leave))
        | (MembershipChange::Ban, Some(MembershipState::Ban))
            if by_bot =>
        {
            Check::Done
        }
        (_, _) => Check::Stop(Resolution::NotKnocking { membership }),
    })
}

/// Says exactly why the homeserver refused: missing power if that is it (then the action is
/// put back in the queue once the bot has that power).
fn refusal(shared: &Shared, change: MembershipChange, room: &RoomId, e: &HsError) -> ActionError {
    let rec = shared.store.rooms().get(room.as_str()).ok().flatten().unwrap_or_default();
    let pl = rec.power_levels.as_ref();
    let need = power::action_level(pl, change.as_str());
    let have = power::user_level(pl, &rec.creators, shared.bot.as_str());
    let label = crate::notices::room_label(&shared.store, room.as_str());
    if e.status() == Some(403) && have < need {
        let why = format!("knockwarden needs power level {need} to {} in {label} (it has {have})", change.as_str());
        ActionError::NoPower { why, cause: FailCause::NoPower { room_id: room.to_owned(), change } }
    } else {
        ActionError::Permanent(format!("the homeserver refused to {} in {label}: {e}", change.as_str()))
    }
}

/// The writes that record what came of an invite, kick or ban (under [`Store::serialized`]).
pub fn record(shared: &Shared, action: &Action, acted: Acted) -> Result<Vec<Op>, StoreError> {
    let Action::Act { change, room_id, user_id, audit_id, notify, verdict, .. } = action else { return Ok(vec![]) };
    let store = &shared.store;
    if let Some(v) = verdict {
        let finished = match acted {
            Acted::Done => Finished::Done,
            Acted::NothingDone(why) => Finished::NothingDone(why),
        };
        return verdicts::finish(store, v, *change, room_id, user_id, *audit_id, finished);
    }
    let outcome = match acted {
        Acted::Done => Outcome::Done,
        Acted::NothingDone(why) => Outcome::Cancelled(why),
    };
    let Some(id) = audit_id else { return Ok(vec![]) };
    // A person (or the knocker) may have settled it meanwhile: their word stands. A failed
    // entry put back by `!knock retry` is settled anew.
    let when = |o: &Outcome| matches!(o, Outcome::Pending | Outcome::Failed(_));
    let Some((entry, op)) = store.audit().settle_op(*id, outcome.clone(), now_ms(), when)? else { return Ok(vec![]) };
    let mut ops = vec![op];
    if *notify {
        let text = match &outcome {
            Outcome::Done => notices::verdict(entry.action, false).to_owned(),
            Outcome::Cancelled(why) => format!("{} not done: {why}", entry.action),
            other => format!("{other:?}"),
        };
        ops.push(store.outbox().push(crate::notices::entry_notice(store, &entry, &text, None, None).notice())?);
    }
    Ok(ops)
}

/// The writes that go with an invite, kick or ban moving to the failed list as `number`: the
/// audit entry settled as failed, and one notice (or, for a verdict, the reply) saying why.
pub fn record_failure(shared: &Shared, action: &Action, error: &str, number: u64) -> Result<Vec<Op>, StoreError> {
    let Action::Act { change, room_id, user_id, audit_id, verdict, .. } = action else { return Ok(vec![]) };
    let store = &shared.store;
    if let Some(v) = verdict {
        let finished = Finished::Failed { why: error.to_owned(), number };
        return verdicts::finish(store, v, *change, room_id, user_id, *audit_id, finished);
    }
    let mut ops = Vec::new();
    let settled = match audit_id {
        Some(id) => {
            store.audit().settle_op(*id, Outcome::Failed(error.to_owned()), now_ms(), |o| *o == Outcome::Pending)?
        }
        None => None,
    };
    let retry = format!("Kept as failed action {number}: !knock retry {number} tries again.");
    let mut m = match settled.as_ref().map(|(e, _)| e).or(audit_entry(store, *audit_id)?.as_ref()) {
        Some(e) => crate::notices::entry_notice(store, e, &format!("⚠️ {} failed: {error}", e.action), None, None),
        None => {
            let mut m = notices::Msg::new();
            m.text(&format!("⚠️ Could not {}: {error}", action.describe()));
            m
        }
    };
    m.line().text(&retry);
    if let Some((_, op)) = settled {
        ops.push(op);
    }
    ops.push(store.outbox().push(m.failure_notice())?);
    Ok(ops)
}

fn audit_entry(store: &Store, id: Option<u64>) -> Result<Option<AuditEntry>, StoreError> {
    match id {
        Some(id) => store.audit().get(id),
        None => Ok(None),
    }
}

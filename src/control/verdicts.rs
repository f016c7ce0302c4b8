//! Moderators' verdicts: approve, deny or ban a knock.
//!
//! A verdict goes the way a policy's decision goes: it is queued as an [`Action::Act`] in the
//! knocker's lane, so it runs after anything already queued about that knocker, is checked
//! against the knock it answers, and is retried or kept in the failed list like any action.
//! [`finish`] writes what came of it (the audit entry, the review item, the reply) when it is
//! done, in the transaction that removes it from the outbox.

use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};

use super::{
    command::{RoomArg, Target},
    run::{Ctx, Done},
};
use crate::events::Verdict;
use crate::{
    homeserver::MembershipChange,
    notices::{self, Msg},
    runner::ActionError,
    storage::{Action, ModeratorVerdict, Op, Outcome, Resolution, Store, StoreError, now_ms},
};

impl Verdict {
    pub fn change(self) -> MembershipChange {
        match self {
            Verdict::Approve => MembershipChange::Invite,
            Verdict::Deny => MembershipChange::Kick,
            Verdict::Ban => MembershipChange::Ban,
        }
    }
}

/// How a moderator's verdict is recorded.
fn resolution(change: MembershipChange, by: OwnedUserId) -> Resolution {
    match change {
        MembershipChange::Invite => Resolution::Approved { by },
        MembershipChange::Kick => Resolution::Denied { by },
        MembershipChange::Ban => Resolution::Banned { by },
    }
}

impl Ctx<'_> {
    /// Queues a verdict on the knock `target` names (⏳ on a command until it is done).
    pub async fn decide(
        &self,
        verdict: Verdict,
        target: Target,
        room: Option<RoomArg>,
        reason: Option<String>,
    ) -> Result<Done, ActionError> {
        let found = match self.find(target, room).await? {
            Ok(f) => f,
            Err(refusal) => return Ok(refusal),
        };
        let by = OwnedUserId::try_from(self.sender).map_err(|e| ActionError::Permanent(e.to_string()))?;
        let reason = reason.unwrap_or_else(|| match verdict {
            Verdict::Approve => format!("Knock approved by {by}"),
            Verdict::Deny => format!("Knock denied by {by}"),
            Verdict::Ban => format!("Banned by {by}"),
        });
        tracing::info!(by = %by, user = %found.user, room = %found.room, ?verdict, "verdict queued");
        let act = Action::Act {
            change: verdict.change(),
            room_id: found.room,
            user_id: found.user.clone(),
            reason,
            audit_id: found.audit_id,
            notify: false,
            knock_event: Some(found.knock_event),
            verdict: Some(ModeratorVerdict {
                by,
                reply_to: OwnedEventId::try_from(self.reply_to).map_err(|e| ActionError::Permanent(e.to_string()))?,
                review: found.review.map(|r| r.number),
                command: !self.by_reaction,
            }),
        };
        let mut follow_ups = Vec::new();
        if !self.by_reaction {
            follow_ups.push(notices::react(self.reply_to, "⏳"));
        }
        follow_ups.push(act);
        Ok(Done { reply: None, ok: true, follow_ups })
    }
}

/// What came of a moderator's verdict.
pub enum Finished {
    /// Carried out.
    Done,
    /// Not carried out: the knock had ended, or was decided already.
    NothingDone(Resolution),
    /// Refused or given up on; kept as failed action `number`.
    Failed { why: String, number: u64 },
}

/// The writes that record what came of a verdict: the audit entry settled and the review
/// item closed (when done, or when there is nothing left to do), and the reply. Runs under
/// [`Store::serialized`].
pub fn finish(
    store: &Store,
    v: &ModeratorVerdict,
    change: MembershipChange,
    room: &RoomId,
    user: &UserId,
    audit_id: Option<u64>,
    finished: Finished,
) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::new();
    let label = crate::notices::room_label(store, room);
    let number = v.review.map(|n| format!("#{n} ")).unwrap_or_default();
    let (verb, done_text) = match change {
        MembershipChange::Invite => ("approved", "invited to"),
        MembershipChange::Kick => ("denied", "kicked from"),
        MembershipChange::Ban => ("banned", "banned from"),
    };
    let close = |how: Resolution, ops: &mut Vec<Op>| -> Result<(), StoreError> {
        if let Some(n) = v.review
            && let Some(closing) = store.reviews().close_ops(n, how)?
        {
            ops.extend(closing);
            ops.push(store.outbox().push(Action::ReviewClosed { number: n, reply: false })?);
        }
        Ok(())
    };
    let (ok, text) = match finished {
        Finished::Done => {
            let how = resolution(change, v.by.clone());
            if let Some(id) = audit_id
                && let Some((_, op)) =
                    store.audit().settle_op(id, Outcome::Resolved(how.clone()), now_ms(), |_| true)?
            {
                ops.push(op);
            }
            close(how.clone(), &mut ops)?;
            (true, format!("{number}{user} {done_text} {label} ({how})"))
        }
        Finished::NothingDone(why) => {
            // Whatever happened to the knock, there is nothing left to review.
            let text = format!("{number}Nothing done for {user}: {why}.");
            close(why, &mut ops)?;
            (false, text)
        }
        Finished::Failed { why, number: failed } => (
            false,
            format!("{number}Not {verb}: {why}. Kept as failed action {failed}: !knock retry {failed} tries again."),
        ),
    };
    let mut m = Msg::new();
    m.text(&text);
    ops.push(store.outbox().push(m.reply_to(&v.reply_to))?);
    if v.command {
        ops.push(store.outbox().push(notices::react(&v.reply_to, if ok { "✅" } else { "❌" }))?);
    }
    Ok(ops)
}

//! Moderators' verdicts: approve, deny or ban a knock.
//!
//! A verdict goes the way a policy's decision goes: it is queued as an [`Action::Act`] in the
//! knocker's lane, so it runs after anything already queued about that knocker, is checked
//! against the knock it answers, and is retried or kept in the failed list like any action.
//! [`finish`] writes what came of it (the audit entry, the review item, the reply) when it is
//! done, in the transaction that removes it from the outbox.
//!
//! A verdict on several knocks (`#3-#9`, `all`, `from SERVER`, several targets) queues one
//! action per knock, each in its own knocker's lane, and a [`Batch`] keyed by the command:
//! each knock's outcome is added to it as the knock is done with, and the last one queues a
//! single reply summing up the batch.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{
    command::{RoomArg, Target, VerdictArgs},
    ctx::Ctx,
    render,
    targets::{Found, MAX_WITHOUT_YES, VerdictOutcome},
};
use crate::events::Verdict;
use crate::{
    homeserver::MembershipChange,
    notices::{self, Msg, room_label},
    runner::ActionError,
    storage::{
        Action, Batch, BatchItem, ItemResult, ModeratorVerdict, Op, Outcome, Resolution, Store, StoreError, now_ms,
    },
};

impl Verdict {
    /// The command's name: `approve`, `deny`, `ban`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Ban => "ban",
        }
    }

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
    /// Carries out `approve`, `deny` or `ban`: one knock as a single verdict, several as a
    /// batch with one summary.
    pub async fn verdict(&self, verdict: Verdict, args: VerdictArgs) -> Result<VerdictOutcome, ActionError> {
        let room = match &args.room {
            Some(r) => match self.resolve_room(r).await? {
                Ok(id) => Some(id),
                Err(refusal) => return Ok(VerdictOutcome::RoomRefused(refusal)),
            },
            None => None,
        };
        if let Some(target) = args.single() {
            return self.decide(verdict, target, room.as_ref(), args.room.clone(), args.reason.clone());
        }
        let selection = self.select(&args.targets, room.as_ref())?;
        if selection.wide > MAX_WITHOUT_YES && !args.yes {
            return Ok(VerdictOutcome::NeedsYes { verdict, named: selection.wide });
        }
        let batch = Batch {
            command: self.reply_to()?,
            change: verdict.change(),
            queued: selection.found.len(),
            skipped: selection.skipped,
            results: Vec::new(),
        };
        if selection.found.is_empty() {
            return Ok(VerdictOutcome::NothingPending(batch));
        }
        tracing::info!(by = %self.sender, knocks = batch.queued, ?verdict, "bulk verdict queued");
        self.store().batches().start(&batch)?;
        let mut actions = vec![notices::react(self.reply_to, "⏳")];
        for found in selection.found {
            actions.push(self.act(verdict, found, args.reason.clone(), true)?);
        }
        Ok(VerdictOutcome::Queued(actions))
    }

    /// Queues a verdict on the one knock `target` names (⏳ on a command until it is done).
    pub fn decide(
        &self,
        verdict: Verdict,
        target: &Target,
        room: Option<&OwnedRoomId>,
        asked: Option<RoomArg>,
        reason: Option<String>,
    ) -> Result<VerdictOutcome, ActionError> {
        let found = match self.find(target, room)? {
            Ok(f) => f,
            Err(skip) => return Ok(VerdictOutcome::Skipped { skip, asked }),
        };
        let mut actions = Vec::new();
        if !self.by_reaction {
            actions.push(notices::react(self.reply_to, "⏳"));
        }
        actions.push(self.act(verdict, found, reason, false)?);
        Ok(VerdictOutcome::Queued(actions))
    }

    /// The action that carries out a verdict on one knock, in its knocker's lane.
    fn act(&self, verdict: Verdict, found: Found, reason: Option<String>, batch: bool) -> Result<Action, ActionError> {
        let by = OwnedUserId::try_from(self.sender).map_err(|e| ActionError::Permanent(e.to_string()))?;
        let reason = reason.unwrap_or_else(|| match verdict {
            Verdict::Approve => format!("Knock approved by {by}"),
            Verdict::Deny => format!("Knock denied by {by}"),
            Verdict::Ban => format!("Banned by {by}"),
        });
        tracing::info!(by = %by, user = %found.user, room = %found.room, ?verdict, "verdict queued");
        Ok(Action::Act {
            change: verdict.change(),
            room_id: found.room,
            user_id: found.user,
            reason,
            audit_id: found.audit_id,
            notify: false,
            knock_event: Some(found.knock_event),
            verdict: Some(ModeratorVerdict {
                by,
                reply_to: self.reply_to()?,
                review: found.review.map(|r| r.number),
                command: !self.by_reaction,
                batch,
            }),
        })
    }

    fn reply_to(&self) -> Result<OwnedEventId, ActionError> {
        OwnedEventId::try_from(self.reply_to).map_err(|e| ActionError::Permanent(e.to_string()))
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
    let label = room_label(store, room.as_str());
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
    let (ok, text, result) = match finished {
        Finished::Done => {
            let how = resolution(change, v.by.clone());
            if let Some(id) = audit_id
                && let Some((_, op)) =
                    store.audit().settle_op(id, Outcome::Resolved(how.clone()), now_ms(), |_| true)?
            {
                ops.push(op);
            }
            close(how.clone(), &mut ops)?;
            (true, format!("{number}{user} {done_text} {label} ({how})"), ItemResult::Done)
        }
        Finished::NothingDone(why) => {
            // Whatever happened to the knock, there is nothing left to review.
            let text = format!("{number}Nothing done for {user}: {why}.");
            close(why.clone(), &mut ops)?;
            (false, text, ItemResult::NothingDone { why })
        }
        Finished::Failed { why, number: failed } => (
            false,
            format!("{number}Not {verb}: {why}. Kept as failed action {failed}: !knock retry {failed} tries again."),
            ItemResult::Failed { why, number: failed },
        ),
    };
    if v.batch {
        let item = BatchItem { review: v.review, room_id: room.to_owned(), user_id: user.to_owned(), result };
        // No batch: it was summed up already (a failed knock of it retried by hand), so this
        // knock replies alone.
        if let Some((batch, op)) = store.batches().record_op(v.reply_to.as_str(), item)? {
            ops.push(op);
            if batch.is_complete() {
                let done = render::batch_summary(&batch, &|r| room_label(store, r));
                ops.extend(done.reply.map(|m| store.outbox().push(m.reply_to(&v.reply_to))).transpose()?);
                ops.push(store.outbox().push(notices::react(&v.reply_to, if done.ok { "✅" } else { "❌" }))?);
            }
            return Ok(ops);
        }
    }
    let mut m = Msg::new();
    m.text(&text);
    ops.push(store.outbox().push(m.reply_to(&v.reply_to))?);
    if v.command {
        ops.push(store.outbox().push(notices::react(&v.reply_to, if ok { "✅" } else { "❌" }))?);
    }
    Ok(ops)
}

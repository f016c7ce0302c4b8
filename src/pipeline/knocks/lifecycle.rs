//! What happens to a knock after it is decided: the knocker's membership changes close it
//! (accepted, withdrawn, denied or banned by someone, or by knockwarden itself).

use crate::{
    app::Shared,
    events::{Event, Member, MembershipState},
    storage::{Action, Knocks, Op, Outcome, Resolution, StoreError, now_ms},
};

/// A knocker's membership changed away from `knock`: close the knock, its audit entry (unless
/// knockwarden itself acted: the runner settles those) and its review item.
pub fn on_change(shared: &Shared, head: &Event, member: &Member) -> Result<Vec<Op>, StoreError> {
    let user = member.user.as_str();
    let store = &shared.store;
    let room = head.room_id.as_str();
    let Some(rec) = store.knocks().get(room, user)? else { return Ok(vec![]) };
    let sender = head.sender.as_str();
    let by_bot = sender == shared.bot.as_str();
    let by = head.sender.clone();
    let how = match &member.membership {
        m @ (MembershipState::Invite | MembershipState::Leave | MembershipState::Ban) if by_bot => {
            Resolution::ByKnockwarden { membership: m.clone() }
        }
        MembershipState::Invite => Resolution::InvitedBy { by },
        MembershipState::Join => Resolution::Joined,
        MembershipState::Leave if sender == user => Resolution::Withdrawn,
        MembershipState::Leave => Resolution::KickedBy { by },
        MembershipState::Ban => Resolution::BannedBy { by },
        other => Resolution::Membership { membership: other.clone() },
    };
    tracing::info!(room, user, how = %how, "knock closed");
    let mut ops = Knocks::del(room, user);
    // What knockwarden did itself is settled, and its review item closed, by whatever did it
    // (the runner, for a policy, a verdict or expiry), with who decided.
    if by_bot {
        return Ok(ops);
    }
    if let Some(id) = rec.audit_id
        && let Some((_, op)) = store.audit().settle_op(id, Outcome::Resolved(how.clone()), now_ms(), is_pending)?
    {
        ops.push(op);
    }
    if let Some(item) = store.reviews().open_for(room, user)?
        && let Some(closing) = store.reviews().close_ops(item.number, how)?
    {
        ops.extend(closing);
        ops.push(store.outbox().push(Action::ReviewClosed { number: item.number, reply: true })?);
    }
    Ok(ops)
}

pub(super) fn is_pending(o: &Outcome) -> bool {
    *o == Outcome::Pending
}

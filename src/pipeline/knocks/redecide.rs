//! Deciding open review items again when an input changes (a ban list rule comes into force).

use super::{
    enact::enact,
    inputs::{Context, governing_policy},
    lifecycle::is_pending,
};
use crate::{
    app::Shared,
    policy::{Action as Verdict, Knock},
    storage::{Action, Op, Outcome, Resolution, StoreError, now_ms},
};

/// Decides again the knocks waiting for review whose knockers a ban list rule that just came
/// into force (`banned`: whether it bans a user) matches. A knock the policy now decides
/// otherwise than `review` has its review item closed (the control room is told) and the new
/// decision carried out, audited as decided again; the others keep waiting.
pub fn redecide_reviews(shared: &Shared, banned: &dyn Fn(&str) -> bool, why: &str) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    let active = shared.policies.current();
    let now = now_ms();
    let mut ops = Vec::new();
    for item in store.reviews().open()? {
        if !banned(item.user_id.as_str()) {
            continue;
        }
        let (room, user) = (item.room_id.as_str(), item.user_id.as_str());
        let Some(mut rec) = store.knocks().get(room, user)? else { continue };
        if rec.event_id != item.event_id {
            continue;
        }
        let aliases = store.aliases().of(room)?;
        let Some(policy) = governing_policy(shared, &active.set, room, &aliases) else { continue };
        // Decided again only with the account's facts at hand (never by asking the network).
        let account = match policy.uses_account() {
            false => None,
            true => match shared.accounts.facts(&item.user_id, now) {
                Some(f) => Some(f),
                None => continue,
            },
        };
        let ctx = Context::gather(store, &active.set, room, &aliases, user, now, false)?;
        let view = shared.lists.view();
        let knock = ctx.knock(user, rec.reason.as_deref(), rec.displayname.as_deref()).with_lists(&view);
        let d = policy.decide(&Knock { account: account.as_ref(), ..knock });
        drop(view);
        if d.action == Verdict::Review {
            continue;
        }
        tracing::info!(room, user, review = item.number, action = %d.action, why, "knock decided again");
        let how = Resolution::DecidedAgain { why: why.to_owned(), action: d.action };
        if let Some(id) = rec.audit_id
            && let Some((_, op)) = store.audit().settle_op(id, Outcome::Resolved(how.clone()), now, is_pending)?
        {
            ops.push(op);
        }
        if let Some(closing) = store.reviews().close_ops(item.number, how)? {
            ops.extend(closing);
            ops.push(store.outbox().push(Action::ReviewClosed { number: item.number, reply: true })?);
        }
        let label = ctx.label.clone();
        enact(shared, &mut rec, &d, &label, now, Some(why), &mut ops)?;
    }
    Ok(ops)
}

//! Review expiry: items nobody resolves within `review.expire_after` are closed, and with
//! `review.on_expiry: deny` the knocker is kicked.
//!
//! A sweep runs at start and then every `expire_after / 4` (at most every minute). An item
//! is closed by [`crate::storage::Reviews::close`], so a moderator's verdict and the
//! expiry cannot both win; the kick and the notice edit go through the outbox like any action.

use std::time::Duration;

use crate::{
    app::Shared,
    config::OnExpiry,
    duration,
    homeserver::MembershipChange,
    storage::{Action, Op, Outcome, Resolution, StoreError, now_ms},
};

/// How often the sweep runs.
pub fn interval(expire_after: Duration) -> Duration {
    (expire_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Closes every open item older than `expire_after`.
pub fn sweep(shared: &Shared, now: u64) -> Result<(), StoreError> {
    let store = &shared.store;
    let cfg = &shared.config.review;
    let after = duration::format(cfg.expire_after);
    let cutoff = now.saturating_sub(cfg.expire_after.as_millis() as u64);
    let expired: Vec<_> = store.reviews().open()?.into_iter().filter(|i| i.created_ms <= cutoff).collect();
    // Each item is read and closed while no other update runs.
    store.serialized(|| expire(shared, expired, &after, now))
}

fn expire(shared: &Shared, items: Vec<crate::storage::ReviewItem>, after: &str, now: u64) -> Result<(), StoreError> {
    let store = &shared.store;
    let cfg = &shared.config.review;
    for item in items {
        let knock = store.knocks().get(&item.room_id, &item.user_id)?.filter(|k| k.audit_id == Some(item.audit_id));
        let deny = cfg.on_expiry == OnExpiry::Deny && knock.is_some();
        let how = Resolution::Expired { after: after.to_owned(), denied: deny };
        // What closing leads to is written with the closing itself: a crash cannot lose it.
        let mut with: Vec<Op> = Vec::new();
        if let Some(knock) = knock.filter(|_| deny) {
            // The kick goes the way of every decision, and settles the audit entry (done, or
            // failed and reported).
            with.push(store.outbox().push(Action::Act {
                change: MembershipChange::Kick,
                room_id: item.room_id.clone(),
                user_id: item.user_id.clone(),
                reason: format!("Knock not reviewed within {after}"),
                audit_id: Some(item.audit_id),
                notify: false,
                knock_event: Some(knock.event_id),
                verdict: None,
            })?);
        } else if let Some((_, op)) =
            store.audit().settle_op(item.audit_id, Outcome::Resolved(how.clone()), now, |o| *o == Outcome::Pending)?
        {
            with.push(op);
        }
        with.push(store.outbox().push(Action::ReviewClosed { number: item.number, reply: true })?);
        if store.reviews().close(item.number, how.clone(), &with)? {
            tracing::info!(number = item.number, user = %item.user_id, room = %item.room_id, how = %how, "review item expired");
            shared.outbox_ready.notify_one();
        }
    }
    Ok(())
}

/// Sweeps until the service stops.
pub async fn run(shared: Shared) {
    let every = interval(shared.config.review.expire_after);
    crate::app::periodically(&shared, every, || {
        if let Err(e) = sweep(&shared, now_ms()) {
            tracing::error!(error = %e, "review expiry sweep failed; trying again later");
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_often_enough_but_not_too_often() {
        assert_eq!(interval(Duration::from_secs(7 * 86_400)), Duration::from_secs(60));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(interval(Duration::from_millis(10)), Duration::from_millis(100));
    }
}

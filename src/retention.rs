//! The retention job: prunes, while running, what knockwarden keeps only for a while, so the
//! database stays bounded under a stream that never ends.
//!
//! - seen event IDs and transaction hashes: after `retention.events` (default 30 days; the
//!   homeserver resends within minutes, or after its own restart);
//! - settled audit entries and closed review items: after `retention.audit` (default 365 days);
//! - knock times no counter window of the active policies reaches (all of them when no policy
//!   counts knocks: a policy that starts counting later counts from then);
//! - what the bot knew of the members of rooms it has left.
//!
//! A pass runs at start and then every quarter of the shorter retention (between 250 ms and
//! an hour). The work itself is [`crate::storage::Store::prune`].

use std::time::Duration;

use crate::{
    app::Shared,
    storage::{Pruned, StoreError, now_ms},
};

/// How often a pass runs.
pub fn interval(events: Duration, audit: Duration) -> Duration {
    (events.min(audit) / 4).clamp(Duration::from_millis(250), Duration::from_secs(3600))
}

/// One pruning pass, as of `now`.
pub fn prune(shared: &Shared, now: u64) -> Result<Pruned, StoreError> {
    let cfg = &shared.config.retention;
    let longest_window = shared.policies.current().set.windows().iter().copied().max().unwrap_or_default();
    let before = |d: Duration| now.saturating_sub(d.as_millis() as u64);
    shared.store.prune(before(cfg.events), before(cfg.audit), before(longest_window))
}

/// Prunes until the service stops.
pub async fn run(shared: Shared) {
    let every = interval(shared.config.retention.events, shared.config.retention.audit);
    crate::app::periodically(&shared, every, || match prune(&shared, now_ms()) {
        Ok(p) if p.total() > 0 => tracing::info!(
            seen = p.seen,
            txns = p.txns,
            audit = p.audit,
            reviews = p.reviews,
            members = p.members,
            knock_times = p.knock_times,
            "pruned old records"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "pruning failed; trying again later"),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_frequent_enough_but_not_too_frequent() {
        let day = Duration::from_secs(86_400);
        assert_eq!(interval(30 * day, 365 * day), Duration::from_secs(3600));
        assert_eq!(interval(Duration::from_secs(2), day), Duration::from_millis(500));
        assert_eq!(interval(Duration::from_millis(10), day), Duration::from_millis(250));
    }
}

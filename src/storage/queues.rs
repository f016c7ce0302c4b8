//! Queue depths: how many entries the inbox, the outbox, the failed list and the open review
//! items hold, kept in memory by every commit so that `/health` and `/metrics` read counters,
//! never a tree.

use std::sync::atomic::{AtomicI64, Ordering};

use super::{Store, T};

/// How many entries the counted trees hold: the inbox, the outbox, the failed list and the
/// open review items (see [`queue_index`]), so that `/health` and `/metrics` read counters,
/// never a tree.
pub(super) type Depth = [AtomicI64; 4];

/// The trees counted in [`Depth`], in its order.
pub(super) const COUNTED: [T; 4] = [T::Inbox, T::Outbox, T::Failed, T::OpenReviews];

/// The queues whose depth the store keeps in memory (for `/health`, the metrics, and knowing
/// without a scan whether anything failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Pushed events not handled yet (the journal's records and sled's inbox entries).
    Inbox,
    /// Actions not carried out yet.
    Outbox,
    /// The failed list.
    Failed,
    /// Review items not resolved.
    OpenReviews,
}

impl Queue {
    fn tree(self) -> T {
        match self {
            Queue::Inbox => T::Inbox,
            Queue::Outbox => T::Outbox,
            Queue::Failed => T::Failed,
            Queue::OpenReviews => T::OpenReviews,
        }
    }
}

/// The index of a counted tree in [`Depth`].
pub(super) fn queue_index(t: T) -> Option<usize> {
    COUNTED.iter().position(|&c| c == t)
}

impl Store {
    /// Entries in the inbox (with the journal's records not handled yet), the outbox, the
    /// failed list or the open review items, without counting them.
    pub fn queue_depth(&self, q: Queue) -> u64 {
        let t = q.tree();
        let n = queue_index(t).map(|q| self.depth[q].load(Ordering::SeqCst).max(0) as u64).unwrap_or(0);
        if t == T::Inbox { n + self.journal.pending() } else { n }
    }
}

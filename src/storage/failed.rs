//! The failed list: actions and events knockwarden gave up on, kept until a moderator puts
//! them back (`!knock retry`). Nothing a policy or a moderator asked for is dropped.
//!
//! An entry moves here in the same transaction that takes it out of the outbox (or the
//! inbox), and back in the same transaction that removes it from here.

use ruma::OwnedRoomId;
use serde::{Deserialize, Serialize};

use super::{InboxItem, Op, OutboxEntry, Parked, Store, StoreError, T, now_ms};
use crate::homeserver::MembershipChange;

/// What was given up on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailedItem {
    /// An action from the outbox.
    Action { seq: u64, entry: OutboxEntry },
    /// An event from the inbox whose handling failed (a bug: it panicked).
    Event { seq: u64, item: InboxItem },
}

/// Why an action failed, where something can be done about it without a moderator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum FailCause {
    /// The bot lacked the power to `change` in `room_id`: put back in the queue once it has
    /// it (see [`crate::room_state::power_regained`]).
    NoPower { room_id: OwnedRoomId, change: MembershipChange },
}

/// One entry of the failed list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedEntry {
    /// The number moderators use (`!knock retry 3`).
    pub number: u64,
    pub item: FailedItem,
    /// Why it failed.
    pub error: String,
    pub failed_ms: u64,
    /// Why it failed, when something can be done about it without a moderator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailCause>,
}

/// Counter of the failed-list numbers given out.
const FAILED_NUMBER: &str = "failed_number";

impl Store {
    /// The failed list: what knockwarden gave up on, kept for people.
    pub fn failures(&self) -> Failures<'_> {
        Failures { store: self }
    }
}

/// The failed list, a narrow handle on the store ([`Store::failures`]).
#[derive(Clone, Copy)]
pub struct Failures<'s> {
    store: &'s Store,
}

impl Failures<'_> {
    /// Moves an item from its queue to the failed list, committing what `with` returns for
    /// its number there (a notice, the audit entry settled) in the same transaction; returns
    /// the number.
    pub fn fail(
        &self,
        item: FailedItem,
        error: &str,
        cause: Option<FailCause>,
        with: impl FnOnce(u64) -> Result<Vec<Op>, StoreError>,
    ) -> Result<u64, StoreError> {
        let store = self.store;
        store.serialized(|| {
            let number = store.counter(FAILED_NUMBER)? + 1;
            let mut ops = with(number)?;
            ops.push(match &item {
                FailedItem::Action { seq, .. } => crate::storage::Outbox::done(*seq),
                FailedItem::Event { seq, .. } => Parked::done(*seq),
            });
            ops.push(Op::Add { counter: FAILED_NUMBER.into(), by: 1 });
            let entry = FailedEntry { number, item, error: error.to_owned(), failed_ms: now_ms(), cause };
            ops.push(Op::put_json(T::Failed, number.to_be_bytes(), &entry));
            store.commit(&ops)?;
            Ok(number)
        })
    }

    /// The failed list, oldest first.
    pub fn all(&self) -> Result<Vec<FailedEntry>, StoreError> {
        Ok(self.store.scan_json::<FailedEntry>(T::Failed, b"")?.into_iter().map(|(_, e)| e).collect())
    }

    /// Entry `number` of the failed list.
    pub fn entry(&self, number: u64) -> Result<Option<FailedEntry>, StoreError> {
        self.store.get_json(T::Failed, &number.to_be_bytes())
    }

    /// Puts a failed item back in its queue (an action in the outbox, an event in the inbox)
    /// and removes it from the list, in one transaction. An action goes back due now, with
    /// its attempts kept (so it is checked against the homeserver before it acts) and its
    /// give-up clock restarted. Returns the entry, or `None` if there is no such number.
    pub fn retry(&self, number: u64) -> Result<Option<FailedEntry>, StoreError> {
        let store = self.store;
        store.serialized(|| {
            let Some(entry) = self.entry(number)? else { return Ok(None) };
            let seq = store.next_id()?;
            let now = now_ms();
            let put = match &entry.item {
                FailedItem::Action { entry: e, .. } => {
                    let mut e = e.clone();
                    e.attempts = e.attempts.max(1);
                    e.created_ms = now;
                    e.not_before_ms = now;
                    Op::put_json(T::Outbox, seq.to_be_bytes(), &e)
                }
                FailedItem::Event { item, .. } => Op::put_json(T::Inbox, seq.to_be_bytes(), item),
            };
            store.commit(&[put, Op::del(T::Failed, number.to_be_bytes())])?;
            Ok(Some(entry))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Action, Queue};

    #[test]
    fn failed_actions_are_kept_and_put_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.outbox().enqueue([Action::ResolveAliases]).unwrap();
        let (seq, entry) = s.outbox().first().unwrap().unwrap();
        let n = s.failures().fail(FailedItem::Action { seq, entry }, "refused", None, |_| Ok(vec![])).unwrap();
        assert_eq!(n, 1);
        assert_eq!(s.outbox().len(), 0);
        assert_eq!(s.failures().all().unwrap().len(), 1);
        assert!(s.failures().retry(n).unwrap().is_some());
        assert!(s.failures().retry(n).unwrap().is_none());
        assert!(s.failures().all().unwrap().is_empty());
        let (new_seq, back) = s.outbox().first().unwrap().unwrap();
        assert!(new_seq > seq);
        assert_eq!(back.action, Action::ResolveAliases);
        assert_eq!(back.attempts, 1);
        assert_eq!(s.queue_depth(Queue::Outbox), 1);
    }
}

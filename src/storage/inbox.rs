//! The inbox: events taken in from the homeserver (or from a catch-up) and not yet handled.
//!
//! An event is taken in at most once, by event ID, over the whole life of the database.

use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T, now_ms, retention::time_key};

/// Where an inbox item came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Pushed by the homeserver in a transaction.
    Push { txn_id: String },
    /// Fetched by knockwarden from `/members?membership=knock`.
    CatchUp { room_id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxItem {
    pub received_ms: u64,
    pub origin: Origin,
    /// The event as the homeserver sent it.
    pub event: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub seq: u64,
    pub item: InboxItem,
}

/// What [`Store::ingest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Events newly written to the inbox.
    pub stored: usize,
    /// Events already taken in before (by event ID).
    pub duplicates: usize,
}

impl Store {
    /// Whether `txn_id` was already answered with exactly this body. (The stored value is the
    /// body's hash, then the time it was taken in.)
    pub fn is_replay(&self, txn_id: &str, body_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.tree(T::Txns).get(txn_id.as_bytes())?.is_some_and(|h| h.get(..32) == Some(body_hash.as_slice())))
    }

    /// Writes the events not seen before to the inbox, with `extra` writes, in one transaction.
    /// `txn` records the transaction ID and body hash for replay detection; `dropped` counts
    /// events the caller did not need, `malformed` those it could not read (both are counted
    /// in `events_dropped`, the malformed also in `events_malformed`). The caller flushes
    /// before acknowledging.
    pub fn ingest(
        &self,
        origin: &Origin,
        txn: Option<(&str, &[u8; 32])>,
        events: Vec<(String, serde_json::Value)>,
        dropped: u64,
        malformed: u64,
        extra: Vec<Op>,
    ) -> Result<IngestOutcome, StoreError> {
        // One ingest at a time, so the "seen" check and the write cannot interleave.
        let _guard = self.ingest_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut outcome = IngestOutcome::default();
        let mut ops = extra;
        let mut in_batch = std::collections::HashSet::new();
        let received_ms = now_ms();
        for (event_id, event) in events {
            if !in_batch.insert(event_id.clone()) || self.contains(T::Seen, event_id.as_bytes())? {
                outcome.duplicates += 1;
                continue;
            }
            let seq = self.next_id()?;
            ops.push(Op::Put { tree: T::SeenTimes, key: time_key(received_ms, &event_id), value: vec![] });
            ops.push(Op::Put { tree: T::Seen, key: event_id.into_bytes(), value: seq.to_be_bytes().to_vec() });
            ops.push(Op::put_json(
                T::Inbox,
                seq.to_be_bytes(),
                &InboxItem { received_ms, origin: origin.clone(), event },
            ));
            outcome.stored += 1;
        }
        if let Some((id, hash)) = txn {
            let mut value = hash.to_vec();
            value.extend_from_slice(&received_ms.to_be_bytes());
            ops.push(Op::Put { tree: T::Txns, key: id.as_bytes().to_vec(), value });
            ops.push(Op::Put { tree: T::TxnTimes, key: time_key(received_ms, id), value: vec![] });
        }
        // Only the counters that change take part (each is a read and a write).
        let counts = [
            ("events_stored", outcome.stored as u64),
            ("events_duplicate", outcome.duplicates as u64),
            ("events_dropped", dropped + malformed),
            ("events_malformed", malformed),
        ];
        ops.extend(counts.into_iter().filter(|(_, n)| *n > 0).map(|(c, by)| Op::Add { counter: c.into(), by }));
        self.commit(&ops)?;
        Ok(outcome)
    }

    /// The oldest unhandled event.
    pub fn inbox_first(&self) -> Result<Option<InboxEntry>, StoreError> {
        Ok(self.first_json::<InboxItem>(T::Inbox)?.map(|(k, item)| InboxEntry { seq: seq_of(&k), item }))
    }

    /// The oldest unhandled event after inbox entry `after` (from the start: `None`).
    pub fn inbox_next(&self, after: Option<u64>) -> Result<Option<InboxEntry>, StoreError> {
        let after = after.map(u64::to_be_bytes);
        Ok(self
            .first_after::<InboxItem>(T::Inbox, after.as_ref().map(|a| a.as_slice()))?
            .map(|(k, item)| InboxEntry { seq: seq_of(&k), item }))
    }

    /// The op that removes an inbox entry once handled.
    pub fn inbox_done(seq: u64) -> Op {
        Op::del(T::Inbox, seq.to_be_bytes())
    }

    pub fn inbox_len(&self) -> usize {
        self.len(T::Inbox)
    }

    /// Whether an event was ever taken in.
    pub fn was_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        self.contains(T::Seen, event_id.as_bytes())
    }
}

pub(super) fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_is_taken_in_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = Origin::Push { txn_id: "1".into() };
        let ev = |id: &str| (id.to_owned(), json!({"event_id": id}));
        let r = s.ingest(&o, Some(("1", &[1; 32])), vec![ev("$a"), ev("$b"), ev("$a")], 2, 0, vec![]).unwrap();
        assert_eq!(r, IngestOutcome { stored: 2, duplicates: 1 });
        assert!(s.is_replay("1", &[1; 32]).unwrap());
        assert!(!s.is_replay("1", &[2; 32]).unwrap());
        let r = s.ingest(&o, Some(("1", &[2; 32])), vec![ev("$b"), ev("$c")], 0, 0, vec![]).unwrap();
        assert_eq!(r, IngestOutcome { stored: 1, duplicates: 1 });
        assert_eq!(s.inbox_len(), 3);
        assert_eq!(s.counter("events_dropped").unwrap(), 2);
        let first = s.inbox_first().unwrap().unwrap();
        assert_eq!(first.item.event["event_id"], "$a");
        s.commit(&[Store::inbox_done(first.seq)]).unwrap();
        assert_eq!(s.inbox_first().unwrap().unwrap().item.event["event_id"], "$b");
    }
}

//! The inbox: events taken in from the homeserver (or from a catch-up) and not yet handled.
//!
//! An event is taken in at most once, by event ID, over the whole life of the database. The
//! events of one transaction are one entry ([`InboxRecord`]), handled in order.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// One event taken in, as the worker handles it (and as the failed list keeps it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxItem {
    pub received_ms: u64,
    pub origin: Origin,
    /// The event as the homeserver sent it.
    pub event: serde_json::Value,
}

/// One entry of the inbox: the events of one transaction (or one catch-up) that knockwarden
/// needs, as the homeserver sent them (their JSON text, not parsed again until handled),
/// written in one put. Entries of databases before this (one event each, in an `event`
/// field) read as entries of one event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredRecord")]
pub struct InboxRecord {
    pub received_ms: u64,
    pub origin: Origin,
    pub events: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct StoredRecord {
    received_ms: u64,
    origin: Origin,
    #[serde(default)]
    events: Vec<Box<RawValue>>,
    /// Before one entry per transaction.
    #[serde(default)]
    event: Option<Box<RawValue>>,
}

impl From<StoredRecord> for InboxRecord {
    fn from(s: StoredRecord) -> Self {
        let mut events = s.event.into_iter().collect::<Vec<_>>();
        events.extend(s.events);
        InboxRecord { received_ms: s.received_ms, origin: s.origin, events }
    }
}

impl From<&InboxItem> for InboxRecord {
    fn from(item: &InboxItem) -> Self {
        let raw = serde_json::value::to_raw_value(&item.event).expect("a JSON value serializes");
        InboxRecord { received_ms: item.received_ms, origin: item.origin.clone(), events: vec![raw] }
    }
}

/// An inbox entry, with its sequence number.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub seq: u64,
    pub record: InboxRecord,
}

/// One event of an inbox entry, read for handling.
#[derive(Debug, Clone)]
pub struct InboxEvent {
    /// The sequence number of its inbox entry.
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

impl IngestOutcome {
    /// Whether anything was written (and must be flushed before it is acknowledged).
    /// Duplicates count: the earlier copy may not be durable yet.
    pub fn wrote(&self) -> bool {
        self.stored + self.duplicates > 0
    }
}

/// Counts of events not stored, added to the persistent counters with the next write.
#[derive(Default)]
pub(super) struct Unwritten {
    dropped: std::sync::atomic::AtomicU64,
    malformed: std::sync::atomic::AtomicU64,
}

/// One event to take in.
#[derive(Debug, Clone)]
pub struct Kept {
    pub event_id: String,
    /// For a knock: the knocker (see [`KnocksInInbox`]).
    pub knocker: Option<String>,
    /// The event's JSON text.
    pub event: Box<RawValue>,
}

/// The knockers whose knocks are in the inbox, not handled yet, by inbox entry. Until the
/// worker has handled a knock, the knocker is not in [`T::Knockers`], and the intake, which
/// keeps the membership changes of knockers, would drop what they do next: it asks
/// [`Store::is_knocker`], which looks here too. An entry's knockers go when the entry leaves
/// the inbox.
#[derive(Default)]
pub(super) struct KnocksInInbox {
    inner: std::sync::Mutex<KnocksInner>,
}

#[derive(Default)]
struct KnocksInner {
    by_entry: std::collections::HashMap<u64, Vec<String>>,
    users: std::collections::HashMap<String, u32>,
}

impl KnocksInInbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, KnocksInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, seq: u64, users: Vec<String>) {
        if users.is_empty() {
            return;
        }
        let mut k = self.lock();
        for u in &users {
            *k.users.entry(u.clone()).or_default() += 1;
        }
        k.by_entry.entry(seq).or_default().extend(users);
    }

    /// Entry `seq` left the inbox.
    pub(super) fn release(&self, seq: u64) {
        let mut k = self.lock();
        for u in k.by_entry.remove(&seq).unwrap_or_default() {
            if let std::collections::hash_map::Entry::Occupied(mut n) = k.users.entry(u) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
    }

    pub(super) fn contains(&self, user: &str) -> bool {
        self.lock().users.contains_key(user)
    }
}

/// The id under which an inbox entry's event IDs are indexed by time ([`T::SeenTimes`]);
/// event IDs start with `$`, so it is not one.
pub(super) fn seen_batch_id(seq: u64) -> String {
    format!("#{seq}")
}

impl Store {
    /// Whether `txn_id` was already answered with exactly this body. (The stored value is the
    /// body's hash, then the time it was taken in.)
    pub fn is_replay(&self, txn_id: &str, body_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.tree(T::Txns).get(txn_id.as_bytes())?.is_some_and(|h| h.get(..32) == Some(body_hash.as_slice())))
    }

    /// Writes the events not seen before to the inbox, as one entry, with `extra` writes, in
    /// one transaction. `txn` records the transaction ID and body hash for replay detection;
    /// `dropped` counts events the caller did not need, `malformed` those it could not read
    /// (both are counted in `events_dropped`, the malformed also in `events_malformed`).
    ///
    /// When no event is kept nothing is written (a replay of it costs nothing to redo): the
    /// counts are kept in memory and written with the next write. The caller flushes before
    /// acknowledging, when [`IngestOutcome::wrote`].
    pub fn ingest(
        &self,
        origin: &Origin,
        txn: Option<(&str, &[u8; 32])>,
        events: Vec<Kept>,
        dropped: u64,
        malformed: u64,
        extra: Vec<Op>,
    ) -> Result<IngestOutcome, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if events.is_empty() && extra.is_empty() {
            self.unwritten.dropped.fetch_add(dropped + malformed, SeqCst);
            self.unwritten.malformed.fetch_add(malformed, SeqCst);
            return Ok(IngestOutcome::default());
        }
        // One ingest at a time, so the "seen" check and the write cannot interleave.
        let _guard = self.ingest_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut outcome = IngestOutcome::default();
        let mut ops = extra;
        let mut in_batch = std::collections::HashSet::new();
        let received_ms = now_ms();
        let seq = self.next_id()?;
        let mut kept = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        let mut knockers = Vec::new();
        for Kept { event_id, knocker, event } in events {
            if !in_batch.insert(event_id.clone()) || self.contains(T::Seen, event_id.as_bytes())? {
                outcome.duplicates += 1;
                continue;
            }
            ops.push(Op::Put { tree: T::Seen, key: event_id.clone().into_bytes(), value: seq.to_be_bytes().to_vec() });
            ids.push(event_id);
            kept.push(event);
            knockers.extend(knocker);
            outcome.stored += 1;
        }
        if !kept.is_empty() {
            // The event IDs of the entry, indexed by time in one key, for pruning.
            ops.push(Op::put_json(T::SeenTimes, time_key(received_ms, &seen_batch_id(seq)), &ids));
            let record = InboxRecord { received_ms, origin: origin.clone(), events: kept };
            ops.push(Op::put_json(T::Inbox, seq.to_be_bytes(), &record));
        }
        if let Some((id, hash)) = txn {
            let mut value = hash.to_vec();
            value.extend_from_slice(&received_ms.to_be_bytes());
            ops.push(Op::Put { tree: T::Txns, key: id.as_bytes().to_vec(), value });
            ops.push(Op::Put { tree: T::TxnTimes, key: time_key(received_ms, id), value: vec![] });
        }
        // Only the counters that change take part (each is a read and a write), with what
        // earlier ingests that wrote nothing counted.
        let (dropped, malformed) = (
            dropped + malformed + self.unwritten.dropped.swap(0, SeqCst),
            malformed + self.unwritten.malformed.swap(0, SeqCst),
        );
        let counts = [
            ("events_stored", outcome.stored as u64),
            ("events_duplicate", outcome.duplicates as u64),
            ("events_dropped", dropped),
            ("events_malformed", malformed),
        ];
        ops.extend(counts.into_iter().filter(|(_, n)| *n > 0).map(|(c, by)| Op::Add { counter: c.into(), by }));
        // Known before the entry is written, so the worker cannot release it first.
        self.knocks_in_inbox.add(seq, knockers);
        if let Err(e) = self.commit(&ops) {
            self.knocks_in_inbox.release(seq);
            self.unwritten.dropped.fetch_add(dropped, SeqCst);
            self.unwritten.malformed.fetch_add(malformed, SeqCst);
            return Err(e);
        }
        Ok(outcome)
    }

    /// Writes the counts of dropped events not written yet (on shutdown).
    pub fn write_unwritten_counts(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let (dropped, malformed) = (self.unwritten.dropped.swap(0, SeqCst), self.unwritten.malformed.swap(0, SeqCst));
        let ops: Vec<Op> = [("events_dropped", dropped), ("events_malformed", malformed)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, by)| Op::Add { counter: c.into(), by })
            .collect();
        self.commit(&ops)
    }

    /// Events counted as dropped (or malformed) that are not in the persistent counters yet.
    pub fn unwritten_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.unwritten.dropped.load(SeqCst), self.unwritten.malformed.load(SeqCst))
    }

    /// The oldest inbox entry.
    pub fn inbox_first(&self) -> Result<Option<InboxEntry>, StoreError> {
        self.inbox_next(None)
    }

    /// The oldest inbox entry after entry `after` (from the start: `None`).
    pub fn inbox_next(&self, after: Option<u64>) -> Result<Option<InboxEntry>, StoreError> {
        let after = after.map(u64::to_be_bytes);
        Ok(self
            .first_after::<InboxRecord>(T::Inbox, after.as_ref().map(|a| a.as_slice()))?
            .map(|(k, record)| InboxEntry { seq: seq_of(&k), record }))
    }

    /// The op that removes an inbox entry once handled.
    pub fn inbox_done(seq: u64) -> Op {
        Op::del(T::Inbox, seq.to_be_bytes())
    }

    /// The op that keeps what is left of an inbox entry: its events from `from` on.
    pub fn inbox_rest(entry: &InboxEntry, from: usize) -> Op {
        let r = &entry.record;
        let rest = InboxRecord {
            received_ms: r.received_ms,
            origin: r.origin.clone(),
            events: r.events.get(from..).unwrap_or_default().to_vec(),
        };
        Op::put_json(T::Inbox, entry.seq.to_be_bytes(), &rest)
    }

    /// Inbox entries (each the events of one transaction or catch-up, not all handled yet).
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

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn an_event_is_taken_in_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = Origin::Push { txn_id: "1".into() };
        let ev = |id: &str| Kept { event_id: id.to_owned(), knocker: None, event: raw(json!({"event_id": id})) };
        let r = s.ingest(&o, Some(("1", &[1; 32])), vec![ev("$a"), ev("$b"), ev("$a")], 2, 0, vec![]).unwrap();
        assert_eq!(r, IngestOutcome { stored: 2, duplicates: 1 });
        assert!(s.is_replay("1", &[1; 32]).unwrap());
        assert!(!s.is_replay("1", &[2; 32]).unwrap());
        let r = s.ingest(&o, Some(("1", &[2; 32])), vec![ev("$b"), ev("$c")], 0, 0, vec![]).unwrap();
        assert_eq!(r, IngestOutcome { stored: 1, duplicates: 1 });
        assert_eq!(s.inbox_len(), 2, "one entry per transaction");
        assert_eq!(s.counter("events_dropped").unwrap(), 2);
        let first = s.inbox_first().unwrap().unwrap();
        let ids: Vec<_> = first.record.events.iter().map(|e| e.get().to_owned()).collect();
        assert_eq!(ids, [r#"{"event_id":"$a"}"#, r#"{"event_id":"$b"}"#]);
        s.commit(&[Store::inbox_done(first.seq)]).unwrap();
        assert_eq!(s.inbox_first().unwrap().unwrap().record.events[0].get(), r#"{"event_id":"$c"}"#);
    }

    #[test]
    fn a_transaction_of_dropped_events_writes_nothing_and_is_counted_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = Origin::Push { txn_id: "1".into() };
        let r = s.ingest(&o, Some(("1", &[1; 32])), vec![], 5, 1, vec![]).unwrap();
        assert!(!r.wrote());
        assert!(!s.is_replay("1", &[1; 32]).unwrap(), "nothing written");
        assert_eq!(s.counter("events_dropped").unwrap(), 6, "counted, though not written");
        assert_eq!(s.unwritten_counts(), (6, 1));
        let o = Origin::Push { txn_id: "2".into() };
        let ev = Kept { event_id: "$a".into(), knocker: None, event: raw(json!({})) };
        s.ingest(&o, Some(("2", &[2; 32])), vec![ev], 1, 0, vec![]).unwrap();
        assert_eq!((s.counter("events_dropped").unwrap(), s.counter("events_malformed").unwrap()), (7, 1));
        assert_eq!(s.unwritten_counts(), (0, 0));
    }

    #[test]
    fn a_knocker_is_known_from_the_inbox_until_the_entry_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = Origin::Push { txn_id: "1".into() };
        let knock = Kept { event_id: "$k".into(), knocker: Some("@k:x".into()), event: raw(json!({})) };
        s.ingest(&o, None, vec![knock], 0, 0, vec![]).unwrap();
        assert!(s.is_knocker("@k:x").unwrap());
        let entry = s.inbox_first().unwrap().unwrap();
        s.batch(|| s.commit(&[Store::inbox_done(entry.seq)])).unwrap();
        assert!(!s.is_knocker("@k:x").unwrap(), "handled (and no knock recorded)");
    }

    #[test]
    fn an_entry_written_before_entries_held_transactions_reads_as_one_event() {
        let old = json!({"received_ms": 5, "origin": {"kind": "push", "txn_id": "7"}, "event": {"event_id": "$old"}});
        let r: InboxRecord = serde_json::from_value(old).unwrap();
        assert_eq!((r.received_ms, r.events.len()), (5, 1));
        assert_eq!(r.events[0].get(), r#"{"event_id":"$old"}"#);
    }
}

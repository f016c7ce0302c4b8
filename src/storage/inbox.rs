//! The inbox: events taken in from the homeserver (or from a catch-up) and not yet handled.
//!
//! The intake appends the events it keeps to the journal ([`super::journal`]), one record per
//! transaction or catch-up; the worker handles them in order and takes each event in at most
//! once, by event ID, over the whole life of the database ([`JournalLog::admit`]). sled's inbox
//! tree holds what is handled again from the failed list (`!knock retry`), and what databases
//! before the journal left there: one entry ([`InboxRecord`]) per transaction.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BotMembership, Checkpoint, JournalRecord, Op, Store, StoreError, T, now_ms, retention::time_key};

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
    /// The event as the homeserver sent it: its JSON text, read by the worker
    /// ([`crate::events::Event::parse`]).
    #[serde(deserialize_with = "buffered_raw")]
    pub event: Box<RawValue>,
}

/// Reads an event's JSON text where serde has buffered it (the failed list's entries are
/// internally tagged, and a raw value cannot be taken from a buffer): through a JSON value,
/// the one place storage builds one. Events are kept only if they nest no deeper than the
/// reader allows ([`crate::events::MAX_DEPTH`]), so each reads back.
fn buffered_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    serde_json::value::to_raw_value(&value).map_err(serde::de::Error::custom)
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
    /// A knock put aside until what deciding it needs is known (see [`Parked::put`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
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
    #[serde(default)]
    waiting: bool,
}

impl From<StoredRecord> for InboxRecord {
    fn from(s: StoredRecord) -> Self {
        let mut events = s.event.into_iter().collect::<Vec<_>>();
        events.extend(s.events);
        InboxRecord { received_ms: s.received_ms, origin: s.origin, events, waiting: s.waiting }
    }
}

impl From<&InboxItem> for InboxRecord {
    fn from(item: &InboxItem) -> Self {
        let events = vec![item.event.clone()];
        InboxRecord { received_ms: item.received_ms, origin: item.origin.clone(), events, waiting: false }
    }
}

/// An inbox entry, with its sequence number.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub seq: u64,
    pub record: InboxRecord,
}

/// Counts of events the intake dropped, not in the sled counters yet: every batch
/// ([`Store::batch`]) writes them.
#[derive(Default)]
pub(super) struct Unwritten {
    dropped: std::sync::atomic::AtomicU64,
    malformed: std::sync::atomic::AtomicU64,
    /// Held (write) while a batch moves the counts into sled, and (read) by
    /// [`Store::counter`], which would otherwise count them twice, or not at all.
    pub(super) moving: parking_lot::RwLock<()>,
}

impl Unwritten {
    /// `dropped` and `malformed` are in sled now.
    pub(super) fn written(&self, dropped: u64, malformed: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.dropped.fetch_sub(dropped, SeqCst);
        self.malformed.fetch_sub(malformed, SeqCst);
    }
}

/// The id under which the event IDs taken in from one journal record, from its event
/// `from` on, are indexed by time ([`T::SeenTimes`]); event IDs start with `$`, so it is
/// not one.
fn seen_batch_id(seq: u64, from: usize) -> String {
    format!("#j{seq}.{from}")
}

impl Store {
    /// The journal of events pushed, and what was taken in from it.
    pub fn journal(&self) -> JournalLog<'_> {
        JournalLog { store: self }
    }

    /// The knocks put aside until what they wait for is known.
    pub fn parked(&self) -> Parked<'_> {
        Parked { store: self }
    }

    /// Commits `ops` with the counts of the events the intake dropped so far (the malformed
    /// are counted in `events_dropped` too, and in `events_malformed`), which then leave
    /// memory; [`Store::counter`] waits meanwhile, so it counts them once.
    pub(super) fn commit_with_unwritten_counts(&self, mut ops: Vec<Op>) -> Result<(), StoreError> {
        let _counting = self.unwritten.moving.write();
        let (dropped, malformed) = self.journal().unwritten_counts();
        ops.extend(Op::adds([("events_dropped", dropped), ("events_malformed", malformed)]));
        self.commit_now(&ops)?;
        self.unwritten.written(dropped, malformed);
        Ok(())
    }
}

/// The journal of events pushed, and what was taken in from it, a narrow handle on the store ([`Store::journal`]).
#[derive(Clone, Copy)]
pub struct JournalLog<'s> {
    store: &'s Store,
}

impl JournalLog<'_> {
    /// Events not all handled yet: the journal's records, and sled's inbox entries (each the
    /// events of one transaction, catch-up or retry).
    pub fn backlog(&self) -> usize {
        self.store.len(T::Inbox) + self.store.journal.pending() as usize
    }

    /// Counts events the intake did not keep: `dropped` not needed, `malformed` not readable
    /// (in memory at once, in sled with the next batch).
    pub fn count_dropped(&self, dropped: u64, malformed: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.store.unwritten.dropped.fetch_add(dropped + malformed, SeqCst);
        self.store.unwritten.malformed.fetch_add(malformed, SeqCst);
    }

    /// Writes the counts of dropped events not written yet (on shutdown).
    pub fn write_unwritten_counts(&self) -> Result<(), StoreError> {
        self.store.commit_with_unwritten_counts(vec![])
    }

    /// Events counted as dropped (or malformed) that are not in the persistent counters yet.
    pub fn unwritten_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.store.unwritten.dropped.load(SeqCst), self.store.unwritten.malformed.load(SeqCst))
    }

    /// Whether `txn_id` is on record, in sled, with exactly this body (written when the
    /// worker handles its record; kept for `retention.events`).
    pub fn txn_on_record(&self, txn_id: &str, body_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.store.tree(T::Txns).get(txn_id.as_bytes())?.is_some_and(|h| h.get(..32) == Some(body_hash.as_slice())))
    }

    /// Appends the events of a transaction or catch-up to the journal, as one record, and
    /// remembers the bot's membership changes among them (for the intake's next choices).
    /// `appended` hears the record's seq before the worker can read it. Returns the seq; the
    /// record is durable after [`JournalLog::sync`].
    pub fn append(
        &self,
        origin: &Origin,
        body_hash: Option<&[u8; 32]>,
        events: Vec<Box<RawValue>>,
        knockers: Vec<String>,
        bot: Vec<(String, BotMembership)>,
        appended: impl FnOnce(u64),
    ) -> Result<u64, StoreError> {
        let changes = bot.iter().map(|(room, m)| super::views::Change::Bot(room.clone(), *m)).collect();
        let received_ms = now_ms();
        let seq = self
            .store
            .journal
            .append(
                |seq| {
                    let record = JournalRecord {
                        seq,
                        received_ms,
                        origin: origin.clone(),
                        body_hash: body_hash.map(hex::encode),
                        events,
                        knockers,
                        bot,
                    };
                    serde_json::to_vec(&record).expect("records serialize")
                },
                appended,
            )
            .map_err(|e| self.store.mark_failed(e))?;
        self.store.views.apply(changes);
        Ok(seq)
    }

    /// The journal's records not handled yet when the store opened (once: later calls get
    /// none), for the intake's memory.
    pub fn take_unhandled(&self) -> Vec<super::UnhandledRecord> {
        std::mem::take(&mut *self.store.unhandled.lock())
    }

    /// Makes the journal durable up to record `seq`, with every record appended before it
    /// (one `fdatasync` for all who wait).
    pub async fn sync(&self, seq: u64) -> Result<(), StoreError> {
        self.store.journal.sync(seq).await.map_err(|e| self.store.mark_failed(e))
    }

    /// The first durable journal record at or after `at`'s.
    pub fn next(&self, at: Checkpoint) -> Result<Option<JournalRecord>, StoreError> {
        self.store.journal.read(at.seq)
    }

    /// Damage found in the journal and skipped since the last call, to be told (see
    /// [`super::journal`]).
    pub fn take_damage(&self) -> Vec<super::Damage> {
        self.store.journal.take_damage()
    }

    /// Where the worker's last committed batch left off in the journal.
    pub fn checkpoint(&self) -> Checkpoint {
        self.store.journal.checkpoint()
    }

    /// The op that records how far the worker got, in its batch.
    pub fn checkpoint_op(at: Checkpoint) -> Op {
        Op::put_json(T::Meta, super::JOURNAL_CHECKPOINT_KEY, &at)
    }

    /// The worker's batch that wrote [`JournalLog::checkpoint_op`]`(at)` is committed:
    /// the journal lets go of what it handled (segments handled go once sled has made the
    /// checkpoint durable).
    pub fn handled(&self, at: Checkpoint) -> Result<(), StoreError> {
        self.store.journal.handled(at, || self.store.flush_sled())
    }

    /// The ops that record a journal record's transaction (its txnId and body hash), written
    /// when the worker begins the record.
    pub fn txn_ops(record: &JournalRecord) -> Vec<Op> {
        let (Origin::Push { txn_id }, Some(hash)) = (&record.origin, &record.body_hash) else {
            return vec![];
        };
        let Ok(mut value) = hex::decode(hash) else { return vec![] };
        value.extend_from_slice(&record.received_ms.to_be_bytes());
        vec![
            Op::Put { tree: T::Txns, key: txn_id.as_bytes().to_vec(), value },
            Op::Put { tree: T::TxnTimes, key: time_key(record.received_ms, txn_id), value: vec![] },
        ]
    }

    /// The op that takes an event in from journal record `seq` (its ID is remembered as
    /// seen); `None` if it was taken in before, from any record or catch-up.
    pub fn admit(&self, event_id: &str, seq: u64) -> Result<Option<Op>, StoreError> {
        if self.was_seen(event_id)? {
            return Ok(None);
        }
        Ok(Some(Op::Put { tree: T::Seen, key: event_id.as_bytes().to_vec(), value: seq.to_be_bytes().to_vec() }))
    }

    /// The op that indexes by time the event IDs taken in from record `seq`, from its event
    /// `from` on, for pruning after `retention.events`.
    pub fn seen_times_op(received_ms: u64, seq: u64, from: usize, ids: &[String]) -> Op {
        Op::put_json(T::SeenTimes, time_key(received_ms, &seen_batch_id(seq, from)), &ids)
    }

    /// Whether an event was ever taken in.
    pub fn was_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        self.store.contains(T::Seen, event_id.as_bytes())
    }
}

/// The knocks put aside until what they wait for is known, a narrow handle on the store ([`Store::parked`]).
#[derive(Clone, Copy)]
pub struct Parked<'s> {
    store: &'s Store,
}

impl Parked<'_> {
    /// The oldest inbox entry.
    pub fn first(&self) -> Result<Option<InboxEntry>, StoreError> {
        self.next(None)
    }

    /// The oldest inbox entry after entry `after` (from the start: `None`).
    pub fn next(&self, after: Option<u64>) -> Result<Option<InboxEntry>, StoreError> {
        let after = after.map(u64::to_be_bytes);
        Ok(self
            .store
            .first_after::<InboxRecord>(T::Inbox, after.as_ref().map(|a| a.as_slice()))?
            .map(|(k, record)| InboxEntry { seq: seq_of(&k), record }))
    }

    /// The op that puts a knock aside in sled's inbox, to be decided once what it waits for
    /// is known (an alias looked up, a ban list read): the worker goes on with the rest.
    /// Returns the entry's number with the op.
    pub fn put(&self, item: &InboxItem) -> Result<(u64, Op), StoreError> {
        let record = InboxRecord { waiting: true, ..InboxRecord::from(item) };
        let seq = self.store.next_id()?;
        Ok((seq, Op::put_json(T::Inbox, seq.to_be_bytes(), &record)))
    }

    /// The op that removes an inbox entry once handled.
    pub fn done(seq: u64) -> Op {
        Op::del(T::Inbox, seq.to_be_bytes())
    }

    /// The op that keeps what is left of an inbox entry: its events from `from` on.
    pub fn rest(entry: &InboxEntry, from: usize) -> Op {
        let r = &entry.record;
        let rest = InboxRecord {
            received_ms: r.received_ms,
            origin: r.origin.clone(),
            events: r.events.get(from..).unwrap_or_default().to_vec(),
            waiting: r.waiting,
        };
        Op::put_json(T::Inbox, entry.seq.to_be_bytes(), &rest)
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

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_record_is_read_once_durable_and_its_bot_rooms_are_known_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = Origin::Push { txn_id: "1".into() };
        let bot = vec![("!r:x".to_owned(), BotMembership::Joined)];
        let mut heard = None;
        let seq = s
            .journal()
            .append(&o, Some(&[7; 32]), vec![raw(json!({"event_id": "$a"}))], vec!["@k:x".into()], bot, |seq| {
                heard = Some(seq)
            })
            .unwrap();
        assert_eq!(heard, Some(seq), "the intake hears of the record as it is appended");
        assert_eq!(s.rooms().bot_in("!r:x"), Some(BotMembership::Joined));
        assert_eq!(s.journal().backlog(), 1);
        assert!(s.journal().next(s.journal().checkpoint()).unwrap().is_none(), "not durable yet");
        runtime().block_on(s.journal().sync(seq)).unwrap();
        let record = s.journal().next(s.journal().checkpoint()).unwrap().unwrap();
        assert_eq!((record.seq, record.events[0].get()), (seq, r#"{"event_id":"$a"}"#));
        assert_eq!(JournalLog::txn_ops(&record).len(), 2);
        let next = Checkpoint { seq: seq + 1, event: 0 };
        s.commit(&[JournalLog::checkpoint_op(next)]).unwrap();
        s.journal().handled(next).unwrap();
        assert_eq!(s.journal().backlog(), 0);
        assert!(s.journal().next(next).unwrap().is_none());
    }

    #[test]
    fn an_event_is_admitted_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let op = s.journal().admit("$a", 1).unwrap().expect("new");
        s.commit(&[op]).unwrap();
        assert!(s.journal().admit("$a", 2).unwrap().is_none());
        assert!(s.journal().was_seen("$a").unwrap());
    }

    #[test]
    fn dropped_events_are_counted_at_once_and_written_with_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.journal().count_dropped(5, 1);
        assert_eq!(s.counter("events_dropped").unwrap(), 6);
        assert_eq!(s.journal().unwritten_counts(), (6, 1));
        s.batch(|| s.commit(&[Op::put_json(T::Meta, "x", &1)])).unwrap();
        assert_eq!(s.journal().unwritten_counts(), (0, 0));
        assert_eq!((s.counter("events_dropped").unwrap(), s.counter("events_malformed").unwrap()), (6, 1));
    }

    #[test]
    fn an_entry_written_before_entries_held_transactions_reads_as_one_event() {
        let old = json!({"received_ms": 5, "origin": {"kind": "push", "txn_id": "7"}, "event": {"event_id": "$old"}});
        let r: InboxRecord = serde_json::from_value(old).unwrap();
        assert_eq!((r.received_ms, r.events.len()), (5, 1));
        assert_eq!(r.events[0].get(), r#"{"event_id":"$old"}"#);
    }
}

//! Storage: the only module that touches sled.
//!
//! Everything knockwarden must not lose lives here: the journal of pushed events not yet
//! handled ([`journal`], files of its own, so that taking a transaction in touches no sled),
//! the event IDs already taken in (so nothing is handled twice), the outbox of actions not
//! yet carried out, what the bot knows of rooms and knocks.
//!
//! Writes that belong together go through [`Store::commit`], which applies a list of [`Op`]s
//! in one sled transaction; callers then [`Store::flush`] before they promise durability to
//! anyone.

mod activity;
mod audit;
mod failed;
mod inbox;
mod journal;
mod lists;
mod outbox;
mod overlay;
mod policies;
mod records;
mod resolution;
mod retention;
mod trees;
mod views;

use std::path::Path;

use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Serialize, de::DeserializeOwned};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError},
};

pub use audit::{AuditEntry, Outcome, ReviewItem};
pub use failed::{FailCause, FailedEntry, FailedItem};
pub use inbox::{InboxEntry, InboxItem, InboxRecord, Origin};
pub use journal::{BACKLOG_EVENTS, Checkpoint, Damage, JournalRecord};
pub use lists::ListRecord;
pub use outbox::{Action, ModeratorVerdict, OutboxEntry, Subject};
pub use policies::{KEEP_VERSIONS, PolicyVersion};
pub use records::{BotMembership, KnockRecord, RoomRecord};
pub use resolution::Resolution;
pub use retention::Pruned;
pub use trees::T;
use trees::TREE_NAMES;

/// One write, applied inside [`Store::commit`]'s transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        tree: T,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Del {
        tree: T,
        key: Vec<u8>,
    },
    /// Adds to a u64 counter in [`T::Counters`].
    Add {
        counter: String,
        by: u64,
    },
}

impl Op {
    /// Whether it queues an action (a put in the outbox).
    pub fn queues_action(&self) -> bool {
        matches!(self, Op::Put { tree: T::Outbox, .. })
    }
}

impl Op {
    pub fn put_json(tree: T, key: impl Into<Vec<u8>>, value: &impl Serialize) -> Op {
        Op::Put { tree, key: key.into(), value: serde_json::to_vec(value).expect("records serialize") }
    }
    pub fn del(tree: T, key: impl Into<Vec<u8>>) -> Op {
        Op::Del { tree, key: key.into() }
    }
    /// Ops that add to counters, leaving out those that add nothing.
    pub fn adds<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Op> {
        counts.into_iter().filter(|(_, by)| *by > 0).map(|(c, by)| Op::Add { counter: c.into(), by }).collect()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in {tree}: {message}")]
    Corrupt { tree: &'static str, message: String },
    /// The journal's files could not be read or written.
    #[error("journal: {0}")]
    Journal(String),
    /// Written by a newer knockwarden, in a format this one cannot read.
    #[error(
        "the database was written by a newer knockwarden (format {found}; this one reads up to {supported}): run that version, or restore a backup made with this one"
    )]
    TooNew { found: u32, supported: u32 },
    /// A part of knockwarden that writes to the store stopped (a bug, or shutting down).
    #[error("{0}")]
    Stopped(&'static str),
    /// Another process (a running knockwarden) holds the database.
    #[error("the database is in use by another process (a running knockwarden?): stop it first")]
    InUse,
}

/// Handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// Pushed events not handled yet (see [`journal`]).
    journal: std::sync::Arc<journal::Journal>,
    /// The bot's rooms and the knockers, in memory (see [`views`]).
    views: std::sync::Arc<views::Views>,
    /// Serializes read-modify-write updates (see [`Store::serialized`]).
    write_lock: std::sync::Arc<parking_lot::Mutex<()>>,
    /// Set when a write or flush failed: `/health` then answers 503 until restart.
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Entries in the inbox and the outbox, kept up to date by [`Store::commit`], so that
    /// `/health` reports them without counting (sled counts a tree by scanning it).
    depth: std::sync::Arc<Depth>,
    /// Actions queued since the runner last looked (`None` until it watches), see
    /// [`Store::watch_outbox`].
    feed: std::sync::Arc<std::sync::Mutex<Option<Vec<u64>>>>,
    /// Group commit for [`Store::flush`].
    flusher: std::sync::Arc<Flusher>,
    /// Events dropped by the intake, not in the counters yet (see [`Store::batch`]).
    unwritten: std::sync::Arc<inbox::Unwritten>,
}

/// One flush at a time, shared by every caller that asked for one before it began (see
/// [`Store::flush`]).
#[derive(Default)]
struct Flusher {
    /// Flush requests so far.
    requested: std::sync::atomic::AtomicU64,
    /// The last request the flushes done so far cover.
    done: tokio::sync::Mutex<u64>,
}

thread_local! {
    /// Whether this thread holds [`Store::serialized`]'s lock (so it is not taken twice).
    static HOLDS_WRITE_LOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The write lock, held; releases the thread's mark with it.
///
/// The lock is handed over fairly: the worker takes it again right after releasing it, event
/// after event, and an unfair lock let it win every time, so the runner's records of what it
/// did waited behind the whole inbox.
struct WriteGuard<'a> {
    guard: Option<parking_lot::MutexGuard<'a, ()>>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        HOLDS_WRITE_LOCK.with(|h| h.set(false));
        if let Some(g) = self.guard.take() {
            parking_lot::MutexGuard::unlock_fair(g);
        }
    }
}

/// What one tree holds (see [`Store::tree_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub name: &'static str,
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Ops per sled transaction in [`Store::commit_bulk`].
pub const BULK_CHUNK: usize = 2_000;

/// A key and its value, as stored.
type KeyValue = (Vec<u8>, Vec<u8>);

/// How many entries the counted trees hold: the inbox, the outbox, the failed list and the
/// open review items (see [`queue_index`]), so that `/health` and `/metrics` read counters,
/// never a tree.
type Depth = [AtomicI64; 4];

/// The trees counted in [`Depth`], in its order.
const COUNTED: [T; 4] = [T::Inbox, T::Outbox, T::Failed, T::OpenReviews];

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
fn queue_index(t: T) -> Option<usize> {
    COUNTED.iter().position(|&c| c == t)
}

impl Store {
    /// The format of the database at `path`, read without opening it for use (nothing is
    /// upgraded or written): for `knockwarden doctor`. [`StoreError::InUse`] while a running
    /// knockwarden holds it, [`StoreError::TooNew`] when this version cannot read it.
    pub fn inspect(path: &Path) -> Result<u32, StoreError> {
        let db = open_db(path)?;
        let found = format_of(&db.open_tree(TREE_NAMES[T::Meta as usize])?)?;
        if found > FORMAT {
            return Err(StoreError::TooNew { found, supported: FORMAT });
        }
        Ok(found)
    }

    /// Opens (creating if needed) the database directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        // sled recovered nothing: the directory was empty, the database is new.
        let new = !db.was_recovered();
        let found = format_of(&db.open_tree(TREE_NAMES[T::Meta as usize])?)?;
        if found > FORMAT {
            return Err(StoreError::TooNew { found, supported: FORMAT });
        }
        let trees = TREE_NAMES.iter().map(|n| db.open_tree(n)).collect::<Result<Vec<_>, _>>()?;
        let depth = COUNTED.map(|t| AtomicI64::new(trees[t as usize].len() as i64));
        let checkpoint = match trees[T::Meta as usize].get(JOURNAL_CHECKPOINT_KEY)? {
            Some(v) => decode(T::Meta, &v)?,
            None => journal::Checkpoint::default(),
        };
        let opened = journal::Journal::open(&path.join("journal"), checkpoint)?;
        let views = views::Views::load(
            load_bot_rooms(&trees[T::BotRooms as usize])?.into_iter().chain(opened.bot),
            trees[T::Knocks as usize].iter().keys(),
            trees[T::RoomKnockTimes as usize].iter().keys(),
        )?;
        let store = Self {
            db,
            trees,
            journal: std::sync::Arc::new(opened.journal),
            views: std::sync::Arc::new(views),
            write_lock: Default::default(),
            feed: Default::default(),
            flusher: Default::default(),
            unwritten: Default::default(),
            failed: Default::default(),
            depth: std::sync::Arc::new(depth),
        };
        store.upgrade(new)?;
        Ok(store)
    }

    /// Brings a database written by an earlier version up to [`FORMAT`], once, and records
    /// the format, so no later start scans anything for it. Format 1 (before formats were
    /// recorded) lacks the indexes of review items by notice and by knocker, and of seen
    /// events and transactions by time: they are built. Formats before 3 kept knocks by user
    /// and memberships by user, which nothing reads now: those trees are dropped. Records
    /// themselves are read compatibly (old free-text resolutions, string IDs, actions without
    /// a knock event).
    /// A `new` database has nothing to upgrade: its format is recorded.
    fn upgrade(&self, new: bool) -> Result<(), StoreError> {
        let found = format_of(self.tree(T::Meta))?;
        if found >= FORMAT {
            return Ok(());
        }
        if new {
            tracing::info!(format = FORMAT, "a new database");
        // Databases of the first indexing release recorded it under its own key.
        } else if self.get_meta("indexes_built")?.is_none() {
            tracing::info!(from = found, to = FORMAT, "upgrading the database");
            self.index_reviews()?;
            self.index_times()?;
        }
        for dropped in DROPPED_TREES {
            self.db.drop_tree(dropped)?;
        }
        self.tree(T::Meta).insert(FORMAT_KEY, FORMAT.to_string().as_bytes())?;
        self.flush_blocking()
    }

    /// The database format (see [`FORMAT`]).
    pub fn format(&self) -> Result<u32, StoreError> {
        format_of(self.tree(T::Meta))
    }

    /// Runs `f` while no other read-modify-write update runs: what `f` reads stays true
    /// until it commits. Code that reads records and commits ops derived from them (the
    /// worker, for each event: one transaction) runs inside. The locking updates
    /// ([`Store::settle`], [`Store::update_room`], …) called inside do not lock again.
    pub fn serialized<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.lock_writes();
        f()
    }

    /// Takes the write lock, unless this thread holds it already.
    fn lock_writes(&self) -> Option<WriteGuard<'_>> {
        if HOLDS_WRITE_LOCK.with(|h| h.get()) {
            return None;
        }
        let guard = self.write_lock.lock();
        HOLDS_WRITE_LOCK.with(|h| h.set(true));
        Some(WriteGuard { guard: Some(guard) })
    }

    fn tree(&self, t: T) -> &sled::Tree {
        &self.trees[t as usize]
    }

    /// This store's identity, for this thread's batch (see [`Store::batch`]).
    fn id(&self) -> usize {
        std::sync::Arc::as_ptr(&self.depth) as *const () as usize
    }

    /// Runs `f` as one batch: the commits made in it on this thread are staged, read back by
    /// this thread's reads, and written in one transaction when `f` returns `Ok` (discarded
    /// when it fails or panics). Inside a batch already, `f` is simply part of it.
    pub fn batch<R>(&self, f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
        if !overlay::open(self.id()) {
            return f();
        }
        /// Closes the batch should `f` panic.
        struct Close;
        impl Drop for Close {
            fn drop(&mut self) {
                overlay::close();
            }
        }
        let close = Close;
        let result = f();
        let staged = overlay::close();
        drop(close);
        let r = result?;
        if let Some(staged) = staged {
            let ops = staged.into_ops();
            if !ops.is_empty() {
                // The intake's counts of events it dropped go with every batch.
                self.commit_with_unwritten_counts(ops)?;
            }
        }
        Ok(r)
    }

    /// A mark of what this thread's batch has staged so far, to undo what follows it with
    /// [`Store::unstage_to`] (`None` outside a batch).
    pub fn staged_mark(&self) -> Option<usize> {
        overlay::with(self.id(), |o| o.len())
    }

    /// Forgets what this thread's batch staged after `mark`.
    pub fn unstage_to(&self, mark: Option<usize>) {
        if let Some(mark) = mark {
            overlay::with(self.id(), |o| o.truncate(mark));
        }
    }

    /// Applies all `ops` atomically (inside a batch: stages them, see [`Store::batch`]).
    pub fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        if overlay::with(self.id(), |o| o.stage(ops)).is_some() {
            return Ok(());
        }
        self.commit_now(ops)
    }

    /// Writes `ops` at once, outside any batch this thread is in, in sled transactions of at
    /// most [`BULK_CHUNK`] ops each: for many writes whose atomicity with the rest does not
    /// matter (a ban list's stored rules, read whole again at every start). One sled
    /// transaction of 100,000 puts took about 600 MiB.
    pub fn commit_bulk(&self, ops: &[Op]) -> Result<(), StoreError> {
        for chunk in ops.chunks(BULK_CHUNK) {
            self.commit_now(chunk)?;
        }
        Ok(())
    }

    fn commit_now(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Only the trees the ops touch take part in the transaction.
        let mut slot = [usize::MAX; TREE_NAMES.len()];
        let mut trees: Vec<sled::Tree> = Vec::new();
        let mut touch = |t: T| {
            if slot[t as usize] == usize::MAX {
                slot[t as usize] = trees.len();
                trees.push(self.trees[t as usize].clone());
            }
        };
        for op in ops {
            match op {
                Op::Put { tree, .. } | Op::Del { tree, .. } => touch(*tree),
                Op::Add { .. } => touch(T::Counters),
            }
        }
        // Queue entries added and removed (counted afresh whenever sled reruns the
        // transaction), and the actions newly queued.
        type Done = ([i64; COUNTED.len()], Vec<u64>, Vec<views::Change>);
        let res: Result<Done, TransactionError<()>> = trees.as_slice().transaction(|view| {
            let mut delta = [0i64; COUNTED.len()];
            let mut queued = Vec::new();
            let mut changes = Vec::new();
            for op in ops {
                match op {
                    Op::Put { tree, key, value } => {
                        let old = view[slot[*tree as usize]].insert(key.as_slice(), value.as_slice())?;
                        changes.extend(self.views.change(*tree, key, old.is_some(), Some(value)));
                        if let (Some(q), None) = (queue_index(*tree), old) {
                            delta[q] += 1;
                            if *tree == T::Outbox {
                                queued.push(inbox::seq_of(key));
                            }
                        }
                    }
                    Op::Del { tree, key } => {
                        let old = view[slot[*tree as usize]].remove(key.as_slice())?;
                        changes.extend(self.views.change(*tree, key, old.is_some(), None));
                        if let (Some(q), Some(_)) = (queue_index(*tree), old) {
                            delta[q] -= 1;
                        }
                    }
                    Op::Add { counter, by } => {
                        let t = &view[slot[T::Counters as usize]];
                        let old = t.get(counter.as_bytes())?.map(|v| decode_u64(v.as_ref())).unwrap_or(0);
                        t.insert(counter.as_bytes(), &(old.saturating_add(*by)).to_be_bytes())?;
                    }
                }
            }
            Ok::<_, ConflictableTransactionError<()>>((delta, queued, changes))
        });
        let (delta, queued, changes) = res.map_err(|e| match e {
            TransactionError::Storage(e) => self.mark_failed(StoreError::Sled(e)),
            TransactionError::Abort(()) => unreachable!("commit never aborts"),
        })?;
        self.views.apply(changes);
        for (n, d) in self.depth.iter().zip(delta) {
            if d != 0 {
                n.fetch_add(d, Ordering::SeqCst);
            }
        }
        if !queued.is_empty()
            && let Some(feed) = self.feed.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
        {
            feed.extend(queued);
        }
        Ok(())
    }

    /// Entries in the inbox (with the journal's records not handled yet), the outbox, the
    /// failed list or the open review items, without counting them.
    pub fn queue_depth(&self, q: Queue) -> u64 {
        let t = q.tree();
        let n = queue_index(t).map(|q| self.depth[q].load(Ordering::SeqCst).max(0) as u64).unwrap_or(0);
        if t == T::Inbox { n + self.journal.pending() } else { n }
    }

    /// Makes everything written so far durable.
    ///
    /// Flushes are grouped: one runs at a time, on a blocking thread, and covers every caller
    /// that asked before it began (a caller arriving during a flush waits for the next one).
    /// Not sled's `flush_async`: that runs each flush on sled's own I/O thread pool, holding
    /// sled's concurrency lock while it waits for buffer writes queued on that same pool, so
    /// enough concurrent flushes starve the pool and the database stops (every read and
    /// write waits forever; seen under the ingest benchmark's load).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mine = self.flusher.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.flusher.done.lock().await;
        if *done >= mine {
            return Ok(());
        }
        let covers = self.flusher.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
        match flushed {
            Ok(Ok(_)) => {
                *done = covers;
                Ok(())
            }
            Ok(Err(e)) => Err(self.mark_failed(e.into())),
            Err(join) => Err(self
                .mark_failed(StoreError::Sled(sled::Error::ReportableBug(format!("the flush thread failed: {join}"))))),
        }
    }

    /// Records that storage failed (so `/health` says so) and passes the error on.
    pub fn mark_failed(&self, e: StoreError) -> StoreError {
        tracing::error!(error = %e, "storage failed");
        self.failed.store(true, Ordering::SeqCst);
        e
    }

    /// Makes what is written to sled durable (not the journal), blocking.
    fn flush_sled(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.mark_failed(e.into()))?;
        Ok(())
    }

    /// Blocking flush of the journal and sled, for shutdown and synchronous callers.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.journal.sync_blocking()?;
        self.db.flush()?;
        Ok(())
    }

    /// A new, strictly increasing number (also across restarts).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Whether a write or a flush of sled has failed: sled's errors are sticky (nothing is
    /// written after one), so the process must start again (see [`crate::startup`]).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Whether storage is usable (for `/health`): no write or flush has failed, and a read
    /// answers. Writes nothing, so an unauthenticated caller cannot make it work.
    pub fn is_healthy(&self) -> bool {
        !self.failed.load(Ordering::SeqCst) && self.tree(T::Meta).get(b"health").is_ok()
    }

    /// A value, as this thread's batch (if any) left it.
    fn get_raw(&self, tree: T, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match overlay::with(self.id(), |o| o.get(tree, key)) {
            Some(overlay::Staged::Value(v)) => Ok(Some(v)),
            Some(overlay::Staged::Removed) => Ok(None),
            Some(overlay::Staged::Untouched) | None => Ok(self.tree(tree).get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn get_json<V: DeserializeOwned>(&self, tree: T, key: &[u8]) -> Result<Option<V>, StoreError> {
        match self.get_raw(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, &bytes).map(Some),
        }
    }

    pub fn contains(&self, tree: T, key: &[u8]) -> Result<bool, StoreError> {
        match overlay::with(self.id(), |o| o.get(tree, key)) {
            Some(overlay::Staged::Value(_)) => Ok(true),
            Some(overlay::Staged::Removed) => Ok(false),
            Some(overlay::Staged::Untouched) | None => Ok(self.tree(tree).contains_key(key)?),
        }
    }

    /// Keys and values of a tree whose key starts with `prefix`, in key order, as this
    /// thread's batch (if any) left them.
    fn scan_raw(&self, tree: T, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut found = std::collections::BTreeMap::new();
        for kv in self.tree(tree).scan_prefix(prefix) {
            let (k, v) = kv?;
            found.insert(k.to_vec(), v.to_vec());
        }
        overlay::with(self.id(), |o| {
            for (k, v) in o.range(tree, prefix).take_while(|(k, _)| k.starts_with(prefix)) {
                match v {
                    Some(v) => found.insert(k.clone(), v.clone()),
                    None => found.remove(k),
                };
            }
        });
        Ok(found.into_iter().collect())
    }

    /// All values of a tree whose key starts with `prefix`, in key order.
    pub fn scan_json<V: DeserializeOwned>(&self, tree: T, prefix: &[u8]) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        self.scan_raw(tree, prefix)?.into_iter().map(|(k, v)| Ok((k, decode(tree, &v)?))).collect()
    }

    /// How many keys lie in `[from, to)`.
    pub fn count_range(&self, tree: T, from: Vec<u8>, to: Vec<u8>) -> Result<u64, StoreError> {
        let mut n: i64 = 0;
        for k in self.tree(tree).range(from.clone()..to.clone()).keys() {
            k?;
            n += 1;
        }
        n += self.staged_delta(tree, &from, &to)?;
        Ok(n.max(0) as u64)
    }

    /// How many keys in `[from, to)` this thread's batch added to what sled holds (less those
    /// it removed).
    fn staged_delta(&self, tree: T, from: &[u8], to: &[u8]) -> Result<i64, StoreError> {
        let sled = self.tree(tree);
        let delta = overlay::with(self.id(), |o| o.delta(tree, from, to, |key| sled.contains_key(key)));
        Ok(delta.transpose()?.unwrap_or(0))
    }

    /// All keys of a tree that start with `prefix`.
    pub fn scan_keys(&self, tree: T, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.scan_raw(tree, prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// The first entry of a tree, in key order.
    pub fn first_json<V: DeserializeOwned>(&self, tree: T) -> Result<Option<(Vec<u8>, V)>, StoreError> {
        self.first_after(tree, None)
    }

    /// The first entry of a tree after `after` (from the start: `None`), in key order, as
    /// this thread's batch (if any) left it.
    pub fn first_after<V: DeserializeOwned>(
        &self,
        tree: T,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, V)>, StoreError> {
        use std::ops::Bound;
        let from = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Unbounded,
        };
        let id = self.id();
        let mut in_sled = None;
        for kv in self.tree(tree).range::<Vec<u8>, _>((from.clone(), Bound::Unbounded)) {
            let (k, v) = kv?;
            let removed = overlay::with(id, |o| matches!(o.get(tree, &k), overlay::Staged::Removed)).unwrap_or(false);
            if !removed {
                in_sled = Some((k.to_vec(), v.to_vec()));
                break;
            }
        }
        let staged = overlay::with(id, |o| {
            o.range(tree, after.unwrap_or(b""))
                .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
                .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        })
        .flatten();
        let first = match (in_sled, staged) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        // A key staged with a new value shows that value.
        let first = first.map(|(k, v)| match overlay::with(id, |o| o.get(tree, &k)) {
            Some(overlay::Staged::Value(staged)) => (k, staged),
            _ => (k, v),
        });
        match first {
            None => Ok(None),
            Some((k, v)) => Ok(Some((k, decode(tree, &v)?))),
        }
    }

    /// Each tree's name, number of entries and bytes of keys and values (a scan of every
    /// tree: for benchmarks and admins, not for hot paths).
    pub fn tree_stats(&self) -> Result<Vec<TreeStats>, StoreError> {
        let mut out = Vec::with_capacity(TREE_NAMES.len());
        for (name, tree) in TREE_NAMES.iter().zip(&self.trees) {
            let mut stats = TreeStats { name, entries: 0, bytes: 0 };
            for kv in tree.iter() {
                let (k, v) = kv?;
                stats.entries += 1;
                stats.bytes += (k.len() + v.len()) as u64;
            }
            out.push(stats);
        }
        Ok(out)
    }

    pub fn len(&self, tree: T) -> usize {
        self.tree(tree).len()
    }

    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        // Not while a batch moves the intake's counts into sled (they would count twice).
        let _counting = self.unwritten.moving.read();
        let stored = self.get_raw(T::Counters, name.as_bytes())?.map(|v| decode_u64(&v)).unwrap_or(0);
        let staged = overlay::with(self.id(), |o| o.added(name)).unwrap_or(0);
        // Events dropped by ingests that wrote nothing count as soon as they are dropped.
        let (dropped, malformed) = self.unwritten_counts();
        let unwritten = match name {
            "events_dropped" => dropped,
            "events_malformed" => malformed,
            _ => 0,
        };
        Ok(stored.saturating_add(staged).saturating_add(unwritten))
    }

    /// The run-time dry-run switch (`!knock dry-run on|off`), if it was ever set.
    pub fn dry_run_switch(&self) -> Result<Option<bool>, StoreError> {
        Ok(self.get_meta(DRY_RUN_KEY)?.map(|v| v == "on"))
    }

    pub fn set_dry_run_switch(&self, on: bool) -> Result<(), StoreError> {
        self.set_meta(DRY_RUN_KEY, if on { "on" } else { "off" })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_raw(T::Meta, key.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.commit(&[Op::Put { tree: T::Meta, key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }])
    }
}

/// The database format this version writes (and the newest it reads). 1: before formats were
/// recorded; 2: the review and time indexes, the failed list, typed resolutions; 3: no index
/// of knocks by user or of memberships by user (an older version would read them stale).
pub const FORMAT: u32 = 3;

/// Trees earlier formats kept and this one drops when it upgrades the database.
const DROPPED_TREES: [&str; 2] = ["knockers", "memberships"];

/// Meta key of the database format.
const FORMAT_KEY: &str = "format";

/// The format recorded in a meta tree; a database without one is format 1 (or new: 0 trees
/// written, treated the same).
fn format_of(meta: &sled::Tree) -> Result<u32, StoreError> {
    match meta.get(FORMAT_KEY)? {
        None => Ok(1),
        Some(v) => String::from_utf8_lossy(&v).parse().map_err(|_| StoreError::Corrupt {
            tree: "meta",
            message: format!("format `{}` is not a number", String::from_utf8_lossy(&v)),
        }),
    }
}

/// Meta key of the worker's [`journal::Checkpoint`].
const JOURNAL_CHECKPOINT_KEY: &str = "journal_checkpoint";

/// The bot's membership of each room, as [`T::BotRooms`] holds it.
fn load_bot_rooms(tree: &sled::Tree) -> Result<Vec<(String, BotMembership)>, StoreError> {
    tree.iter()
        .map(|kv| {
            let (k, v) = kv?;
            Ok((String::from_utf8_lossy(&k).into_owned(), decode(T::BotRooms, &v)?))
        })
        .collect()
}

/// Meta key of the run-time dry-run switch (stored as `on`/`off`).
const DRY_RUN_KEY: &str = "dry_run";

/// The most sled's page cache holds, in bytes. sled's default (1 GiB) let the resident size
/// grow with the database under load (153–193 MiB after 20 s of the ingest benchmark at 100
/// rules, 360 MiB after 60 s); with 8 MB it peaked at 69–72 MiB (83 after 60 s) at the same
/// throughput. Smaller caps took a few MiB more off and, in some runs, a quarter of the
/// throughput (`docs/benchmarks-history.md`, "Ingestion, fourth sitting").
const CACHE_CAPACITY: u64 = 8_000_000;

/// Opens sled's database. The file lock of a database just closed in this process (a restart
/// within one process, as in tests) is released by sled's background threads a moment later:
/// wait up to a second for it.
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let mut tries = 0;
    loop {
        let config = sled::Config::new().path(path).mode(sled::Mode::HighThroughput).cache_capacity(CACHE_CAPACITY);
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if tries == 50 {
                    return Err(StoreError::InUse);
                }
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn decode<V: DeserializeOwned>(tree: T, bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { tree: TREE_NAMES[tree as usize], message: e.to_string() })
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Key of a (first, second) pair: `first \0 second`.
pub fn pair_key(first: impl AsRef<str>, second: impl AsRef<str>) -> Vec<u8> {
    let (first, second) = (first.as_ref(), second.as_ref());
    let mut k = Vec::with_capacity(first.len() + second.len() + 1);
    k.extend_from_slice(first.as_bytes());
    k.push(0);
    k.extend_from_slice(second.as_bytes());
    k
}

/// Splits a [`pair_key`].
pub fn split_pair(key: &[u8]) -> Option<(String, String)> {
    let i = key.iter().position(|&b| b == 0)?;
    Some((String::from_utf8_lossy(&key[..i]).into_owned(), String::from_utf8_lossy(&key[i + 1..]).into_owned()))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests;

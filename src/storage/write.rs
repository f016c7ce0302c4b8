//! The write path: the write lock that keeps what a caller read true until it commits
//! ([`Store::serialized`]), batches of commits staged and written as one transaction
//! ([`Store::batch`]), commits ([`Store::commit`]), and the group flush that makes them
//! durable ([`Store::flush`]).

use std::sync::atomic::Ordering;

use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError},
};

use super::{
    Op, Store, StoreError, T, decode_u64, inbox, overlay,
    queues::{COUNTED, queue_index},
    trees::TREE_NAMES,
    views,
};

/// One flush at a time, shared by every caller that asked for one before it began (see
/// [`Store::flush`]).
#[derive(Default)]
pub(super) struct Flusher {
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

/// Ops per sled transaction in [`Store::commit_bulk`].
pub const BULK_CHUNK: usize = 2_000;

impl Store {
    /// Runs `f` while no other read-modify-write update runs: what `f` reads stays true
    /// until it commits. Code that reads records and commits ops derived from them (the
    /// worker, for each event: one transaction) runs inside. The locking updates
    /// ([`super::Audit::settle_if`], [`super::Rooms::update`], …) called inside do not lock again.
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

    pub(super) fn commit_now(&self, ops: &[Op]) -> Result<(), StoreError> {
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
    pub(super) fn flush_sled(&self) -> Result<(), StoreError> {
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
}

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
//!
//! The machinery: [`ops`] (what a write is), [`write`] (the write lock, batches, commits, the
//! group flush), [`read`] (reads as a batch left them), [`queues`] (queue depths in memory),
//! [`format`] (opening sled, the format, upgrades), [`keys`] (encodings), [`meta`] (settings),
//! [`overlay`] (a batch's staged writes), [`trees`] (the trees), [`views`] (what the intake
//! reads in memory). The records, one file each: the [`journal`] and the [`inbox`], the
//! [`outbox`] and the [`failed`] list, the [`audit`] log and review items, rooms and knocks
//! ([`records`]), knock counts ([`activity`]), ban lists ([`lists`]), policy versions
//! ([`policies`]), and [`retention`].
//!
//! The rest of the code reaches the records through narrow handles, one per concern, each a
//! borrowed `&Store` with only that concern's methods: [`Store::journal`], [`Store::parked`],
//! [`Store::outbox`], [`Store::failures`], [`Store::audit`], [`Store::reviews`],
//! [`Store::rooms`], [`Store::knocks`], [`Store::activity`], [`Store::members`],
//! [`Store::lists`], [`Store::policies`], [`Store::aliases`], [`Store::batches`] and
//! [`Store::lockdowns`]. `Store` itself keeps only
//! what spans them: opening, commits and batches, health, and the generic reads used by
//! tests and benches.

mod activity;
mod aliases;
mod audit;
mod batches;
mod failed;
mod format;
mod inbox;
mod journal;
mod keys;
mod lists;
mod lockdowns;
mod meta;
mod ops;
mod outbox;
mod overlay;
mod policies;
mod queues;
mod read;
mod records;
mod resolution;
mod retention;
mod trees;
mod views;
mod write;

use std::path::Path;
use std::sync::atomic::AtomicI64;

pub use activity::{Activity, Members};
pub use aliases::Aliases;
pub use audit::{Audit, AuditEntry, Outcome, ReviewItem, Reviews};
pub use batches::{Batch, BatchItem, Batches, ItemResult, Skip};
pub use failed::{FailCause, FailedEntry, FailedItem, Failures};
pub use format::FORMAT;
pub use inbox::{InboxEntry, InboxItem, InboxRecord, JournalLog, Origin, Parked};
pub use journal::{Checkpoint, Damage, JournalRecord, UnhandledRecord};
pub use keys::{pair_key, split_pair};
pub use lists::{ListRecord, ListRecords};
pub use lockdowns::{Lockdown, LockdownCause, Lockdowns};
pub use ops::Op;
pub use outbox::{Action, ModeratorVerdict, Outbox, OutboxEntry, Subject};
pub use policies::{KEEP_VERSIONS, PolicyVersion, PolicyVersions};
pub use queues::Queue;
pub use read::TreeStats;
pub use records::{BotMembership, KnockRecord, Knocks, RoomRecord, Rooms};
pub use resolution::Resolution;
pub use retention::Pruned;
pub use trees::T;
pub use write::BULK_CHUNK;

#[cfg(test)]
use format::FORMAT_KEY;
use format::{format_of, open_db};
use keys::{decode, decode_u64};
use queues::{COUNTED, Depth};
use trees::TREE_NAMES;
use write::Flusher;

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
    /// [`Outbox::watch`].
    feed: std::sync::Arc<std::sync::Mutex<Option<Vec<u64>>>>,
    /// Group commit for [`Store::flush`].
    flusher: std::sync::Arc<Flusher>,
    /// Events dropped by the intake, not in the counters yet (see [`Store::batch`]).
    unwritten: std::sync::Arc<inbox::Unwritten>,
    /// The journal's records not handled yet, as it found them when it opened, until the
    /// intake takes them ([`JournalLog::take_unhandled`]).
    unhandled: std::sync::Arc<parking_lot::Mutex<Vec<UnhandledRecord>>>,
}

impl Store {
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
            unhandled: std::sync::Arc::new(parking_lot::Mutex::new(opened.unhandled)),
            failed: Default::default(),
            depth: std::sync::Arc::new(depth),
        };
        store.upgrade(new)?;
        Ok(store)
    }

    pub(super) fn tree(&self, t: T) -> &sled::Tree {
        &self.trees[t as usize]
    }

    /// This store's identity, for this thread's batch (see [`Store::batch`]).
    pub(super) fn id(&self) -> usize {
        std::sync::Arc::as_ptr(&self.depth) as *const () as usize
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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests;

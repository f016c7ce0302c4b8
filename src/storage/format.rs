//! The database on disk: opening sled, the format this version writes, and upgrading what an
//! earlier version wrote.

use std::path::Path;

use super::{Store, StoreError, T, trees::TREE_NAMES};

/// The database format this version writes (and the newest it reads). 1: before formats were
/// recorded; 2: the review and time indexes, the failed list, typed resolutions; 3: no index
/// of knocks by user or of memberships by user (an older version would read them stale).
pub const FORMAT: u32 = 3;

/// Trees earlier formats kept and this one drops when it upgrades the database.
const DROPPED_TREES: [&str; 2] = ["knockers", "memberships"];

/// Meta key of the database format.
pub(super) const FORMAT_KEY: &str = "format";

/// The format recorded in a meta tree; a database without one is format 1 (or new: 0 trees
/// written, treated the same).
pub(super) fn format_of(meta: &sled::Tree) -> Result<u32, StoreError> {
    match meta.get(FORMAT_KEY)? {
        None => Ok(1),
        Some(v) => String::from_utf8_lossy(&v).parse().map_err(|_| StoreError::Corrupt {
            tree: "meta",
            message: format!("format `{}` is not a number", String::from_utf8_lossy(&v)),
        }),
    }
}

/// The most sled's page cache holds, in bytes. sled's default (1 GiB) let the resident size
/// grow with the database under load (153–193 MiB after 20 s of the ingest benchmark at 100
/// rules, 360 MiB after 60 s); with 8 MB it peaked at 69–72 MiB (83 after 60 s) at the same
/// throughput. Smaller caps took a few MiB more off and, in some runs, a quarter of the
/// throughput (`docs/benchmarks-history.md`, "Ingestion, fourth sitting").
const CACHE_CAPACITY: u64 = 8_000_000;

/// Opens sled's database. The file lock of a database just closed in this process (a restart
/// within one process, as in tests) is released by sled's background threads a moment later:
/// wait up to a second for it.
pub(super) fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
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

    /// Brings a database written by an earlier version up to [`FORMAT`], once, and records
    /// the format, so no later start scans anything for it. Format 1 (before formats were
    /// recorded) lacks the indexes of review items by notice and by knocker, and of seen
    /// events and transactions by time: they are built. Formats before 3 kept knocks by user
    /// and memberships by user, which nothing reads now: those trees are dropped. Records
    /// themselves are read compatibly (old free-text resolutions, string IDs, actions without
    /// a knock event).
    /// A `new` database has nothing to upgrade: its format is recorded.
    pub(super) fn upgrade(&self, new: bool) -> Result<(), StoreError> {
        let found = format_of(self.tree(T::Meta))?;
        if found >= FORMAT {
            return Ok(());
        }
        if new {
            tracing::info!(format = FORMAT, "a new database");
        // Databases of the first indexing release recorded it under its own key.
        } else if self.get_meta("indexes_built")?.is_none() {
            tracing::info!(from = found, to = FORMAT, "upgrading the database");
            self.reviews().index()?;
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
}

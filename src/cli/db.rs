//! `knockwarden db`: what the database holds, and backups. All of it needs the service
//! stopped (sled holds a lock on the database while knockwarden runs; a clear error says so).

use std::path::{Path, PathBuf};

use super::ConfigArg;
use crate::{
    config::Config,
    storage::{Store, StoreError},
};

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Each tree's entries and bytes, so an admin can see what grows.
    Stats {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy the database into DIR (which must not exist), flushed and consistent.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        dir: PathBuf,
    },
    /// Put a backup made by `db backup` in place of the database (which must not exist:
    /// move the old one away first).
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        dir: PathBuf,
    },
}

pub fn run(cmd: &DbCommand) -> Result<(), String> {
    match cmd {
        DbCommand::Stats { config } => stats(&load(&config.config)?.database),
        DbCommand::Backup { config, dir } => backup(&load(&config.config)?.database, dir),
        DbCommand::Restore { config, dir } => restore(dir, &load(&config.config)?.database),
    }
}

fn load(file: &Path) -> Result<Config, String> {
    Config::load(file).map_err(|e| e.to_string())
}

fn open(path: &Path) -> Result<Store, String> {
    if !path.exists() {
        return Err(format!("{}: no database there", path.display()));
    }
    Store::open(path).map_err(|e| match e {
        StoreError::InUse => format!(
            "{}: the database is in use by a running knockwarden: stop it first (while it runs, GET /health shows its queues)",
            path.display()
        ),
        other => format!("{}: cannot open the database: {other}", path.display()),
    })
}

fn stats(path: &Path) -> Result<(), String> {
    let store = open(path)?;
    let stats = store.tree_stats().map_err(|e| e.to_string())?;
    println!("{:<18} {:>10} {:>14}", "tree", "entries", "bytes");
    let (mut entries, mut bytes) = (0, 0);
    for s in &stats {
        println!("{:<18} {:>10} {:>14}", s.name, s.entries, s.bytes);
        entries += s.entries;
        bytes += s.bytes;
    }
    println!("{:<18} {:>10} {:>14}", "total", entries, bytes);
    let on_disk = dir_size(path).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("on disk: {on_disk} bytes in {}", path.display());
    Ok(())
}

fn backup(db: &Path, to: &Path) -> Result<(), String> {
    if to.exists() {
        return Err(format!("{}: already exists; give a new directory", to.display()));
    }
    // Opening takes the lock (the service is not running) and flushing leaves it consistent.
    let store = open(db)?;
    store.flush_blocking().map_err(|e| e.to_string())?;
    copy_dir(db, to).map_err(|e| format!("cannot copy {} to {}: {e}", db.display(), to.display()))?;
    drop(store);
    // The copy must open.
    Store::open(to).map_err(|e| format!("{}: the copy does not open: {e}", to.display()))?;
    println!("backed up {} to {}", db.display(), to.display());
    Ok(())
}

/// Copies the backup beside the database's place, makes the copy durable, checks that the
/// copy opens, and only then moves it into place. The backup itself is only read: it may be
/// on read-only media, and it stays as it was.
fn restore(from: &Path, db: &Path) -> Result<(), String> {
    if db.exists() {
        return Err(format!("{}: a database is there; move it away first (knockwarden must be stopped)", db.display()));
    }
    if !from.is_dir() {
        return Err(format!("{}: no backup there", from.display()));
    }
    let mut staging = db.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| format!("{}: cannot remove: {e}", staging.display()))?;
    }
    copy_dir(from, &staging).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), staging.display()))?;
    if let Err(e) = Store::open(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!("{}: not a usable backup: {e}", from.display()));
    }
    std::fs::rename(&staging, db).map_err(|e| format!("cannot move {} to {}: {e}", staging.display(), db.display()))?;
    if let Some(parent) = db.parent() {
        sync_dir(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    println!("restored {} from {}", db.display(), from.display());
    Ok(())
}

/// Copies a directory tree, each file and directory made durable (fsync) before it returns.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    sync_dir(to)
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        n += if entry.file_type()?.is_dir() { dir_size(&entry.path())? } else { entry.metadata()?.len() };
    }
    Ok(n)
}

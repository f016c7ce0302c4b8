//! The live policy set: policy files on disk, their versions in sled, reloads and rollbacks.
//!
//! Start-up and every reload read all `*.yaml` files of the policy directory. A valid set that
//! differs from the active one becomes a new version (stored with its source text) and is
//! activated at once; an invalid set is refused whole and the running version stays active.
//! A watcher reloads the directory when files change, debounced so that an editor's partial
//! writes do not cause a failed load.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use crate::{
    policy::{PolicySet, Problem, Source, content_hash, format_problems},
    storage::{Store, StoreError},
};

/// How long the directory must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(400);

/// The active policies and their version number.
#[derive(Debug)]
pub struct Active {
    pub version: u64,
    pub set: PolicySet,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The files are those of the active version.
    Unchanged { version: u64 },
    /// A new version is active.
    Activated { version: u64 },
    /// The files have problems; the active version stays.
    Refused { problems: Vec<Problem>, active: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{dir}: cannot read the policy directory: {message}")]
    ReadDir { dir: String, message: String },
    #[error("the policy files have problems and no earlier version is stored:\n{}", format_problems(.0))]
    Invalid(Vec<Problem>),
    #[error("policy version {0} does not exist (it may be older than the last 50)")]
    NoSuchVersion(u64),
    #[error("policy version {version} no longer loads:\n{}", format_problems(.problems))]
    Stale { version: u64, problems: Vec<Problem> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the `*.yaml` and `*.yml` files of a directory, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, PolicyError> {
    let err = |e: std::io::Error| PolicyError::ReadDir { dir: dir.display().to_string(), message: e.to_string() };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(err)?;
            Ok(Source { path: p.display().to_string(), text })
        })
        .collect()
}

/// Reads and checks files given by path (for `policy check`).
pub fn read_files(paths: &[PathBuf]) -> Result<Vec<Source>, PolicyError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(read_dir(p)?);
        } else {
            let text = std::fs::read_to_string(p)
                .map_err(|e| PolicyError::ReadDir { dir: p.display().to_string(), message: e.to_string() })?;
            out.push(Source { path: p.display().to_string(), text });
        }
    }
    Ok(out)
}

/// The active set, shared by the pipeline, the watcher and the control room.
pub struct LivePolicies {
    dir: PathBuf,
    store: Store,
    active: RwLock<Arc<Active>>,
    /// Serializes reloads and rollbacks.
    change: std::sync::Mutex<()>,
}

impl std::fmt::Debug for LivePolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicies").field("dir", &self.dir).field("version", &self.current().version).finish()
    }
}

impl LivePolicies {
    /// Loads the directory at start-up. An invalid directory falls back to the stored active
    /// version (logged); with no stored version, start-up fails with the problems.
    pub fn start(dir: &Path, store: Store) -> Result<Self, PolicyError> {
        let stored = match store.policies().active()? {
            Some(n) => store.policies().get(n)?,
            None => None,
        };
        // Each set is compiled once at most: the files, unless they are the stored version
        // (then that is compiled), and the stored version only when the files are refused.
        let sources = all_sources(dir, &store);
        let active = match (sources, stored) {
            (Ok(sources), Some(v)) if v.hash == content_hash(&sources) => match PolicySet::load(&v.sources) {
                Ok(set) => Active { version: v.number, set: set.with_version(v.number) },
                Err(problems) => return Err(PolicyError::Invalid(problems)),
            },
            (sources, stored) => {
                let files = sources.and_then(|sources| {
                    PolicySet::load(&sources).map(|set| (sources, set)).map_err(PolicyError::Invalid)
                });
                match files {
                    Ok((sources, set)) => {
                        let v = store.policies().add(sources, set.hash().to_owned(), "files")?;
                        store.policies().set_active(v.number)?;
                        Active { version: v.number, set: set.with_version(v.number) }
                    }
                    Err(e) => match stored.and_then(|v| PolicySet::load(&v.sources).ok().map(|set| (v.number, set))) {
                        Some((n, set)) => {
                            tracing::error!(error = %e, version = n, "policy files refused at start; keeping the stored version");
                            Active { version: n, set: set.with_version(n) }
                        }
                        None => return Err(e),
                    },
                }
            }
        };
        tracing::info!(version = active.version, policies = active.set.policies().len(), "policies active");
        Ok(Self { dir: dir.to_owned(), store, active: RwLock::new(Arc::new(active)), change: Default::default() })
    }

    /// The active set.
    pub fn current(&self) -> Arc<Active> {
        self.active.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn activate(&self, version: u64, set: PolicySet) -> Result<(), StoreError> {
        self.store.policies().set_active(version)?;
        *self.active.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Active { version, set: set.with_version(version) });
        Ok(())
    }

    /// Reads the directory again and activates it if it is valid and different.
    pub fn reload(&self) -> Result<Reload, PolicyError> {
        let _guard = self.change.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current();
        let sources = all_sources(&self.dir, &self.store)?;
        // The files the active version was made of need no compiling to know that.
        if content_hash(&sources) == current.set.hash() {
            return Ok(Reload::Unchanged { version: current.version });
        }
        match PolicySet::load(&sources) {
            Err(problems) => Ok(Reload::Refused { problems, active: current.version }),
            Ok(set) if set.hash() == current.set.hash() => Ok(Reload::Unchanged { version: current.version }),
            Ok(set) => {
                let v = self.store.policies().add(sources, set.hash().to_owned(), "files")?;
                self.activate(v.number, set)?;
                Ok(Reload::Activated { version: v.number })
            }
        }
    }

    /// Makes an earlier version active again (as a new version, so history reads forward).
    pub fn rollback(&self, number: u64) -> Result<u64, PolicyError> {
        let _guard = self.change.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.store.policies().get(number)?.ok_or(PolicyError::NoSuchVersion(number))?;
        let set = PolicySet::load(&old.sources).map_err(|problems| PolicyError::Stale { version: number, problems })?;
        // The control room's policies go back to what they were; files stay as they are on
        // disk (the next edit of a file reloads them).
        let room: Vec<(String, String)> = old
            .sources
            .iter()
            .filter_map(|s| room_policy_name(&s.path).map(|n| (n.to_owned(), s.text.clone())))
            .collect();
        self.store.policies().replace_set_in_room(&room)?;
        let v = self.store.policies().add(old.sources, set.hash().to_owned(), &format!("rollback to {number}"))?;
        self.activate(v.number, set)?;
        Ok(v.number)
    }

    /// Adds or replaces a policy set from the control room. It is checked together with every
    /// other policy, exactly like a file; a name a policy file uses is refused.
    pub fn set_room_policy(&self, name: &str, text: &str, by: &str) -> Result<SetOutcome, PolicyError> {
        let _guard = self.change.lock().unwrap_or_else(|p| p.into_inner());
        if !is_valid_name(name) {
            return Ok(SetOutcome::BadName);
        }
        let files = read_dir(&self.dir)?;
        if let Some(file) = files.iter().find(|f| f.policy_name() == name) {
            return Ok(SetOutcome::FileOwned { file: file.path.clone() });
        }
        let mut room = self.store.policies().set_in_room()?;
        room.retain(|(n, _)| n != name);
        room.push((name.to_owned(), text.to_owned()));
        room.sort();
        let sources: Vec<Source> = files.into_iter().chain(room.iter().map(|(n, t)| room_source(n, t))).collect();
        let set = match PolicySet::load(&sources) {
            Ok(set) => set,
            Err(problems) => return Ok(SetOutcome::Refused { problems }),
        };
        match set.policy(name) {
            Some(p) if room_policy_name(&p.file) == Some(name) => {}
            _ => return Ok(SetOutcome::NameMismatch),
        }
        let current = self.current();
        if set.hash() == current.set.hash() {
            return Ok(SetOutcome::Unchanged { version: current.version });
        }
        self.store.policies().replace_set_in_room(&room)?;
        let v = self.store.policies().add(sources, set.hash().to_owned(), &format!("{name} set by {by}"))?;
        self.activate(v.number, set)?;
        Ok(SetOutcome::Activated { version: v.number })
    }
}

/// What `!knock policy set` did.
#[derive(Debug)]
pub enum SetOutcome {
    Activated {
        version: u64,
    },
    Unchanged {
        version: u64,
    },
    /// The policies (with this one) have problems; nothing changed.
    Refused {
        problems: Vec<Problem>,
    },
    /// A policy file already defines a policy of this name.
    FileOwned {
        file: String,
    },
    /// The text names the policy differently (`name:`).
    NameMismatch,
    /// Not a usable name.
    BadName,
}

/// The folder name shown for policies set from the control room.
pub const ROOM_POLICY_DIR: &str = "control-room";

/// Whether a name can name a policy set from the room: letters, digits, `-` and `_`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The source of a policy set from the control room.
pub fn room_source(name: &str, text: &str) -> Source {
    Source { path: format!("{ROOM_POLICY_DIR}/{name}.yaml"), text: text.to_owned() }
}

/// The policy name of a source set from the control room, if it is one.
pub fn room_policy_name(path: &str) -> Option<&str> {
    path.strip_prefix(ROOM_POLICY_DIR)?.strip_prefix('/')?.strip_suffix(".yaml")
}

/// The policy files and the policies set from the control room, as one list of sources.
pub fn all_sources(dir: &Path, store: &Store) -> Result<Vec<Source>, PolicyError> {
    let mut sources = read_dir(dir)?;
    sources.extend(store.policies().set_in_room()?.iter().map(|(n, t)| room_source(n, t)));
    Ok(sources)
}

/// A running directory watcher; watching stops when it is dropped.
pub type Watcher = notify_debouncer_full::Debouncer<
    notify_debouncer_full::notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Whether a file-system event is an edit of a policy file. Opening and reading files (which
/// a reload does) and metadata changes are not, or every reload would trigger the next.
fn is_policy_edit(event: &notify_debouncer_full::notify::Event) -> bool {
    use notify_debouncer_full::notify::{EventKind, event::ModifyKind};
    let edit = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any | ModifyKind::Other)
    );
    edit && event.paths.iter().any(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
}

/// Watches the policy directory and reloads on edits (debounced); `on_reload` hears every
/// outcome.
pub fn watch(
    live: Arc<LivePolicies>,
    on_reload: impl Fn(Result<Reload, PolicyError>) + Send + 'static,
) -> Result<Watcher, String> {
    use notify_debouncer_full::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
    let dir = live.dir().to_owned();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            if events.iter().any(|e| is_policy_edit(&e.event)) {
                on_reload(live.reload());
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "policy directory watcher error");
            }
        }
    })
    .map_err(|e| format!("cannot watch the policy directory: {e}"))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("{}: cannot watch the policy directory: {e}", dir.display()))?;
    Ok(debouncer)
}

/// A log line (and control-room text) for a reload outcome.
pub fn describe(outcome: &Result<Reload, PolicyError>) -> String {
    match outcome {
        Ok(Reload::Unchanged { version }) => format!("policies unchanged (version {version})"),
        Ok(Reload::Activated { version }) => format!("policy version {version} is active"),
        Ok(Reload::Refused { problems, active }) => {
            format!("policy files refused; version {active} stays active:\n{}", format_problems(problems))
        }
        Err(e) => format!("policy reload failed: {e}"),
    }
}

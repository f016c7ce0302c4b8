//! The service's context: what every part of a running knockwarden shares (the store, the
//! homeserver, the config, the policies, the ban lists, the wake-ups, the in-memory state that
//! `/health` and `/ready` read), and the helpers the long-running tasks use to wait.
//!
//! It sits above the parts it holds (storage, policies, lists, metrics, readiness) and below
//! the parts that use it (the pipeline, the runner's actions, the control room, the HTTP layer).
//! One import runs back up: the intake's memory ([`crate::pipeline::intake::memory`]), which
//! the intake and the worker share through this context; that file imports only storage.

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedUserId};
use tokio::sync::{Notify, watch};

use crate::{config::Config, homeserver::Homeserver, live_policies::LivePolicies, storage::Store, supervise::Tasks};

/// What the pipeline's parts share.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    pub homeserver: Arc<dyn Homeserver>,
    pub config: Arc<Config>,
    pub bot: OwnedUserId,
    /// The active policies.
    pub policies: Arc<LivePolicies>,
    /// The ban lists followed.
    pub lists: Arc<crate::lists::Lists>,
    /// Wakes the worker when the inbox has something.
    pub inbox_ready: Arc<Notify>,
    /// Wakes the runner when the outbox has something.
    pub outbox_ready: Arc<Notify>,
    /// Which long-running tasks are alive (for `/health`).
    pub tasks: Arc<Tasks>,
    /// What `/metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Becomes true when the service is stopping.
    pub stopping: watch::Receiver<bool>,
    /// When this process started (ms since the epoch): actions queued earlier, or retried,
    /// are checked against the homeserver before they are carried out.
    pub started_ms: u64,
    /// How often what waiting knocks may wait for (aliases looked up, ban lists read) has
    /// changed: see [`Shared::inputs_changed`].
    pub inputs: Arc<std::sync::atomic::AtomicU64>,
    /// Who was told lately that they are not a moderator.
    pub told: Arc<Told>,
    /// What `/ready` reports: the control room joined, the homeserver reaching knockwarden.
    pub readiness: Arc<crate::readiness::Readiness>,
    /// What the homeserver says of local knockers' accounts (`account:` conditions).
    pub accounts: Arc<crate::accounts::Accounts>,
    /// What the intake remembers between transactions (the one thing here from a floor
    /// above: the intake's own memory, which the worker tells of records handled).
    pub intake: Arc<crate::pipeline::intake::memory::Memory>,
}

impl Shared {
    /// The control room's ID: from the config, or (for an alias) as resolved when joined.
    pub fn control_room_id(&self) -> Option<OwnedRoomId> {
        match ruma::RoomId::parse(self.config.control_room.as_str()) {
            Ok(id) => Some(id),
            Err(_) => self.store.get_meta(CONTROL_ROOM_KEY).ok().flatten().and_then(|s| OwnedRoomId::try_from(s).ok()),
        }
    }
}

impl Shared {
    /// Something a knock may wait for is known now (an alias was looked up, a ban list read or
    /// found unreadable): the worker tries the waiting knocks again.
    pub fn inputs_changed(&self) {
        self.inputs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inbox_ready.notify_one();
    }

    /// Whether decisions are only reported: the config's `dry_run`, the policy's, or the
    /// run-time switch kept in the store.
    pub fn dry_run(&self, policy_dry_run: bool) -> bool {
        self.config.dry_run || policy_dry_run || self.store.dry_run_switch().ok().flatten().unwrap_or(false)
    }
}

/// Meta key under which the resolved control room ID is kept.
pub const CONTROL_ROOM_KEY: &str = "control_room_id";

/// Waits until `notify` fires or the service stops; returns false when stopping.
pub(crate) async fn wait_for(notify: &Notify, stopping: &mut watch::Receiver<bool>) -> bool {
    if *stopping.borrow() {
        return false;
    }
    tokio::select! {
        _ = notify.notified() => !*stopping.borrow(),
        _ = stopping.changed() => false,
    }
}

/// Runs `pass` now and then every `every`, until the service stops (for the periodic jobs:
/// review expiry, retention).
pub(crate) async fn periodically(shared: &Shared, every: std::time::Duration, mut pass: impl FnMut()) {
    let mut stopping = shared.stopping.clone();
    loop {
        if *stopping.borrow() {
            return;
        }
        pass();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// How often one non-moderator is told they are not one: at most once per this long (their
/// commands and reactions do nothing either way; a flood of them costs one reply).
pub const TELL_AGAIN_AFTER_MS: u64 = 10 * 60 * 1000;

/// When each non-moderator was last told (in memory: a restart may tell them once more).
#[derive(Debug, Default)]
pub struct Told(parking_lot::Mutex<std::collections::HashMap<String, u64>>);

impl Told {
    /// Whether `sender` is to be told now (and, if so, that they were).
    pub fn tell(&self, sender: &str, now_ms: u64) -> bool {
        let mut told = self.0.lock();
        told.retain(|_, at| now_ms.saturating_sub(*at) < TELL_AGAIN_AFTER_MS);
        if told.contains_key(sender) {
            return false;
        }
        told.insert(sender.to_owned(), now_ms);
        true
    }
}

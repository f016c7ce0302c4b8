//! Rooms in lockdown: while one lasts, knocks on the room that would be accepted are held for
//! review. Started by a moderator (`!knock lockdown`) or by a policy rule with `lockdown:`;
//! kept across restarts; ended by `!knock lockdown off` or when its time is up (see
//! [`crate::lockdown`]).

use ruma::{OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T};

/// Who or what started a lockdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum LockdownCause {
    /// A moderator's `!knock lockdown`.
    Moderator { user_id: OwnedUserId },
    /// A policy rule with `lockdown:` matched a knock.
    Rule { policy: String, rule: String },
}

impl std::fmt::Display for LockdownCause {
    /// Who or what, as notices say it: `by @mod:example.org`, `by rule wave of policy lobby`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockdownCause::Moderator { user_id } => write!(f, "by {user_id}"),
            LockdownCause::Rule { policy, rule } => write!(f, "by rule {rule} of policy {policy}"),
        }
    }
}

/// One room's lockdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockdown {
    pub room_id: OwnedRoomId,
    pub since_ms: u64,
    /// When it ends.
    pub until_ms: u64,
    /// What started it (or last extended it).
    pub cause: LockdownCause,
}

impl Lockdown {
    /// Still in force at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.until_ms > now
    }
}

impl Store {
    /// The rooms in lockdown.
    pub fn lockdowns(&self) -> Lockdowns<'_> {
        Lockdowns { store: self }
    }
}

/// The rooms in lockdown, a narrow handle on the store ([`Store::lockdowns`]).
#[derive(Clone, Copy)]
pub struct Lockdowns<'s> {
    store: &'s Store,
}

impl Lockdowns<'_> {
    /// The op that starts (or replaces) a room's lockdown.
    pub fn put(lockdown: &Lockdown) -> Op {
        Op::put_json(T::Lockdowns, lockdown.room_id.as_str(), lockdown)
    }

    /// The op that ends a room's lockdown.
    pub fn del(room: &str) -> Op {
        Op::del(T::Lockdowns, room)
    }

    /// A room's lockdown record, in force or ended but not yet swept.
    pub fn get(&self, room: &str) -> Result<Option<Lockdown>, StoreError> {
        self.store.get_json(T::Lockdowns, room.as_bytes())
    }

    /// A room's lockdown, if in force at `now`.
    pub fn active(&self, room: &str, now: u64) -> Result<Option<Lockdown>, StoreError> {
        Ok(self.get(room)?.filter(|l| l.is_active(now)))
    }

    /// Every lockdown record, by room ID.
    pub fn all(&self) -> Result<Vec<Lockdown>, StoreError> {
        Ok(self.store.scan_json::<Lockdown>(T::Lockdowns, b"")?.into_iter().map(|(_, l)| l).collect())
    }
}

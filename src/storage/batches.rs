//! Bulk verdicts being carried out (`!knock deny from evil.example spam`): what the command
//! asked, and what came of each knock so far, so that one reply can sum it up once the last
//! knock is done.
//!
//! Each knock of a bulk verdict is its own [`super::Action::Act`] in its knocker's lane; the
//! batch is keyed by the command's event, written before the actions are queued (a command
//! run again after a crash writes the same batch afresh), and forgotten when its summary is
//! queued, in the same transaction as its last knock's outcome.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{Op, Resolution, Store, StoreError, T};
use crate::homeserver::MembershipChange;

/// A knock a bulk verdict named but did not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "skip", rename_all = "snake_case")]
pub enum Skip {
    /// No review item has this number.
    NoSuchItem { number: u64 },
    /// The review item is closed already.
    Closed { number: u64, how: Resolution },
    /// The review item is a knock on another room than the one the command names.
    OtherRoom { number: u64, room_id: OwnedRoomId },
    /// The user has no pending knock (in the room the command names, if it names one).
    NoPendingKnock { user_id: OwnedUserId },
    /// The user knocks on several rooms and the command names none.
    SeveralRooms { user_id: OwnedUserId, rooms: Vec<OwnedRoomId> },
    /// What the moderator wrote is not a user ID, and why.
    NotAUser { text: String, why: String },
}

/// What came of one knock of a bulk verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ItemResult {
    /// Carried out.
    Done,
    /// Not carried out: the knock had ended, or was decided already.
    NothingDone { why: Resolution },
    /// Refused or given up on; kept as failed action `number`.
    Failed { why: String, number: u64 },
}

/// One knock's outcome, as the summary names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    pub review: Option<u64>,
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub result: ItemResult,
}

/// A bulk verdict being carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The command (replies go to it).
    pub command: OwnedEventId,
    pub change: MembershipChange,
    /// How many knocks were queued.
    pub queued: usize,
    /// The knocks named but not acted on.
    pub skipped: Vec<Skip>,
    /// The knocks done with so far.
    pub results: Vec<BatchItem>,
}

impl Batch {
    /// Every queued knock is done with.
    pub fn is_complete(&self) -> bool {
        self.results.len() >= self.queued
    }
}

impl Store {
    /// The bulk verdicts being carried out.
    pub fn batches(&self) -> Batches<'_> {
        Batches { store: self }
    }
}

/// The bulk verdicts being carried out, a narrow handle on the store ([`Store::batches`]).
#[derive(Clone, Copy)]
pub struct Batches<'s> {
    store: &'s Store,
}

impl Batches<'_> {
    /// Writes a batch (durably: its knocks are queued after this returns).
    pub fn start(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.commit(&[Op::put_json(T::Batches, batch.command.as_bytes().to_vec(), batch)])
    }

    pub fn get(&self, command: &str) -> Result<Option<Batch>, StoreError> {
        self.store.get_json(T::Batches, command.as_bytes())
    }

    /// The op that adds one knock's outcome to its batch, and the batch as it then is; when
    /// that completes it, the op forgets the batch instead (the caller queues the summary in
    /// the same transaction). `None`: no such batch (it completed before, say, and this is a
    /// failed knock retried by hand). For callers inside [`Store::serialized`].
    pub fn record_op(&self, command: &str, item: BatchItem) -> Result<Option<(Batch, Op)>, StoreError> {
        let Some(mut batch) = self.get(command)? else { return Ok(None) };
        batch.results.push(item);
        let op = if batch.is_complete() {
            Op::del(T::Batches, command.as_bytes().to_vec())
        } else {
            Op::put_json(T::Batches, command.as_bytes().to_vec(), &batch)
        };
        Ok(Some((batch, op)))
    }
}

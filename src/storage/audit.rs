//! The audit log (every decision and what came of it) and the review items.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{
    Op, Store, StoreError, T, pair_key,
    resolution::{Resolution, lenient, lenient_opt},
};
use crate::policy::Action as Verdict;

/// What came of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Queued, not carried out yet (or waiting for a moderator, for reviews).
    Pending,
    /// Done by knockwarden.
    Done,
    /// Dry run: nothing was done.
    DryRun,
    /// Nothing to do (`ignore`), or no policy governs the room.
    Nothing,
    /// Not carried out, and why (the knocker withdrew, a person acted first, …).
    Cancelled(#[serde(deserialize_with = "lenient")] Resolution),
    /// The homeserver refused, or the action was given up on, and why (an error message).
    Failed(String),
    /// Resolved by a person, or by what became of the knock: approved by a moderator, withdrawn, …
    Resolved(#[serde(deserialize_with = "lenient")] Resolution),
}

/// One decision on one knock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub time_ms: u64,
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    /// The knock event.
    pub event_id: OwnedEventId,
    /// The knock's reason and display name (clipped to 1,000 characters).
    pub reason: Option<String>,
    pub displayname: Option<String>,
    pub policy: String,
    pub policy_version: u64,
    /// The deciding rule, or `None` for the policy's default.
    pub rule: Option<String>,
    pub action: Verdict,
    pub explanation: String,
    pub dry_run: bool,
    /// Held for review, not accepted, because the room was in lockdown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lockdown: bool,
    /// The review item, for `review` decisions.
    pub review: Option<u64>,
    pub outcome: Outcome,
    /// When the outcome was settled.
    pub settled_ms: Option<u64>,
}

/// A knock waiting for the moderators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The short number moderators use (`#12`).
    pub number: u64,
    pub audit_id: u64,
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub event_id: OwnedEventId,
    pub reason: Option<String>,
    pub created_ms: u64,
    /// The control-room notice announcing it, once posted.
    pub notice_event: Option<OwnedEventId>,
    /// `None` while open; else how it ended.
    #[serde(default, deserialize_with = "lenient_opt")]
    pub closed: Option<Resolution>,
    /// When it was closed.
    #[serde(default)]
    pub closed_ms: Option<u64>,
}

/// Counter of the review numbers given out.
const REVIEW_NUMBER: &str = "review_number";

impl Store {
    /// The audit log.
    pub fn audit(&self) -> Audit<'_> {
        Audit { store: self }
    }

    /// The review items.
    pub fn reviews(&self) -> Reviews<'_> {
        Reviews { store: self }
    }
}

/// The audit log, a narrow handle on the store ([`Store::audit`]).
#[derive(Clone, Copy)]
pub struct Audit<'s> {
    store: &'s Store,
}

impl Audit<'_> {
    /// The op that writes an entry.
    pub fn put(entry: &AuditEntry) -> Op {
        Op::put_json(T::Audit, entry.id.to_be_bytes(), entry)
    }

    pub fn get(&self, id: u64) -> Result<Option<AuditEntry>, StoreError> {
        self.store.get_json(T::Audit, &id.to_be_bytes())
    }

    /// Every audit entry, oldest first.
    pub fn all(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.store.scan_json::<AuditEntry>(T::Audit, b"")?.into_iter().map(|(_, e)| e).collect())
    }

    /// Sets an entry's outcome if `when` its current one (read-modify-write; serialized with
    /// other outcome updates).
    pub fn settle_if(
        &self,
        id: u64,
        outcome: Outcome,
        now_ms: u64,
        when: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Option<AuditEntry>, StoreError> {
        self.store.serialized(|| {
            let Some((e, op)) = self.settle_op(id, outcome, now_ms, when)? else { return Ok(None) };
            self.store.commit(&[op])?;
            Ok(Some(e))
        })
    }

    /// The op that sets an entry's outcome if `when` its current one, and the entry as
    /// settled (for callers inside [`Store::serialized`], which commit it with their other
    /// writes).
    pub fn settle_op(
        &self,
        id: u64,
        outcome: Outcome,
        now_ms: u64,
        when: impl FnOnce(&Outcome) -> bool,
    ) -> Result<Option<(AuditEntry, Op)>, StoreError> {
        let Some(mut e) = self.get(id)? else { return Ok(None) };
        if !when(&e.outcome) {
            return Ok(None);
        }
        e.outcome = outcome;
        e.settled_ms = Some(now_ms);
        let op = Audit::put(&e);
        Ok(Some((e, op)))
    }

    /// The last `n` audit entries, newest first.
    pub fn last(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::with_capacity(n);
        for kv in self.store.tree(T::Audit).iter().rev().take(n) {
            let (_, v) = kv?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt { tree: "audit", message: e.to_string() })?,
            );
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.store.len(T::Audit)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The review items, a narrow handle on the store ([`Store::reviews`]).
#[derive(Clone, Copy)]
pub struct Reviews<'s> {
    store: &'s Store,
}

impl Reviews<'_> {
    /// The next review number (1, 2, …) and the op that reserves it. Only the worker opens
    /// review items, one event at a time, so the number cannot be taken twice; it commits the
    /// op with the item.
    pub fn reserve_number(&self) -> Result<(u64, Op), StoreError> {
        Ok((self.store.counter(REVIEW_NUMBER)? + 1, Op::Add { counter: REVIEW_NUMBER.into(), by: 1 }))
    }

    /// The ops that write a review item and its indexes (the open items by knocker, the
    /// items by notice event).
    pub fn put(item: &ReviewItem) -> Vec<Op> {
        let number = item.number.to_be_bytes().to_vec();
        let mut ops = vec![Op::put_json(T::Reviews, item.number.to_be_bytes(), item)];
        let by_knocker = pair_key(&item.room_id, &item.user_id);
        ops.push(match item.closed {
            None => Op::Put { tree: T::OpenReviews, key: by_knocker, value: number.clone() },
            Some(_) => Op::del(T::OpenReviews, by_knocker),
        });
        if let Some(notice) = &item.notice_event {
            ops.push(Op::Put { tree: T::ReviewNotices, key: notice.as_bytes().to_vec(), value: number });
        }
        ops
    }

    /// Ops that forget a review item and its indexes.
    pub(super) fn del(item: &ReviewItem) -> Vec<Op> {
        let mut ops = vec![Op::del(T::Reviews, item.number.to_be_bytes())];
        if item.closed.is_none() {
            ops.push(Op::del(T::OpenReviews, pair_key(&item.room_id, &item.user_id)));
        }
        if let Some(notice) = &item.notice_event {
            ops.push(Op::del(T::ReviewNotices, notice.as_bytes().to_vec()));
        }
        ops
    }

    /// Builds the review indexes of a database written before they existed. Runs once per
    /// database (see [`Store::upgrade`]).
    pub(super) fn index(&self) -> Result<(), StoreError> {
        let ops: Vec<Op> = self.all()?.iter().flat_map(Reviews::put).collect();
        if !ops.is_empty() {
            tracing::info!(reviews = ops.len(), "indexing the review items");
        }
        self.store.commit(&ops)
    }

    /// Closes a review item (if still open) with how it ended, committing `with` (what the
    /// closing leads to: a notice edit, a kick) in the same transaction. Returns whether this
    /// call closed it: of several racing closers (a verdict, expiry, the knocker withdrawing)
    /// exactly one wins, and only its `with` is written.
    pub fn close(&self, number: u64, how: Resolution, with: &[Op]) -> Result<bool, StoreError> {
        self.store.serialized(|| {
            let Some(mut ops) = self.close_ops(number, how)? else { return Ok(false) };
            ops.extend_from_slice(with);
            self.store.commit(&ops)?;
            Ok(true)
        })
    }

    /// The ops that close a review item, if it is still open (for callers inside
    /// [`Store::serialized`]).
    pub fn close_ops(&self, number: u64, how: Resolution) -> Result<Option<Vec<Op>>, StoreError> {
        let Some(mut item) = self.get(number)? else { return Ok(None) };
        if item.closed.is_some() {
            return Ok(None);
        }
        item.closed = Some(how);
        item.closed_ms = Some(super::now_ms());
        Ok(Some(Reviews::put(&item)))
    }

    /// Every review item, oldest first.
    pub fn all(&self) -> Result<Vec<ReviewItem>, StoreError> {
        Ok(self.store.scan_json::<ReviewItem>(T::Reviews, b"")?.into_iter().map(|(_, r)| r).collect())
    }

    /// The review item a control-room notice announced (one index lookup).
    pub fn by_notice(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError> {
        match self.store.get_raw(T::ReviewNotices, event_id.as_bytes())? {
            Some(n) => self.get(super::decode_u64(&n)),
            None => Ok(None),
        }
    }

    pub fn get(&self, number: u64) -> Result<Option<ReviewItem>, StoreError> {
        self.store.get_json(T::Reviews, &number.to_be_bytes())
    }

    /// Open review items, oldest first (read through the index of open items).
    pub fn open(&self) -> Result<Vec<ReviewItem>, StoreError> {
        let mut numbers = Vec::new();
        for v in self.store.tree(T::OpenReviews).iter().values() {
            numbers.push(super::decode_u64(&v?));
        }
        numbers.sort_unstable();
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            out.extend(self.get(n)?.filter(|r| r.closed.is_none()));
        }
        Ok(out)
    }

    /// The open review item for a knocker in a room, if any (one index lookup).
    pub fn open_for(&self, room: impl AsRef<str>, user: impl AsRef<str>) -> Result<Option<ReviewItem>, StoreError> {
        match self.store.get_raw(T::OpenReviews, &pair_key(room.as_ref(), user.as_ref()))? {
            Some(n) => Ok(self.get(super::decode_u64(&n))?.filter(|r| r.closed.is_none())),
            None => Ok(None),
        }
    }
}

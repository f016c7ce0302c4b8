//! Pruning: what knockwarden keeps only for a while.
//!
//! Seen event IDs and transaction hashes (kept for `retention.events`, to recognise what the
//! homeserver sends again) are indexed by the time they were taken in ([`T::SeenTimes`],
//! [`T::TxnTimes`]), so pruning them is a range scan from the oldest. Audit entries and review
//! items are keyed by increasing numbers, so their oldest come first too. Nothing that is
//! still pending (a decision not carried out, an open review) is pruned.

use super::{AuditEntry, BotMembership, Members, Op, Outcome, ReviewItem, Reviews, Store, StoreError, T, split_pair};

/// Deletes are committed in batches of this many ops.
const BATCH: usize = 1_000;

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub seen: usize,
    pub txns: usize,
    pub audit: usize,
    pub reviews: usize,
    pub members: usize,
    pub knock_times: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.seen + self.txns + self.audit + self.reviews + self.members + self.knock_times
    }
}

/// Key of a time index entry: `time (u64 BE) \0 id`.
pub(super) fn time_key(ms: u64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.extend_from_slice(&ms.to_be_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn time_of(key: &[u8]) -> u64 {
    key.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

fn id_of(key: &[u8]) -> &[u8] {
    key.get(9..).unwrap_or_default()
}

impl Store {
    /// Removes seen event IDs and transaction hashes taken in before `events_before_ms`,
    /// settled audit entries and closed review items older than `audit_before_ms`, knock times
    /// before `knock_times_before_ms`, and what the bot knew of the members of rooms it left.
    pub fn prune(
        &self,
        events_before_ms: u64,
        audit_before_ms: u64,
        knock_times_before_ms: u64,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned { seen: self.prune_seen(events_before_ms)?, ..Default::default() };
        pruned.txns = self.prune_txns(events_before_ms)?;
        pruned.audit = self.prune_audit(audit_before_ms)?;
        pruned.reviews = self.prune_reviews(audit_before_ms)?;
        pruned.members = self.prune_members_of_left_rooms()?;
        pruned.knock_times = self.activity().prune(knock_times_before_ms)?;
        Ok(pruned)
    }

    /// Forgets the event IDs taken in before `before_ms`, but for the knocks still open (their
    /// decision pending or waiting for review, or not decided: left alone or waiting for an
    /// input): those are indexed again as of now, so that the same knock, sent again (a
    /// catch-up after a restart), is still recognised and not decided again. They go once the
    /// knock is settled.
    fn prune_seen(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut current = std::collections::HashSet::new();
        for k in self.knocks().in_room(None)? {
            let open = match k.audit_id {
                None => true,
                Some(id) => self.audit().get(id)?.is_some_and(|e| e.outcome == Outcome::Pending),
            };
            if open {
                current.insert(k.event_id.to_string());
            }
        }
        let now = super::now_ms();
        let mut kept = 0u64;
        let n = self.prune_time_index(T::SeenTimes, before_ms, |id, _, value| {
            // One key per inbox entry lists its event IDs; before that, one key per event.
            let ids: Vec<String> = if id.starts_with(b"#") {
                serde_json::from_slice(value)
                    .map_err(|e| StoreError::Corrupt { tree: "seen_times", message: e.to_string() })?
            } else {
                vec![String::from_utf8_lossy(id).into_owned()]
            };
            let (keep, forget): (Vec<String>, Vec<String>) = ids.into_iter().partition(|i| current.contains(i));
            let mut ops: Vec<Op> = forget.into_iter().map(|event_id| Op::del(T::Seen, event_id.into_bytes())).collect();
            if !keep.is_empty() {
                kept += 1;
                // A new key (never the one being removed).
                let again = format!("#kept{}", self.next_id()?);
                ops.push(Op::put_json(T::SeenTimes, time_key(now, &again), &keep));
            }
            Ok(ops)
        })?;
        // The ops returned count what went, and the re-indexing puts.
        Ok(n - kept as usize)
    }

    fn prune_txns(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.prune_time_index(T::TxnTimes, before_ms, |txn, at, _| {
            // A reused txnId has a newer entry: keep its hash until that one is old too.
            let stored = self.tree(T::Txns).get(txn)?;
            let stored_at = stored.as_deref().and_then(|v| v.get(32..40)).and_then(|t| t.try_into().ok());
            let newer = stored_at.is_some_and(|t| u64::from_be_bytes(t) > at);
            Ok((!newer).then(|| Op::del(T::Txns, txn.to_vec())).into_iter().collect())
        })
    }

    /// Walks a time index ([`T::SeenTimes`], [`T::TxnTimes`]) from its oldest entry up to
    /// `before_ms`, removing each entry and what `forget(id, time, value)` says goes with it;
    /// returns how many of those went.
    fn prune_time_index(
        &self,
        times: T,
        before_ms: u64,
        mut forget: impl FnMut(&[u8], u64, &[u8]) -> Result<Vec<Op>, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut ops = Vec::new();
        for kv in self.tree(times).range(..before_ms.to_be_bytes().to_vec()) {
            let (key, value) = kv?;
            let gone = forget(id_of(&key), time_of(&key), &value)?;
            n += gone.len();
            ops.extend(gone);
            ops.push(Op::del(times, key.to_vec()));
            self.commit_batch(&mut ops, false)?;
        }
        self.commit_batch(&mut ops, true)?;
        Ok(n)
    }

    fn prune_audit(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut ops = Vec::new();
        for kv in self.tree(T::Audit).iter() {
            let (key, value) = kv?;
            let e: AuditEntry = super::decode(T::Audit, &value)?;
            if e.time_ms >= before_ms {
                break;
            }
            if e.outcome != Outcome::Pending {
                ops.push(Op::del(T::Audit, key.to_vec()));
                n += 1;
                self.commit_batch(&mut ops, false)?;
            }
        }
        self.commit_batch(&mut ops, true)?;
        Ok(n)
    }

    fn prune_reviews(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut ops = Vec::new();
        for kv in self.tree(T::Reviews).iter().values() {
            let item: ReviewItem = super::decode(T::Reviews, &kv?)?;
            if item.created_ms >= before_ms {
                break;
            }
            if item.closed.is_some() && item.closed_ms.unwrap_or(0) < before_ms {
                ops.extend(Reviews::del(&item));
                n += 1;
                self.commit_batch(&mut ops, false)?;
            }
        }
        self.commit_batch(&mut ops, true)?;
        Ok(n)
    }

    fn prune_members_of_left_rooms(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut ops = Vec::new();
        for (room, m) in self.scan_json::<BotMembership>(T::BotRooms, b"")? {
            if m != BotMembership::Left {
                continue;
            }
            let room = String::from_utf8_lossy(&room).into_owned();
            for key in self.scan_keys(T::Members, &super::pair_key(&room, ""))? {
                if let Some((_, user)) = split_pair(&key) {
                    ops.extend(Members::set(&room, &user, false));
                    n += 1;
                    self.commit_batch(&mut ops, false)?;
                }
            }
        }
        self.commit_batch(&mut ops, true)?;
        Ok(n)
    }

    /// Gives seen event IDs and transaction hashes of a database written before they were
    /// indexed by time the time of this start, so that they are pruned in their turn. Runs
    /// once per database (see [`Store::upgrade`]).
    pub(super) fn index_times(&self) -> Result<(), StoreError> {
        let now = super::now_ms();
        for (tree, times) in [(T::Seen, T::SeenTimes), (T::Txns, T::TxnTimes)] {
            let mut ops = Vec::new();
            for key in self.tree(tree).iter().keys() {
                ops.push(Op::Put { tree: times, key: time_key(now, &String::from_utf8_lossy(&key?)), value: vec![] });
                self.commit_batch(&mut ops, false)?;
            }
            self.commit_batch(&mut ops, true)?;
        }
        Ok(())
    }

    /// Commits `ops` once there are [`BATCH`] of them, or (with `last`) whatever is left.
    fn commit_batch(&self, ops: &mut Vec<Op>, last: bool) -> Result<(), StoreError> {
        if ops.len() >= BATCH || (last && !ops.is_empty()) {
            self.commit(ops)?;
            ops.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::storage::{JournalLog, Knocks, Origin, ReviewItem, Reviews};

    fn review(number: u64, created_ms: u64, closed_ms: Option<u64>) -> ReviewItem {
        ReviewItem {
            number,
            audit_id: number,
            room_id: "!r:x".try_into().unwrap(),
            user_id: format!("@u{number}:x").try_into().unwrap(),
            event_id: format!("$k{number}").try_into().unwrap(),
            reason: None,
            created_ms,
            notice_event: Some(format!("$n{number}").try_into().unwrap()),
            closed: closed_ms.map(|_| crate::storage::Resolution::Text { text: "approved".into() }),
            closed_ms,
        }
    }

    /// What the worker writes when it takes in the events `ids` of a pushed transaction.
    fn taken_in(s: &Store, txn_id: &str, hash: [u8; 32], ids: &[&str]) {
        let record = crate::storage::JournalRecord {
            seq: 7,
            received_ms: super::super::now_ms(),
            origin: Origin::Push { txn_id: txn_id.into() },
            body_hash: Some(hex::encode(hash)),
            events: vec![],
            knockers: vec![],
            bot: vec![],
        };
        let mut ops = JournalLog::txn_ops(&record);
        for id in ids {
            ops.extend(s.journal().admit(id, record.seq).unwrap());
        }
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        ops.push(JournalLog::seen_times_op(record.received_ms, record.seq, 0, &ids));
        s.commit(&ops).unwrap();
    }

    #[test]
    fn old_records_go_and_pending_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        taken_in(&s, "1", [1; 32], &["$a", "$b"]);
        let now = super::super::now_ms();
        let mut ops = Vec::new();
        ops.extend(Reviews::put(&review(1, 10, Some(20))));
        ops.extend(Reviews::put(&review(2, 10, None)));
        ops.extend(Reviews::put(&review(3, now, Some(now))));
        s.commit(&ops).unwrap();
        // Nothing is old enough yet.
        assert_eq!(s.prune(0, 0, 0).unwrap().total(), 0);
        let p = s.prune(now + 1_000, 1_000, 0).unwrap();
        assert_eq!((p.seen, p.txns, p.reviews), (2, 1, 1));
        assert!(!s.journal().was_seen("$a").unwrap() && !s.journal().was_seen("$b").unwrap());
        assert!(!s.journal().txn_on_record("1", &[1; 32]).unwrap());
        assert!(s.reviews().get(1).unwrap().is_none());
        assert!(s.reviews().by_notice("$n1").unwrap().is_none());
        // The open item and the recent one stay, with their indexes.
        assert_eq!(s.reviews().open_for("!r:x", "@u2:x").unwrap().unwrap().number, 2);
        assert_eq!(s.reviews().by_notice("$n3").unwrap().unwrap().number, 3);
    }

    #[test]
    fn the_seen_id_of_a_knock_still_pending_is_kept_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        taken_in(&s, "1", [1; 32], &["$pending", "$other"]);
        let knock = crate::storage::KnockRecord {
            room_id: "!r:x".try_into().unwrap(),
            user_id: "@u:x".try_into().unwrap(),
            event_id: "$pending".try_into().unwrap(),
            reason: None,
            displayname: None,
            origin_server_ts: 0,
            audit_id: None,
        };
        s.commit(&Knocks::put(&knock)).unwrap();
        let later = super::super::now_ms() + 1_000;
        assert_eq!(s.prune(later, 0, 0).unwrap().seen, 1);
        assert!(s.journal().was_seen("$pending").unwrap(), "the pending knock would be taken for a new one");
        assert!(!s.journal().was_seen("$other").unwrap());
        // Kept, and indexed again: the next pass keeps it too while the knock is pending...
        assert_eq!(s.prune(later + 1_000, 0, 0).unwrap().seen, 0);
        assert!(s.journal().was_seen("$pending").unwrap());
        // ...and forgets it once the knock has ended.
        s.commit(&Knocks::del("!r:x", "@u:x")).unwrap();
        assert_eq!(s.prune(later + 2_000, 0, 0).unwrap().seen, 1);
        assert!(!s.journal().was_seen("$pending").unwrap());
    }

    #[test]
    fn a_reused_txn_id_keeps_its_newer_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.commit(&[
            Op::Put { tree: T::TxnTimes, key: time_key(5, "1"), value: vec![] },
            Op::Put { tree: T::TxnTimes, key: time_key(50, "1"), value: vec![] },
        ])
        .unwrap();
        taken_in(&s, "1", [2; 32], &["$a"]);
        // The entry of time 5 goes, the newer hash (written now) stays.
        s.prune(10, 0, 0).unwrap();
        assert!(s.journal().txn_on_record("1", &[2; 32]).unwrap());
    }
}

//! What the intake remembers between transactions, in memory: the knockers and events of the
//! journal's records the worker has not handled yet (so that a knocker's next events are
//! kept, and so that the intake waits while the backlog is full), and the transactions taken
//! in lately (so that a replay is a no-op).
//!
//! Rebuilt at start from the records the journal still holds
//! ([`crate::storage::JournalLog::take_unhandled`]); told of each record as it is appended
//! (before the worker can read it); let go of records as the worker reports them handled.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use crate::storage::UnhandledRecord;

/// Events the journal holds for the worker at most before the intake waits for it
/// ([`Memory::wait_for_room`]): about a second of the worker's work on the benchmark's machine
/// (docs/benchmarks-history.md). A wave of spam up to this size is taken in at the disk's speed;
/// beyond it, the homeserver waits for each 200 (it sends one transaction at a time and keeps
/// the rest), so the decisions keep up with what is acknowledged and the backlog never grows
/// past it.
pub const BACKLOG_EVENTS: usize = 10_000;

/// Transactions remembered for replay detection ([`Memory::is_replay`]). The homeserver
/// resends only the transaction in flight, and one not recognised is harmless (its events are
/// taken in once, by event ID): a few are enough.
const RECENT_TXNS: usize = 64;

/// The intake's memory (see the module's doc).
#[derive(Default)]
pub struct Memory {
    pending: Mutex<Pending>,
    /// Woken when the worker has handled records (see [`Memory::wait_for_room`]).
    room: tokio::sync::Notify,
    /// The transactions last taken in: txnId and body hash.
    recent: Mutex<VecDeque<(String, [u8; 32])>>,
}

/// The records not handled yet.
#[derive(Default)]
struct Pending {
    /// Each record's seq, number of events and knockers.
    by_seq: VecDeque<(u64, usize, Vec<String>)>,
    users: HashMap<String, u32>,
    events: usize,
}

impl Memory {
    /// The memory of the records the journal holds, not handled yet, oldest first.
    pub fn recall(unhandled: impl IntoIterator<Item = UnhandledRecord>) -> Memory {
        let memory = Memory::default();
        for r in unhandled {
            memory.appended(r.seq, r.events, r.knockers);
            if let Some((txn_id, hash)) = r.txn {
                memory.remember_txn(&txn_id, hash);
            }
        }
        memory
    }

    /// A record was appended (called before the worker can read it).
    pub fn appended(&self, seq: u64, events: usize, knockers: Vec<String>) {
        let mut p = self.pending.lock();
        for u in &knockers {
            *p.users.entry(u.clone()).or_default() += 1;
        }
        p.events += events;
        p.by_seq.push_back((seq, events, knockers));
    }

    /// The worker has handled the records below `seq`.
    pub fn handled_below(&self, seq: u64) {
        let mut p = self.pending.lock();
        while p.by_seq.front().is_some_and(|(s, _, _)| *s < seq) {
            let (_, events, users) = p.by_seq.pop_front().expect("just looked");
            p.events -= events;
            for u in users {
                if let std::collections::hash_map::Entry::Occupied(mut n) = p.users.entry(u) {
                    *n.get_mut() -= 1;
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
        }
        drop(p);
        self.room.notify_waiters();
    }

    /// Whether `user` knocks in a record not handled yet.
    pub fn is_knocker(&self, user: &str) -> bool {
        self.pending.lock().users.contains_key(user)
    }

    /// Events in records not handled yet.
    pub fn pending_events(&self) -> usize {
        self.pending.lock().events
    }

    /// Returns once fewer than [`BACKLOG_EVENTS`] events wait for the worker; whether it had
    /// to wait for that.
    pub async fn wait_for_room(&self) -> bool {
        let mut waited = false;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the look, so a wake-up in between is not missed.
            room.as_mut().enable();
            if self.pending.lock().events < BACKLOG_EVENTS {
                return waited;
            }
            room.await;
            waited = true;
        }
    }

    /// Whether this exact transaction was taken in lately.
    pub fn is_replay(&self, txn_id: &str, hash: &[u8; 32]) -> bool {
        self.recent.lock().iter().any(|(t, h)| t == txn_id && h == hash)
    }

    /// Remembers a transaction taken in, for [`Memory::is_replay`].
    pub fn remember_txn(&self, txn_id: &str, hash: [u8; 32]) {
        let mut recent = self.recent.lock();
        recent.retain(|(t, _)| t != txn_id);
        if recent.len() == RECENT_TXNS {
            recent.pop_front();
        }
        recent.push_back((txn_id.to_owned(), hash));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knockers_are_known_until_their_records_are_handled() {
        let m = Memory::recall([UnhandledRecord { seq: 3, events: 2, knockers: vec!["@a:x".into()], txn: None }]);
        m.appended(4, 1, vec!["@a:x".into(), "@b:x".into()]);
        assert!(m.is_knocker("@a:x") && m.is_knocker("@b:x"));
        assert_eq!(m.pending_events(), 3);
        m.handled_below(4);
        assert!(m.is_knocker("@a:x"), "still knocking in record 4");
        m.handled_below(5);
        assert!(!m.is_knocker("@a:x") && !m.is_knocker("@b:x"));
        assert_eq!(m.pending_events(), 0);
    }

    #[test]
    fn replays_are_recognised_by_txn_id_and_body() {
        let m = Memory::recall([UnhandledRecord {
            seq: 0,
            events: 1,
            knockers: vec![],
            txn: Some(("t1".into(), [1; 32])),
        }]);
        assert!(m.is_replay("t1", &[1; 32]));
        assert!(!m.is_replay("t1", &[2; 32]), "a reused txnId with another body is not a replay");
        for i in 0..RECENT_TXNS {
            m.remember_txn(&format!("n{i}"), [0; 32]);
        }
        assert!(!m.is_replay("t1", &[1; 32]), "only the last few are remembered");
    }
}

//! The runner's schedule: which queued actions may start now (pure: no I/O, no clock).
//!
//! Each action belongs to a [`Subject`]; each subject is a lane, run in order, one action at
//! a time. A lane's head is *ready* when it is due and not running; the ready heads start
//! oldest first. A head that failed waits until its retry time, holding up only its own lane.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::storage::{OutboxEntry, Subject};

/// The queued actions, by lane.
#[derive(Default)]
pub struct Lanes {
    /// Each subject's actions, head first.
    lanes: HashMap<Subject, VecDeque<u64>>,
    /// Every queued action, by sequence number.
    entries: BTreeMap<u64, (Subject, OutboxEntry)>,
    /// Heads due now and not running, by sequence number (oldest starts first).
    ready: BTreeSet<u64>,
    /// Heads due later: (due time, sequence number).
    waiting: BTreeSet<(u64, u64)>,
    /// Heads running now.
    running: BTreeSet<u64>,
}

impl Lanes {
    /// Whether `seq` is queued (or running).
    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    /// Queues an action at the end of its subject's lane.
    pub fn add(&mut self, seq: u64, entry: OutboxEntry) {
        if self.contains(seq) {
            return;
        }
        let subject = entry.action.subject();
        let due = entry.not_before_ms;
        let lane = self.lanes.entry(subject.clone()).or_default();
        lane.push_back(seq);
        let is_head = lane.len() == 1;
        self.entries.insert(seq, (subject, entry));
        if is_head {
            self.waiting.insert((due, seq));
        }
    }

    /// The next action to start, if one is due at `now`: marked running until
    /// [`Lanes::finished`] or [`Lanes::retry_at`].
    pub fn start_next(&mut self, now: u64) -> Option<(u64, OutboxEntry)> {
        while let Some(&(due, seq)) = self.waiting.first() {
            if due > now {
                break;
            }
            self.waiting.pop_first();
            self.ready.insert(seq);
        }
        let seq = self.ready.pop_first()?;
        self.running.insert(seq);
        Some((seq, self.entries[&seq].1.clone()))
    }

    /// The running action `seq` is done (or gone to the failed list): its lane moves on.
    pub fn finished(&mut self, seq: u64) {
        self.running.remove(&seq);
        let Some((subject, _)) = self.entries.remove(&seq) else { return };
        let Some(lane) = self.lanes.get_mut(&subject) else { return };
        lane.retain(|&s| s != seq);
        match lane.front() {
            Some(&next) => {
                let due = self.entries[&next].1.not_before_ms;
                self.waiting.insert((due, next));
            }
            None => {
                self.lanes.remove(&subject);
            }
        }
    }

    /// The running action `seq` failed and is tried again at `entry.not_before_ms`; its lane
    /// waits for it.
    pub fn retry_at(&mut self, seq: u64, entry: OutboxEntry) {
        self.running.remove(&seq);
        let due = entry.not_before_ms;
        if let Some(slot) = self.entries.get_mut(&seq) {
            slot.1 = entry;
            self.waiting.insert((due, seq));
        }
    }

    /// When the earliest waiting head is due.
    pub fn next_due(&self) -> Option<u64> {
        self.waiting.first().map(|&(due, _)| due)
    }

    /// Actions queued, running included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Actions running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// When the oldest queued action was queued.
    pub fn oldest_created_ms(&self) -> Option<u64> {
        self.entries.values().next().map(|(_, e)| e.created_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{homeserver::MembershipChange, storage::Action};

    fn act(user: &str, due: u64) -> OutboxEntry {
        let action = Action::Act {
            change: MembershipChange::Invite,
            room_id: "!r:x".try_into().unwrap(),
            user_id: user.try_into().unwrap(),
            reason: String::new(),
            audit_id: None,
            notify: false,
            knock_event: None,
            verdict: None,
        };
        OutboxEntry { action, created_ms: 0, attempts: 0, not_before_ms: due, last_error: None }
    }

    #[test]
    fn one_subject_runs_in_order_others_run_alongside() {
        let mut l = Lanes::default();
        l.add(1, act("@a:x", 0));
        l.add(2, act("@a:x", 0));
        l.add(3, act("@b:x", 0));
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(1));
        // @a's second waits for the first; @b's runs now.
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(3));
        assert_eq!(l.start_next(0).map(|(s, _)| s), None);
        l.finished(1);
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(2));
        l.finished(2);
        l.finished(3);
        assert!(l.is_empty());
    }

    #[test]
    fn a_failing_head_holds_up_only_its_own_lane() {
        let mut l = Lanes::default();
        l.add(1, act("@bad:x", 0));
        l.add(2, act("@bad:x", 0));
        l.add(3, act("@good:x", 0));
        let (seq, mut e) = l.start_next(0).unwrap();
        assert_eq!(seq, 1);
        e.not_before_ms = 500;
        l.retry_at(1, e);
        assert_eq!(l.start_next(10).map(|(s, _)| s), Some(3));
        assert!(l.start_next(10).is_none());
        assert_eq!(l.next_due(), Some(500));
        assert_eq!(l.start_next(500).map(|(s, _)| s), Some(1));
        l.finished(1);
        assert_eq!(l.start_next(500).map(|(s, _)| s), Some(2));
    }

    #[test]
    fn an_action_is_queued_once() {
        let mut l = Lanes::default();
        l.add(1, act("@a:x", 0));
        l.add(1, act("@a:x", 0));
        assert_eq!(l.len(), 1);
        assert!(l.start_next(0).is_some());
        assert!(l.start_next(0).is_none());
    }
}

//! The runner's schedule: which queued actions may start now (pure: no I/O, no clock).
//!
//! Each action belongs to a [`Subject`]; each subject is a lane, run in order, one action at
//! a time. A lane's head is *ready* when it is due and not running; the ready heads start
//! oldest first. A head that failed waits until its retry time, holding up only its own lane.
//!
//! No other server can take every slot: with a [`Lanes::per_server`] limit, a ready head whose
//! destination (its target user's server, see [`crate::storage::Action::destination`]) is not
//! ours and already has that many actions running is held back until one of them ends, and
//! the heads behind it start meanwhile.
//!
//! What needs the control room (see [`crate::storage::Action::needs_control_room`]) waits
//! while it is not joined ([`Lanes::set_control_room_joined`]): held, not tried and failed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use ruma::OwnedServerName;

use crate::storage::{OutboxEntry, Subject};

/// At most `max` actions running at once for each server other than `local`.
#[derive(Debug, Clone)]
pub struct PerServer {
    pub local: OwnedServerName,
    pub max: usize,
}

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
    /// The limit per other server, if any.
    per_server: Option<PerServer>,
    /// Actions running now, by other server.
    busy: HashMap<OwnedServerName, usize>,
    /// Ready heads held back because their server is at the limit, oldest first.
    held: HashMap<OwnedServerName, BTreeSet<u64>>,
    /// The control room is not joined: what needs it is held back.
    control_room_closed: bool,
    /// Ready heads held back until the control room is joined.
    held_for_control_room: BTreeSet<u64>,
}

impl Lanes {
    /// Lanes that run at most `limit.max` actions at once for each other server.
    pub fn per_server(limit: PerServer) -> Self {
        Self { per_server: Some(PerServer { max: limit.max.max(1), ..limit }), ..Self::default() }
    }

    /// The other server action `seq` goes to, when it is limited.
    fn limited_destination(&self, seq: u64) -> Option<OwnedServerName> {
        let limit = self.per_server.as_ref()?;
        let dest = self.entries.get(&seq)?.1.action.destination()?;
        (dest != limit.local).then_some(dest)
    }

    /// Action `seq` stopped running: its server has a slot free for the oldest head held.
    fn release(&mut self, seq: u64) {
        if !self.running.remove(&seq) {
            return;
        }
        let Some(dest) = self.limited_destination(seq) else { return };
        if let Some(n) = self.busy.get_mut(&dest) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(&dest);
            }
        }
        if let Some(held) = self.held.get_mut(&dest) {
            if let Some(next) = held.pop_first() {
                self.ready.insert(next);
            }
            if held.is_empty() {
                self.held.remove(&dest);
            }
        }
    }

    /// Whether the control room is joined: while it is not, the heads that need it are held
    /// back; once it is, they are ready.
    pub fn set_control_room_joined(&mut self, joined: bool) {
        self.control_room_closed = !joined;
        if joined {
            self.ready.append(&mut self.held_for_control_room);
        }
    }

    /// Actions held back because their server is at the limit, by server.
    pub fn held(&self) -> usize {
        self.held.values().map(BTreeSet::len).sum()
    }

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
        while let Some(seq) = self.ready.pop_first() {
            if self.control_room_closed && self.entries[&seq].1.action.needs_control_room() {
                self.held_for_control_room.insert(seq);
                continue;
            }
            if let Some(dest) = self.limited_destination(seq) {
                let max = self.per_server.as_ref().map_or(usize::MAX, |l| l.max);
                let busy = self.busy.entry(dest.clone()).or_default();
                if *busy >= max {
                    self.held.entry(dest).or_default().insert(seq);
                    continue;
                }
                *busy += 1;
            }
            self.running.insert(seq);
            return Some((seq, self.entries[&seq].1.clone()));
        }
        None
    }

    /// The running action `seq` is done (or gone to the failed list): its lane moves on.
    pub fn finished(&mut self, seq: u64) {
        self.release(seq);
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
        self.release(seq);
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
    fn another_server_runs_at_most_its_limit_and_the_rest_go_past() {
        let mut l = Lanes::per_server(PerServer { local: "x".try_into().unwrap(), max: 2 });
        for i in 0..5 {
            l.add(i, act(&format!("@d{i}:dead.example"), 0));
        }
        l.add(10, act("@local:x", 0));
        l.add(11, act("@other:far.example", 0));
        let started: Vec<u64> = std::iter::from_fn(|| l.start_next(0).map(|(s, _)| s)).collect();
        assert_eq!(started, [0, 1, 10, 11], "two of dead.example's, then the others");
        assert_eq!(l.held(), 3);
        // One of dead.example's ends: the oldest held one starts; a retry frees a slot too.
        l.finished(0);
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(2));
        assert!(l.start_next(0).is_none());
        let (_, mut e) = (1, act("@d1:dead.example", 0));
        e.not_before_ms = 100;
        l.retry_at(1, e);
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(3));
        assert!(l.start_next(0).is_none());
        assert_eq!(l.held(), 1);
    }

    #[test]
    fn local_knockers_are_not_limited() {
        let mut l = Lanes::per_server(PerServer { local: "x".try_into().unwrap(), max: 1 });
        for i in 0..4 {
            l.add(i, act(&format!("@u{i}:x"), 0));
        }
        assert_eq!(std::iter::from_fn(|| l.start_next(0)).count(), 4);
    }

    #[test]
    fn what_needs_the_control_room_waits_for_the_join_and_the_rest_goes_on() {
        let mut l = Lanes::default();
        l.set_control_room_joined(false);
        let notice = Action::Notice { plain: "hi".into(), html: "hi".into(), about_failure: false };
        l.add(1, OutboxEntry { action: notice, created_ms: 0, attempts: 0, not_before_ms: 0, last_error: None });
        l.add(
            2,
            OutboxEntry {
                action: Action::JoinControlRoom,
                created_ms: 0,
                attempts: 0,
                not_before_ms: 0,
                last_error: None,
            },
        );
        l.add(3, act("@a:x", 0));
        let started: Vec<u64> = std::iter::from_fn(|| l.start_next(0).map(|(s, _)| s)).collect();
        assert_eq!(started, [2, 3], "the join and the knock's action, not the notice");
        l.finished(2);
        l.set_control_room_joined(true);
        assert_eq!(l.start_next(0).map(|(s, _)| s), Some(1));
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

//! The ban lists knockwarden follows, in memory: what knocks are decided against.
//!
//! Loaded from the store at start (so a restart decides with the stored copy at once), then
//! kept equal to it: the worker applies pushed rule events and redactions
//! ([`Lists::apply`]), and a read of a list's whole state replaces it ([`Lists::replace`]).
//! Each change is written to the store by the same caller, in the transaction of the event or
//! action that made it; applying the same change twice leaves the same list.
//!
//! A read of the whole state races with pushed events: a rule pushed while the read was under
//! way is newer than what the read returned for it, so [`Lists::replace`] keeps it.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use ruma::OwnedRoomId;

use crate::{
    policy::{
        PolicySet,
        banlist::{BanList, ListRule, ListSource, Parsed, RuleKey},
    },
    storage::{Action, Store, StoreError},
};

/// The actions that read every ban list a policy set names.
pub fn read_actions(set: &PolicySet) -> Vec<Action> {
    set.ban_lists().into_iter().map(|name| Action::ReadBanList { name }).collect()
}

/// One followed list.
#[derive(Debug)]
struct Followed {
    list: BanList,
    /// Why the list cannot be matched against, as last checked ([`Lists::recheck`]).
    unavailable: Option<String>,
    /// Ignored rules pushed and not reported yet, and whether a report is queued.
    ignored: (Vec<String>, bool),
    /// Keys changed by pushed events, with the change number.
    touched: HashMap<RuleKey, u64>,
}

#[derive(Debug)]
struct Inner {
    rooms: HashMap<OwnedRoomId, Followed>,
    /// Name (alias or room ID, as the policies write it) -> room.
    names: HashMap<String, OwnedRoomId>,
    /// Names tried at least once (read, or found missing or unreachable): knocks under a
    /// policy naming a list wait until it has been tried.
    tried: HashSet<String>,
    /// Past this many rules a list is unavailable (`ban_lists.max_rules`).
    max_rules: usize,
}

impl Inner {
    fn new(max_rules: usize) -> Self {
        Self { rooms: HashMap::new(), names: HashMap::new(), tried: HashSet::new(), max_rules }
    }

    fn followed(&mut self, room: &OwnedRoomId) -> &mut Followed {
        let max_rules = self.max_rules;
        self.rooms.entry(room.clone()).or_insert_with(|| Followed {
            list: BanList::with_max_rules(max_rules),
            unavailable: None,
            ignored: (Vec::new(), false),
            touched: HashMap::new(),
        })
    }
}

/// The followed lists, shared by the worker, the runner and the control room.
#[derive(Debug)]
pub struct Lists {
    inner: RwLock<Inner>,
    /// Changes made by pushed events so far.
    seq: AtomicU64,
}

/// The lists, read-locked, as the policy engine looks them up.
pub struct View<'a> {
    inner: RwLockReadGuard<'a, Inner>,
}

impl ListSource for View<'_> {
    fn list(&self, name: &str) -> Option<&BanList> {
        let room = match self.inner.names.get(name) {
            Some(r) => r.as_str(),
            None => name,
        };
        self.inner.rooms.get(room).map(|f| &f.list)
    }
}

impl View<'_> {
    /// The list rooms with their rules, by room ID.
    pub fn each(&self) -> impl Iterator<Item = (&OwnedRoomId, &BanList)> {
        self.inner.rooms.iter().map(|(r, f)| (r, &f.list))
    }

    /// The room a name stands for, as far as known.
    pub fn room_of(&self, name: &str) -> Option<&OwnedRoomId> {
        self.inner.names.get(name)
    }
}

/// A list's availability changed ([`Lists::recheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// It cannot be matched against any more: why.
    Lost(String),
    /// It can be again.
    Regained,
}

/// What a read of a list's whole state changed.
#[derive(Debug, Default)]
pub struct Replaced {
    /// Rules set (new or changed), to be stored.
    pub set: Vec<(RuleKey, ListRule)>,
    /// Rules gone, to be deleted.
    pub removed: Vec<RuleKey>,
}

impl Lists {
    /// No list followed yet; a list is unavailable past `max_rules` rules.
    pub fn new(max_rules: usize) -> Self {
        Self { inner: RwLock::new(Inner::new(max_rules)), seq: AtomicU64::new(0) }
    }

    /// Loads every stored list; a list is unavailable past `max_rules` rules.
    pub fn load(store: &Store, max_rules: usize) -> Result<Self, StoreError> {
        let mut inner = Inner::new(max_rules);
        for rec in store.lists().all()? {
            let mut list = BanList::with_max_rules(max_rules);
            for (key, rule) in store.lists().rules(rec.room_id.as_str())? {
                list.set(key, rule);
            }
            for n in &rec.names {
                inner.names.insert(n.clone(), rec.room_id.clone());
                inner.tried.insert(n.clone());
            }
            inner.tried.insert(rec.room_id.to_string());
            let unavailable = list.unavailable();
            if let Some(why) = &unavailable {
                tracing::error!(list = %rec.room_id, why, "a ban list is unavailable: knocks it would decide are held for review");
            }
            let ignored = (Vec::new(), false);
            inner.rooms.insert(rec.room_id, Followed { list, unavailable, ignored, touched: HashMap::new() });
        }
        Ok(Self { inner: RwLock::new(inner), seq: AtomicU64::new(0) })
    }

    fn read_inner(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The lists, for deciding (hold it only while deciding).
    pub fn view(&self) -> View<'_> {
        View { inner: self.read_inner() }
    }

    /// Whether a room is a list room knockwarden follows (it manages no knocks there).
    pub fn is_list_room(&self, room: &str) -> bool {
        self.read_inner().rooms.contains_key(room)
    }

    /// The first of `names` not tried yet (read, or found missing or unreachable), if any.
    pub fn untried<'a>(&self, names: &'a [String]) -> Option<&'a String> {
        let inner = self.read_inner();
        names.iter().find(|n| !inner.tried.contains(*n))
    }

    /// What is wrong with each of `names` that cannot be matched against now, for `/ready`:
    /// (name, why).
    pub fn problems(&self, names: &[String]) -> Vec<(String, String)> {
        let inner = self.read_inner();
        let why = |name: &String| {
            if !inner.tried.contains(name) {
                return Some("is not read yet".to_owned());
            }
            let Some(room) = inner.names.get(name) else { return Some("could not be read".to_owned()) };
            let unavailable = inner.rooms.get(room.as_str())?.unavailable.clone()?;
            Some(format!("cannot be matched against: {unavailable}"))
        };
        names.iter().filter_map(|n| why(n).map(|w| (n.clone(), w))).collect()
    }

    /// Marks a name tried (its read is done, or failed).
    pub fn mark_tried(&self, name: &str) {
        self.write_inner().tried.insert(name.to_owned());
    }

    /// Follows `room` under `name` (an empty list until read). Returns whether the room was
    /// not followed before.
    pub fn follow(&self, name: &str, room: &OwnedRoomId) -> bool {
        let mut inner = self.write_inner();
        inner.names.insert(name.to_owned(), room.clone());
        let new = !inner.rooms.contains_key(room);
        inner.followed(room);
        new
    }

    /// The change number a read starts from (see [`Lists::replace`]).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Applies a pushed rule event (or a redaction, as [`Parsed::Removed`]); returns the rule
    /// it replaced. Ignored when the room is not a list room.
    pub fn apply(&self, room: &str, key: RuleKey, parsed: Parsed) -> Option<ListRule> {
        let mut inner = self.write_inner();
        let followed = inner.rooms.get_mut(room)?;
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        followed.touched.insert(key.clone(), n);
        followed.list.apply(key, parsed)
    }

    /// The rule a redacted event set in a list room, if it still holds.
    pub fn key_of_event(&self, room: &str, event_id: &str) -> Option<RuleKey> {
        self.read_inner().rooms.get(room)?.list.key_of_event(event_id).cloned()
    }

    /// The rule held under a key of a list room.
    pub fn rule(&self, room: &str, key: &RuleKey) -> Option<ListRule> {
        self.read_inner().rooms.get(room)?.list.get(key).cloned()
    }

    /// Replaces a list by its whole state as read (the read started at change `since`):
    /// rules pushed since then are kept as they are. Returns what changed.
    pub fn replace(&self, room: &OwnedRoomId, read: Vec<(RuleKey, Parsed)>, since: u64) -> Replaced {
        let mut inner = self.write_inner();
        let followed = inner.followed(room);
        let newer = |k: &RuleKey| followed.touched.get(k).is_some_and(|&n| n > since);
        let mut out = Replaced::default();
        let mut seen = BTreeSet::new();
        let mut changes = Vec::new();
        for (key, parsed) in read {
            seen.insert(key.clone());
            if newer(&key) {
                continue;
            }
            match parsed {
                Parsed::Rule(rule) if followed.list.get(&key) != Some(&rule) => changes.push((key, Some(rule))),
                Parsed::Rule(_) => {}
                Parsed::Removed if followed.list.get(&key).is_some() => changes.push((key, None)),
                Parsed::Removed => {}
            }
        }
        let gone: Vec<RuleKey> =
            followed.list.rules().map(|(k, _)| k.clone()).filter(|k| !seen.contains(k) && !newer(k)).collect();
        changes.extend(gone.into_iter().map(|k| (k, None)));
        for (key, rule) in changes {
            match rule {
                Some(rule) => {
                    followed.list.set(key.clone(), rule.clone());
                    out.set.push((key, rule));
                }
                None => {
                    followed.list.remove(&key);
                    out.removed.push(key);
                }
            }
        }
        followed.touched.retain(|_, n| *n > since);
        out
    }

    /// Checks whether a list room's list can be matched against after a change (compiling
    /// its wildcard rules if they changed); returns the change of its availability, if any.
    pub fn recheck(&self, room: &str) -> Option<Availability> {
        let mut inner = self.write_inner();
        let followed = inner.rooms.get_mut(room)?;
        let now = followed.list.unavailable();
        let change = match (&followed.unavailable, &now) {
            (None, Some(why)) => Some(Availability::Lost(why.clone())),
            (Some(_), None) => Some(Availability::Regained),
            _ => None,
        };
        followed.unavailable = now;
        change
    }

    /// Gathers lines about ignored rules of a list room, to be said in one notice; returns
    /// whether a report must be queued (none is yet).
    pub fn gather_ignored(&self, room: &str, lines: Vec<String>) -> bool {
        let mut inner = self.write_inner();
        let Some(followed) = inner.rooms.get_mut(room) else { return false };
        followed.ignored.0.extend(lines);
        !std::mem::replace(&mut followed.ignored.1, true)
    }

    /// The ignored rules of a list room gathered and not reported yet.
    pub fn gathered_ignored(&self, room: &str) -> Vec<String> {
        self.read_inner().rooms.get(room).map(|f| f.ignored.0.clone()).unwrap_or_default()
    }

    /// The first `n` gathered lines were reported; returns whether more wait (another report
    /// is then due: the caller queues it).
    pub fn reported_ignored(&self, room: &str, n: usize) -> bool {
        let mut inner = self.write_inner();
        let Some(followed) = inner.rooms.get_mut(room) else { return false };
        let (lines, queued) = &mut followed.ignored;
        lines.drain(..n.min(lines.len()));
        *queued = !lines.is_empty();
        *queued
    }

    /// Why a list room's list cannot be matched against, if it cannot (as last checked).
    pub fn unavailable(&self, room: &str) -> Option<String> {
        self.read_inner().rooms.get(room)?.unavailable.clone()
    }

    /// Rule counts of a list room: (users, servers, ignored).
    pub fn counts(&self, room: &str) -> Option<(usize, usize, usize)> {
        let inner = self.read_inner();
        let list = &inner.rooms.get(room)?.list;
        let (u, s) = list.counts();
        Some((u, s, list.len() - u - s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::banlist::{Entity, EntityKind};

    fn rule(entity: &str, event: &str) -> ListRule {
        ListRule {
            kind: EntityKind::User,
            entity: Entity::Glob(entity.into()),
            recommendation: crate::policy::banlist::Recommendation::Ban,
            reason: String::new(),
            event_id: event.into(),
            ignored: None,
        }
    }

    fn key(k: &str) -> RuleKey {
        RuleKey { event_type: "m.policy.rule.user".into(), state_key: k.into() }
    }

    #[test]
    fn a_read_keeps_what_was_pushed_while_it_ran() {
        let lists = Lists::new(crate::policy::banlist::DEFAULT_MAX_RULES);
        let room: OwnedRoomId = "!l:x".try_into().unwrap();
        assert!(lists.follow("#l:x", &room));
        lists.replace(
            &room,
            vec![(key("a"), Parsed::Rule(rule("@a:x", "$1"))), (key("b"), Parsed::Rule(rule("@b:x", "$2")))],
            0,
        );
        let since = lists.seq();
        // Pushed while the next read is under way: b removed, c added.
        lists.apply("!l:x", key("b"), Parsed::Removed);
        lists.apply("!l:x", key("c"), Parsed::Rule(rule("@c:x", "$3")));
        // The read saw the state before: a and b, no c.
        let r = lists.replace(
            &room,
            vec![(key("a"), Parsed::Rule(rule("@a:x", "$1"))), (key("b"), Parsed::Rule(rule("@b:x", "$2")))],
            since,
        );
        assert!(r.set.is_empty() && r.removed.is_empty(), "{r:?}");
        let view = lists.view();
        assert!(view.list("#l:x").unwrap().find("@c:x").unwrap().is_some());
        assert!(view.list("#l:x").unwrap().find("@b:x").unwrap().is_none());
        assert!(view.list("!l:x").unwrap().find("@a:x").unwrap().is_some());
        drop(view);
        // A later read is the truth again.
        let r = lists.replace(&room, vec![(key("a"), Parsed::Rule(rule("@a:x", "$1")))], lists.seq());
        assert_eq!(r.removed, vec![key("c")]);
    }
}

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
    policy::banlist::{BanList, ListRule, ListSource, Parsed, RuleKey},
    storage::{Store, StoreError},
};

/// One followed list.
#[derive(Debug, Default)]
struct Followed {
    list: BanList,
    /// Keys changed by pushed events, with the change number.
    touched: HashMap<RuleKey, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    rooms: HashMap<OwnedRoomId, Followed>,
    /// Name (alias or room ID, as the policies write it) -> room.
    names: HashMap<String, OwnedRoomId>,
    /// Names tried at least once (read, or found missing or unreachable): knocks under a
    /// policy naming a list wait until it has been tried.
    tried: HashSet<String>,
}

/// The followed lists, shared by the worker, the runner and the control room.
#[derive(Debug, Default)]
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

/// What a read of a list's whole state changed.
#[derive(Debug, Default)]
pub struct Replaced {
    /// Rules set (new or changed), to be stored.
    pub set: Vec<(RuleKey, ListRule)>,
    /// Rules gone, to be deleted.
    pub removed: Vec<RuleKey>,
}

impl Lists {
    /// Loads every stored list.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let mut inner = Inner::default();
        for rec in store.list_records()? {
            let list = BanList::from_rules(store.list_rules(rec.room_id.as_str())?);
            for n in &rec.names {
                inner.names.insert(n.clone(), rec.room_id.clone());
                inner.tried.insert(n.clone());
            }
            inner.tried.insert(rec.room_id.to_string());
            inner.rooms.insert(rec.room_id, Followed { list, touched: HashMap::new() });
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

    /// Whether every one of `names` has been tried at least once.
    pub fn tried_all(&self, names: &[String]) -> bool {
        let inner = self.read_inner();
        names.iter().all(|n| inner.tried.contains(n))
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
        inner.rooms.entry(room.clone()).or_default();
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
        let followed = inner.rooms.entry(room.clone()).or_default();
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
            recommendation: "m.ban".into(),
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
        let lists = Lists::default();
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
        assert!(view.list("#l:x").unwrap().find("@c:x").is_some());
        assert!(view.list("#l:x").unwrap().find("@b:x").is_none());
        assert!(view.list("!l:x").unwrap().find("@a:x").is_some());
        drop(view);
        // A later read is the truth again.
        let r = lists.replace(&room, vec![(key("a"), Parsed::Rule(rule("@a:x", "$1")))], lists.seq());
        assert_eq!(r.removed, vec![key("c")]);
    }
}

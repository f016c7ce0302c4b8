//! What the store answers from memory: for the intake, the bot's membership of each room and
//! who is knocking somewhere; for the worker, the knock times of each room.
//!
//! The intake decides which pushed events to keep by these two (`events::is_wanted`), and its
//! path must touch no sled (see [`super::journal`]). Both are loaded from sled when the store
//! opens and kept up to date by every commit that changes [`T::BotRooms`] or [`T::Knocks`];
//! the bot's membership changes still in the journal are applied by the intake as it appends
//! them (and again, to the same effect, when the worker records them in sled).
//!
//! A room's knock times ([`T::RoomKnockTimes`]) are kept sorted, so the knocks in a window
//! (`room_knocks` conditions) are counted with a binary search. Counted key by key in sled,
//! each knock cost 1.85 ms with 10,000 knocks in the window, 11.5 ms with 50,000
//! (`benches/knock_counts.rs`): a wave on a room with such a rule would have held the worker
//! to a few hundred knocks a second. What is kept (8 bytes a knock) is bounded by the
//! windows: knock times no window reaches are pruned.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

use parking_lot::{Mutex, RwLock};

use super::{BotMembership, T, activity::split_time_key};

/// A change to a view, seen inside a sled transaction and applied once it commits.
pub(super) enum Change {
    Bot(String, BotMembership),
    /// A knocker's knock added (+1) or removed (-1), by the user ID's hash.
    Knocks(u64, i32),
    /// A room's knock time added (`true`) or removed.
    RoomKnockTime(Vec<u8>, u64, bool),
}

pub(super) struct Views {
    bot: RwLock<HashMap<String, BotMembership>>,
    /// Knocks on record per knocker, by the user ID's hash (a false positive only keeps an
    /// event the worker then finds it has nothing to do with). The hash's keys are random
    /// per process, so nobody can choose a user ID that collides with a knocker's.
    knocks: Mutex<HashMap<u64, u32>>,
    hasher: RandomState,
    /// Each room's knock times, sorted (times alone: two knocks at the same time count the
    /// same whichever is removed first).
    room_times: Mutex<HashMap<Vec<u8>, Vec<u64>>>,
}

impl Views {
    /// The views of what sled holds: `bot` ([`T::BotRooms`]), `knocks` (the keys of
    /// [`T::Knocks`]: `room \0 user`) and `room_times` (the keys of [`T::RoomKnockTimes`]),
    /// read as they come (the keys are not gathered first: there is one per knock kept).
    pub(super) fn load<K: AsRef<[u8]>, E>(
        bot: impl IntoIterator<Item = (String, BotMembership)>,
        knocks: impl IntoIterator<Item = Result<K, E>>,
        room_times: impl IntoIterator<Item = Result<K, E>>,
    ) -> Result<Self, E> {
        let mut times: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
        for key in room_times {
            if let Some((room, at)) = split_time_key(key?.as_ref()) {
                times.entry(room.to_vec()).or_default().push(at);
            }
        }
        for list in times.values_mut() {
            list.sort_unstable();
        }
        let hasher = RandomState::new();
        let mut counts = HashMap::new();
        for key in knocks {
            if let Some(user) = knocker(key?.as_ref()) {
                *counts.entry(hasher.hash_one(user)).or_default() += 1;
            }
        }
        Ok(Views {
            bot: RwLock::new(bot.into_iter().collect()),
            knocks: Mutex::new(counts),
            hasher,
            room_times: Mutex::new(times),
        })
    }

    /// The change that a put to or a removal from `tree` makes (`old`: whether the key was
    /// there; `value`: the new value, `None` for a removal).
    pub(super) fn change(&self, tree: T, key: &[u8], old: bool, value: Option<&[u8]>) -> Option<Change> {
        match (tree, value) {
            (T::BotRooms, Some(v)) => {
                let m = serde_json::from_slice(v).ok()?;
                Some(Change::Bot(String::from_utf8_lossy(key).into_owned(), m))
            }
            (T::Knocks, Some(_)) if !old => Some(Change::Knocks(self.hasher.hash_one(knocker(key)?), 1)),
            (T::Knocks, None) if old => Some(Change::Knocks(self.hasher.hash_one(knocker(key)?), -1)),
            (T::RoomKnockTimes, v) if old != v.is_some() => {
                let (room, at) = split_time_key(key)?;
                Some(Change::RoomKnockTime(room.to_vec(), at, v.is_some()))
            }
            _ => None,
        }
    }

    pub(super) fn apply(&self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Bot(room, m) => {
                    self.bot.write().insert(room, m);
                }
                Change::RoomKnockTime(room, at, added) => {
                    let mut rooms = self.room_times.lock();
                    if added {
                        let list = rooms.entry(room).or_default();
                        // Times come in order (the time a knock was received): most land last.
                        let i = list.partition_point(|t| *t < at);
                        list.insert(i, at);
                    } else if let Some(list) = rooms.get_mut(&room) {
                        let i = list.partition_point(|t| *t < at);
                        if list.get(i) == Some(&at) {
                            list.remove(i);
                        }
                        // A room whose knock times are all pruned is forgotten.
                        if list.is_empty() {
                            rooms.remove(&room);
                        }
                    }
                }
                Change::Knocks(user, delta) => {
                    let mut knocks = self.knocks.lock();
                    let n = knocks.entry(user).or_default();
                    *n = n.saturating_add_signed(delta);
                    if *n == 0 {
                        knocks.remove(&user);
                    }
                }
            }
        }
    }

    pub(super) fn bot_membership(&self, room: &str) -> Option<BotMembership> {
        self.bot.read().get(room).copied()
    }

    pub(super) fn has_knocks(&self, user: &str) -> bool {
        self.knocks.lock().contains_key(&self.hasher.hash_one(user.as_bytes()))
    }

    /// The knock times of `room` at or after `since_ms`, as sled holds them.
    pub(super) fn room_knocks_since(&self, room: &str, since_ms: u64) -> u64 {
        let rooms = self.room_times.lock();
        let Some(list) = rooms.get(room.as_bytes()) else { return 0 };
        (list.len() - list.partition_point(|t| *t < since_ms)) as u64
    }
}

/// The user of a [`T::Knocks`] key (`room \0 user`; a user ID holds no NUL, a room ID from a
/// remote server might).
pub(super) fn knocker(key: &[u8]) -> Option<&[u8]> {
    key.iter().rposition(|&b| b == 0).map(|i| &key[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knocks_are_counted_per_knocker_and_bot_memberships_kept() {
        let v = Views::load::<_, ()>([("!a:x".to_owned(), BotMembership::Joined)], [Ok(b"!a:x\0@k:x".to_vec())], [])
            .unwrap();
        assert!(v.has_knocks("@k:x") && !v.has_knocks("@j:x") && !v.has_knocks("!a:x"));
        let added = v.change(T::Knocks, b"!b:x\0@k:x", false, Some(b"{}")).into_iter().collect();
        v.apply(added);
        let removed = v.change(T::Knocks, b"!a:x\0@k:x", true, None).into_iter().collect();
        v.apply(removed);
        assert!(v.has_knocks("@k:x"), "one knock left");
        // A put over an existing key, or a removal of a missing one, changes nothing.
        assert!(v.change(T::Knocks, b"!b:x\0@k:x", true, Some(b"{}")).is_none());
        assert!(v.change(T::Knocks, b"!c:x\0@k:x", false, None).is_none());
        let removed = v.change(T::Knocks, b"!b:x\0@k:x", true, None).into_iter().collect();
        v.apply(removed);
        assert!(!v.has_knocks("@k:x"));
        assert_eq!(v.bot_membership("!a:x"), Some(BotMembership::Joined));
        let left = v.change(T::BotRooms, b"!a:x", true, Some(br#""left""#)).into_iter().collect();
        v.apply(left);
        assert_eq!(v.bot_membership("!a:x"), Some(BotMembership::Left));
    }

    /// A knock-time key of the by-room tree: `room \0 time seq`.
    fn time_key(room: &str, at: u64, seq: u64) -> Vec<u8> {
        [room.as_bytes(), &[0], &at.to_be_bytes(), &seq.to_be_bytes()].concat()
    }

    /// Knock times are counted from where they are loaded and as they change; a room whose
    /// times are all removed is forgotten, not kept as an empty list.
    #[test]
    fn room_knock_times_follow_changes_and_empty_rooms_are_forgotten() {
        let v = Views::load::<_, ()>([], [], [Ok(time_key("!a:x", 5, 1)), Ok(time_key("!a:x", 3, 2))]).unwrap();
        assert_eq!((v.room_knocks_since("!a:x", 0), v.room_knocks_since("!a:x", 4)), (2, 1));
        let added = v.change(T::RoomKnockTimes, &time_key("!b:x", 7, 3), false, Some(b"")).into_iter().collect();
        v.apply(added);
        assert_eq!(v.room_knocks_since("!b:x", 7), 1);
        for (room, at, seq) in [("!a:x", 5, 1), ("!a:x", 3, 2), ("!b:x", 7, 3)] {
            let removed = v.change(T::RoomKnockTimes, &time_key(room, at, seq), true, None).into_iter().collect();
            v.apply(removed);
        }
        assert_eq!(v.room_knocks_since("!a:x", 0) + v.room_knocks_since("!b:x", 0), 0);
        assert!(v.room_times.lock().is_empty(), "no empty list kept");
    }
}

//! Knock counters and room memberships: what policies' `room_knocks`, `user_knocks` and
//! `member_of` conditions are decided from.
//!
//! Knock times are kept per room and per (user, room), keyed by time so a window is a range
//! scan; memberships by room (a decision asks whether the knocker is in each room the
//! policies' `member_of` conditions name: a point read each, so no index by user is kept).

use super::{Op, Store, StoreError, T, pair_key};

/// The start of a knock-time key: `first` (or `first \0 second`), then `\0` and the time,
/// 8 bytes big-endian; [`Activity::record`] adds the sequence, 8 bytes more.
fn time_key(first: &str, second: Option<&str>, ts_ms: u64) -> Vec<u8> {
    let mut k = match second {
        Some(s) => pair_key(first, s),
        None => first.as_bytes().to_vec(),
    };
    k.push(0);
    k.extend_from_slice(&ts_ms.to_be_bytes());
    k
}

/// What a knock-time key is made of ([`time_key`] and the sequence): what precedes the time
/// (the room, or the user and the room), and the time.
pub(super) fn split_time_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let n = key.len().checked_sub(17)?;
    if key[n] != 0 {
        return None;
    }
    Some((&key[..n], u64::from_be_bytes(key[n + 1..n + 9].try_into().ok()?)))
}

impl Store {
    /// The knock times, counted for `room_knocks` and `user_knocks`.
    pub fn activity(&self) -> Activity<'_> {
        Activity { store: self }
    }

    /// The memberships seen, for `member_of`.
    pub fn members(&self) -> Members<'_> {
        Members { store: self }
    }
}

/// The knock times, counted for `room_knocks` and `user_knocks`, a narrow handle on the store ([`Store::activity`]).
#[derive(Clone, Copy)]
pub struct Activity<'s> {
    store: &'s Store,
}

impl Activity<'_> {
    /// Ops that record a knock by `user` on `room` at `ts_ms` (`seq` keeps equal times apart).
    pub fn record(room: &str, user: &str, ts_ms: u64, seq: u64) -> Vec<Op> {
        let mut by_room = time_key(room, None, ts_ms);
        by_room.extend_from_slice(&seq.to_be_bytes());
        let mut by_user = time_key(user, Some(room), ts_ms);
        by_user.extend_from_slice(&seq.to_be_bytes());
        vec![
            Op::Put { tree: T::RoomKnockTimes, key: by_room, value: vec![] },
            Op::Put { tree: T::UserKnockTimes, key: by_user, value: vec![] },
        ]
    }

    /// Knocks on `room` at or after `since_ms`: counted in memory (see [`super::views`]), with
    /// what this thread's batch has staged.
    pub fn room_knocks_since(&self, room: &str, since_ms: u64) -> Result<u64, StoreError> {
        let mut end = room.as_bytes().to_vec();
        end.push(1);
        let staged = self.store.staged_delta(T::RoomKnockTimes, &time_key(room, None, since_ms), &end)?;
        Ok((self.store.views.room_knocks_since(room, since_ms) as i64 + staged).max(0) as u64)
    }

    /// Knocks by `user` on `room` at or after `since_ms`.
    pub fn user_knocks_since(&self, user: &str, room: &str, since_ms: u64) -> Result<u64, StoreError> {
        let mut end = pair_key(user, room);
        end.push(1);
        self.store.count_range(T::UserKnockTimes, time_key(user, Some(room), since_ms), end)
    }

    /// Forgets knock times before `before_ms`; returns how many were removed.
    pub fn prune(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut ops = Vec::new();
        for tree in [T::RoomKnockTimes, T::UserKnockTimes] {
            for k in self.store.scan_keys(tree, b"")? {
                if split_time_key(&k).is_some_and(|(_, t)| t < before_ms) {
                    ops.push(Op::del(tree, k));
                }
            }
        }
        let n = ops.len();
        self.store.commit(&ops)?;
        Ok(n)
    }
}

/// The memberships seen, for `member_of`, a narrow handle on the store ([`Store::members`]).
#[derive(Clone, Copy)]
pub struct Members<'s> {
    store: &'s Store,
}

impl Members<'_> {
    /// Ops that record `user`'s membership of `room` (joined or not).
    pub fn set(room: &str, user: &str, joined: bool) -> Vec<Op> {
        let key = pair_key(room, user);
        if joined { vec![Op::Put { tree: T::Members, key, value: vec![] }] } else { vec![Op::del(T::Members, key)] }
    }

    /// Ops that record a membership event of `user` in `room`: joined, or not (then only if
    /// the store had them joined: most such events are knocks, of users who were not, and
    /// removing what is not there costs sled as much as a write).
    pub fn change(&self, room: &str, user: &str, joined: bool) -> Result<Vec<Op>, StoreError> {
        if joined || self.store.contains(T::Members, &pair_key(room, user))? {
            Ok(Members::set(room, user, joined))
        } else {
            Ok(vec![])
        }
    }

    /// Whether the bot knows `user` is joined to `room`.
    pub fn contains(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        self.store.contains(T::Members, &pair_key(room, user))
    }

    /// Members of `room` that the bot knows are joined.
    pub fn of(&self, room: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .scan_keys(T::Members, &pair_key(room, ""))?
            .iter()
            .filter_map(|k| super::split_pair(k).map(|(_, user)| user))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knock_counts_by_window_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let mut ops = Vec::new();
            for (i, (user, ts)) in
                [("@a:x", 1_000), ("@b:x", 5_000), ("@a:x", 9_000), ("@a:x", 9_000)].iter().enumerate()
            {
                ops.extend(Activity::record("!r:x", user, *ts, i as u64));
            }
            ops.extend(Activity::record("!r2:x", "@a:x", 9_500, 9));
            s.commit(&ops).unwrap();
            s.flush_blocking().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 4);
        assert_eq!(s.activity().room_knocks_since("!r:x", 5_000).unwrap(), 3);
        assert_eq!(s.activity().room_knocks_since("!r:x", 9_001).unwrap(), 0);
        assert_eq!(s.activity().user_knocks_since("@a:x", "!r:x", 2_000).unwrap(), 2);
        assert_eq!(s.activity().user_knocks_since("@a:x", "!r2:x", 0).unwrap(), 1);
        assert_eq!(s.activity().prune(5_000).unwrap(), 2);
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 3);
    }

    /// A batch's reads count the knock times it staged; what a failed batch staged is not
    /// counted after it; times out of order and removals are followed.
    #[test]
    fn knock_counts_follow_batches_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.commit(&Activity::record("!r:x", "@a:x", 5_000, 1)).unwrap();
        s.batch(|| {
            s.commit(&Activity::record("!r:x", "@b:x", 7_000, 2))?;
            s.commit(&Activity::record("!r:x", "@c:x", 3_000, 3))?;
            assert_eq!(s.activity().room_knocks_since("!r:x", 0)?, 3);
            assert_eq!(s.activity().room_knocks_since("!r:x", 4_000)?, 2);
            Ok(())
        })
        .unwrap();
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 3);
        assert_eq!(s.activity().room_knocks_since("!r:x", 3_001).unwrap(), 2);
        let failed: Result<(), StoreError> = s.batch(|| {
            s.commit(&Activity::record("!r:x", "@d:x", 9_000, 4))?;
            assert_eq!(s.activity().room_knocks_since("!r:x", 0)?, 4);
            Err(StoreError::Corrupt { tree: "test", message: "undone".into() })
        });
        assert!(failed.is_err());
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 3);
        assert_eq!(s.activity().room_knocks_since("!other:x", 0).unwrap(), 0);
        assert_eq!(s.activity().prune(5_000).unwrap(), 2, "one by room, one by user");
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 2);
        s.batch(|| {
            assert_eq!(s.activity().prune(6_000)?, 2);
            assert_eq!(s.activity().room_knocks_since("!r:x", 0)?, 1, "a removal staged is counted out");
            Ok(())
        })
        .unwrap();
        assert_eq!(s.activity().room_knocks_since("!r:x", 0).unwrap(), 1);
    }

    #[test]
    fn memberships_by_room() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.commit(&Members::set("!a:x", "@u:x", true)).unwrap();
        s.commit(&Members::set("!b:x", "@u:x", true)).unwrap();
        assert_eq!(s.members().of("!a:x").unwrap(), vec!["@u:x"]);
        s.commit(&Members::set("!a:x", "@u:x", false)).unwrap();
        assert!(!s.members().contains("!a:x", "@u:x").unwrap());
        assert!(s.members().contains("!b:x", "@u:x").unwrap());
    }
}

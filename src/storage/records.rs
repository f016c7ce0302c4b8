//! What the bot remembers about rooms and knocks.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T, pair_key};

/// The bot's own membership in a room.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BotMembership {
    Invited,
    Joined,
    Left,
}

/// What knockwarden knows of a room's state (written by the worker and the runner through
/// [`Rooms::update`]; the bot's own membership is kept apart, see [`Rooms::bot_membership`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoomRecord {
    /// Room version, from the create event (once known).
    #[serde(default)]
    pub room_version: Option<String>,
    /// Current `join_rule`, once known.
    #[serde(default)]
    pub join_rule: Option<ruma::room::JoinRuleKind>,
    /// What knockwarden reads of the current `m.room.power_levels`, once known (older
    /// versions stored the whole content: it reads back so).
    #[serde(default)]
    pub power_levels: Option<crate::events::PowerLevels>,
    /// Creators of a room of version 12 or later (they have unlimited power).
    #[serde(default)]
    pub creators: Vec<String>,
    /// The create event's `type` (`m.space` for a space), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<ruma::room::RoomType>,
    /// The warnings last posted about this room (so they are not repeated).
    #[serde(default)]
    pub warned: Vec<String>,
    /// For each state event type applied from a pushed event: when (a [`Store::next_id`]
    /// number). A snapshot fetched from the homeserver never overwrites a change pushed after
    /// the fetch began.
    #[serde(default)]
    pub pushed: std::collections::BTreeMap<String, u64>,
}

/// A knock on record: pending until the knocker's membership changes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KnockRecord {
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub event_id: OwnedEventId,
    pub reason: Option<String>,
    pub displayname: Option<String>,
    pub origin_server_ts: u64,
    /// The decision taken on this knock, if any.
    #[serde(default)]
    pub audit_id: Option<u64>,
}

impl Store {
    /// The rooms: their records and the bot's membership.
    pub fn rooms(&self) -> Rooms<'_> {
        Rooms { store: self }
    }

    /// The knocks on record.
    pub fn knocks(&self) -> Knocks<'_> {
        Knocks { store: self }
    }
}

/// The rooms: their records and the bot's membership, a narrow handle on the store ([`Store::rooms`]).
#[derive(Clone, Copy)]
pub struct Rooms<'s> {
    store: &'s Store,
}

impl Rooms<'_> {
    pub fn get(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.store.get_json(T::Rooms, room_id.as_bytes())
    }

    /// Read-modify-write of a room's record (serialized with other updates).
    pub fn update(&self, room_id: &str, f: impl FnOnce(&mut RoomRecord)) -> Result<RoomRecord, StoreError> {
        self.store.serialized(|| {
            let (rec, op) = self.update_op(room_id, f)?;
            self.store.commit(&[op])?;
            Ok(rec)
        })
    }

    /// The op that updates a room's record, and the record as updated (for callers inside
    /// [`Store::serialized`], which commit it with their other writes).
    pub fn update_op(&self, room_id: &str, f: impl FnOnce(&mut RoomRecord)) -> Result<(RoomRecord, Op), StoreError> {
        let mut rec = self.get(room_id)?.unwrap_or_default();
        f(&mut rec);
        let op = Op::put_json(T::Rooms, room_id, &rec);
        Ok((rec, op))
    }

    /// The op that writes a room's record.
    pub fn put(room_id: &str, rec: &RoomRecord) -> Op {
        Op::put_json(T::Rooms, room_id, rec)
    }

    /// The bot's membership in a room, as last pushed.
    pub fn bot_membership(&self, room_id: &str) -> Result<Option<BotMembership>, StoreError> {
        self.store.get_json(T::BotRooms, room_id.as_bytes())
    }

    /// The op that records the bot's membership in a room.
    pub fn put_bot_membership(room_id: &str, m: BotMembership) -> Op {
        Op::put_json(T::BotRooms, room_id, &m)
    }

    /// Rooms the bot is joined to, in room ID order.
    pub fn joined(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .scan_json::<BotMembership>(T::BotRooms, b"")?
            .into_iter()
            .filter(|(_, m)| *m == BotMembership::Joined)
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    /// The bot's membership in a room as last pushed, counting the events in the journal not
    /// handled yet (from memory: what the intake asks, see [`super::views`]).
    pub fn bot_in(&self, room_id: &str) -> Option<BotMembership> {
        self.store.views.bot_membership(room_id)
    }
}

/// The knocks on record, a narrow handle on the store ([`Knocks::in_room`]).
#[derive(Clone, Copy)]
pub struct Knocks<'s> {
    store: &'s Store,
}

impl Knocks<'_> {
    pub fn get(&self, room_id: impl AsRef<str>, user_id: impl AsRef<str>) -> Result<Option<KnockRecord>, StoreError> {
        self.store.get_json(T::Knocks, &pair_key(room_id.as_ref(), user_id.as_ref()))
    }

    /// Ops that record a knock.
    pub fn put(rec: &KnockRecord) -> Vec<Op> {
        vec![Op::put_json(T::Knocks, pair_key(&rec.room_id, &rec.user_id), rec)]
    }

    /// Ops that forget a knock.
    pub fn del(room_id: &str, user_id: &str) -> Vec<Op> {
        vec![Op::del(T::Knocks, pair_key(room_id, user_id))]
    }

    /// Knocks in one room, or everywhere (`None`).
    pub fn in_room(&self, room_id: Option<&str>) -> Result<Vec<KnockRecord>, StoreError> {
        let prefix = room_id.map(|r| pair_key(r, "")).unwrap_or_default();
        Ok(self.store.scan_json::<KnockRecord>(T::Knocks, &prefix)?.into_iter().map(|(_, r)| r).collect())
    }

    /// The knocks of one user, in room ID order. Reads every knock on record: no index by
    /// user is kept (it cost the worker a write per knock), and this serves a moderator's
    /// command. Knocks are forgotten once they close, so few are on record but for a wave
    /// waiting for review.
    pub fn of(&self, user_id: &str) -> Result<Vec<KnockRecord>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.store.scan_raw(T::Knocks, b"")? {
            if super::views::knocker(&key) == Some(user_id.as_bytes()) {
                out.push(super::decode(T::Knocks, &value)?);
            }
        }
        Ok(out)
    }

    /// Whether `user_id` has a knock on record (from memory, see [`super::views`]; knocks in
    /// the journal not handled yet are the intake's to remember).
    pub fn is_knocker(&self, user_id: &str) -> bool {
        self.store.views.has_knocks(user_id)
    }
}

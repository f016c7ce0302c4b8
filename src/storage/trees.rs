//! The trees of the database, by name.

/// The trees of the database. The discriminant is the index into [`Store::trees`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum T {
    /// Small values: control room ID, settings.
    Meta,
    /// event_id -> inbox sequence number, for every event ever taken in.
    Seen,
    /// txn_id -> hash of the last body received under that ID.
    Txns,
    /// sequence (u64 BE) -> [`InboxItem`].
    Inbox,
    /// sequence (u64 BE) -> [`OutboxEntry`].
    Outbox,
    /// room_id -> [`RoomRecord`].
    Rooms,
    /// room_id -> [`BotMembership`].
    BotRooms,
    /// room_id \0 user_id -> [`KnockRecord`].
    Knocks,
    /// name -> u64 BE counter.
    Counters,
    /// version (u64 BE) -> [`PolicyVersion`].
    PolicyVersions,
    /// room \0 time \0 seq -> (), knock times per room.
    RoomKnockTimes,
    /// user \0 room \0 time \0 seq -> (), knock times per user and room.
    UserKnockTimes,
    /// room \0 user -> (), joined members of rooms the bot is in.
    Members,
    /// id (u64 BE) -> [`AuditEntry`].
    Audit,
    /// number (u64 BE) -> [`ReviewItem`].
    Reviews,
    /// alias -> room ID it resolves to (or null).
    Aliases,
    /// notice event ID -> review number (u64 BE): the review item a notice announced.
    ReviewNotices,
    /// room \0 user -> review number (u64 BE), for open review items only.
    OpenReviews,
    /// received time (u64 BE) \0 event_id -> (): when each [`T::Seen`] entry was taken in,
    /// for pruning after `retention.events`.
    SeenTimes,
    /// received time (u64 BE) \0 txn_id -> (): the same for [`T::Txns`].
    TxnTimes,
    /// number (u64 BE) -> [`FailedEntry`]: actions and events given up on, kept for people.
    Failed,
    /// room_id -> [`ListRecord`]: the ban lists followed.
    Lists,
    /// room_id \0 [type, state_key] -> ban rule, for every list.
    ListRules,
    /// command event ID -> [`Batch`]: bulk verdicts being carried out.
    Batches,
    /// room_id -> [`Lockdown`]: rooms in lockdown.
    Lockdowns,
}

pub(super) const TREE_NAMES: [&str; 25] = [
    "meta",
    "seen",
    "txns",
    "inbox",
    "outbox",
    "rooms",
    "bot_rooms",
    "knocks",
    "counters",
    "policy_versions",
    "room_knock_times",
    "user_knock_times",
    "members",
    "audit",
    "reviews",
    "aliases",
    "review_notices",
    "open_reviews",
    "seen_times",
    "txn_times",
    "failed",
    "lists",
    "list_rules",
    "batches",
    "lockdowns",
];

//! Intake: events in, durably.
//!
//! A transaction is parsed, each event's routing fields read ([`Head`]), the events
//! knockwarden needs kept ([`is_wanted`]) and read whole, once ([`Head::into_event`]: one the
//! worker could not read costs only itself), and appended to the journal as one record, then
//! synced (one `fdatasync` for every record waiting). Only then does the HTTP layer answer
//! 200. Nothing on this path touches sled: what the choice needs (the bot's rooms, the
//! knockers, the transactions just taken in) is in memory, and the bot's own membership
//! changes are remembered as they are appended, so the next events of a room it just joined
//! are kept. The worker takes each event in once, by event ID, as it handles the record.

pub mod memory;

pub use memory::{BACKLOG_EVENTS, Memory};

use crate::metrics::{Metrics, Phase};
use std::{collections::HashMap, time::Instant};

use ruma::{RoomId, UserId};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::app::Shared;
use crate::{
    events::{Body, Head, Interests, MembershipState, is_wanted},
    storage::{BotMembership, Origin, StoreError},
};

/// Why a transaction body was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    NotJson(String),
    #[error("{0}")]
    BadJson(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Same txnId, same body as one already taken in: nothing to do.
    Replay,
    Taken(Taken),
}

struct View<'a> {
    shared: &'a Shared,
    control: Option<ruma::OwnedRoomId>,
    /// The bot's membership changes seen earlier in this same transaction.
    overlay: HashMap<ruma::OwnedRoomId, BotMembership>,
    /// The knockers of knocks kept earlier in this same batch.
    knockers: std::collections::HashSet<String>,
}

impl Interests for View<'_> {
    fn bot(&self) -> &UserId {
        &self.shared.bot
    }
    fn control_room(&self) -> Option<&RoomId> {
        self.control.as_deref()
    }
    fn is_managed(&self, room: &RoomId) -> bool {
        let m = match self.overlay.get(room) {
            Some(m) => Some(*m),
            None => self.shared.store.rooms().bot_in(room.as_str()),
        };
        matches!(m, Some(BotMembership::Joined | BotMembership::Invited))
    }
    fn is_knocker(&self, user: &str) -> bool {
        self.knockers.contains(user)
            || self.shared.intake.is_knocker(user)
            || self.shared.store.knocks().is_knocker(user)
    }
    fn is_list_room(&self, room: &RoomId) -> bool {
        self.shared.lists.is_list_room(room.as_str())
    }
}

/// The bot's membership that an event of its own membership sets.
fn bot_membership(membership: &MembershipState) -> Option<BotMembership> {
    match membership {
        MembershipState::Invite => Some(BotMembership::Invited),
        MembershipState::Join => Some(BotMembership::Joined),
        MembershipState::Leave | MembershipState::Ban => Some(BotMembership::Left),
        _ => None,
    }
}

/// What became of the events of a transaction or catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Events kept: appended to the journal, durably (the worker handles each once, by
    /// event ID).
    pub kept: usize,
    /// Events not needed.
    pub dropped: u64,
    /// Events that could not be read.
    pub malformed: u64,
}

/// Takes in a pushed transaction body. Replays (same txnId, same body, lately) are no-ops; a
/// reused txnId with a different body is taken in (the worker takes each event in once).
pub async fn take_transaction(shared: &Shared, txn_id: &str, body: &[u8]) -> Result<TxnOutcome, IntakeError> {
    let metrics = &shared.metrics;
    let started = Instant::now();
    let hash: [u8; 32] = Sha256::digest(body).into();
    let replay = shared.intake.is_replay(txn_id, &hash);
    metrics.phase(Phase::Check, started);
    if replay {
        return Ok(TxnOutcome::Replay);
    }
    // Storage has failed: nothing taken in now could be handled (the process is about to
    // stop, to be started again). The homeserver sends it again.
    if shared.store.has_failed() {
        return Err(IntakeError::Store(StoreError::Journal("storage has failed; knockwarden is restarting".into())));
    }
    let started = Instant::now();
    let events = split_events(body)?;
    let selected = select_events(shared, events);
    metrics.phase(Phase::Filter, started);
    let origin = Origin::Push { txn_id: txn_id.to_owned() };
    let taken = store_events(shared, &origin, Some(&hash), selected).await?;
    // Remembered once durable: a transaction that failed is not a replay when resent.
    shared.intake.remember_txn(txn_id, hash);
    Ok(TxnOutcome::Taken(taken))
}

/// The body of `PUT /_matrix/app/v1/transactions/{txnId}`: each event is kept as its JSON
/// text, so that one event that cannot be read (too deep, wrong types) costs only itself.
/// Other fields (`ephemeral`, `to_device`, …) are skipped.
#[derive(serde::Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
}

/// Splits a body into its events' JSON texts, in one pass that builds nothing: not JSON is
/// `NotJson`, JSON without an `events` array is `BadJson`. Each event is then read on its own
/// ([`Head::parse`], in [`take_events`]).
pub fn split_events(body: &[u8]) -> Result<Vec<&str>, IntakeError> {
    let text = std::str::from_utf8(body).map_err(|e| IntakeError::NotJson(format!("the body is not UTF-8: {e}")))?;
    let push = serde_json::from_str::<Push>(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            IntakeError::NotJson(e.to_string())
        } else {
            IntakeError::BadJson(format!("not a transaction: {e}"))
        }
    })?;
    Ok(push.events.into_iter().map(|e| e.get()).collect())
}

/// Filters events, given as JSON texts, and appends those needed to the journal, durably:
/// [`select_events`], then [`store_events`] (for catch-ups; pushed transactions go through
/// [`take_transaction`]).
pub async fn take_events<'a>(
    shared: &Shared,
    origin: &Origin,
    events: impl IntoIterator<Item = &'a str>,
) -> Result<Taken, StoreError> {
    let selected = select_events(shared, events);
    store_events(shared, origin, None, selected).await
}

/// The events of a transaction (or a catch-up) that knockwarden needs, read, not stored yet.
struct Selected {
    kept: Vec<Box<RawValue>>,
    /// The knockers of the knocks among them.
    knockers: Vec<String>,
    /// The bot's membership changes among them, to remember with them.
    bot: Vec<(String, BotMembership)>,
    dropped: u64,
    malformed: u64,
}

/// Reads each event's routing fields and keeps those knockwarden needs. An event that cannot
/// be read is dropped and counted as malformed, with its ID in the log.
fn select_events<'a>(shared: &Shared, events: impl IntoIterator<Item = &'a str>) -> Selected {
    let mut view =
        View { shared, control: shared.control_room_id(), overlay: HashMap::new(), knockers: Default::default() };
    let mut kept = Vec::new();
    let mut knockers = Vec::new();
    let mut bot = Vec::new();
    let (mut dropped, mut malformed) = (0u64, 0u64);
    for json in events {
        let head = match Head::parse(json) {
            Ok(h) => h,
            Err(e) => {
                let event_id = crate::events::event_id_of(json);
                tracing::warn!(event_id, error = %e, "dropping an event that cannot be read");
                malformed += 1;
                continue;
            }
        };
        if !is_wanted(&head, &view) {
            tracing::trace!(event_id = %head.event_id, event_type = %head.event_type, "not needed");
            dropped += 1;
            continue;
        }
        // Kept: the whole event is read once, here, as the worker will read it, so that one
        // it could not read (too deep for the parser, a content of the wrong shape) costs only
        // itself; its text is what is stored.
        let event_id = head.event_id.clone();
        if !crate::events::nests_within_limit(json) {
            tracing::warn!(%event_id, max = crate::events::MAX_DEPTH, "dropping an event nested deeper than knockwarden reads");
            malformed += 1;
            continue;
        }
        let event = match head.into_event() {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(%event_id, error = %e, "dropping an event that cannot be read");
                malformed += 1;
                continue;
            }
        };
        let text = RawValue::from_string(json.to_owned()).expect("the text was just read as JSON");
        let member = match &event.body {
            Body::Member(m) => Some(m),
            _ => None,
        };
        let knocker = member.filter(|m| m.membership == MembershipState::Knock).map(|m| m.user.clone());
        if let Some(m) = member.filter(|m| m.user == shared.bot.as_str())
            && let Some(m) = bot_membership(&m.membership)
        {
            view.overlay.insert(event.room_id.clone(), m);
            bot.push((event.room_id.to_string(), m));
        }
        if let Some(k) = knocker {
            view.knockers.insert(k.clone());
            knockers.push(k);
        }
        kept.push(text);
    }
    Selected { kept, knockers, bot, dropped, malformed }
}

/// Appends selected events to the journal, as one record, and syncs it (nothing when none is
/// kept: a replay of such a transaction costs nothing to redo); counts the others.
async fn store_events(
    shared: &Shared,
    origin: &Origin,
    body_hash: Option<&[u8; 32]>,
    selected: Selected,
) -> Result<Taken, StoreError> {
    let Selected { kept, knockers, bot, dropped, malformed } = selected;
    let metrics = &shared.metrics;
    let taken = Taken { kept: kept.len(), dropped, malformed };
    // Counted once the transaction is taken: one refused is sent again, and counted then.
    let count = || {
        shared.store.journal().count_dropped(dropped, malformed);
        Metrics::add(&metrics.events, "dropped", dropped);
        Metrics::add(&metrics.events, "malformed", malformed);
    };
    if kept.is_empty() {
        count();
        return Ok(taken);
    }
    // While the worker is a backlog's length behind, the homeserver waits for its 200.
    let started = Instant::now();
    if shared.intake.wait_for_room().await {
        metrics.phase(Phase::Wait, started);
    }
    let started = Instant::now();
    let events = kept.len();
    let seq = shared
        .store
        .journal()
        .append(origin, body_hash, kept, knockers.clone(), bot, |seq| shared.intake.appended(seq, events, knockers))?;
    metrics.phase(Phase::Store, started);
    let started = Instant::now();
    shared.store.journal().sync(seq).await?;
    metrics.phase(Phase::Flush, started);
    count();
    // The worker reads only what is durable.
    shared.inbox_ready.notify_one();
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Any JSON value, nested up to `depth` levels, with strings that may be IDs or junk.
    fn value(depth: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop::sample::select(vec!["m.room.member", "knock", "join", "@a:x", "!r:x", "$e", "", "\u{0}"])
                .prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(depth, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "event_id",
                        "room_id",
                        "sender",
                        "type",
                        "state_key",
                        "content",
                        "membership",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..7,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A value `n` levels deep.
    fn nested(n: usize) -> Value {
        (0..n).fold(json!(1), |v, _| json!([v]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any bytes: refused with a reason or split, never a panic.
        #[test]
        fn any_body_is_split_or_refused(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = split_events(&body);
        }

        /// Any events in a transaction: the body is taken, each event is read on its own, and
        /// one that cannot be read says why.
        #[test]
        fn every_event_stands_alone(events in prop::collection::vec(value(4), 0..12), deep in 0usize..400) {
            let mut events = events;
            events.push(nested(deep));
            let body = serde_json::to_vec(&json!({"events": events, "ephemeral": []})).unwrap();
            let split = split_events(&body).expect("a body with an events array is a transaction");
            prop_assert_eq!(split.len(), events.len());
            for (text, original) in split.iter().zip(&events) {
                match Head::parse(text) {
                    Ok(head) => prop_assert_eq!(head.event_id.as_str(), original["event_id"].as_str().unwrap()),
                    Err(why) => prop_assert!(!why.to_string().is_empty()),
                }
            }
        }
    }

    #[test]
    fn only_bodies_without_events_are_refused() {
        assert!(matches!(split_events(b"{\"events\": 3}"), Err(IntakeError::BadJson(_))));
        assert!(matches!(split_events(b"{}"), Err(IntakeError::BadJson(_))));
        assert!(matches!(split_events(b"{\"events\": ["), Err(IntakeError::NotJson(_))));
        assert!(matches!(split_events(b"\xff"), Err(IntakeError::NotJson(_))));
        let deep = format!("{{\"events\": [{}1{}, {{}}]}}", "[".repeat(100_000), "]".repeat(100_000));
        let events = split_events(deep.as_bytes()).unwrap();
        assert_eq!(events.len(), 2, "depth costs only the event");
        assert!(Head::parse(events[0]).is_err());
        // Deep where knockwarden does not look: the routing fields are still read.
        let ev = format!(
            "{{\"event_id\":\"$e\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\",\"type\":\"m.room.message\",\"content\":{{\"x\":{}1{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let head = Head::parse(&ev).unwrap();
        assert_eq!(head.kind, crate::events::Kind::Message);
        assert!(head.into_event().is_ok(), "the content is read only where knockwarden looks");
    }
}

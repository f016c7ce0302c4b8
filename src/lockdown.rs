//! Lockdown during a wave: while a room is in lockdown, knocks on it stay open, but a
//! decision to accept becomes `review` (see [`crate::policy::Knock::lockdown`]).
//!
//! A lockdown starts by `!knock lockdown` ([`crate::control`]) or when a policy rule with
//! `lockdown:` matches a knock ([`begin_ops`], from the worker, in the knock's transaction);
//! it is kept in the database ([`crate::storage::Lockdown`]) and ends by
//! `!knock lockdown off` or when its time is up: decisions stop counting it at once, and the
//! [`sweep`] forgets it with a notice in the control room, in one transaction.

use std::time::Duration;

use crate::{
    app::Shared,
    duration,
    notices::{Msg, room_label},
    storage::{Lockdown, LockdownCause, Lockdowns, Op, Store, StoreError, now_ms},
};

/// How often ended lockdowns are swept.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The ops that put `room` in lockdown until `now + length`, by `cause`: a lockdown in force
/// ends no earlier than it did (extended, never shortened, by a rule), and one that begins
/// is announced in the control room.
pub fn begin_ops(
    store: &Store,
    room: &ruma::RoomId,
    length: Duration,
    cause: LockdownCause,
    now: u64,
) -> Result<Vec<Op>, StoreError> {
    let until = now.saturating_add(length.as_millis() as u64);
    let current = store.lockdowns().active(room.as_str(), now)?;
    let lockdown = match &current {
        Some(l) if l.until_ms >= until => return Ok(vec![]),
        Some(l) => Lockdown { until_ms: until, cause, ..l.clone() },
        None => Lockdown { room_id: room.to_owned(), since_ms: now, until_ms: until, cause },
    };
    let mut ops = vec![Lockdowns::put(&lockdown)];
    if current.is_none() {
        tracing::warn!(room = %room, until = lockdown.until_ms, cause = ?lockdown.cause, "lockdown begins");
        ops.push(store.outbox().push(began(store, &lockdown, now).notice())?);
    }
    Ok(ops)
}

/// The notice that a lockdown began.
pub fn began(store: &Store, l: &Lockdown, now: u64) -> Msg {
    let label = room_label(store, &l.room_id);
    let mut m = Msg::new();
    m.text("🔒 ").bold(&label).text(&format!(
        " is in lockdown {}: it ends {}. Knocks stay open, but none is accepted by policy; those that would \
         be are held for review. !knock lockdown off {label} ends it.",
        l.cause,
        ends(l, now)
    ));
    m
}

/// The notice that a lockdown ended.
pub fn ended(store: &Store, l: &Lockdown, by: Option<&str>) -> Msg {
    let label = room_label(store, &l.room_id);
    let how = match by {
        Some(user) => format!("ended by {user}"),
        None => "is over".to_owned(),
    };
    let mut m = Msg::new();
    m.text("🔓 The lockdown of ").bold(&label).text(&format!(" {how}: knocks are decided by policy again."));
    m
}

/// When a lockdown ends and how long it has left: `Sun, 06 Dec 2026 20:07:00 GMT (59m left)`.
pub fn ends(l: &Lockdown, now: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(l.until_ms);
    format!("{} ({} left)", httpdate::fmt_http_date(at), left(l, now))
}

/// How long a lockdown has left, as people write it.
/// (whole minutes, rounded up, past the first minute).
pub fn left(l: &Lockdown, now: u64) -> String {
    let secs = l.until_ms.saturating_sub(now).div_ceil(1000).max(1);
    let secs = if secs > 60 { secs.div_ceil(60) * 60 } else { secs };
    duration::format(Duration::from_secs(secs))
}

/// Forgets the lockdowns whose time is up, each with a notice.
pub fn sweep(shared: &Shared, now: u64) -> Result<(), StoreError> {
    let store = &shared.store;
    // Most sweeps find nothing over: they leave the write lock alone. Under it, the records
    // are read again (a rule may have extended one meanwhile).
    if store.lockdowns().all()?.iter().all(|l| l.is_active(now)) {
        return Ok(());
    }
    store.serialized(|| {
        let mut ops = Vec::new();
        for l in store.lockdowns().all()?.into_iter().filter(|l| !l.is_active(now)) {
            tracing::info!(room = %l.room_id, "lockdown over");
            ops.push(Lockdowns::del(l.room_id.as_str()));
            ops.push(store.outbox().push(ended(store, &l, None).notice())?);
        }
        store.commit(&ops)
    })?;
    shared.outbox_ready.notify_one();
    Ok(())
}

/// Sweeps until the service stops.
pub async fn run(shared: Shared) {
    crate::app::periodically(&shared, SWEEP_EVERY, || {
        if let Err(e) = sweep(&shared, now_ms()) {
            tracing::error!(error = %e, "lockdown sweep failed; trying again later");
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_extends_a_lockdown_never_shortens_it_and_announces_only_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let room: ruma::OwnedRoomId = "!r:x".try_into().unwrap();
        let cause = || LockdownCause::Rule { policy: "p".into(), rule: "wave".into() };
        let hour = Duration::from_secs(3600);
        let until = |store: &Store| store.lockdowns().get(room.as_str()).unwrap().map(|l| (l.since_ms, l.until_ms));

        let ops = begin_ops(&store, &room, hour, cause(), 1_000).unwrap();
        assert_eq!(ops.len(), 2, "the lockdown and its notice");
        store.commit(&ops).unwrap();
        assert_eq!(store.outbox().len(), 1);
        // Extended from now, with no second notice; it began when it began.
        store.commit(&begin_ops(&store, &room, 2 * hour, cause(), 2_000).unwrap()).unwrap();
        assert_eq!(until(&store), Some((1_000, 2_000 + 7_200_000)));
        assert_eq!(store.outbox().len(), 1);
        // A shorter one changes nothing.
        assert!(begin_ops(&store, &room, Duration::from_secs(60), cause(), 3_000).unwrap().is_empty());
        // Once over (not yet swept), a match begins a new one, announced.
        let later = 2_000 + 7_200_000 + 1;
        let ops = begin_ops(&store, &room, hour, cause(), later).unwrap();
        assert_eq!(ops.len(), 2);
        store.commit(&ops).unwrap();
        assert_eq!(until(&store), Some((later, later + 3_600_000)));
    }
}

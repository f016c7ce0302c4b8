//! The runner: carries out the outbox on the homeserver, concurrently, in order per subject.
//!
//! A plain queue runner: it knows entries, subjects, retries and the failed list, not what
//! the actions mean. What an action does is a [`Perform`] implementation's business
//! ([`crate::actions`]).
//!
//! - Actions about one subject (one knocker in one room; the control room; one room's state)
//!   run one at a time, in the order they were queued ([`lanes`]). Everything else runs
//!   concurrently, up to `homeserver.max_concurrent_requests` at once.
//! - A transient failure (429, 5xx, no answer) delays only its own lane: the action is tried
//!   again after the delay the homeserver asked for, or an exponential back-off with jitter
//!   capped at 5 minutes. Retries are written to the outbox, so they survive restarts.
//! - An action that has not succeeded within `actions.give_up_after`, a permanent failure,
//!   and a panic while performing it move the action to the failed list, in the transaction
//!   that takes it out of the outbox, with whatever [`Perform::record_failure`] adds (a
//!   notice). `!knock retry` puts it back.
//! - A message queued by this process is sent only once the store has made it durable (with
//!   what queued it): a crash never has a notice posted whose cause is then lost and redone,
//!   queuing it again under another number (another transaction ID).
//! - What an action did is recorded ([`Perform::record`]) in the same transaction that removes
//!   it from the outbox: a crash either leaves it queued (it is performed again, and its own
//!   checks keep it from acting twice) or has fully recorded it. The records of actions done
//!   at about the same time share one transaction ([`recorder`]).

pub mod lanes;
pub mod recorder;

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::FutureExt;
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use self::recorder::{Recorder, Refused};
use crate::{
    homeserver::HsError,
    storage::{FailCause, FailedItem, Op, OutboxEntry, Store, StoreError, now_ms},
    supervise::{Tasks, panic_message},
};

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The first wait: short, so one failed call among good ones costs little; it doubles (with
/// jitter) on every further failure and reaches the cap after about 15 failures.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Delay before attempt number `attempts + 1`, after `attempts` failures.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_BACKOFF);
    }
    ExponentialBuilder::default()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Homeserver(#[from] HsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not retryable: the homeserver refused, or the action cannot be carried out. The text
    /// says why, for people.
    #[error("{0}")]
    Permanent(String),
    /// Not retryable now: the bot lacks the power to do it (`why`, for people). It is put
    /// back in the queue when the bot gains that power.
    #[error("{why}")]
    NoPower { why: String, cause: FailCause },
}

impl ActionError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Homeserver(e) => e.is_transient(),
            ActionError::Store(_) => true,
            ActionError::Permanent(_) | ActionError::NoPower { .. } => false,
        }
    }

    /// Why it failed, when something can be done about it without a moderator.
    fn cause(&self) -> Option<FailCause> {
        match self {
            ActionError::NoPower { cause, .. } => Some(cause.clone()),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ActionError::Homeserver(h) => h.retry_after(),
            _ => None,
        }
    }
}

/// What actions do: the seam between the runner and the rest of knockwarden.
#[async_trait]
pub trait Perform: Send + Sync + 'static {
    /// What performing an action came to, for [`Perform::record`].
    type Performed: Send + 'static;

    /// Carries out action `seq` on the homeserver. `fresh`: queued by this process and not
    /// failed before (what the store knows is then as current as the homeserver's pushes).
    async fn perform(&self, seq: u64, entry: &OutboxEntry, fresh: bool) -> Result<Self::Performed, ActionError>;

    /// The writes that record what `performed` did (follow-up actions, settled audit
    /// entries), committed with the action's removal from the outbox. Runs under
    /// [`Store::serialized`], in a [`Store::batch`] with other actions' records (its reads see
    /// what those staged), on a blocking thread.
    fn record(&self, seq: u64, entry: &OutboxEntry, performed: Self::Performed) -> Result<Vec<Op>, StoreError>;

    /// The writes that go with moving the action to the failed list as `number`, because of
    /// `error` (a notice; the audit entry settled as failed). Runs under [`Store::serialized`].
    fn record_failure(&self, entry: &OutboxEntry, error: &str, number: u64) -> Result<Vec<Op>, StoreError>;
}

/// The runner's settings.
/// Attempts in flight for each request the homeserver may have in flight
/// (`homeserver.max_concurrent_requests`, which the homeserver's client enforces on its own,
/// see [`crate::homeserver::limited`]). An attempt spends most of its time not on the
/// homeserver but waiting for its record to be committed, behind the worker's batch: with one
/// attempt per request, the actions fell behind the decisions under load (docs/benchmarks-history.md,
/// seventh sitting).
pub const ATTEMPTS_PER_REQUEST: usize = 8;

#[derive(Clone)]
pub struct Settings {
    /// Actions in flight at once (their requests to the homeserver are limited apart).
    pub max_in_flight: usize,
    /// An action failing transiently for longer than this goes to the failed list.
    pub give_up_after: Duration,
    /// When this process started: actions queued earlier are not fresh.
    pub started_ms: u64,
    /// Where attempts are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Actions in flight at once for each other server (see [`lanes`]).
    pub per_server: lanes::PerServer,
    /// Whether the control room is joined: until it is, what needs it waits (see [`lanes`]).
    pub control_room_joined: watch::Receiver<bool>,
}

/// What became of one attempt.
enum Next {
    Done,
    RetryAt(Box<OutboxEntry>),
    Failed,
}

/// Runs until `stopping`, then lets the actions in flight finish.
pub async fn run<P: Perform>(
    perform: Arc<P>,
    store: Store,
    wake: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
    settings: Settings,
    tasks: Arc<Tasks>,
) {
    let mut lanes = lanes::Lanes::per_server(settings.per_server.clone());
    let mut joined = settings.control_room_joined.clone();
    lanes.set_control_room_joined(*joined.borrow_and_update());
    let (recorder, recording) = recorder::start(perform.clone(), store.clone());
    let mut in_flight: JoinSet<(u64, Next)> = JoinSet::new();
    // Learn of new actions from the store's feed, then read what is queued already.
    store.outbox().watch();
    loop {
        match store.outbox().all() {
            Ok(all) => {
                for (seq, entry) in all {
                    lanes.add(seq, entry);
                }
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping.changed() => return,
                }
            }
        }
    }
    let max = settings.max_in_flight.max(1);
    loop {
        absorb(&store, &mut lanes);
        tasks.set_oldest_action(lanes.oldest_created_ms());
        if *stopping.borrow() {
            break;
        }
        let now = now_ms();
        while in_flight.len() < max {
            let Some((seq, entry)) = lanes.start_next(now) else { break };
            let fresh = entry.attempts == 0 && entry.created_ms >= settings.started_ms;
            in_flight.spawn(attempt(
                perform.clone(),
                recorder.clone(),
                store.clone(),
                seq,
                entry,
                fresh,
                settings.clone(),
            ));
        }
        let due = lanes.next_due().map(|t| Duration::from_millis(t.saturating_sub(now_ms())));
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => settle(&mut lanes, joined),
            _ = wake.notified() => {}
            Ok(()) = joined.changed() => lanes.set_control_room_joined(*joined.borrow_and_update()),
            _ = tokio::time::sleep(due.unwrap_or(Duration::from_secs(3600))), if due.is_some() => {}
            _ = stopping.changed() => {}
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        settle(&mut lanes, joined);
    }
    // Every attempt has had its answer; the recorder ends with its last sender.
    drop(recorder);
    let _ = recording.await;
}

/// Queues the actions the store saw queued since the last look.
fn absorb(store: &Store, lanes: &mut lanes::Lanes) {
    for seq in store.outbox().take_queued() {
        if lanes.contains(seq) {
            continue;
        }
        match store.outbox().entry(seq) {
            Ok(Some(entry)) => lanes.add(seq, entry),
            // Done already (it was read with the outbox at start).
            Ok(None) => {}
            Err(e) => tracing::error!(seq, error = %e, "cannot read a queued action; it runs after a restart"),
        }
    }
}

fn settle(lanes: &mut lanes::Lanes, joined: Result<(u64, Next), tokio::task::JoinError>) {
    match joined {
        Ok((seq, Next::Done | Next::Failed)) => lanes.finished(seq),
        Ok((seq, Next::RetryAt(entry))) => lanes.retry_at(seq, *entry),
        // `attempt` catches panics; this is a panic in catching one.
        Err(e) => tracing::error!(error = %e, "an action's task failed; its lane waits for a restart"),
    }
}

/// One attempt at action `seq`, recorded. A panic anywhere in it is caught here.
async fn attempt<P: Perform>(
    perform: Arc<P>,
    recorder: Recorder<P::Performed>,
    store: Store,
    seq: u64,
    entry: OutboxEntry,
    fresh: bool,
    settings: Settings,
) -> (u64, Next) {
    let Settings { give_up_after, metrics, .. } = settings;
    let kind = entry.action.kind();
    // No message before its cause is durable: the batch that queued a fresh one (and with it
    // how far the worker got) may not be on disk yet. Lost in a crash, it would be handled
    // again and queue the same message anew, under another number (another transaction ID:
    // a second notice). Flushes are grouped: one covers every message started meanwhile.
    // Invites, kicks and bans need no flush: each checks the knocker's membership first, so
    // one queued again is not carried out twice (and a flush for each would hold them up
    // under load: the ingest benchmark's invites fell tens of seconds behind).
    if fresh
        && entry.action.is_message()
        && let Err(e) = store.flush().await
    {
        let next = retry_later(&store, seq, entry, &ActionError::Store(e));
        return (seq, next);
    }
    let performed = AssertUnwindSafe(perform.perform(seq, &entry, fresh)).catch_unwind().await;
    // Ok(Ok): done and recorded; Ok(Err): failed; Err: a panic, with its message.
    let tried: Result<Result<(), ActionError>, String> = match performed {
        Ok(Ok(performed)) => match recorder.record(seq, &entry, performed).await {
            Ok(()) => Ok(Ok(())),
            Err(Refused::Store(e)) => Ok(Err(ActionError::Store(e))),
            Err(Refused::Panicked(message)) => Err(message),
        },
        Ok(Err(e)) => Ok(Err(e)),
        Err(panic) => Err(panic_message(&*panic)),
    };
    let next = match tried {
        Ok(Ok(())) => Next::Done,
        Ok(Err(e))
            if e.is_transient() && now_ms().saturating_sub(entry.created_ms) < give_up_after.as_millis() as u64 =>
        {
            retry_later(&store, seq, entry, &e)
        }
        Ok(Err(e)) => {
            let why = if e.is_transient() {
                format!("still failing after {}: {e}", crate::duration::format(give_up_after))
            } else {
                e.to_string()
            };
            give_up(&*perform, &store, seq, entry, &why, e.cause())
        }
        Err(panic) => {
            let why = format!("knockwarden failed while carrying it out (a bug): {panic}");
            give_up(&*perform, &store, seq, entry, &why, None)
        }
    };
    let outcome = match next {
        Next::Done => "done",
        Next::RetryAt(_) => "retried",
        Next::Failed => "failed",
    };
    metrics.actions.get_or_create(&crate::metrics::ActionLabels { kind, outcome }).inc();
    (seq, next)
}

fn retry_later(store: &Store, seq: u64, mut entry: OutboxEntry, e: &ActionError) -> Next {
    entry.attempts += 1;
    let delay = backoff(entry.attempts, e.retry_after());
    entry.not_before_ms = now_ms() + delay.as_millis() as u64;
    entry.last_error = Some(e.to_string());
    tracing::warn!(action = %entry.action.describe(), attempts = entry.attempts, error = %e, retry_in_ms = delay.as_millis() as u64, "action failed; will retry");
    if let Err(e) = store.outbox().retry_later(seq, &entry) {
        tracing::error!(error = %e, "cannot record a failed attempt");
    }
    Next::RetryAt(Box::new(entry))
}

fn give_up<P: Perform>(
    perform: &P,
    store: &Store,
    seq: u64,
    entry: OutboxEntry,
    why: &str,
    cause: Option<FailCause>,
) -> Next {
    tracing::error!(action = %entry.action.describe(), error = why, "action failed for good; it is kept in the failed list");
    let failed = FailedItem::Action { seq, entry: entry.clone() };
    let recorded = store.failures().fail(failed, why, cause, |number| {
        // A bug in rendering the failure must not keep the action from the failed list.
        let mut ops = std::panic::catch_unwind(AssertUnwindSafe(|| perform.record_failure(&entry, why, number)))
            .unwrap_or_else(|p| {
                tracing::error!(panic = %panic_message(&*p), "reporting a failed action panicked");
                Ok(vec![])
            })?;
        ops.push(Op::Add { counter: "actions_failed".into(), by: 1 });
        Ok(ops)
    });
    match recorded {
        Ok(number) => {
            tracing::info!(number, "action moved to the failed list");
            Next::Failed
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot move a failed action to the failed list; trying again later");
            let mut entry = entry;
            entry.not_before_ms = now_ms() + 1_000;
            Next::RetryAt(Box::new(entry))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(20));
        assert!(backoff(12, None) >= Duration::from_secs(10));
        assert!(backoff(30, None) <= MAX_BACKOFF);
        assert_eq!(backoff(3, Some(Duration::from_millis(1200))), Duration::from_millis(1200));
        assert_eq!(backoff(3, Some(Duration::from_secs(9999))), MAX_BACKOFF);
    }
}

//! The recorder: commits what performed actions did, many actions in one sled transaction.
//!
//! What one action did ([`Perform::record`]: its follow-up actions, its settled audit entry)
//! and its removal from the outbox are one unit, as before. The recorder stages the units
//! that arrived while it wrote the previous ones and commits them together
//! ([`Store::batch`]); a unit whose record fails or panics is undone alone and the others are
//! committed. Each attempt waits for its own unit's answer, so an action's lane moves on only
//! once what it did is written.
//!
//! Why: every sled transaction takes sled's process-wide write lock, which waits for any flush
//! in progress (a flush holds that lock's read side until its data is on disk). With one
//! transaction per action, each action waited for the intake's flushes in turn, and so did
//! every read queued behind it.

use std::{panic::AssertUnwindSafe, sync::Arc};

use tokio::sync::{mpsc, oneshot};

use super::Perform;
use crate::{
    storage::{OutboxEntry, Store, StoreError},
    supervise::panic_message,
};

/// Most units committed in one transaction.
const MAX_UNITS: usize = 256;

/// Why a unit was not committed.
#[derive(Debug)]
pub enum Refused {
    /// Storage failed (recording it again later may succeed).
    Store(StoreError),
    /// Working out the record panicked (a bug), with the panic's message.
    Panicked(String),
}

/// One action's record, waiting to be committed.
struct Unit<T> {
    seq: u64,
    entry: OutboxEntry,
    performed: T,
    answer: oneshot::Sender<Result<(), Refused>>,
}

/// Hands records to the recorder's task; cheap to clone.
pub struct Recorder<T> {
    units: mpsc::UnboundedSender<Unit<T>>,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self { units: self.units.clone() }
    }
}

impl<T: Send + 'static> Recorder<T> {
    /// Records what action `seq` did and removes it from the outbox; returns once that is
    /// committed (or refused).
    pub async fn record(&self, seq: u64, entry: &OutboxEntry, performed: T) -> Result<(), Refused> {
        let (answer, answered) = oneshot::channel();
        let unit = Unit { seq, entry: entry.clone(), performed, answer };
        if self.units.send(unit).is_err() {
            return Err(Refused::Store(gone()));
        }
        answered.await.unwrap_or_else(|_| Err(Refused::Store(gone())))
    }
}

/// The error of a unit the recorder dropped unanswered (it stopped, or its thread failed).
fn gone() -> StoreError {
    StoreError::Stopped("the recorder stopped before recording an action")
}

/// Starts the recorder's task; it ends once every [`Recorder`] is dropped and what they sent
/// is committed.
pub fn start<P: Perform>(perform: Arc<P>, store: Store) -> (Recorder<P::Performed>, tokio::task::JoinHandle<()>) {
    let (units, mut arriving) = mpsc::unbounded_channel::<Unit<P::Performed>>();
    let task = tokio::spawn(async move {
        while let Some(first) = arriving.recv().await {
            let mut units = vec![first];
            while units.len() < MAX_UNITS {
                match arriving.try_recv() {
                    Ok(unit) => units.push(unit),
                    Err(_) => break,
                }
            }
            let (perform, store) = (perform.clone(), store.clone());
            // Should the thread fail, its units' answers are dropped: their attempts hear
            // `gone` and try again.
            let _ = tokio::task::spawn_blocking(move || commit(&*perform, &store, units)).await;
        }
    });
    (Recorder { units }, task)
}

/// Stages each unit's writes, then commits them all; answers each unit.
fn commit<P: Perform>(perform: &P, store: &Store, units: Vec<Unit<P::Performed>>) {
    let mut answers = Vec::with_capacity(units.len());
    let committed = store.serialized(|| {
        store.batch(|| {
            for Unit { seq, entry, performed, answer } in units {
                let mark = store.staged_mark();
                let staged = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut ops = perform.record(seq, &entry, performed)?;
                    ops.push(crate::storage::Outbox::done(seq));
                    store.commit(&ops)
                }));
                let result = match staged {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        store.unstage_to(mark);
                        Err(Refused::Store(e))
                    }
                    Err(panic) => {
                        store.unstage_to(mark);
                        Err(Refused::Panicked(panic_message(&*panic)))
                    }
                };
                answers.push((answer, result));
            }
            Ok(())
        })
    });
    for (answer, result) in answers {
        let result = match (&committed, result) {
            (Err(e), Ok(())) => Err(Refused::Store(e.clone())),
            (_, result) => result,
        };
        let _ = answer.send(result);
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::{
        runner::ActionError,
        storage::{Action, Op},
    };

    /// Records each action as one more `recorded`, committed by the record itself (as records
    /// that update a room or a review item do); then panics recording action `panics_on`, and
    /// fails (storage) recording action `fails_on`.
    struct Counting {
        store: Store,
        panics_on: u64,
        fails_on: u64,
    }

    #[async_trait]
    impl Perform for Counting {
        type Performed = ();
        async fn perform(&self, _: u64, _: &OutboxEntry, _: bool) -> Result<(), ActionError> {
            Ok(())
        }
        fn record(&self, seq: u64, _: &OutboxEntry, _: ()) -> Result<Vec<Op>, StoreError> {
            self.store.commit(&[Op::Add { counter: "recorded".into(), by: 1 }])?;
            assert_ne!(seq, self.panics_on, "a bug in recording");
            if seq == self.fails_on {
                return Err(StoreError::Corrupt { tree: "outbox", message: "unreadable".into() });
            }
            Ok(vec![])
        }
        fn record_failure(&self, _: &OutboxEntry, _: &str, _: u64) -> Result<Vec<Op>, StoreError> {
            Ok(vec![])
        }
    }

    fn queue(store: &Store, n: usize) -> Vec<(u64, OutboxEntry)> {
        for _ in 0..n {
            let op = store.outbox().push(Action::ResolveAliases).unwrap();
            store.commit(&[op]).unwrap();
        }
        store.outbox().all().unwrap()
    }

    /// Many records at once: a record that panics or fails is undone alone (what it wrote
    /// itself included); its action stays queued, the others are recorded and removed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_record_costs_only_its_own_action() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let queued = queue(&store, 40);
        let (panics_on, fails_on) = (queued[7].0, queued[20].0);
        let (recorder, task) =
            super::start(Arc::new(Counting { store: store.clone(), panics_on, fails_on }), store.clone());
        let answers = futures_util::future::join_all(queued.iter().map(|(seq, entry)| {
            let recorder = recorder.clone();
            async move { (*seq, recorder.record(*seq, entry, ()).await) }
        }))
        .await;
        for (seq, answer) in &answers {
            match answer {
                Ok(()) => assert!(*seq != panics_on && *seq != fails_on),
                Err(Refused::Panicked(m)) => assert!(*seq == panics_on && m.contains("a bug in recording"), "{m}"),
                Err(Refused::Store(e)) => assert!(*seq == fails_on && e.to_string().contains("unreadable"), "{e}"),
            }
        }
        assert_eq!(store.counter("recorded").unwrap(), 38);
        let left: Vec<u64> = store.outbox().all().unwrap().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(left, vec![panics_on, fails_on]);
        drop(recorder);
        task.await.unwrap();
    }

    /// Once every sender is gone the task ends; a unit sent to a stopped recorder is refused
    /// as a storage failure (tried again later), not lost silently.
    #[tokio::test]
    async fn a_stopped_recorder_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let queued = queue(&store, 1);
        let (recorder, task) =
            super::start(Arc::new(Counting { store: store.clone(), panics_on: 0, fails_on: 0 }), store.clone());
        task.abort();
        let _ = task.await;
        let answer = recorder.record(queued[0].0, &queued[0].1, ()).await;
        assert!(matches!(answer, Err(Refused::Store(_))), "{answer:?}");
        assert_eq!(store.outbox().all().unwrap().len(), 1);
    }
}

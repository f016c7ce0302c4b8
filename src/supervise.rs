//! Supervision: which of knockwarden's long-running tasks are alive, for `GET /health`.
//!
//! Each task holds a [`Running`] mark while it runs; the mark is cleared when the task ends
//! for any reason, a panic included, so a dead task is reported, never silent. What happens
//! to a single event or action that panics is up to its task (it is caught there, and the
//! item goes to the failed list).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

/// The tasks `/health` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Drains the inbox ([`crate::pipeline::worker`]).
    Worker,
    /// Carries out the outbox ([`crate::runner`]).
    Runner,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Worker => "worker",
            Task::Runner => "runner",
        }
    }
}

/// Shared between the tasks and `/health`: cheap atomics, nothing to scan.
#[derive(Debug, Default)]
pub struct Tasks {
    worker: AtomicBool,
    runner: AtomicBool,
    /// When the oldest queued action was queued (ms since the epoch; 0: none queued).
    oldest_action_ms: AtomicU64,
    /// The start-up reconciliation with the homeserver (and its catch-up) is done.
    ready: AtomicBool,
    /// Knocks put aside until what deciding them needs is known.
    waiting_knocks: AtomicU64,
}

impl Tasks {
    fn flag(&self, t: Task) -> &AtomicBool {
        match t {
            Task::Worker => &self.worker,
            Task::Runner => &self.runner,
        }
    }

    /// Marks `t` running until the returned mark is dropped (move it into the task).
    pub fn running(self: &Arc<Self>, t: Task) -> Running {
        self.flag(t).store(true, Ordering::SeqCst);
        Running { tasks: self.clone(), task: t }
    }

    pub fn is_running(&self, t: Task) -> bool {
        self.flag(t).load(Ordering::SeqCst)
    }

    /// The tasks that should run and do not.
    pub fn stopped(&self) -> Vec<Task> {
        [Task::Worker, Task::Runner].into_iter().filter(|t| !self.is_running(*t)).collect()
    }

    /// The first reconciliation with the homeserver is done: knockwarden is ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Set by the runner whenever its queue changes.
    pub fn set_oldest_action(&self, created_ms: Option<u64>) {
        self.oldest_action_ms.store(created_ms.unwrap_or(0), Ordering::SeqCst);
    }

    /// When the oldest queued action was queued.
    pub fn oldest_action(&self) -> Option<u64> {
        Some(self.oldest_action_ms.load(Ordering::SeqCst)).filter(|&t| t > 0)
    }

    pub fn set_waiting_knocks(&self, n: u64) {
        self.waiting_knocks.store(n, Ordering::SeqCst);
    }

    /// Knocks put aside until an alias is looked up or a ban list read (as the worker last
    /// counted them).
    pub fn waiting_knocks(&self) -> u64 {
        self.waiting_knocks.load(Ordering::SeqCst)
    }
}

/// A task's mark: cleared on drop (the task returned, or unwound from a panic).
pub struct Running {
    tasks: Arc<Tasks>,
    task: Task,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.flag(self.task).store(false, Ordering::SeqCst);
        if std::thread::panicking() {
            tracing::error!(task = self.task.name(), "the task panicked and stopped; /health reports it");
        } else {
            tracing::info!(task = self.task.name(), "the task stopped");
        }
    }
}

/// The message a panic carried.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

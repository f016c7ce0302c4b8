//! The failed list, for moderators: `!knock retry N|all` puts what knockwarden gave up on
//! back in the queue (`!knock failed` is a report: [`super::reports::failed`]).

use super::{command::Retry, ctx::Ctx, reply::Done};
use crate::{
    runner::ActionError,
    storage::{FailedItem, Store, StoreError},
};

/// What a failed entry was, for people.
pub fn describe(item: &FailedItem) -> String {
    match item {
        FailedItem::Action { entry, .. } => entry.action.describe(),
        FailedItem::Event { item, .. } => {
            let id = crate::events::event_id_of(item.event.get());
            format!("handle the event {id}")
        }
    }
}

impl Ctx<'_> {
    /// `!knock retry N|all`: carried out, then rendered.
    pub fn retry(&self, which: Retry) -> Result<Done, ActionError> {
        let retried = retry(self.store(), which)?;
        if let Retried::Back(back) = &retried {
            tracing::info!(by = self.sender, count = back.len(), "failed actions put back in the queue");
            self.shared.inbox_ready.notify_one();
            self.shared.outbox_ready.notify_one();
        }
        Ok(retried.render())
    }
}

/// What `!knock retry` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Back in the queue: each entry's number and what it was.
    Back(Vec<(u64, String)>),
    NothingFailed,
    NoSuch(u64),
}

/// Puts failed entries back in the queue; needs only the store.
fn retry(store: &Store, which: Retry) -> Result<Retried, StoreError> {
    let numbers: Vec<u64> = match which {
        Retry::One(n) => vec![n],
        Retry::All => store.failures().all()?.iter().map(|f| f.number).collect(),
    };
    if numbers.is_empty() {
        return Ok(Retried::NothingFailed);
    }
    let mut back = Vec::new();
    for n in numbers {
        match store.failures().retry(n)? {
            Some(f) => back.push((n, describe(&f.item))),
            None if which == Retry::One(n) => return Ok(Retried::NoSuch(n)),
            None => {}
        }
    }
    Ok(Retried::Back(back))
}

impl Retried {
    /// The reply.
    pub(super) fn render(&self) -> Done {
        match self {
            Retried::NothingFailed => Done::text(true, "Nothing has failed: there is nothing to retry."),
            Retried::NoSuch(n) => {
                Done::text(false, &format!("There is no failed action {n}; !knock failed lists them."))
            }
            Retried::Back(back) => {
                let back: Vec<String> = back.iter().map(|(n, what)| format!("{n} ({what})")).collect();
                Done::text(true, &format!("Back in the queue: {}.", back.join(", ")))
            }
        }
    }
}

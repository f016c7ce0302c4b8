//! The failed list, for moderators: `!knock retry N|all` puts what knockwarden gave up on
//! back in the queue (`!knock failed` is a report: [`super::reports::failed`]).

use super::{
    command::Retry,
    run::{Ctx, Done},
};
use crate::{runner::ActionError, storage::FailedItem};

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
    pub fn retry(&self, which: Retry) -> Result<Done, ActionError> {
        let store = self.store();
        let numbers: Vec<u64> = match which {
            Retry::One(n) => vec![n],
            Retry::All => store.failed()?.iter().map(|f| f.number).collect(),
        };
        if numbers.is_empty() {
            return Ok(Done::text(true, "Nothing has failed: there is nothing to retry."));
        }
        let mut back = Vec::new();
        for n in &numbers {
            match store.retry_failed(*n)? {
                Some(f) => back.push(format!("{n} ({})", describe(&f.item))),
                None if which == Retry::One(*n) => {
                    return Ok(Done::text(false, &format!("There is no failed action {n}; !knock failed lists them.")));
                }
                None => {}
            }
        }
        tracing::info!(by = self.sender, count = back.len(), "failed actions put back in the queue");
        self.shared.inbox_ready.notify_one();
        self.shared.outbox_ready.notify_one();
        Ok(Done::text(true, &format!("Back in the queue: {}.", back.join(", "))))
    }
}

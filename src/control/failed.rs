//! The failed list, for moderators: `!knock failed` shows what knockwarden gave up on and
//! why; `!knock retry N|all` puts it back in the queue.

use super::{
    command::Retry,
    reports::{PAGE, ago, page_of},
    run::{Ctx, Done},
};
use crate::{
    notices,
    runner::ActionError,
    storage::{FailedItem, now_ms},
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
    pub fn failed(&self, page: usize) -> Result<Done, ActionError> {
        let all = self.store().failed()?;
        let title = format!("{} failed action(s)", all.len());
        let empty = "Nothing has failed: every action was carried out or is queued.";
        let (mut m, start) = match page_of(all.len(), page, &title, empty, "failed actions") {
            Ok(p) => p,
            Err(done) => return Ok(done),
        };
        let now = now_ms();
        for f in all.iter().skip(start).take(PAGE) {
            m.line().bold(&f.number.to_string());
            m.text(&format!(" {} · {} · {}", describe(&f.item), notices::clip(&f.error), ago(now, f.failed_ms)));
        }
        m.line().text("Put one back with !knock retry N, or all with !knock retry all.");
        Ok(Done::ok(m))
    }

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

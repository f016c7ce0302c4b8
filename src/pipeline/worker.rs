//! The worker: handles what the intake took in, oldest first, on a thread of its own.
//!
//! It reads the journal's records in order (and, first, sled's inbox entries: events retried
//! from the failed list). Each event is taken in once, by event ID ([`JournalLog::admit`]), and
//! becomes a list of writes (state, audit entries, review items, outbox actions). Up to
//! `BATCH` (128) events are handled in one batch ([`Store::batch`]): each event's reads see
//! what the events before it wrote, and the writes of all of them, with how far the worker
//! got in the journal, are committed in one sled transaction. A crash either leaves the
//! events past the last checkpoint to be handled again after restart, their first handling
//! lost with it, or has fully handled them: nothing is handled twice. What the handling
//! reads stays true until that commit ([`Store::serialized`]).
//!
//! A panic while handling one event is caught: what it wrote is undone, the event goes to the
//! failed list, with a notice, and the worker goes on with the next.
//!
//! The worker never waits on the network. A knock whose decision needs what is not known yet
//! (an alias of the policies not looked up, a ban list not read: the runner fetches those, in
//! lanes of their own) is put aside in sled's inbox ([`crate::storage::Parked::put`]) and the worker goes on.
//! Put-aside knocks are tried again, oldest first, each time such an input changes
//! ([`Shared::inputs_changed`], or a new policy version); until then the worker passes them
//! over without reading them.

use std::panic::AssertUnwindSafe;

pub use super::route::InboxEvent;
use super::route::{Handled, handle};
use crate::app::{Shared, wait_for};
use crate::{
    events::Event,
    notices::Msg,
    storage::{
        Action, Checkpoint, FailedItem, InboxItem, JournalLog, JournalRecord, Op, Origin, Parked, Rooms, StoreError,
    },
    supervise::panic_message,
};

/// Most entries handled in one go on the blocking thread before the worker looks at
/// `stopping` again and lets its results (actions queued) be taken up.
const BATCH: usize = 128;

/// Runs until the service stops, finishing the event in hand first.
///
/// Handling is synchronous (sled, deciding), so it runs on one thread of its own for the
/// worker's whole life, never on the async runtime's threads. Run there, it kept a runtime
/// thread busy for as long as the inbox was not empty, and the runner, woken from that thread,
/// waited for the whole inbox before it carried out a single action. One thread, not one per
/// batch: each thread that decides builds its own caches of the policies' regex sets (several
/// MiB with 10,000 rules).
pub async fn run(shared: Shared) {
    let runtime = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || work(&shared, &runtime)).await {
        Ok(()) => {}
        // A panic not caught per event (debug builds' worker fault): the worker stops.
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => {}
    }
}

/// The worker's loop, on its own thread; waits (on `runtime`) when there is nothing to do.
fn work(shared: &Shared, runtime: &tokio::runtime::Handle) {
    let mut stopping = shared.stopping.clone();
    let mut cursor = Cursor::default();
    loop {
        if *stopping.borrow() {
            return;
        }
        match drain_batch(shared, BATCH, &mut cursor) {
            Ok(Drained::Handled | Drained::Queued) => continue,
            Ok(Drained::Empty) => {
                if !runtime.block_on(wait_for(&shared.inbox_ready, &mut stopping)) {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed while handling the inbox; retrying in 1 s");
                runtime.block_on(tokio::time::sleep(std::time::Duration::from_secs(1)));
            }
        }
    }
}

/// What handling inbox entries came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    Handled,
    /// Handled, and actions were queued.
    Queued,
    Empty,
}

/// How far the worker has looked through sled's inbox since the inputs knocks wait for last
/// changed: the entries up to `after` wait still, and are passed over until they change.
#[derive(Debug, Default)]
struct Cursor {
    /// The inputs' change count and the policy version when the pass began.
    inputs: (u64, u64),
    after: Option<u64>,
    /// Knocks waiting (passed over in this pass, or put aside since it began).
    waiting: u64,
    /// The entries of knocks put aside since the pass began: they wait for what they waited
    /// for then, and are passed over unread.
    parked: std::collections::HashSet<u64>,
}

impl Cursor {
    /// Begins a new pass when the inputs changed since this one began.
    fn refresh(&mut self, shared: &Shared) {
        let now = (shared.inputs.load(std::sync::atomic::Ordering::SeqCst), shared.policies.current().version);
        if now != self.inputs {
            *self = Cursor { inputs: now, ..Cursor::default() };
        }
    }
}

/// What one batch did, counted as it goes.
#[derive(Default)]
struct Tally {
    /// Events handled (or found to be taken in already).
    handled: usize,
    /// Whether actions were queued.
    queued: bool,
    /// Events of the journal taken in, and those taken in before.
    stored: u64,
    duplicates: u64,
}

/// Handles what waits, oldest first, in one batch: one sled transaction for all of it
/// ([`Store::batch`]), each event's reads seeing what the ones before it wrote. First sled's
/// inbox entries (events retried from the failed list, and what a database before the
/// journal left), then the journal's records, recording how far it got in the same batch.
/// Takes up to `max` events (an entry or record is not split for it), and stops early when
/// nothing is left, an event must wait (the rest of its entry or record waits with it), or
/// the service is stopping. Returns [`Drained::Handled`] if anything was handled, else why
/// nothing was.
fn drain_batch(shared: &Shared, max: usize, cursor: &mut Cursor) -> Result<Drained, StoreError> {
    let store = &shared.store;
    let mut tally = Tally::default();
    let begun = store.journal().checkpoint();
    let mut at = begun;
    cursor.refresh(shared);
    let before = (cursor.after, cursor.waiting);
    let stop = store.serialized(|| {
        store.batch(|| {
            drain_inbox(shared, max, &mut tally, cursor)?;
            while tally.handled < max {
                let Some(record) = store.journal().next(at)? else {
                    return Ok(Drained::Empty);
                };
                let from = if record.seq == at.seq { at.event } else { 0 };
                drain_record(shared, &record, from, &mut tally, cursor)?;
                at = Checkpoint { seq: record.seq + 1, event: 0 };
                store.commit(&[JournalLog::checkpoint_op(at)])?;
                if *shared.stopping.borrow() {
                    break;
                }
            }
            Ok(Drained::Handled)
        })
    });
    if stop.is_err() {
        // Nothing of the batch was kept: neither did the pass get further.
        (cursor.after, cursor.waiting) = before;
    }
    shared.tasks.set_waiting_knocks(cursor.waiting);
    tell_journal_damage(shared)?;
    if stop.is_ok() {
        let events = &shared.metrics.events;
        crate::metrics::Metrics::add(events, "stored", tally.stored);
        crate::metrics::Metrics::add(events, "duplicate", tally.duplicates);
        if at != begun {
            store.journal().handled(at)?;
            shared.intake.handled_below(at.seq);
        }
        // What the batch queued is in the outbox only now.
        if tally.queued {
            shared.outbox_ready.notify_one();
        }
    }
    let stop = stop?;
    Ok(if tally.handled > 0 { Drained::Handled } else { stop })
}

/// Tells the control room about damage the journal found and skipped (the log has said it).
fn tell_journal_damage(shared: &Shared) -> Result<(), StoreError> {
    let store = &shared.store;
    for d in store.journal().take_damage() {
        shared.metrics.journal_damage.inc();
        let lost = d.unhandled();
        let what = if lost.is_empty() {
            "The records there had been handled already: nothing was lost.".to_owned()
        } else {
            format!(
                "Records {}–{} could not be read: what they brought (acknowledged to the homeserver, which will not send it again) was never handled.",
                lost.start,
                lost.end - 1
            )
        };
        let text = format!(
            "⚠️ The journal is damaged at byte {} of {} ({}). The damaged bytes are kept in {}; the records after them were handled. {what} See docs/OPERATIONS.md, \"A damaged journal\".",
            d.byte,
            d.segment.display(),
            d.why,
            d.kept_in.display()
        );
        let mut m = Msg::new();
        m.text(&text);
        store.commit(&[store.outbox().push(m.notice())?])?;
        shared.outbox_ready.notify_one();
    }
    Ok(())
}

/// Handles sled's inbox entries after the cursor, inside the worker's batch, up to `max`
/// events in all. An event that must wait still stays in the inbox (with the rest of its
/// entry) and is passed over: the cursor moves past it.
fn drain_inbox(shared: &Shared, max: usize, tally: &mut Tally, cursor: &mut Cursor) -> Result<(), StoreError> {
    let store = &shared.store;
    'entries: while tally.handled < max {
        let Some(entry) = store.parked().next(cursor.after)? else {
            return Ok(());
        };
        cursor.after = Some(entry.seq);
        if cursor.parked.contains(&entry.seq) {
            continue;
        }
        for (index, raw) in entry.record.events.iter().enumerate() {
            let r = &entry.record;
            let Some(event) = read_event(r.received_ms, &r.origin, Some((entry.seq, r.waiting)), raw) else { continue };
            match drain_one(shared, &event, None)? {
                One::Queued => tally.queued = true,
                One::Handled | One::Duplicate => {}
                One::Waits(queued) | One::Parked(_, queued) => {
                    tally.queued |= queued;
                    if index > 0 {
                        store.commit(&[Parked::rest(&entry, index)])?;
                    }
                    cursor.waiting += 1;
                    continue 'entries;
                }
            }
            tally.handled += 1;
        }
        store.commit(&[Parked::done(entry.seq)])?;
    }
    Ok(())
}

/// Handles a journal record's events from `from` on, inside the worker's batch, taking each
/// in once by event ID; a knock that must wait is put aside in sled's inbox.
fn drain_record(
    shared: &Shared,
    record: &JournalRecord,
    from: usize,
    tally: &mut Tally,
    cursor: &mut Cursor,
) -> Result<(), StoreError> {
    let store = &shared.store;
    if from == 0 {
        // As the intake saw them: the transaction, and the bot's own membership changes.
        let mut ops = JournalLog::txn_ops(record);
        ops.extend(record.bot.iter().map(|(room, m)| Rooms::put_bot_membership(room, *m)));
        store.commit(&ops)?;
    }
    let (mut ids, mut duplicates) = (Vec::new(), 0u64);
    for raw in record.events.iter().skip(from) {
        let Some(event) = read_event(record.received_ms, &record.origin, None, raw) else { continue };
        let id = event.event.event_id.to_string();
        match drain_one(shared, &event, Some((&id, record.seq)))? {
            One::Duplicate => duplicates += 1,
            One::Parked(seq, queued) => {
                tally.queued |= queued;
                cursor.waiting += 1;
                cursor.parked.insert(seq);
                ids.push(id);
            }
            // (Not for an event of the journal: it is put aside.)
            One::Waits(queued) => {
                tally.queued |= queued;
                cursor.waiting += 1;
                ids.push(id);
            }
            One::Queued => {
                tally.queued = true;
                ids.push(id);
            }
            One::Handled => ids.push(id),
        }
        tally.handled += 1;
    }
    let stored = ids.len() as u64;
    let mut ops = Op::adds([("events_stored", stored), ("events_duplicate", duplicates)]);
    if !ids.is_empty() {
        ops.push(JournalLog::seen_times_op(record.received_ms, record.seq, from, &ids));
    }
    store.commit(&ops)?;
    tally.stored += stored;
    tally.duplicates += duplicates;
    Ok(())
}

/// One event of an inbox entry or journal record, read; `None` (with a warning) if it cannot
/// be read (intake reads every event before keeping it, so only a damaged database has one).
/// `inbox_entry`: the number of its entry in sled's inbox, and whether that entry waits.
fn read_event(
    received_ms: u64,
    origin: &Origin,
    inbox_entry: Option<(u64, bool)>,
    raw: &serde_json::value::RawValue,
) -> Option<InboxEvent> {
    match Event::parse(raw.get()) {
        Ok(event) => Some(InboxEvent {
            inbox_entry: inbox_entry.map(|(seq, _)| seq),
            waiting: inbox_entry.is_some_and(|(_, waiting)| waiting),
            item: InboxItem { received_ms, origin: origin.clone(), event: raw.to_owned() },
            event,
        }),
        Err(e) => {
            let event_id = crate::events::event_id_of(raw.get());
            tracing::warn!(?origin, event_id, error = %e, "an inbox event cannot be read; dropping it");
            None
        }
    }
}

/// What handling one event came to.
enum One {
    Handled,
    /// Handled, and actions were queued.
    Queued,
    /// Taken in before (by event ID): nothing done.
    Duplicate,
    /// A knock of sled's inbox that must wait still: left where it is (`true`: a lookup of
    /// the knocker's account was queued).
    Waits(bool),
    /// A knock of the journal that must wait: put aside in sled's inbox as this entry (and
    /// whether a lookup was queued).
    Parked(u64, bool),
}

/// Handles one event, inside the worker's batch: its writes are staged, or, should its
/// handling panic, only its failure. `admit`, for an event of the journal: its event ID and
/// record, to take it in once (an event taken in before is a [`One::Duplicate`]).
fn drain_one(shared: &Shared, entry: &InboxEvent, admit: Option<(&str, u64)>) -> Result<One, StoreError> {
    let store = &shared.store;
    let mark = store.staged_mark();
    let seen = match admit {
        Some((event_id, seq)) => match store.journal().admit(event_id, seq)? {
            Some(op) => Some(op),
            None => return Ok(One::Duplicate),
        },
        None => None,
    };
    store.commit(seen.as_slice())?;
    let ops = std::panic::catch_unwind(AssertUnwindSafe(|| handle(shared, entry)));
    let mut ops = match ops {
        Ok(Ok(Handled::Ops(ops))) => ops,
        Ok(Ok(Handled::Waits { on, ops, lookup })) => {
            // The knocker's account is asked once (again after a restart: the answers are
            // kept in memory only).
            let ask = lookup.filter(|a| {
                matches!(a, Action::LookupAccount { user_id, .. } if shared.accounts.ask(user_id, crate::storage::now_ms()))
            });
            let asked = ask.is_some();
            if entry.inbox_entry.is_some() {
                // Still waiting where it is: nothing of it is written again.
                store.unstage_to(mark);
                if let Some(a) = ask {
                    store.commit(&[store.outbox().push(a)?])?;
                }
                return Ok(One::Waits(asked));
            }
            let event_id = entry.event.event_id.as_str();
            tracing::warn!(waits_for = %on, event_id, "a knock is put aside until {on} is looked up (an alias) or read (a ban list); /ready and /health say what is missing");
            let (seq, park) = store.parked().put(&entry.item)?;
            store.commit(&ops)?;
            store.commit(&[park])?;
            if let Some(a) = ask {
                store.commit(&[store.outbox().push(a)?])?;
            }
            return Ok(One::Parked(seq, asked));
        }
        Ok(Err(e)) => return Err(e),
        Err(panic) => {
            #[cfg(debug_assertions)]
            if panic.is::<super::route::WorkerFault>() {
                std::panic::resume_unwind(panic);
            }
            // Nothing of what the handling wrote before it panicked is kept; it stays taken
            // in (it is in the failed list now, not to be handled again if resent).
            store.unstage_to(mark);
            store.commit(seen.as_slice())?;
            fail_event(shared, entry, &panic_message(&*panic))?;
            return Ok(One::Queued);
        }
    };
    // An event taken in before this process started may have been handled, and its actions
    // carried out, by the run before, in a batch that a crash then lost: its actions are
    // checked against the homeserver before they are carried out, as those queued before
    // the start are.
    let received = entry.item.received_ms;
    if received < shared.started_ms {
        crate::storage::Outbox::queued_as_of(&mut ops, received);
    }
    let queued = ops.iter().any(Op::queues_action);
    store.commit(&ops)?;
    Ok(if queued { One::Queued } else { One::Handled })
}

/// Moves an event whose handling panicked to the failed list, with a notice.
fn fail_event(shared: &Shared, entry: &InboxEvent, panic: &str) -> Result<(), StoreError> {
    let event_id = entry.event.event_id.to_string();
    let why = format!("knockwarden failed while handling it (a bug): {panic}");
    tracing::error!(event_id, error = %why, "handling an event panicked; it is kept in the failed list");
    let store = &shared.store;
    // An event of the journal has no inbox entry to remove: a new number, which none has.
    let seq = match entry.inbox_entry {
        Some(seq) => seq,
        None => store.next_id()?,
    };
    let failed = FailedItem::Event { seq, item: entry.item.clone() };
    store.failures().fail(failed, &why, None, |number| {
        let mut m = Msg::new();
        m.text(&format!("⚠️ Could not handle the event {event_id}: {why}"));
        m.line().text(&format!("Kept as failed item {number}: !knock retry {number} tries again."));
        Ok(vec![store.outbox().push(m.failure_notice())?])
    })?;
    shared.outbox_ready.notify_one();
    Ok(())
}

//! The pipeline: from pushed events to actions on the homeserver.
//!
//! - [`intake`] takes events in: filters what knockwarden needs, writes it durably to the
//!   inbox (each event ID once, ever) and records the bot's own membership.
//! - [`worker`] drains the inbox in order: each event turns into state updates and outbox
//!   actions, written in the same transaction that removes it from the inbox.
//! - [`route`] is the one `match` on what an event is, and what each kind leads to.
//! - [`knocks`] is what the worker does with knocks and knockers' membership changes.
//! - [`lists`] is what it does with the rule events of the ban lists followed.
//!
//! The outbox is carried out by [`crate::runner`] (concurrently, in order per subject), with
//! what each action does in [`crate::actions`].

pub mod intake;
pub mod knocks;
pub mod lists;
mod route;
pub mod worker;

//! Knocks: deciding them, and following what happens to them.
//!
//! A knock is decided with the active policy version from what is known of it (user, server,
//! room, reason, display name, knock counters, the knocker's memberships). The decision is
//! written to the audit log, and what it leads to (an invite, kick or ban; a review item; a
//! notice) to the outbox, in the same transaction that takes the knock out of the inbox.
//! Later membership changes of the knocker close the knock: accepted, withdrawn, denied or
//! banned by someone, or by knockwarden itself.
//!
//! [`decide`] decides a knock as it arrives, with what [`inputs`] gathers; [`enact`] writes the
//! decision and what it leads to; [`lifecycle`] follows the knocker's later membership
//! changes; [`redecide`] decides open reviews again when an input changes.

mod decide;
mod enact;
mod inputs;
mod lifecycle;
mod redecide;

use crate::storage::{Action, Op};

pub use decide::on_knock;
pub use inputs::{Context, governing_policy, unresolved_aliases};
pub use lifecycle::on_change;
pub use redecide::redecide_reviews;

/// What handling a knock came to.
pub enum Knocked {
    /// Writes to commit with the inbox removal.
    Ops(Vec<Op>),
    /// Deciding it needs what is not known yet (an alias not looked up, a ban list not read):
    /// it waits, put aside, while the worker goes on. `ops` record the knock itself, so that
    /// the knocker's later membership changes close it as they would any knock.
    Waits {
        on: String,
        ops: Vec<Op>,
        /// The knocker's account, to be looked up (in their lane) before it is decided.
        lookup: Option<Action>,
    },
}

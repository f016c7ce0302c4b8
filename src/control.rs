//! The control room: moderators steer knockwarden from Matrix.
//!
//! - [`message`] tells which control-room events are commands or verdict reactions (pure).
//! - [`command`] is the `!knock` syntax, a clap `Subcommand` enum (pure).
//! - [`run`] carries commands and reactions out (the executor calls it for
//!   [`crate::storage::Action::Command`] and [`crate::storage::Action::Reaction`]), and
//!   reports closed review items.
//! - [`expiry`] closes review items nobody resolved in time.
//!
//! Commands travel like everything else: the worker queues them in the outbox, in the same
//! transaction that takes the message out of the inbox, so each runs once, in order, and a
//! command interrupted by a crash or a homeserver outage is carried out after it.

pub mod command;
pub mod expiry;
pub mod message;
pub mod run;

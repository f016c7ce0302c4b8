//! The control room: moderators steer knockwarden from Matrix.
//!
//! - [`crate::events::command`] tells which control-room events are commands or verdict
//!   reactions (pure).
//! - [`command`] is the `!knock` syntax, a clap `Subcommand` enum (pure).
//! - [`run`] is where a command or reaction is carried out (the runner performs
//!   [`crate::storage::Action::Command`] and [`crate::storage::Action::Reaction`] through it);
//!   each concern has its module: [`moderators`] (who may), [`targets`] (which knock),
//!   [`verdicts`] (approve, deny, ban: queued like a policy's decision), [`reports`],
//!   [`policy_admin`], [`failed`] (the failed list and retries). A command's work and its
//!   reply are two steps: reports (pending, rooms, stats, log, failed, lists) are gathered
//!   as typed data from only what each needs ([`reports`]) and rendered apart ([`render`]);
//!   `policy …`, `explain`, `dry-run` and `retry` return typed results (`PolicyReport`,
//!   `Explanation`, `DryRun`, `Retried`) that render themselves. Verdicts, on one knock or
//!   many, are queued as actions (which knocks: typed `Found` and `Skip`); what came of them
//!   is written by [`verdicts::finish`], a bulk verdict's summary once its last knock is done.
//!   [`lockdown`] starts and ends lockdowns (typed `LockdownReport`). Every command runs in a
//!   [`ctx`] and comes to a [`reply`] (`Done`); both sit below the commands, so no command
//!   module imports another's caller.
//! - [`expiry`] closes review items nobody resolved in time.
//!
//! Commands travel like everything else: the worker queues them in the outbox, in the same
//! transaction that takes the message out of the inbox, so each runs once, in order, and a
//! command interrupted by a crash or a homeserver outage is carried out after it.

pub mod command;
mod ctx;
pub mod expiry;
pub mod failed;
pub mod lockdown;
pub mod moderators;
pub mod policy_admin;
mod render;
mod reply;
pub mod reports;
pub mod run;
pub mod targets;
pub mod verdicts;

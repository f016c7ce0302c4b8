//! knockwarden: a Matrix application service that moderates knocks by policy.
//!
//! Follow the modules: [`http`] is what the homeserver talks to; [`pipeline`] turns pushed
//! events into actions ([`pipeline::intake`] -> [`pipeline::worker`] ->
//! [`pipeline::executor`]); [`homeserver`] is how the bot acts; [`storage`] is the only code
//! that touches sled; [`config`] and [`registration`] are the files an admin writes.

pub mod cli;
pub mod config;
pub mod control;
pub mod duration;
pub mod error;
pub mod events;
pub mod homeserver;
pub mod http;
pub mod live_policies;
pub mod notices;
pub mod pipeline;
pub mod policy;
pub mod power;
pub mod registration;
pub mod retention;
pub mod rooms;
pub mod startup;
pub mod storage;
pub mod telemetry;

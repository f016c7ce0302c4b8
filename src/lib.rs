//! knockwarden: a Matrix application service that moderates knocks by policy.
//!
//! Follow the modules: [`http`] is what the homeserver talks to; [`pipeline`] turns pushed
//! events into actions ([`pipeline::intake`] -> [`pipeline::worker`]); [`runner`] carries
//! the actions out and [`actions`] says what each does; [`control`] is the control room;
//! [`homeserver`] is how the bot acts; [`storage`] is the only code that touches sled;
//! [`lists`] holds the ban lists followed (matched by [`policy::banlist`]);
//! [`supervise`] tells `/health` which tasks run, [`readiness`] tells `/ready` what is missing; [`config`] and [`registration`] are the
//! files an admin writes.

pub mod accounts;
pub mod actions;
pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod duration;
pub mod error;
pub mod events;
pub mod homeserver;
pub mod http;
pub mod lists;
pub mod live_policies;
pub mod lockdown;
pub mod memory;
pub mod metrics;
pub mod notices;
pub mod ping;
pub mod pipeline;
pub mod policy;
pub mod power;
pub mod readiness;
pub mod registration;
pub mod retention;
pub mod room_state;
pub mod rooms;
pub mod runner;
pub mod startup;
pub mod storage;
pub mod supervise;
pub mod telemetry;
pub mod text;

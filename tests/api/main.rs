//! Integration tests: knockwarden on a random port, with a temporary sled database and a fake
//! homeserver (a real HTTP server in this process).

mod accounts;
mod actions;
mod ban_lists;
mod binary;
mod control;
mod doctor;
mod faults;
mod first_hour;
mod helpers;
mod hostile;
mod membership;
mod operations;
mod package;
mod pipeline;
mod policies;
mod power_tools;
mod resilience;
mod routes;
mod runner;
mod synapse;
mod transactions;

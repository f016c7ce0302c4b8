//! What knockwarden's tests (`tests/api/`) and benchmarks (`benches/`) share, as a crate of its
//! own so that neither includes the other's files: the in-process fake homeserver.

pub mod fake_homeserver;

pub use fake_homeserver::FakeHomeserver;

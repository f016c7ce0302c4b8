//! Memory: the allocator the `knockwarden` binary runs on, and its settings.
//!
//! glibc's allocator kept what the service freed: compiling the policies at start-up, and
//! under load the storage's node copies and the runner's requests, freed on threads other
//! than the ones that allocated them, left pages resident that nothing used (a `malloc_trim`
//! in the middle of a run handed back a third of the process's resident size). jemalloc,
//! with a background thread that hands back unused pages after [`JEMALLOC_CONF`]'s decay,
//! keeps the resident size close to what is in use. Figures: `docs/BENCHMARKS.md`
//! ("Ingestion, fourth sitting").
//!
//! The binary declares the allocator (`src/main.rs`); the library does not, so that tests
//! and fuzz targets (whose sanitizers replace the allocator) keep the default.

use std::ffi::CStr;

/// The allocator of the `knockwarden` binary.
pub type Allocator = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: one arena (the service has few threads that allocate much, and
/// arenas per thread kept freed pages apart), unused pages handed back after 100 ms by
/// jemalloc's background thread, and a thread cache for small sizes only.
pub const JEMALLOC_CONF: &CStr =
    c"background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,narenas:1,tcache_max:4096";

/// A C string pointer jemalloc reads at start-up (`malloc_conf`), as a static.
#[repr(transparent)]
pub struct Conf(pub *const std::ffi::c_char);

// SAFETY: it points to a `'static` C string that nothing writes.
unsafe impl Sync for Conf {}

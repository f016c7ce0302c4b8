//! Memory: the allocator the `knockwarden` binary runs on, and its settings.
//!
//! glibc's allocator kept much of what the service freed resident: under load, a
//! `malloc_trim` in the middle of a run handed back a third of the process's resident size.
//! jemalloc, whose background thread hands back unused pages after [`MALLOC_CONF`]'s decay,
//! keeps the resident size close to what is in use, and also hands back what compiling the
//! policies at start-up used only for a while. Figures: `docs/benchmarks-history.md` ("Ingestion,
//! fourth sitting").
//!
//! The binary declares the allocator and exports the settings (`src/main.rs`); the library
//! does not, so that tests and fuzz targets (whose sanitizers replace the allocator) keep the
//! default.

/// The allocator of the `knockwarden` binary.
pub type Allocator = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, which it reads at start-up from its `malloc_conf` symbol: one arena
/// (its default of one per CPU peaked higher), unused pages handed back after 100 ms by its
/// background thread, and a thread cache for small sizes only.
pub const MALLOC_CONF: Conf =
    Conf(c"background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,narenas:1,tcache_max:4096".as_ptr());

/// A pointer to a C string, which a static can hold.
#[repr(transparent)]
pub struct Conf(*const std::ffi::c_char);

// SAFETY: it points to a `'static` C string that nothing writes.
unsafe impl Sync for Conf {}

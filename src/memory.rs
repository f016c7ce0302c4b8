//! Memory: giving back to the system what start-up used only for a while.
//!
//! Compiling the policies (parsing the files, checking every regex by building its NFAs,
//! building the sets) allocates far more than the compiled policies keep; glibc's allocator
//! keeps the freed memory for later, so it stayed in the process's resident size. Once the
//! service is up, it is handed back.

/// Returns freed heap memory to the system (glibc's `malloc_trim`; elsewhere, nothing).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks glibc's own free lists; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

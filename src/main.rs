//! The `knockwarden` binary: the allocator (see `knockwarden::memory`), then the CLI.

#[global_allocator]
static ALLOCATOR: knockwarden::memory::Allocator = knockwarden::memory::Allocator {};

/// jemalloc reads its settings from this symbol when it starts.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: knockwarden::memory::Conf = knockwarden::memory::Conf(knockwarden::memory::JEMALLOC_CONF.as_ptr());

fn main() -> std::process::ExitCode {
    knockwarden::cli::main()
}

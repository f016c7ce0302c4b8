//! The `knockwarden` binary: the allocator (see `knockwarden::memory`), then the CLI.

#[global_allocator]
static ALLOCATOR: knockwarden::memory::Allocator = knockwarden::memory::Allocator {};

#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: knockwarden::memory::Conf = knockwarden::memory::MALLOC_CONF;

fn main() -> std::process::ExitCode {
    knockwarden::cli::main()
}

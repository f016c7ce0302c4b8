fn main() -> std::process::ExitCode {
    knockwarden::cli::main()
}

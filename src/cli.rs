//! The command line: `serve`, `generate-registration`, `policy`, `db`, `doctor`, and the
//! shell completions and manual page.

mod db;
mod doctor;
mod generate;
mod policy;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{config::Settings, startup::Application, telemetry};

#[derive(Debug, Parser)]
#[command(name = "knockwarden", version, about = "A Matrix application service that moderates knocks by policy")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `-c/--config`, shared by the subcommands that read the config.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(short = 'c', long = "config", env = "KNOCKWARDEN_CONFIG", default_value = "config.yaml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write an appservice registration file for the homeserver.
    GenerateRegistration(generate::GenerateArgs),
    /// Check, explain and describe policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The database: stats, backup, restore (with the service stopped).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Check the installation, in order, and say what to fix (exit 0 only when all hold).
    Doctor(doctor::DoctorArgs),
    /// Print shell completions for bash, zsh or fish.
    Completions { shell: CompletionShell },
    /// Print the manual page (roff).
    Manpage,
}

/// The shells `knockwarden completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config.config),
        Command::GenerateRegistration(args) => generate::run(&args),
        Command::Policy(cmd) => policy::run(&cmd),
        Command::Db(cmd) => db::run(&cmd),
        Command::Doctor(args) => doctor::run(&args),
        Command::Completions { shell } => completions(shell),
        Command::Manpage => manpage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("knockwarden: {message}");
            ExitCode::FAILURE
        }
    }
}

fn completions(shell: CompletionShell) -> Result<(), String> {
    use clap::CommandFactory;
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "knockwarden", &mut std::io::stdout());
    Ok(())
}

fn manpage() -> Result<(), String> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| format!("cannot write the manual page: {e}"))
}

fn serve(config: &std::path::Path) -> Result<(), String> {
    let settings = Settings::load(config).map_err(|e| e.to_string())?;
    telemetry::init(settings.config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let app = Application::build(settings).await.map_err(|e| e.to_string())?;
        let stopper = app.stopper();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            stopper.stop().await;
        });
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

//! The command line: `serve`, `generate-registration`, `policy` and `db`.

mod db;
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
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config.config),
        Command::GenerateRegistration(args) => generate::run(&args),
        Command::Policy(cmd) => policy::run(&cmd),
        Command::Db(cmd) => db::run(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("knockwarden: {message}");
            ExitCode::FAILURE
        }
    }
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

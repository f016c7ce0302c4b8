//! `knockwarden generate-registration`.

use std::path::PathBuf;

use ruma::OwnedServerName;

use super::ConfigArg;
use crate::{
    config::{Config, RawConfig},
    registration::NewRegistration,
};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the homeserver reaches knockwarden [default: http:// + appservice.listen].
    #[arg(long)]
    pub url: Option<String>,
    /// The appservice ID.
    #[arg(long, default_value = "knockwarden")]
    pub id: String,
    /// The bot's localpart.
    #[arg(long, default_value = "knockwarden")]
    pub localpart: String,
    /// Output file [default: appservice.registration from the config].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &GenerateArgs) -> Result<(), String> {
    let file = &args.config.config;
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read the configuration file: {e}", file.display()))?;
    let raw = RawConfig::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let config = Config::from_raw(raw, file).map_err(|e| e.to_string())?;
    let url = args.url.clone().unwrap_or_else(|| format!("http://{}", config.appservice.listen));
    let output = args.output.clone().unwrap_or_else(|| config.appservice.registration.clone());
    let server_name: OwnedServerName = config.homeserver.server_name.clone();
    let new = NewRegistration { id: &args.id, url: &url, localpart: &args.localpart, server_name: &server_name };
    let reg = new.write(&output, args.force).map_err(|e| e.to_string())?;
    println!(
        "Wrote {} (id {}, bot @{}:{}, url {}).\nAdd it to the homeserver's app_service_config_files and restart the homeserver.",
        output.display(),
        reg.id,
        reg.sender_localpart,
        server_name,
        url
    );
    Ok(())
}

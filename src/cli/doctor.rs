//! `knockwarden doctor`: checks an installation, in order, and says what to fix.
//!
//! Each check is a function that returns a [`Check`] (what was found, and for a failure what
//! to fix); rendering (lines with ✓ and ✗, or `--json`) is a separate step. A check whose
//! input failed before it is skipped, and says which. Network checks give up after 10 s.
//! Nothing is written: the database is only inspected ([`Store::inspect`]); while a running
//! knockwarden holds it, its `/health` and `/ready` are read instead, and the ping is answered
//! by the service; otherwise doctor answers the homeserver's ping itself on
//! `appservice.listen` for that moment.

mod homeserver;
mod local;

use homeserver::{as_token, control_room, ping, rooms};
use local::{database, policies, registration};

use std::{path::Path, time::Duration};

use serde::Serialize;

use super::ConfigArg;
use crate::{config::Config, homeserver::MatrixHomeserver};

/// How long one network check may take.
pub(crate) const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    #[serde(flatten)]
    pub status: Status,
    /// What was found, for people.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// It does not hold; `fix` says what to do.
    Failed {
        fix: String,
    },
    /// Not checked: what it needs failed first.
    Skipped,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Ok, detail: detail.into() }
    }

    fn failed(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Failed { fix: fix.into() }, detail: detail.into() }
    }

    fn skipped(name: impl Into<String>, needs: &str) -> Self {
        Check { name: name.into(), status: Status::Skipped, detail: format!("not checked: needs {needs}") }
    }

    fn holds(&self) -> bool {
        self.status == Status::Ok
    }
}

pub fn run(args: &DoctorArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let checks = runtime.block_on(checks(&args.config.config));
    if args.json {
        let all = checks.iter().all(Check::holds);
        let out = serde_json::json!({"ok": all, "checks": checks});
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    } else {
        print!("{}", render(&checks));
    }
    let failed = checks.iter().filter(|c| !c.holds()).count();
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} checks do not hold", checks.len())),
    }
}

/// One line per check: ✓, ✗ (with what to fix) or – (skipped).
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        match &c.status {
            Status::Ok => out.push_str(&format!("✓ {}: {}\n", c.name, c.detail)),
            Status::Failed { fix } => out.push_str(&format!("✗ {}: {} → {fix}\n", c.name, c.detail)),
            Status::Skipped => out.push_str(&format!("– {}: {}\n", c.name, c.detail)),
        }
    }
    out
}

/// Every check, in order.
pub async fn checks(config_file: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let config = match Config::load(config_file) {
        Ok(c) => {
            out.push(Check::ok("config", format!("{} parses", config_file.display())));
            c
        }
        Err(e) => {
            out.push(Check::failed(
                "config",
                e.to_string(),
                "fix the config (config.example.yaml has every key, with comments)",
            ));
            for name in NAMES.iter().skip(1) {
                out.push(Check::skipped(*name, "the config"));
            }
            return out;
        }
    };
    let registration = registration(&config);
    let reg = registration.1.clone();
    out.push(registration.0);
    out.push(policies(&config));
    let (database, running) = database(&config).await;
    out.push(database);
    let Some(reg) = reg else {
        for name in &NAMES[4..] {
            out.push(Check::skipped(*name, "the registration"));
        }
        return out;
    };
    let hs = match MatrixHomeserver::new(&config.homeserver.url, &reg.bot_user_id, &reg.as_token).await {
        Ok(hs) => hs,
        Err(e) => {
            out.push(Check::failed("homeserver", e, "check homeserver.url"));
            return out;
        }
    };
    let versions = homeserver::homeserver(&config, &hs).await;
    let reachable = versions.holds();
    out.push(versions);
    if !reachable {
        for name in &NAMES[5..] {
            out.push(Check::skipped(*name, "the homeserver"));
        }
        return out;
    }
    let token = as_token(&reg, &hs).await;
    let accepted = token.holds();
    out.push(token);
    out.push(ping(&config, &reg, &hs, running).await);
    if !accepted {
        for name in &NAMES[7..] {
            out.push(Check::skipped(*name, "the as_token"));
        }
        return out;
    }
    let (control, joined) = control_room(&config, &reg, &hs).await;
    out.push(control);
    out.extend(rooms(&config, &reg, &hs, joined).await);
    out
}

/// The checks' names, in order (the last stands for one check per managed room).
const NAMES: [&str; 9] =
    ["config", "registration", "policies", "database", "homeserver", "as_token", "ping", "control room", "power"];

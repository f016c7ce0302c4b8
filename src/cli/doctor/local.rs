//! The checks of what is on this machine: the registration, the policies, the database (or
//! the running service that holds it).

use std::os::unix::fs::PermissionsExt;

use super::{Check, NETWORK_TIMEOUT};
use crate::{
    config::Config,
    live_policies,
    policy::PolicySet,
    registration::AppRegistration,
    storage::{Store, StoreError},
};

pub(super) fn registration(config: &Config) -> (Check, Option<AppRegistration>) {
    let path = &config.appservice.registration;
    let name = "registration";
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) => {
            let fix = "write one with `knockwarden generate-registration -c CONFIG` (or fix appservice.registration)";
            return (Check::failed(name, format!("{}: {e}", path.display()), fix), None);
        }
    };
    let reg = match AppRegistration::load(path, &config.homeserver.server_name) {
        Ok(r) => r,
        Err(e) => {
            let fix = "fix the file, or write a new one with `knockwarden generate-registration --force` (then give the homeserver the new copy)";
            return (Check::failed(name, e.to_string(), fix), None);
        }
    };
    if mode & 0o077 != 0 {
        let detail = format!("{} has mode {mode:04o}: others can read its tokens", path.display());
        return (Check::failed(name, detail, format!("chmod 600 {}", path.display())), Some(reg));
    }
    if reg.id.trim().is_empty() {
        return (
            Check::failed(name, format!("{}: `id` is empty", path.display()), "set `id` (e.g. knockwarden)"),
            None,
        );
    }
    let claims = if reg.claims_bot { "" } else { "; its users namespace does not claim the bot" };
    let url = reg.url.as_deref().unwrap_or("none");
    let detail =
        format!("{} (mode {mode:04o}): id `{}`, bot {}, url {url}{claims}", path.display(), reg.id, reg.bot_user_id);
    (Check::ok(name, detail), Some(reg))
}

pub(super) fn policies(config: &Config) -> Check {
    let name = "policies";
    let sources = match live_policies::read_dir(&config.policies) {
        Ok(s) => s,
        Err(e) => {
            return Check::failed(
                name,
                e.to_string(),
                "create the directory, with a policy for your room (policies/my-room.yaml)",
            );
        }
    };
    match PolicySet::load(&sources) {
        Ok(set) if set.policies().is_empty() => Check::failed(
            name,
            format!("{}: no policy", config.policies.display()),
            "write one (copy policies/my-room.yaml and fill in your room)",
        ),
        Ok(set) => {
            let names: Vec<&str> = set.policies().iter().map(|p| p.name.as_str()).collect();
            Check::ok(name, format!("{} pass `policy check`: {}", config.policies.display(), names.join(", ")))
        }
        Err(problems) => {
            let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
            let first = first.lines().next().unwrap_or_default();
            Check::failed(
                name,
                format!("{} problem(s), the first: {first}", problems.len()),
                "`knockwarden policy check -c CONFIG` lists each with its line",
            )
        }
    }
}

/// The database, and whether a running knockwarden holds it.
pub(super) async fn database(config: &Config) -> (Check, bool) {
    let name = "database";
    let path = &config.database;
    if !path.exists() {
        return (Check::ok(name, format!("{}: none yet (made at the first start)", path.display())), false);
    }
    let inspected = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Store::inspect(&path)).await.unwrap_or(Err(StoreError::InUse))
    };
    match inspected {
        Ok(format) => (Check::ok(name, format!("{}: format {format}, supported", path.display())), false),
        Err(StoreError::InUse) => (running_service(config).await, true),
        Err(e) => (
            Check::failed(name, format!("{}: {e}", path.display()), "see docs/OPERATIONS.md (backups and restores)"),
            false,
        ),
    }
}

/// What `/health` and `/ready` answer, as far as doctor reads it (see docs/HTTP.md).
#[derive(Default, serde::Deserialize)]
struct ServiceAnswer {
    #[serde(default, deserialize_with = "crate::events::lenient::string")]
    status: Option<String>,
    #[serde(default, deserialize_with = "crate::events::lenient::strings")]
    reasons: Vec<String>,
}

/// The running service's `/health` and `/ready`.
pub(super) async fn running_service(config: &Config) -> Check {
    let name = "database";
    let base = format!("http://{}", config.appservice.listen);
    let client = reqwest::Client::builder().timeout(NETWORK_TIMEOUT).build().unwrap_or_default();
    let get = |path: &'static str| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let res = client.get(url).send().await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            Ok::<_, String>((status, res.json::<ServiceAnswer>().await.unwrap_or_default()))
        }
    };
    let (health, ready) = (get("/health").await, get("/ready").await);
    match (health, ready) {
        (Ok((200, _)), Ok((200, _))) => {
            Check::ok(name, format!("in use by the running knockwarden: {base}/health ok, /ready ready"))
        }
        (Ok((200, _)), Ok((_, body))) => {
            let reasons = body.reasons;
            Check::failed(
                name,
                format!("in use by the running knockwarden, which is not ready: {}", reasons.join("; ")),
                "see each reason (docs/OPERATIONS.md, \"Is it working?\")",
            )
        }
        (Ok((status, body)), _) => Check::failed(
            name,
            format!(
                "in use by the running knockwarden, whose /health answers {status}: {}",
                body.status.as_deref().unwrap_or("(no status)")
            ),
            "see its log",
        ),
        (Err(e), _) => Check::failed(
            name,
            format!("in use by another process, and {base}/health does not answer: {e}"),
            "stop the other process, or check appservice.listen",
        ),
    }
}

//! `knockwarden doctor`: checks an installation, in order, and says what to fix.
//!
//! Each check is a function that returns a [`Check`] (what was found, and for a failure what
//! to fix); rendering (lines with ✓ and ✗, or `--json`) is a separate step. A check whose
//! input failed before it is skipped, and says which. Network checks give up after 10 s.
//! Nothing is written: the database is only inspected ([`Store::inspect`]); while a running
//! knockwarden holds it, its `/health` and `/ready` are read instead, and the ping is answered
//! by the service; otherwise doctor answers the homeserver's ping itself on
//! `appservice.listen` for that moment.

use crate::events::StateKind;
use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use ruma::{OwnedRoomId, RoomAliasId, RoomId};
use serde::Serialize;

use super::ConfigArg;
use crate::{
    config::Config,
    homeserver::{Homeserver, HsError, MatrixHomeserver},
    live_policies,
    policy::PolicySet,
    power,
    registration::AppRegistration,
    storage::{Store, StoreError},
};

/// How long one network check may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

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
    let versions = homeserver(&config, &hs).await;
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

fn registration(config: &Config) -> (Check, Option<AppRegistration>) {
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

fn policies(config: &Config) -> Check {
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
async fn database(config: &Config) -> (Check, bool) {
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
async fn running_service(config: &Config) -> Check {
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

async fn timed<T>(f: impl std::future::Future<Output = Result<T, HsError>>) -> Result<T, HsError> {
    match tokio::time::timeout(NETWORK_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(HsError::Transport(format!("no answer within {} s", NETWORK_TIMEOUT.as_secs()))),
    }
}

async fn homeserver(config: &Config, hs: &MatrixHomeserver) -> Check {
    let url = &config.homeserver.url;
    match timed(hs.versions()).await {
        Ok(v) => {
            Check::ok("homeserver", format!("{url} answers (spec {})", v.last().map(String::as_str).unwrap_or("?")))
        }
        Err(e) => Check::failed(
            "homeserver",
            format!("{url}: {e}"),
            "check homeserver.url and that the homeserver runs and is reachable from here",
        ),
    }
}

async fn as_token(reg: &AppRegistration, hs: &MatrixHomeserver) -> Check {
    let name = "as_token";
    match timed(hs.whoami()).await {
        Ok(user) if user == reg.bot_user_id => {
            Check::ok(name, format!("accepted: the homeserver knows the bot as {user}"))
        }
        Ok(user) => Check::failed(
            name,
            format!("the homeserver says the token is {user}, not the bot {}", reg.bot_user_id),
            "check sender_localpart and homeserver.server_name",
        ),
        Err(e) => Check::failed(
            name,
            format!("refused: {e}"),
            "list the registration in the homeserver's app_service_config_files (its own copy, with the same tokens) and restart the homeserver",
        ),
    }
}

/// The homeserver's ping of knockwarden. While the service is stopped, doctor answers it on
/// `appservice.listen` (with the registration's hs_token, as the service would).
async fn ping(config: &Config, reg: &AppRegistration, hs: &MatrixHomeserver, running: bool) -> Check {
    let name = "ping";
    let mut answering = None;
    if !running && let Ok(listener) = std::net::TcpListener::bind(config.appservice.listen) {
        match crate::http::serve_ping_only(listener, reg.hs_token.clone()) {
            Ok(server) => {
                let handle = server.handle();
                answering = Some((tokio::spawn(server), handle));
            }
            Err(e) => {
                return Check::failed(
                    name,
                    format!("cannot answer on {}: {e}", config.appservice.listen),
                    "check appservice.listen",
                );
            }
        }
    }
    let result = timed(hs.ping(&reg.id)).await;
    let who = if answering.is_some() { " (doctor answered for the stopped service)" } else { "" };
    if let Some((task, handle)) = answering {
        handle.stop(false).await;
        let _ = task.await;
    }
    match result {
        Ok(took) => Check::ok(
            name,
            format!(
                "the homeserver reaches knockwarden at {} in {} ms{who}",
                config.appservice.listen,
                took.as_millis()
            ),
        ),
        Err(HsError::Api { status: 404, errcode, .. }) if errcode == "M_UNRECOGNIZED" => {
            Check::ok(name, "the homeserver has no appservice ping (before Matrix 1.7): not checked")
        }
        Err(e) => Check::failed(name, format!("failed{who}"), crate::ping::advice(&e)),
    }
}

/// The control room resolves and the bot is in it; returns the rooms the bot is in.
async fn control_room(config: &Config, reg: &AppRegistration, hs: &MatrixHomeserver) -> (Check, Vec<OwnedRoomId>) {
    let name = "control room";
    let configured = config.control_room.as_str();
    let id = match resolve(hs, configured).await {
        Ok(id) => id,
        Err(e) => return (Check::failed(name, format!("{configured}: {e}"), "check control_room"), vec![]),
    };
    let joined = match timed(hs.joined_rooms()).await {
        Ok(j) => j,
        Err(e) => return (Check::failed(name, format!("cannot list the bot's rooms: {e}"), "see the error"), vec![]),
    };
    let check = if joined.contains(&id) {
        Check::ok(name, format!("{configured} ({id}): the bot is in it"))
    } else {
        Check::failed(
            name,
            format!("{configured} ({id}): the bot is not in it"),
            format!("invite {} there; it joins whoever invites it", reg.bot_user_id),
        )
    };
    (check, joined.into_iter().filter(|r| *r != id).collect())
}

/// A room ID, or an alias looked up.
async fn resolve(hs: &MatrixHomeserver, name: &str) -> Result<OwnedRoomId, HsError> {
    if let Ok(id) = RoomId::parse(name) {
        return Ok(id);
    }
    let alias = RoomAliasId::parse(name).map_err(|e| HsError::Transport(format!("not a room ID or alias: {e}")))?;
    timed(hs.resolve_alias(&alias)).await
}

/// In each room the bot manages (every room it is in but the control room and the ban lists
/// the policies name), it can invite, kick and ban.
async fn rooms(config: &Config, reg: &AppRegistration, hs: &MatrixHomeserver, joined: Vec<OwnedRoomId>) -> Vec<Check> {
    let lists: Vec<OwnedRoomId> =
        match live_policies::read_dir(&config.policies).ok().and_then(|s| PolicySet::load(&s).ok()) {
            Some(set) => {
                let mut ids = Vec::new();
                for name in set.ban_lists() {
                    if let Ok(id) = resolve(hs, &name).await {
                        ids.push(id);
                    }
                }
                ids
            }
            None => vec![],
        };
    let managed: Vec<OwnedRoomId> = joined.into_iter().filter(|r| !lists.contains(r)).collect();
    if managed.is_empty() {
        return vec![Check::ok("power", "the bot is in no knock room yet: a moderator invites it to one")];
    }
    let mut out = Vec::new();
    for room in managed {
        out.push(power_in(hs, reg, &room).await);
    }
    out
}

async fn power_in(hs: &MatrixHomeserver, reg: &AppRegistration, room: &RoomId) -> Check {
    let name = format!("power in {room}");
    let bot = reg.bot_user_id.as_str();
    let (pl, create) = match (
        timed(hs.state(room, "m.room.power_levels", "")).await,
        timed(hs.state(room, "m.room.create", "")).await,
    ) {
        (Ok(pl), Ok(create)) => (pl, create),
        (Err(e), _) | (_, Err(e)) => {
            return Check::failed(name, format!("cannot read its state: {e}"), "see the error");
        }
    };
    let mut rec = crate::storage::RoomRecord::default();
    for (ev, kind) in [(create, StateKind::Create), (pl, StateKind::PowerLevels)] {
        let Some(ev) = ev else { continue };
        match ev.room_state(kind) {
            Ok(state) => crate::room_state::apply(&mut rec, &state, ev.sender.as_deref().unwrap_or_default()),
            Err(e) => {
                return Check::failed(name, format!("cannot read its {}: {e}", kind.as_str()), "see the error");
            }
        }
    }
    let have = power::user_level(rec.power_levels.as_ref(), &rec.creators, bot);
    let lacks: Vec<(String, i64)> = ["invite", "kick", "ban"]
        .iter()
        .map(|a| (a.to_string(), power::action_level(rec.power_levels.as_ref(), a)))
        .filter(|(_, need)| have < *need)
        .collect();
    if lacks.is_empty() {
        return Check::ok(name, "the bot can invite, kick and ban");
    }
    let need = lacks.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let what: Vec<&str> = lacks.iter().map(|(a, _)| a.as_str()).collect();
    Check::failed(
        name,
        format!("the bot has power level {have}; it needs {need} to {}", what.join(", ")),
        format!("give {bot} power level {need} there (Room settings › Roles & Permissions)"),
    )
}

//! The checks that ask the homeserver: it answers, knows the as_token, reaches knockwarden
//! (the ping), lets the bot into the control room, and gives it power in each room.

use ruma::{OwnedRoomId, RoomAliasId, RoomId};

use super::{Check, NETWORK_TIMEOUT};
use crate::{
    config::Config,
    events::StateKind,
    homeserver::{Homeserver, HsError, MatrixHomeserver},
    live_policies,
    policy::PolicySet,
    power,
    registration::AppRegistration,
};

pub(super) async fn timed<T>(f: impl std::future::Future<Output = Result<T, HsError>>) -> Result<T, HsError> {
    match tokio::time::timeout(NETWORK_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(HsError::Transport(format!("no answer within {} s", NETWORK_TIMEOUT.as_secs()))),
    }
}

pub(super) async fn homeserver(config: &Config, hs: &MatrixHomeserver) -> Check {
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

pub(super) async fn as_token(reg: &AppRegistration, hs: &MatrixHomeserver) -> Check {
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
pub(super) async fn ping(config: &Config, reg: &AppRegistration, hs: &MatrixHomeserver, running: bool) -> Check {
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
pub(super) async fn control_room(
    config: &Config,
    reg: &AppRegistration,
    hs: &MatrixHomeserver,
) -> (Check, Vec<OwnedRoomId>) {
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
pub(super) async fn resolve(hs: &MatrixHomeserver, name: &str) -> Result<OwnedRoomId, HsError> {
    if let Ok(id) = RoomId::parse(name) {
        return Ok(id);
    }
    let alias = RoomAliasId::parse(name).map_err(|e| HsError::Transport(format!("not a room ID or alias: {e}")))?;
    timed(hs.resolve_alias(&alias)).await
}

/// In each room the bot manages (every room it is in but the control room and the ban lists
/// the policies name), it can invite, kick and ban.
pub(super) async fn rooms(
    config: &Config,
    reg: &AppRegistration,
    hs: &MatrixHomeserver,
    joined: Vec<OwnedRoomId>,
) -> Vec<Check> {
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

pub(super) async fn power_in(hs: &MatrixHomeserver, reg: &AppRegistration, room: &RoomId) -> Check {
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

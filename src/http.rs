//! The HTTP surface the homeserver talks to (application service API), and `/health`.
//!
//! Thin: handlers check the hs_token, read the body within the limit, and hand it to
//! [`crate::pipeline::intake`]. Every error is a Matrix error body built by [`ApiError`].
//!
//! | route | what |
//! |---|---|
//! | `PUT /_matrix/app/v1/transactions/{txnId}` (and legacy `/transactions/{txnId}`) | events in |
//! | `POST /_matrix/app/v1/ping` | the homeserver checks we are up |
//! | `GET /_matrix/app/v1/users/{userId}` (and legacy `/users/{userId}`) | user query |
//! | `GET /_matrix/app/v1/rooms/{roomAlias}` (and legacy `/rooms/{roomAlias}`) | alias query |
//! | `GET /ready` | policies loaded and the start-up catch-up done: 200, else 503 |
//! | `GET /health` | storage usable and the worker and runner running: 200, else 503 |

mod appservice;
mod auth;
pub mod metrics;

use actix_web::{HttpResponse, web};

use crate::{app::Shared, error::ApiError};

pub use auth::HsAuth;

/// State shared by the handlers.
pub struct HttpState {
    pub shared: Shared,
    pub hs_token: String,
    pub max_body_bytes: usize,
}

/// Registers every route on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for prefix in ["/_matrix/app/v1", ""] {
        cfg.service(
            web::resource(format!("{prefix}/transactions/{{txn_id}}"))
                .route(web::put().to(appservice::transaction))
                .default_service(web::to(wrong_method)),
        )
        .service(
            web::resource(format!("{prefix}/users/{{user_id}}"))
                .route(web::get().to(appservice::query_user))
                .default_service(web::to(wrong_method)),
        )
        .service(
            web::resource(format!("{prefix}/rooms/{{room_alias}}"))
                .route(web::get().to(appservice::query_room))
                .default_service(web::to(wrong_method)),
        );
    }
    cfg.service(
        web::resource("/_matrix/app/v1/ping")
            .route(web::post().to(appservice::ping))
            .default_service(web::to(wrong_method)),
    )
    .service(web::resource("/health").route(web::get().to(health)).default_service(web::to(wrong_method)))
    .service(web::resource("/ready").route(web::get().to(ready)).default_service(web::to(wrong_method)));
}

/// The appservice ping alone, checked with `hs_token`: what `knockwarden doctor` answers on
/// `appservice.listen` while the service is stopped, so the homeserver's ping can be checked.
pub fn serve_ping_only(listener: std::net::TcpListener, hs_token: String) -> std::io::Result<actix_web::dev::Server> {
    let token = web::Data::new(hs_token);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(token.clone())
            .route("/_matrix/app/v1/ping", web::post().to(ping_only))
            .default_service(web::to(unknown_route))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn ping_only(req: actix_web::HttpRequest, token: web::Data<String>) -> Result<HttpResponse, ApiError> {
    let (bearer, query) = auth::presented(&req);
    auth::check(bearer.as_deref(), query.as_deref(), &token)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}

/// For `App::default_service`: any other path.
pub async fn unknown_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::unrecognized_route())
}

async fn wrong_method() -> Result<HttpResponse, ApiError> {
    Err(ApiError::wrong_method())
}

/// `GET /health`: 200 with the queues' depths, the age of the oldest queued action, the
/// knocks waiting for an input and the policies' aliases not looked up yet, when storage
/// answers and the worker and the runner run; 503 with the reason otherwise. Not
/// authenticated, and says nothing secret; it neither writes nor scans anything (a point read
/// per alias the policies name).
async fn health(state: web::Data<HttpState>) -> HttpResponse {
    let shared = &state.shared;
    let store = &shared.store;
    let stopped: Vec<&str> = shared.tasks.stopped().into_iter().map(|t| t.name()).collect();
    let oldest_ms = shared.tasks.oldest_action().map(|t| crate::storage::now_ms().saturating_sub(t));
    let not_ready = not_ready(shared);
    let body = |status: String| {
        serde_json::json!({
            "status": status,
            "inbox": store.queue_depth(crate::storage::Queue::Inbox),
            "outbox": store.queue_depth(crate::storage::Queue::Outbox),
            "oldest_action_age_ms": oldest_ms,
            "waiting_knocks": shared.tasks.waiting_knocks(),
            "unresolved_aliases": crate::pipeline::knocks::unresolved_aliases(shared),
            "control_room": match shared.readiness.control_room() {
                crate::readiness::ControlRoom::Joined(id) => serde_json::json!({"joined": true, "room_id": id}),
                crate::readiness::ControlRoom::Joining => serde_json::json!({"joined": false, "why": "joining"}),
                crate::readiness::ControlRoom::NotJoined { why } => serde_json::json!({"joined": false, "why": why}),
            },
            "ping": shared.readiness.ping().as_str(),
            "not_ready": not_ready,
        })
    };
    if !store.is_healthy() {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "storage unavailable"}))
    } else if !stopped.is_empty() {
        HttpResponse::ServiceUnavailable().json(body(format!("not running: {}", stopped.join(", "))))
    } else {
        HttpResponse::Ok().json(body("ok".into()))
    }
}

/// Why knockwarden is not ready (empty: ready), from what it holds in memory and a point read
/// per alias the policies name.
fn not_ready(shared: &Shared) -> Vec<String> {
    let aliases = crate::pipeline::knocks::unresolved_aliases(shared);
    let lists = shared.lists.problems(&shared.policies.current().set.ban_lists());
    crate::readiness::NotReady {
        reconciled: shared.tasks.is_ready(),
        control_room_name: shared.config.control_room.as_str(),
        control_room: shared.readiness.control_room(),
        ping: shared.readiness.ping(),
        unresolved_aliases: &aliases,
        ban_lists: &lists,
    }
    .reasons()
}

/// `GET /ready`: 200 once knockwarden can do its work: the start-up reconciliation with the
/// homeserver (with its catch-up on knocks) done, the control room joined, the homeserver's
/// ping not failed, every alias and ban list the policies name looked up. 503 otherwise, with
/// every reason (`reasons`; `status` is the first). Not authenticated.
async fn ready(state: web::Data<HttpState>) -> HttpResponse {
    let reasons = not_ready(&state.shared);
    match reasons.first() {
        None => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Some(first) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": first, "reasons": reasons}))
        }
    }
}

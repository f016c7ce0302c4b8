//! Does the homeserver reach knockwarden? At start, knockwarden asks the homeserver to ping
//! it (`POST /_matrix/client/v1/appservice/{id}/ping`, which makes the homeserver call our
//! `POST /_matrix/app/v1/ping`). A homeserver that cannot reach knockwarden, or does not know
//! its registration, pushes nothing: that is reported in the log and the control room with
//! what to check. It is tried a few times, then every few minutes while it fails (knockwarden
//! keeps running); the control room hears when it fails and when it works again.

use std::time::Duration;

use crate::{app::Shared, homeserver::HsError, notices, readiness::Ping};

/// Waits between the first tries.
const FIRST_TRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// How often a failing ping is tried again after the first tries.
const AGAIN_EVERY: Duration = Duration::from_secs(300);

/// What an admin should check, for a failed ping.
pub fn advice(e: &HsError) -> String {
    let what = match e.errcode() {
        Some("M_URL_NOT_SET") => {
            "the registration has no `url`: set it to where knockwarden listens (`appservice.listen`)"
        }
        Some("M_CONNECTION_FAILED") => {
            "the homeserver cannot connect to knockwarden: check that the registration's `url` is where knockwarden listens (`appservice.listen`) and that the homeserver can reach that address"
        }
        Some("M_CONNECTION_TIMEOUT") => {
            "the homeserver's call to knockwarden timed out: check the network between them"
        }
        Some("M_BAD_STATUS") => {
            "knockwarden answered the homeserver's call with an error: check that the `hs_token` in the homeserver's copy of the registration is knockwarden's"
        }
        Some("M_UNKNOWN_TOKEN" | "M_FORBIDDEN") => {
            "the homeserver does not know this registration or its `as_token`: check that the registration file is listed in the homeserver's `app_service_config_files` and that the homeserver was restarted since"
        }
        _ => "check that the homeserver is running and knows knockwarden's registration",
    };
    format!("{e}. What to check: {what}.")
}

/// Pings until it works, then returns.
pub async fn run(shared: Shared, appservice_id: String) {
    let mut stopping = shared.stopping.clone();
    let mut waits = FIRST_TRIES.iter().copied().chain(std::iter::repeat(AGAIN_EVERY));
    let mut reported = false;
    loop {
        match shared.homeserver.ping(&appservice_id).await {
            Ok(took) => {
                tracing::info!(took_ms = took.as_millis() as u64, "the homeserver reaches knockwarden (ping)");
                shared.readiness.set_ping(Ping::Reaches);
                if reported {
                    report(&shared, "✅ The homeserver reaches knockwarden again (ping).".into());
                }
                return;
            }
            // A homeserver older than the ping endpoint (Matrix 1.7) cannot say.
            Err(HsError::Api { status: 404, errcode, .. }) if errcode == "M_UNRECOGNIZED" => {
                tracing::info!("the homeserver does not support the appservice ping; not checked");
                shared.readiness.set_ping(Ping::Unsupported);
                return;
            }
            Err(e) => {
                let wait = waits.next().unwrap_or(AGAIN_EVERY);
                let text = advice(&e);
                shared.readiness.set_ping(Ping::Fails { why: text.clone() });
                tracing::error!(retry_in_s = wait.as_secs(), "the homeserver's ping of knockwarden failed: {text}");
                if !reported && wait == AGAIN_EVERY {
                    report(&shared, format!("⚠️ The homeserver cannot reach knockwarden (ping failed): {text}"));
                    reported = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.changed() => return,
                }
            }
        }
    }
}

fn report(shared: &Shared, text: String) {
    match shared.store.outbox().enqueue([notices::with_block(&text, None)]) {
        Ok(()) => shared.outbox_ready.notify_one(),
        Err(e) => tracing::error!(error = %e, "cannot queue a control-room notice"),
    }
}

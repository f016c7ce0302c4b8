//! Handlers of the application service API.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use futures_util::StreamExt;

use super::{HsAuth, HttpState};
use crate::{
    error::ApiError,
    pipeline::intake::{self, IntakeError, TxnOutcome},
};

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_json(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `PUT /_matrix/app/v1/transactions/{txnId}`: answered 200 only once the events knockwarden
/// needs are durably in the journal.
pub async fn transaction(
    _auth: HsAuth,
    req: HttpRequest,
    state: web::Data<HttpState>,
    txn_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.max_body_bytes).await?;
    let taken = intake::take_transaction(&state.shared, &txn_id, &body).await;
    let outcome = match &taken {
        Ok(TxnOutcome::Replay) => "replayed",
        Ok(TxnOutcome::Taken { .. }) => "taken",
        Err(_) => "refused",
    };
    crate::metrics::Metrics::add(&state.shared.metrics.transactions, outcome, 1);
    match taken {
        Ok(TxnOutcome::Replay) => {
            tracing::debug!(txn_id = %txn_id, "transaction replayed; nothing to do");
        }
        Ok(TxnOutcome::Taken(taken)) => {
            tracing::debug!(txn_id = %txn_id, kept = taken.kept, dropped = taken.dropped, malformed = taken.malformed, "transaction taken in");
        }
        Err(IntakeError::NotJson(e)) => return Err(ApiError::not_json(e)),
        Err(IntakeError::BadJson(e)) => return Err(ApiError::bad_json(e)),
        Err(IntakeError::Store(e)) => {
            tracing::error!(txn_id = %txn_id, error = %e, "cannot store a transaction; the homeserver will retry");
            return Err(ApiError::internal("storage is unavailable; retry later"));
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}

/// `POST /_matrix/app/v1/ping`.
pub async fn ping(_auth: HsAuth) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({}))
}

/// `GET /_matrix/app/v1/users/{userId}`: we own only the bot.
pub async fn query_user(
    _auth: HsAuth,
    state: web::Data<HttpState>,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if user_id.as_str() == state.shared.bot.as_str() {
        Ok(HttpResponse::Ok().json(serde_json::json!({})))
    } else {
        Err(ApiError::not_found(format!("{user_id} is not a user of this application service")))
    }
}

/// `GET /_matrix/app/v1/rooms/{roomAlias}`: we own no aliases.
pub async fn query_room(_auth: HsAuth, room_alias: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!("{room_alias} is not a room of this application service")))
}

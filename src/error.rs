//! Matrix error bodies, built in one place.
//!
//! Every error the HTTP layer answers with is the Matrix standard error body
//! `{"errcode": "...", "error": "..."}` (spec: client-server API, "Standard error response").
//! Handlers return [`ApiError`]; actix turns it into a response through [`ResponseError`].

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

/// The error codes knockwarden answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    /// No token was given.
    Unauthorized,
    /// A token was given but it is not the homeserver's.
    Forbidden,
    /// The user or room alias is not ours.
    NotFound,
    /// Unknown route, or known route with the wrong method.
    Unrecognized,
    /// The request body is over the configured limit.
    TooLarge,
    /// The request body is not JSON.
    NotJson,
    /// The request body is JSON of the wrong shape.
    BadJson,
    /// Something on our side failed (storage).
    Unknown,
}

impl ErrCode {
    /// The wire form, e.g. `M_FORBIDDEN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrCode::Unauthorized => "M_UNAUTHORIZED",
            ErrCode::Forbidden => "M_FORBIDDEN",
            ErrCode::NotFound => "M_NOT_FOUND",
            ErrCode::Unrecognized => "M_UNRECOGNIZED",
            ErrCode::TooLarge => "M_TOO_LARGE",
            ErrCode::NotJson => "M_NOT_JSON",
            ErrCode::BadJson => "M_BAD_JSON",
            ErrCode::Unknown => "M_UNKNOWN",
        }
    }
}

/// An error answered to the homeserver: HTTP status, errcode and a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {}: {message}", status.as_u16(), errcode.as_str())]
pub struct ApiError {
    pub status: StatusCode,
    pub errcode: ErrCode,
    pub message: String,
}

/// The JSON body of an error answer, `{"errcode": ..., "error": ...}`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Body<'a> {
    pub errcode: &'a str,
    pub error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, errcode: ErrCode, message: impl Into<String>) -> Self {
        Self { status, errcode, message: message.into() }
    }

    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrCode::Unauthorized, "Missing access token")
    }

    pub fn wrong_token() -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrCode::Forbidden, "Invalid homeserver token")
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrCode::NotFound, what)
    }

    pub fn unrecognized_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrCode::Unrecognized, "Unrecognized request")
    }

    pub fn wrong_method() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, ErrCode::Unrecognized, "Method not allowed for this endpoint")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrCode::TooLarge,
            format!("Request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn not_json(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrCode::NotJson, format!("Body is not JSON: {detail}"))
    }

    pub fn bad_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrCode::BadJson, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrCode::Unknown, detail)
    }

    /// The JSON body, `{"errcode": ..., "error": ...}`.
    pub fn body(&self) -> Body<'_> {
        Body { errcode: self.errcode.as_str(), error: &self.message }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_errcode_and_error() {
        let e = ApiError::wrong_token();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"errcode": "M_FORBIDDEN", "error": "Invalid homeserver token"})
        );
    }
}

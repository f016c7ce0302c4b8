//! Homeserver authentication: `Authorization: Bearer <hs_token>`, or the legacy
//! `access_token` query parameter. When both are given both must be right. Compared in
//! constant time. Missing: 401 `M_UNAUTHORIZED`; wrong: 403 `M_FORBIDDEN`.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use super::HttpState;
use crate::error::ApiError;

/// Proof that the request came from our homeserver. Take it as a handler argument.
pub struct HsAuth;

/// The tokens a request presents.
pub(super) fn presented(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()));
    let query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned());
    (bearer, query)
}

/// Checks the presented tokens against `expected`.
pub fn check(bearer: Option<&str>, query: Option<&str>, expected: &str) -> Result<(), ApiError> {
    let tokens: Vec<&str> = bearer.into_iter().chain(query).collect();
    if tokens.is_empty() {
        return Err(ApiError::missing_token());
    }
    // Evaluate every comparison, so timing does not tell which one failed.
    let all_ok =
        tokens.iter().fold(true, |ok, t| constant_time_eq::constant_time_eq(t.as_bytes(), expected.as_bytes()) & ok);
    if all_ok { Ok(()) } else { Err(ApiError::wrong_token()) }
}

impl FromRequest for HsAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<HttpState>>() else {
            return ready(Err(ApiError::internal("application state missing")));
        };
        let (bearer, query) = presented(req);
        ready(check(bearer.as_deref(), query.as_deref(), &state.hs_token).map(|()| HsAuth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrCode;

    #[test]
    fn token_rules() {
        let code = |b, q| check(b, q, "secret").err().map(|e| e.errcode);
        assert_eq!(code(Some("secret"), None), None);
        assert_eq!(code(None, Some("secret")), None);
        assert_eq!(code(Some("secret"), Some("secret")), None);
        assert_eq!(code(None, None), Some(ErrCode::Unauthorized));
        assert_eq!(code(Some("nope"), None), Some(ErrCode::Forbidden));
        assert_eq!(code(Some("secret"), Some("nope")), Some(ErrCode::Forbidden));
        assert_eq!(code(Some("nope"), Some("secret")), Some(ErrCode::Forbidden));
        assert_eq!(code(Some(""), None), Some(ErrCode::Forbidden));
    }
}

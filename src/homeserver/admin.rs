//! The homeserver's admin API, with a server admin's token (`homeserver.admin_token_file`):
//! what it says of a local user's account, for `account:` conditions. One request per
//! knocker: Synapse's `GET /_synapse/admin/v2/users/{userId}`, whose fields say when the
//! account was made (`creation_ts`, in seconds) and whether it is shadow-banned, locked or
//! suspended. The token is never logged (`Debug` leaves it out).

use std::time::Duration;

use async_trait::async_trait;
use ruma::UserId;
use serde::Deserialize;
use url::Url;

use super::HsError;

/// What the admin API says of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AccountRecord {
    /// When it was made, in seconds since the epoch (Synapse gives seconds here).
    #[serde(default)]
    pub creation_ts: Option<u64>,
    #[serde(default)]
    pub shadow_banned: Option<bool>,
    #[serde(default)]
    pub locked: Option<bool>,
    #[serde(default)]
    pub suspended: Option<bool>,
}

/// The admin API: one narrow question.
#[async_trait]
pub trait AdminApi: Send + Sync {
    /// What the homeserver says of `user`'s account.
    async fn account(&self, user: &UserId) -> Result<AccountRecord, HsError>;
}

/// Synapse's admin API over HTTP.
pub struct SynapseAdmin {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for SynapseAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynapseAdmin").field("base", &self.base.as_str()).field("token", &"<redacted>").finish()
    }
}

impl SynapseAdmin {
    /// `timeout`: each request's (`homeserver.request_timeout`).
    pub fn new(base: &Url, token: String, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { http, base: base.clone(), token }
    }
}

#[async_trait]
impl AdminApi for SynapseAdmin {
    async fn account(&self, user: &UserId) -> Result<AccountRecord, HsError> {
        let encoded: String = url::form_urlencoded::byte_serialize(user.as_str().as_bytes()).collect();
        let url = self
            .base
            .join(&format!("_synapse/admin/v2/users/{encoded}"))
            .map_err(|e| HsError::Transport(format!("the admin API's URL: {e}")))?;
        let res = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| HsError::Transport(format!("the admin API did not answer: {}", e.without_url())))?;
        let status = res.status().as_u16();
        if !res.status().is_success() {
            /// A Matrix error answer.
            #[derive(Default, serde::Deserialize)]
            struct Refusal {
                #[serde(default, deserialize_with = "crate::events::lenient::string")]
                errcode: Option<String>,
                #[serde(default, deserialize_with = "crate::events::lenient::string")]
                error: Option<String>,
            }
            let body: Refusal = res.json().await.unwrap_or_default();
            return Err(HsError::Api {
                status,
                errcode: body.errcode.unwrap_or_else(|| "M_UNKNOWN".to_owned()),
                message: body.error.unwrap_or_default(),
                retry_after: None,
            });
        }
        res.json().await.map_err(|e| HsError::Transport(format!("the admin API's answer: {}", e.without_url())))
    }
}

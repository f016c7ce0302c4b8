//! [`Homeserver`] over matrix-sdk, acting as the appservice bot.
//!
//! The session is restored with the as_token as access token (no login: the spec lets an
//! appservice act as its `sender_localpart` user with it). Server versions are set up front so
//! building the client makes no request, and the SDK's own retries are off: the outbox retries,
//! with back-off, across restarts.

use std::time::Duration;

use async_trait::async_trait;
use matrix_sdk::{
    Client, HttpError, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    config::RequestConfig,
    ruma::api::{
        MatrixVersion,
        client::{
            account,
            alias::get_alias,
            appservice::request_ping,
            discovery,
            membership::{
                ban_user, get_member_events, invite_user, join_room_by_id_or_alias, joined_members, joined_rooms,
                kick_user, leave_room,
            },
            message::send_message_event,
            state::{get_state_event_for_key, get_state_events},
        },
        error::{ErrorBody, ErrorKind, RetryAfter},
    },
};
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedTransactionId, RoomAliasId, RoomId, RoomOrAliasId, UserId,
    events::MessageLikeEventType, events::StateEventType, events::room::member::MembershipState, serde::Raw,
};
use url::Url;

use super::{Homeserver, HsError, MembershipChange, StateEvent};

/// The SDK's own timeout for one request: a backstop only. The service bounds each request by
/// `homeserver.request_timeout` ([`super::Limited`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The real homeserver client.
#[derive(Clone, Debug)]
pub struct MatrixHomeserver {
    client: Client,
}

impl MatrixHomeserver {
    /// Builds the client for `bot` with the appservice's `as_token`. Makes no request.
    pub async fn new(url: &Url, bot: &UserId, as_token: &str) -> Result<Self, String> {
        let client = Client::builder()
            .homeserver_url(url.as_str())
            .server_versions([MatrixVersion::V1_11])
            .request_config(RequestConfig::new().disable_retry().timeout(REQUEST_TIMEOUT))
            .build()
            .await
            .map_err(|e| format!("cannot build the Matrix client: {e}"))?;
        let session = MatrixSession {
            meta: SessionMeta { user_id: bot.to_owned(), device_id: OwnedDeviceId::from("KNOCKWARDEN") },
            tokens: SessionTokens { access_token: as_token.to_owned(), refresh_token: None },
        };
        client.restore_session(session).await.map_err(|e| format!("cannot set up the bot's session: {e}"))?;
        Ok(Self { client })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The spec versions the homeserver says it supports (`GET /_matrix/client/versions`, no
    /// token needed).
    pub async fn versions(&self) -> Result<Vec<String>, HsError> {
        let req = discovery::get_supported_versions::Request::new();
        let config = RequestConfig::new().disable_retry().timeout(REQUEST_TIMEOUT).skip_auth();
        Ok(self.client.send(req).with_request_config(config).await.map_err(hs_error)?.versions)
    }

    /// Who the homeserver says the as_token acts as (`GET /account/whoami`).
    pub async fn whoami(&self) -> Result<ruma::OwnedUserId, HsError> {
        Ok(self.client.send(account::whoami::v3::Request::new()).await.map_err(hs_error)?.user_id)
    }
}

/// Turns the SDK's error into ours, keeping status, errcode and retry delay.
pub(crate) fn hs_error(e: HttpError) -> HsError {
    if let Some(api) = e.as_client_api_error() {
        let status = api.status_code.as_u16();
        let (errcode, message, retry_after) = match &api.body {
            ErrorBody::Standard(body) => {
                let retry_after = match &body.kind {
                    ErrorKind::LimitExceeded(data) => data.retry_after.as_ref().map(|r| match r {
                        RetryAfter::Delay(d) => *d,
                        RetryAfter::DateTime(t) => t.duration_since(std::time::SystemTime::now()).unwrap_or_default(),
                    }),
                    _ => None,
                };
                (body.kind.errcode().to_string(), body.message.clone(), retry_after)
            }
            ErrorBody::Json(v) => ("M_UNKNOWN".to_owned(), v.to_string(), None),
            ErrorBody::NotJson { bytes, .. } => {
                ("M_UNKNOWN".to_owned(), String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(), None)
            }
        };
        return HsError::Api { status, errcode, message, retry_after };
    }
    match e {
        HttpError::Reqwest(e) => HsError::Transport(e.to_string()),
        other => HsError::Unexpected(other.to_string()),
    }
}

#[async_trait]
impl Homeserver for MatrixHomeserver {
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError> {
        let mut req = join_room_by_id_or_alias::v3::Request::new(room.to_owned());
        if let Ok(id) = <&RoomId>::try_from(room)
            && let Some(server) = id.server_name()
        {
            req.via = vec![server.to_owned()];
        }
        Ok(self.client.send(req).await.map_err(hs_error)?.room_id)
    }

    async fn membership(
        &self,
        change: MembershipChange,
        room: &RoomId,
        user: &UserId,
        reason: &str,
    ) -> Result<(), HsError> {
        let (room, user, reason) = (room.to_owned(), user.to_owned(), Some(reason.to_owned()));
        let sent = match change {
            MembershipChange::Invite => {
                let mut who = invite_user::v3::InviteUserId::new(user);
                who.reason = reason;
                self.client.send(invite_user::v3::Request::new(room, who.into())).await.map(drop)
            }
            MembershipChange::Kick => {
                let mut req = kick_user::v3::Request::new(room, user);
                req.reason = reason;
                self.client.send(req).await.map(drop)
            }
            MembershipChange::Ban => {
                let mut req = ban_user::v3::Request::new(room, user);
                req.reason = reason;
                self.client.send(req).await.map(drop)
            }
        };
        sent.map_err(hs_error)
    }

    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError> {
        Ok(self.client.send(get_alias::v3::Request::new(alias.to_owned())).await.map_err(hs_error)?.room_id)
    }

    async fn leave(&self, room: &RoomId) -> Result<(), HsError> {
        self.client.send(leave_room::v3::Request::new(room.to_owned())).await.map_err(hs_error)?;
        Ok(())
    }

    async fn send(
        &self,
        room: &RoomId,
        txn_id: &str,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<OwnedEventId, HsError> {
        let raw = serde_json::value::to_raw_value(content).map_err(|e| HsError::Unexpected(e.to_string()))?;
        let req = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            OwnedTransactionId::from(txn_id),
            MessageLikeEventType::from(event_type),
            Raw::from_json(raw),
        );
        Ok(self.client.send(req).await.map_err(hs_error)?.event_id)
    }

    async fn ping(&self, appservice_id: &str) -> Result<std::time::Duration, HsError> {
        let req = request_ping::v1::Request::new(appservice_id.to_owned());
        // The endpoint takes the as_token as an appservice token: send it whatever it is called.
        let config = RequestConfig::new().disable_retry().timeout(REQUEST_TIMEOUT).force_auth();
        Ok(self.client.send(req).with_request_config(config).await.map_err(hs_error)?.duration)
    }

    async fn joined_rooms(&self) -> Result<Vec<OwnedRoomId>, HsError> {
        Ok(self.client.send(joined_rooms::v3::Request::new()).await.map_err(hs_error)?.joined_rooms)
    }

    async fn joined_members(&self, room: &RoomId) -> Result<Vec<String>, HsError> {
        let res = self.client.send(joined_members::v3::Request::new(room.to_owned())).await.map_err(hs_error)?;
        Ok(res.joined.into_keys().map(|u| u.to_string()).collect())
    }

    async fn knocking_members(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        let mut req = get_member_events::v3::Request::new(room.to_owned());
        req.membership = Some(MembershipState::Knock);
        let res = self.client.send(req).await.map_err(hs_error)?;
        Ok(res.chunk.into_iter().map(|raw| raw.into_json()).collect())
    }

    async fn room_state(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        let res = self.client.send(get_state_events::v3::Request::new(room.to_owned())).await.map_err(hs_error)?;
        Ok(res.room_state.into_iter().map(|raw| raw.into_json()).collect())
    }

    async fn state(&self, room: &RoomId, event_type: &str, state_key: &str) -> Result<Option<StateEvent>, HsError> {
        let mut req = get_state_event_for_key::v3::Request::new(
            room.to_owned(),
            StateEventType::from(event_type),
            state_key.to_owned(),
        );
        req.format = get_state_event_for_key::v3::StateEventFormat::Event;
        match self.client.send(req).await {
            Ok(res) => StateEvent::from_answer(res.event_or_content.get())
                .map(Some)
                .map_err(|e| HsError::Unexpected(e.to_string())),
            Err(e) => match hs_error(e) {
                HsError::Api { status: 404, .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}

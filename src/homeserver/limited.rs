//! A [`Homeserver`] that keeps at most N requests in flight (`homeserver.max_concurrent_requests`):
//! the runner's concurrent actions, catch-ups and membership checks together never flood the
//! homeserver. Requests beyond the limit wait their turn. It also times every request, by
//! endpoint, for `/metrics` (the wait for a turn is not counted).
//!
//! No request waits on the homeserver for longer than `homeserver.request_timeout`: it then
//! fails as unanswered (transient: tried again later). Requests that wait on another server
//! (inviting, kicking or banning its users, joining or resolving its rooms and aliases: the
//! homeserver asks that server over federation) may hold only three quarters of the slots, so
//! a dead server's knockers never leave the control room and local knockers without one.

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomOrAliasId, ServerName, UserId};
use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use super::{Homeserver, HsError, MembershipChange, StateEvent};
use crate::metrics::{EndpointLabels, Metrics};

/// How many requests may be in flight, and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once (`homeserver.max_concurrent_requests`).
    pub max_in_flight: usize,
    /// The longest a request may take (`homeserver.request_timeout`).
    pub timeout: Duration,
    /// Our homeserver's name: requests about its users and rooms are not "remote".
    pub local: OwnedServerName,
}

pub struct Limited {
    inner: Arc<dyn Homeserver>,
    permits: Semaphore,
    /// Of the permits, how many requests that wait on another server may hold at once.
    remote: Semaphore,
    timeout: Duration,
    local: OwnedServerName,
    metrics: Arc<Metrics>,
}

impl Limited {
    pub fn new(inner: Arc<dyn Homeserver>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let max = limits.max_in_flight.max(1);
        let remote = (max - max / 4).max(1);
        Self {
            inner,
            permits: Semaphore::new(max),
            remote: Semaphore::new(remote),
            timeout: limits.timeout,
            local: limits.local,
            metrics,
        }
    }

    /// Whether a request about `server` waits on another server.
    fn is_remote(&self, server: Option<&ServerName>) -> bool {
        server.is_some_and(|s| s != self.local)
    }

    fn timed_out(&self) -> HsError {
        HsError::Transport(format!("no answer within {}", crate::duration::format(self.timeout)))
    }

    fn observe<T>(&self, endpoint: &'static str, started: std::time::Instant, result: &Result<T, HsError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        let labels = EndpointLabels { endpoint, outcome };
        self.metrics.homeserver.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
}

macro_rules! limited {
    ($self:ident, $endpoint:expr, $call:expr) => {
        limited!($self, $endpoint, remote: false, $call)
    };
    ($self:ident, $endpoint:expr, remote: $remote:expr, $call:expr) => {{
        let closed = |_| HsError::Transport("shutting down".into());
        let _remote = if $remote { Some($self.remote.acquire().await.map_err(closed)?) } else { None };
        let _permit = $self.permits.acquire().await.map_err(closed)?;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout($self.timeout, $call).await {
            Ok(result) => result,
            Err(_) => Err($self.timed_out()),
        };
        $self.observe($endpoint, started, &result);
        result
    }};
}

#[async_trait]
impl Homeserver for Limited {
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError> {
        limited!(self, "join", remote: self.is_remote(room.server_name()), self.inner.join(room))
    }

    async fn membership(
        &self,
        change: MembershipChange,
        room: &RoomId,
        user: &UserId,
        reason: &str,
    ) -> Result<(), HsError> {
        let remote = self.is_remote(Some(user.server_name()));
        limited!(self, change.as_str(), remote: remote, self.inner.membership(change, room, user, reason))
    }

    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError> {
        let remote = self.is_remote(Some(alias.server_name()));
        limited!(self, "resolve_alias", remote: remote, self.inner.resolve_alias(alias))
    }

    async fn leave(&self, room: &RoomId) -> Result<(), HsError> {
        limited!(self, "leave", self.inner.leave(room))
    }

    async fn ping(&self, appservice_id: &str) -> Result<std::time::Duration, HsError> {
        limited!(self, "ping", self.inner.ping(appservice_id))
    }

    async fn joined_rooms(&self) -> Result<Vec<OwnedRoomId>, HsError> {
        limited!(self, "joined_rooms", self.inner.joined_rooms())
    }

    async fn joined_members(&self, room: &RoomId) -> Result<Vec<String>, HsError> {
        limited!(self, "joined_members", self.inner.joined_members(room))
    }

    async fn knocking_members(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        limited!(self, "members", self.inner.knocking_members(room))
    }

    async fn room_state(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        limited!(self, "room_state", self.inner.room_state(room))
    }

    async fn send(
        &self,
        room: &RoomId,
        txn_id: &str,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<OwnedEventId, HsError> {
        limited!(self, "send", self.inner.send(room, txn_id, event_type, content))
    }

    async fn state(&self, room: &RoomId, event_type: &str, state_key: &str) -> Result<Option<StateEvent>, HsError> {
        limited!(self, "state", self.inner.state(room, event_type, state_key))
    }
}

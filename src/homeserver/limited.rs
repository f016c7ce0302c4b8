//! A [`Homeserver`] that keeps at most N requests in flight (`homeserver.max_concurrent_requests`):
//! the runner's concurrent actions, catch-ups and membership checks together never flood the
//! homeserver. Requests beyond the limit wait their turn. It also times every request, by
//! endpoint, for `/metrics` (the wait for a turn is not counted).

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, RoomAliasId, RoomId, RoomOrAliasId, UserId};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Homeserver, HsError, MembershipChange, StateEvent};
use crate::metrics::{EndpointLabels, Metrics};

pub struct Limited {
    inner: Arc<dyn Homeserver>,
    permits: Semaphore,
    metrics: Arc<Metrics>,
}

impl Limited {
    pub fn new(inner: Arc<dyn Homeserver>, max_in_flight: usize, metrics: Arc<Metrics>) -> Self {
        Self { inner, permits: Semaphore::new(max_in_flight.max(1)), metrics }
    }

    fn observe<T>(&self, endpoint: &'static str, started: std::time::Instant, result: &Result<T, HsError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        let labels = EndpointLabels { endpoint, outcome };
        self.metrics.homeserver.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
}

macro_rules! limited {
    ($self:ident, $endpoint:expr, $call:expr) => {{
        let _permit = $self.permits.acquire().await.map_err(|_| HsError::Transport("shutting down".into()))?;
        let started = std::time::Instant::now();
        let result = $call.await;
        $self.observe($endpoint, started, &result);
        result
    }};
}

#[async_trait]
impl Homeserver for Limited {
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError> {
        limited!(self, "join", self.inner.join(room))
    }

    async fn membership(
        &self,
        change: MembershipChange,
        room: &RoomId,
        user: &UserId,
        reason: &str,
    ) -> Result<(), HsError> {
        limited!(self, change.as_str(), self.inner.membership(change, room, user, reason))
    }

    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError> {
        limited!(self, "resolve_alias", self.inner.resolve_alias(alias))
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

//! A [`Homeserver`] that keeps at most N requests in flight (`homeserver.max_concurrent_requests`):
//! the runner's concurrent actions, catch-ups and membership checks together never flood the
//! homeserver. Requests beyond the limit wait their turn.

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, RoomAliasId, RoomId, RoomOrAliasId, UserId};
use tokio::sync::Semaphore;

use super::{Homeserver, HsError, MembershipChange, StateEvent};

pub struct Limited<H> {
    inner: H,
    permits: Semaphore,
}

impl<H: Homeserver> Limited<H> {
    pub fn new(inner: H, max_in_flight: usize) -> Self {
        Self { inner, permits: Semaphore::new(max_in_flight.max(1)) }
    }
}

macro_rules! limited {
    ($self:ident, $call:expr) => {{
        let _permit = $self.permits.acquire().await.map_err(|_| HsError::Transport("shutting down".into()))?;
        $call.await
    }};
}

#[async_trait]
impl<H: Homeserver> Homeserver for Limited<H> {
    async fn join(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId, HsError> {
        limited!(self, self.inner.join(room))
    }

    async fn membership(
        &self,
        change: MembershipChange,
        room: &RoomId,
        user: &UserId,
        reason: &str,
    ) -> Result<(), HsError> {
        limited!(self, self.inner.membership(change, room, user, reason))
    }

    async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, HsError> {
        limited!(self, self.inner.resolve_alias(alias))
    }

    async fn leave(&self, room: &RoomId) -> Result<(), HsError> {
        limited!(self, self.inner.leave(room))
    }

    async fn ping(&self, appservice_id: &str) -> Result<std::time::Duration, HsError> {
        limited!(self, self.inner.ping(appservice_id))
    }

    async fn joined_rooms(&self) -> Result<Vec<OwnedRoomId>, HsError> {
        limited!(self, self.inner.joined_rooms())
    }

    async fn joined_members(&self, room: &RoomId) -> Result<Vec<String>, HsError> {
        limited!(self, self.inner.joined_members(room))
    }

    async fn knocking_members(&self, room: &RoomId) -> Result<Vec<Box<serde_json::value::RawValue>>, HsError> {
        limited!(self, self.inner.knocking_members(room))
    }

    async fn send(
        &self,
        room: &RoomId,
        txn_id: &str,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<OwnedEventId, HsError> {
        limited!(self, self.inner.send(room, txn_id, event_type, content))
    }

    async fn state(&self, room: &RoomId, event_type: &str, state_key: &str) -> Result<Option<StateEvent>, HsError> {
        limited!(self, self.inner.state(room, event_type, state_key))
    }
}

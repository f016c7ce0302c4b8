//! The outbox: actions decided but not yet carried out on the homeserver.
//!
//! Entries are written in the same transaction as the decision that made them and removed
//! only once the homeserver has done what they say (or they are given up on, with a reason).

use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T, inbox::seq_of, now_ms};
use crate::homeserver::MembershipChange;

/// Something to do on the homeserver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Join the control room (on every start).
    JoinControlRoom,
    /// The bot was invited to a room: join if the inviter is a moderator, else decline.
    AnswerInvite { room_id: String, inviter: String },
    /// Fetch knocks the bot could not see (`/members?membership=knock`) and take them in.
    CatchUp { room_id: String },
    /// Fetch a room's power levels (and, for managed rooms, its join rule and version).
    FetchRoomState { room_id: String },
    /// Fetch the joined members of a room the bot joined.
    FetchMembers { room_id: String },
    /// Post a notice in the control room.
    Notice { plain: String, html: String },
    /// Resolve the aliases the active policies name.
    ResolveAliases,
    /// Carry out a decision: invite, kick or ban a knocker (unless they stopped knocking).
    Act { change: MembershipChange, room_id: String, user_id: String, reason: String, audit_id: u64, notify: bool },
    /// Announce a review item in the control room.
    ReviewNotice { number: u64 },
    /// Carry out a control-room command (`text` is what follows `!knock` or the mention).
    Command { event_id: String, sender: String, text: String },
    /// A reaction on a control-room event: ✅, ❌ or 🔨 on a review notice resolve it.
    Reaction { sender: String, target: String, key: String },
    /// Post an event (a reply, a reaction, an edit) in the control room.
    Send { event_type: String, content: serde_json::Value },
    /// A review item was closed: edit its notice to say how, and (with `reply`) reply to it so
    /// the control room reads as a log.
    ReviewClosed { number: u64, reply: bool },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub action: Action,
    pub created_ms: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Do not try again before this time.
    pub not_before_ms: u64,
    pub last_error: Option<String>,
}

impl Store {
    /// The op that queues `action`.
    pub fn outbox_push(&self, action: Action) -> Result<Op, StoreError> {
        let seq = self.next_id()?;
        let now = now_ms();
        Ok(Op::put_json(
            T::Outbox,
            seq.to_be_bytes(),
            &OutboxEntry { action, created_ms: now, attempts: 0, not_before_ms: now, last_error: None },
        ))
    }

    /// Queues actions right away (one transaction).
    pub fn enqueue(&self, actions: impl IntoIterator<Item = Action>) -> Result<(), StoreError> {
        let ops = actions.into_iter().map(|a| self.outbox_push(a)).collect::<Result<Vec<_>, _>>()?;
        self.commit(&ops)
    }

    /// The oldest pending action.
    pub fn outbox_first(&self) -> Result<Option<(u64, OutboxEntry)>, StoreError> {
        Ok(self.first_json::<OutboxEntry>(T::Outbox)?.map(|(k, e)| (seq_of(&k), e)))
    }

    /// All pending actions, oldest first.
    pub fn outbox_all(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        Ok(self.scan_json::<OutboxEntry>(T::Outbox, b"")?.into_iter().map(|(k, e)| (seq_of(&k), e)).collect())
    }

    /// The op that removes a finished action.
    pub fn outbox_done(seq: u64) -> Op {
        Op::del(T::Outbox, seq.to_be_bytes())
    }

    /// Records a failed attempt.
    pub fn outbox_retry_later(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.commit(&[Op::put_json(T::Outbox, seq.to_be_bytes(), entry)])
    }

    pub fn outbox_len(&self) -> usize {
        self.len(T::Outbox)
    }
}

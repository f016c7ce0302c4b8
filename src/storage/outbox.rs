//! The outbox: actions decided but not yet carried out on the homeserver.
//!
//! Entries are written in the same transaction as the decision that made them and removed
//! only once the homeserver has done what they say (or they are given up on, with a reason).

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomOrAliasId};
use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T, inbox::seq_of, now_ms};
use crate::homeserver::MembershipChange;

/// What an action is about. Actions about one subject run one at a time, in order; actions
/// about different subjects run concurrently (see [`crate::runner`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The control room: its messages, edits and reactions, and the commands sent there.
    ControlRoom,
    /// Joining the control room: never behind what waits for the join.
    ControlRoomJoin,
    /// One knocker in one room: the decisions on their knocks.
    Knocker { room_id: OwnedRoomId, user_id: OwnedUserId },
    /// A room's own state: joining, fetching its state and members, catching up.
    Room(OwnedRoomId),
    /// The policies' aliases.
    Aliases,
    /// One ban list (as the policies name it).
    List(String),
    /// Which rooms the bot is in.
    Rooms,
}

/// A moderator's verdict on a knock (a command or a reaction), carried out as an
/// [`Action::Act`] like a policy's decision; the reply is posted once it is done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModeratorVerdict {
    pub by: OwnedUserId,
    /// The event the reply goes to: the command, or the review notice reacted to.
    pub reply_to: OwnedEventId,
    /// The review item the verdict closes, if the knock has one.
    pub review: Option<u64>,
    /// Given as a command (which gets ✅ or ❌ when done), not as a reaction.
    pub command: bool,
    /// One knock of a bulk verdict: its outcome goes to the command's [`super::Batch`], and
    /// the last one's to a single reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

/// Something to do on the homeserver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Join the control room (on every start).
    JoinControlRoom,
    /// On every start: ask the homeserver which rooms the bot is in, make the store agree, and
    /// read each joined room's state and the knocks made there meanwhile.
    Reconcile,
    /// The bot was invited to a room: join if the inviter is a moderator, else decline.
    AnswerInvite { room_id: OwnedRoomId, inviter: OwnedUserId },
    /// Fetch knocks the bot could not see (`/members?membership=knock`) and take them in.
    CatchUp { room_id: OwnedRoomId },
    /// Fetch a room's power levels (and, for managed rooms, its join rule and version).
    FetchRoomState { room_id: OwnedRoomId },
    /// Fetch the joined members of a room the bot joined.
    FetchMembers { room_id: OwnedRoomId },
    /// Post a notice in the control room. `about_failure`: it reports a failed action (if
    /// it fails itself, no notice is posted about that).
    Notice {
        plain: String,
        html: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        about_failure: bool,
    },
    /// Resolve the aliases the active policies name.
    ResolveAliases,
    /// Join a ban list the policies name (a room ID or alias) and read its whole state.
    ReadBanList { name: String },
    /// Report, in one notice, the rules of a ban list ignored since the last report.
    ReportIgnoredRules { room_id: OwnedRoomId, name: String },
    /// Carry out a decision on one knock: invite, kick or ban the knocker, unless that knock
    /// is no longer their membership (they knocked again, withdrew, or a person acted).
    Act {
        change: MembershipChange,
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        reason: String,
        /// The decision's audit entry (none for a knock no policy decided).
        audit_id: Option<u64>,
        /// Post a notice about what came of it.
        notify: bool,
        /// The knock event this answers (absent in actions queued by older versions).
        #[serde(default)]
        knock_event: Option<OwnedEventId>,
        /// Set when a moderator decided, not a policy.
        #[serde(default)]
        verdict: Option<ModeratorVerdict>,
    },
    /// Ask the homeserver's admin API about a local knocker's account (for `account:`
    /// conditions), in the knocker's lane; their knock waits for the answer.
    LookupAccount { room_id: OwnedRoomId, user_id: OwnedUserId },
    /// Announce a review item in the control room.
    ReviewNotice { number: u64 },
    /// Carry out a control-room command (`text` is what follows `!knock` or the mention).
    Command { event_id: OwnedEventId, sender: OwnedUserId, text: String },
    /// A reaction on a control-room event: ✅, ❌ or 🔨 on a review notice resolve it.
    Reaction { sender: OwnedUserId, target: OwnedEventId, key: String },
    /// Post an event (a reply, a reaction, an edit) in the control room.
    Send { event_type: String, content: serde_json::Value },
    /// A review item was closed: edit its notice to say how, and (with `reply`) reply to it so
    /// the control room reads as a log.
    ReviewClosed { number: u64, reply: bool },
}

impl Action {
    /// What the action is about (see [`Subject`]).
    pub fn subject(&self) -> Subject {
        match self {
            Action::Act { room_id, user_id, .. } | Action::LookupAccount { room_id, user_id } => {
                Subject::Knocker { room_id: room_id.clone(), user_id: user_id.clone() }
            }
            Action::AnswerInvite { room_id, .. }
            | Action::CatchUp { room_id }
            | Action::FetchRoomState { room_id }
            | Action::FetchMembers { room_id } => Subject::Room(room_id.clone()),
            Action::ResolveAliases => Subject::Aliases,
            Action::ReadBanList { name } => Subject::List(name.clone()),
            Action::Reconcile => Subject::Rooms,
            Action::JoinControlRoom => Subject::ControlRoomJoin,
            Action::Notice { .. }
            | Action::ReviewNotice { .. }
            | Action::Command { .. }
            | Action::Reaction { .. }
            | Action::Send { .. }
            | Action::ReportIgnoredRules { .. }
            | Action::ReviewClosed { .. } => Subject::ControlRoom,
        }
    }

    /// The server the action's requests wait on besides ours, when there is one: a knocker's
    /// server (Synapse waits on it over federation to invite, kick or ban them), a list's
    /// server (to join it) or an invitation's room's server. See [`crate::runner::lanes`].
    pub fn destination(&self) -> Option<OwnedServerName> {
        match self {
            Action::Act { user_id, .. } => Some(user_id.server_name().to_owned()),
            Action::ReadBanList { name } => {
                <&RoomOrAliasId>::try_from(name.as_str()).ok().and_then(|r| r.server_name().map(ToOwned::to_owned))
            }
            Action::AnswerInvite { room_id, .. } => room_id.server_name().map(ToOwned::to_owned),
            _ => None,
        }
    }

    /// Whether it needs the control room joined: it posts there, is a command or reaction
    /// from there, or answers an invitation (which asks whether the inviter is a moderator
    /// there). Such actions wait for the join (see [`crate::runner::lanes`]).
    pub fn needs_control_room(&self) -> bool {
        self.is_message()
            || matches!(self, Action::Command { .. } | Action::Reaction { .. } | Action::AnswerInvite { .. })
    }

    /// Whether it posts in the control room (a notice, a reply, a reaction, an edit).
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            Action::Notice { .. }
                | Action::Send { .. }
                | Action::ReviewNotice { .. }
                | Action::ReviewClosed { .. }
                | Action::ReportIgnoredRules { .. }
        )
    }

    /// Its kind, as the outbox names it (`act`, `notice`, …): for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::JoinControlRoom => "join_control_room",
            Action::Reconcile => "reconcile",
            Action::AnswerInvite { .. } => "answer_invite",
            Action::CatchUp { .. } => "catch_up",
            Action::FetchRoomState { .. } => "fetch_room_state",
            Action::FetchMembers { .. } => "fetch_members",
            Action::Notice { .. } => "notice",
            Action::ResolveAliases => "resolve_aliases",
            Action::ReadBanList { .. } => "read_ban_list",
            Action::ReportIgnoredRules { .. } => "report_ignored_rules",
            Action::Act { change, .. } => change.as_str(),
            Action::LookupAccount { .. } => "lookup_account",
            Action::ReviewNotice { .. } => "review_notice",
            Action::Command { .. } => "command",
            Action::Reaction { .. } => "reaction",
            Action::Send { .. } => "send",
            Action::ReviewClosed { .. } => "review_closed",
        }
    }

    /// What it does, for people (the failed list, logs).
    pub fn describe(&self) -> String {
        match self {
            Action::JoinControlRoom => "join the control room".into(),
            Action::Reconcile => "learn from the homeserver which rooms the bot is in".into(),
            Action::AnswerInvite { room_id, inviter } => format!("answer {inviter}'s invitation to {room_id}"),
            Action::CatchUp { room_id } => format!("catch up on the knocks in {room_id}"),
            Action::FetchRoomState { room_id } => format!("read the state of {room_id}"),
            Action::FetchMembers { room_id } => format!("read the members of {room_id}"),
            Action::Notice { plain, .. } => {
                format!("post the notice \"{}\"", crate::text::clip(plain.lines().next().unwrap_or("")))
            }
            Action::ResolveAliases => "look up the policies' room aliases".into(),
            Action::LookupAccount { user_id, .. } => format!("look up the account of {user_id}"),
            Action::ReadBanList { name } => format!("read the ban list {name}"),
            Action::ReportIgnoredRules { name, .. } => format!("report the ignored rules of the ban list {name}"),
            Action::Act { change, room_id, user_id, verdict, .. } => {
                let by = verdict.as_ref().map(|v| format!(" (decided by {})", v.by)).unwrap_or_default();
                let to = match change {
                    MembershipChange::Invite => "to",
                    MembershipChange::Kick | MembershipChange::Ban => "from",
                };
                format!("{} {user_id} {to} {room_id}{by}", change.as_str())
            }
            Action::ReviewNotice { number } => format!("announce review item #{number}"),
            Action::Command { sender, text, .. } => {
                format!("run {sender}'s command \"!knock {}\"", crate::text::clip(text.lines().next().unwrap_or("")))
            }
            Action::Reaction { sender, key, .. } => format!("take {sender}'s {key} reaction"),
            Action::Send { event_type, .. } => format!("send a {event_type} to the control room"),
            Action::ReviewClosed { number, .. } => format!("report that review item #{number} closed"),
        }
    }
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
    /// The outbox: actions not carried out yet.
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox { store: self }
    }
}

/// The outbox, a narrow handle on the store ([`Store::outbox`]): what is queued, and the
/// runner's feed of what is newly queued.
#[derive(Clone, Copy)]
pub struct Outbox<'s> {
    store: &'s Store,
}

impl Outbox<'_> {
    /// The op that queues `action`.
    pub fn push(&self, action: Action) -> Result<Op, StoreError> {
        let seq = self.store.next_id()?;
        let now = now_ms();
        Ok(Op::put_json(
            T::Outbox,
            seq.to_be_bytes(),
            &OutboxEntry { action, created_ms: now, attempts: 0, not_before_ms: now, last_error: None },
        ))
    }

    /// Dates the actions that `ops` queue back to `ms` (when the event they answer was taken
    /// in), so the runner treats them as queued then: checked against the homeserver before
    /// they are carried out, if that was before this process started.
    pub fn queued_as_of(ops: &mut [Op], ms: u64) {
        for op in ops {
            if let Op::Put { tree: T::Outbox, value, .. } = op
                && let Ok(mut entry) = serde_json::from_slice::<OutboxEntry>(value)
            {
                entry.created_ms = entry.created_ms.min(ms);
                *value = serde_json::to_vec(&entry).expect("records serialize");
            }
        }
    }

    /// Queues actions right away (one transaction).
    pub fn enqueue(&self, actions: impl IntoIterator<Item = Action>) -> Result<(), StoreError> {
        let ops = actions.into_iter().map(|a| self.push(a)).collect::<Result<Vec<_>, _>>()?;
        self.store.commit(&ops)
    }

    /// The oldest pending action.
    pub fn first(&self) -> Result<Option<(u64, OutboxEntry)>, StoreError> {
        Ok(self.store.first_json::<OutboxEntry>(T::Outbox)?.map(|(k, e)| (seq_of(&k), e)))
    }

    /// All pending actions, oldest first.
    pub fn all(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        Ok(self.store.scan_json::<OutboxEntry>(T::Outbox, b"")?.into_iter().map(|(k, e)| (seq_of(&k), e)).collect())
    }

    /// The op that removes a finished action.
    pub fn done(seq: u64) -> Op {
        Op::del(T::Outbox, seq.to_be_bytes())
    }

    /// Records a failed attempt.
    pub fn retry_later(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.store.commit(&[Op::put_json(T::Outbox, seq.to_be_bytes(), entry)])
    }

    /// One pending action.
    pub fn entry(&self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.store.get_json(T::Outbox, &seq.to_be_bytes())
    }

    /// Starts recording the sequence numbers of actions queued from now on, for
    /// [`Outbox::take_queued`] (the runner's feed: it learns of new actions without scanning).
    pub fn watch(&self) {
        self.store.feed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Vec::new);
    }

    /// The actions queued since the last call (after [`Outbox::watch`]).
    pub fn take_queued(&self) -> Vec<u64> {
        self.store.feed.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// How many actions wait.
    pub fn len(&self) -> usize {
        self.store.len(T::Outbox)
    }

    /// Whether no action waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_queued_by_the_previous_version_read_back() {
        // As 0.1 wrote them: IDs as strings, no knock event, audit ID a plain number.
        let old = r#"{"action":{"action":"act","change":"kick","room_id":"!r:x","user_id":"@u:x","reason":"no","audit_id":7,"notify":true},"created_ms":1,"attempts":2,"not_before_ms":3,"last_error":null}"#;
        let e: OutboxEntry = serde_json::from_str(old).unwrap();
        let Action::Act { audit_id, knock_event, verdict, user_id, .. } = &e.action else { panic!("{e:?}") };
        assert_eq!((*audit_id, knock_event, verdict), (Some(7), &None, &None));
        assert_eq!(user_id.as_str(), "@u:x");
        let cmd = r#"{"action":"command","event_id":"$c","sender":"@m:x","text":"pending"}"#;
        assert!(matches!(serde_json::from_str::<Action>(cmd).unwrap(), Action::Command { .. }));
        let notice = r#"{"action":"notice","plain":"p","html":"h"}"#;
        assert!(matches!(serde_json::from_str::<Action>(notice).unwrap(), Action::Notice { about_failure: false, .. }));
    }
}

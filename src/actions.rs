//! What each action does: the [`Perform`] implementation the runner calls.
//!
//! - [`membership`]: invite, kick or ban a knocker, checked against the knock it answers.
//! - [`rooms`]: join and answer invitations, read rooms' state and members, catch up on
//!   knocks, resolve the policies' aliases.
//! - [`lists`]: join the ban lists the policies name and read them.
//! - [`messages`]: post in the control room (fitted to the homeserver's size limit).
//!
//! Commands and reactions are carried out by [`crate::control::run`].

pub mod lists;
pub mod membership;
pub mod messages;
pub mod rooms;

use async_trait::async_trait;

use crate::{
    app::Shared,
    control,
    notices::Msg,
    runner::{ActionError, Perform},
    storage::{Action, Op, OutboxEntry, Reviews, StoreError},
};

/// Carries out actions for the runner.
pub struct Actions {
    pub shared: Shared,
}

/// What performing an action came to.
pub enum Performed {
    /// Nothing to record but these follow-up actions.
    Then(Vec<Action>),
    /// An invite, kick or ban, and what came of it.
    Acted(membership::Acted),
    /// A ban list's whole state was read.
    ListRead(lists::ListRead),
    /// A review item's notice was posted as this event.
    Announced { number: u64, event: ruma::OwnedEventId },
}

#[async_trait]
impl Perform for Actions {
    type Performed = Performed;

    async fn perform(&self, seq: u64, entry: &OutboxEntry, fresh: bool) -> Result<Performed, ActionError> {
        let shared = &self.shared;
        let then = |v: Vec<Action>| Ok(Performed::Then(v));
        match &entry.action {
            Action::JoinControlRoom => then(rooms::join_control_room(shared).await?),
            Action::Reconcile => then(rooms::reconcile(shared).await?),
            Action::AnswerInvite { room_id, inviter } => then(rooms::answer_invite(shared, room_id, inviter).await?),
            Action::CatchUp { room_id } => then(rooms::catch_up(shared, room_id).await?),
            Action::FetchMembers { room_id } => then(rooms::fetch_members(shared, room_id).await?),
            Action::FetchRoomState { room_id } => then(rooms::fetch_state(shared, room_id).await?),
            Action::ResolveAliases => then(rooms::resolve_aliases(shared).await?),
            Action::ReadBanList { name } => Ok(Performed::ListRead(lists::read(shared, name, entry.attempts).await?)),
            Action::ReportIgnoredRules { room_id, name } => {
                then(lists::report_ignored(shared, seq, room_id, name).await?)
            }
            Action::Notice { plain, html, .. } => then(messages::notice(shared, seq, plain, html).await?),
            Action::Send { event_type, content } => then(messages::send(shared, seq, event_type, content).await?),
            Action::ReviewNotice { number } => match messages::review_notice(shared, seq, *number).await? {
                Some(event) => Ok(Performed::Announced { number: *number, event }),
                None => then(vec![]),
            },
            Action::ReviewClosed { number, reply } => then(control::run::review_closed(shared, *number, *reply)?),
            Action::Command { event_id, sender, text } => {
                then(control::run::command(shared, event_id, sender, text).await?)
            }
            Action::Reaction { sender, target, key } => {
                then(control::run::reaction(shared, sender, target, key).await?)
            }
            Action::Act { .. } => Ok(Performed::Acted(membership::perform(shared, &entry.action, fresh).await?)),
            Action::LookupAccount { user_id, .. } => {
                // Never fails: a failure is an answer (`unknown`). The knock waiting for it is
                // decided next.
                shared.accounts.look_up(user_id, crate::storage::now_ms).await;
                shared.inputs_changed();
                then(vec![])
            }
        }
    }

    fn record(&self, _seq: u64, entry: &OutboxEntry, performed: Performed) -> Result<Vec<Op>, StoreError> {
        let store = &self.shared.store;
        match performed {
            Performed::Then(actions) => actions.into_iter().map(|a| store.outbox().push(a)).collect(),
            Performed::Acted(acted) => membership::record(&self.shared, &entry.action, acted),
            Performed::ListRead(read) => lists::record(&self.shared, read),
            Performed::Announced { number, event } => {
                let Some(mut item) = store.reviews().get(number)? else { return Ok(vec![]) };
                item.notice_event = Some(event);
                Ok(Reviews::put(&item))
            }
        }
    }

    fn record_failure(&self, entry: &OutboxEntry, error: &str, number: u64) -> Result<Vec<Op>, StoreError> {
        let store = &self.shared.store;
        match &entry.action {
            Action::Act { .. } => membership::record_failure(&self.shared, &entry.action, error, number),
            // Reporting the failure of a failure report would fail the same way.
            Action::Notice { about_failure: true, .. } => Ok(vec![]),
            action => {
                let mut m = Msg::new();
                m.text(&format!("⚠️ Could not {}: {error}", action.describe()));
                m.line().text(&format!("Kept as failed action {number}: !knock retry {number} tries again."));
                Ok(vec![store.outbox().push(m.failure_notice())?])
            }
        }
    }
}

//! Which knocks a moderator means: `#N` (a review item) or `@user` (their pending knock),
//! ranges, `all` and `from SERVER`, optionally in a named room (an ID, or an alias from the
//! cache or the directory). What is found or skipped is typed data; [`super::render`] words
//! it.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId};

use super::command::{RoomArg, Selector, Target};
use super::ctx::Ctx;
use crate::events::Verdict;
use crate::{
    homeserver::HsError,
    runner::ActionError,
    storage::{Action, Batch, ReviewItem, Skip},
};

/// A knock a moderator means.
pub(super) struct Found {
    pub room: OwnedRoomId,
    pub user: OwnedUserId,
    pub review: Option<ReviewItem>,
    pub audit_id: Option<u64>,
    /// The knock event the verdict answers.
    pub knock_event: ruma::OwnedEventId,
}

impl Found {
    fn of(item: ReviewItem) -> Found {
        Found {
            room: item.room_id.clone(),
            user: item.user_id.clone(),
            audit_id: Some(item.audit_id),
            knock_event: item.event_id.clone(),
            review: Some(item),
        }
    }
}

/// Why a command's room could not be found.
pub(super) enum RoomRefusal {
    /// The homeserver has no such alias.
    UnknownAlias(OwnedRoomAliasId),
    /// The homeserver refused to look it up.
    Refused { alias: OwnedRoomAliasId, error: HsError },
}

/// What a verdict command came to, before it is worded ([`render::verdict`]).
pub(super) enum VerdictOutcome {
    /// Queued (with ⏳ on a command): the reply comes when the knocks are done with.
    Queued(Vec<Action>),
    /// The one knock named is not pending, and why (`asked`: the room the command named).
    Skipped { skip: Skip, asked: Option<RoomArg> },
    /// The room named was not found.
    RoomRefused(RoomRefusal),
    /// `all` or `from` named more knocks than are carried out without `--yes`.
    NeedsYes { verdict: Verdict, named: usize },
    /// Several targets, none of them pending: the summary at once.
    NothingPending(Batch),
}

/// `all` and `from` act on at most this many knocks without `--yes`.
pub const MAX_WITHOUT_YES: usize = 20;

/// A user that is not a user ID (`@alice:`), and why.
pub(super) struct NotAUser(pub String);

/// The knocks several targets name.
pub(super) struct Selection {
    pub found: Vec<Found>,
    pub skipped: Vec<Skip>,
    /// How many were named by `all` or `from` (which ask for `--yes` over 20).
    pub wide: usize,
}

/// Ranges over this many numbers say which of their numbers are not pending; longer ones
/// name only the pending items.
const DETAILED_RANGE: u64 = 100;

impl Ctx<'_> {
    /// Finds the room a room argument names: an ID as is, an alias from the cache or the
    /// homeserver's directory.
    pub async fn resolve_room(&self, room: &RoomArg) -> Result<Result<OwnedRoomId, RoomRefusal>, ActionError> {
        let alias = match <&RoomAliasId>::try_from(&*room.0) {
            Ok(alias) => alias,
            Err(_) => return Ok(Ok(OwnedRoomId::try_from(room.0.as_str()).expect("a room ID"))),
        };
        if let Some(Some(id)) = self.store().aliases().get(alias.as_str())? {
            return Ok(Ok(OwnedRoomId::try_from(id.as_str()).map_err(|e| ActionError::Permanent(e.to_string()))?));
        }
        match self.shared.homeserver.resolve_alias(alias).await {
            Ok(id) => {
                self.store().commit(&[crate::storage::Aliases::put(alias.as_str(), Some(id.as_str()))])?;
                Ok(Ok(id))
            }
            Err(HsError::Api { status: 404, .. }) => Ok(Err(RoomRefusal::UnknownAlias(alias.to_owned()))),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(error) => Ok(Err(RoomRefusal::Refused { alias: alias.to_owned(), error })),
        }
    }

    /// The knock one target names, in `room` if given.
    pub fn find(&self, target: &Target, room: Option<&OwnedRoomId>) -> Result<Result<Found, Skip>, ActionError> {
        let store = self.store();
        match target {
            Target::Review(n) => {
                let n = *n;
                let Some(item) = store.reviews().get(n)? else { return Ok(Err(Skip::NoSuchItem { number: n })) };
                if let Some(how) = &item.closed {
                    return Ok(Err(Skip::Closed { number: n, how: how.clone() }));
                }
                if let Some(want) = room
                    && *want != item.room_id
                {
                    return Ok(Err(Skip::OtherRoom { number: n, room_id: item.room_id }));
                }
                Ok(Ok(Found::of(item)))
            }
            Target::User(u) => {
                let user = match self.user_id(u) {
                    Ok(user) => user,
                    Err(NotAUser(why)) => return Ok(Err(Skip::NotAUser { text: u.clone(), why })),
                };
                let mut knocks = store.knocks().of(user.as_str())?;
                if let Some(want) = room {
                    knocks.retain(|k| k.room_id == *want);
                }
                match knocks.as_slice() {
                    [] => Ok(Err(Skip::NoPendingKnock { user_id: user })),
                    [k] => Ok(Ok(Found {
                        room: k.room_id.clone(),
                        review: store.reviews().open_for(&k.room_id, user.as_str())?,
                        audit_id: k.audit_id,
                        knock_event: k.event_id.clone(),
                        user,
                    })),
                    many => Ok(Err(Skip::SeveralRooms {
                        user_id: user,
                        rooms: many.iter().map(|k| k.room_id.clone()).collect(),
                    })),
                }
            }
        }
    }

    /// The knocks several targets name, in `room` if given, each once.
    pub fn select(&self, targets: &[Selector], room: Option<&OwnedRoomId>) -> Result<Selection, ActionError> {
        let mut selection = Selection { found: Vec::new(), skipped: Vec::new(), wide: 0 };
        let in_room = |item: &ReviewItem| room.is_none_or(|r| *r == item.room_id);
        // The open items in the room, read once for every range, `all` and `from`.
        let open: Vec<ReviewItem> = match targets.iter().all(|t| matches!(t, Selector::One(_))) {
            true => Vec::new(),
            false => self.store().reviews().open()?.into_iter().filter(in_room).collect(),
        };
        let found = |keep: &dyn Fn(&ReviewItem) -> bool| -> Vec<Found> {
            open.iter().filter(|i| keep(i)).cloned().map(Found::of).collect()
        };
        for target in targets {
            match target {
                Selector::One(t) => match self.find(t, room)? {
                    Ok(found) => selection.found.push(found),
                    Err(skip) => selection.skipped.push(skip),
                },
                Selector::Range { first, last } if last - first < DETAILED_RANGE => {
                    for n in *first..=*last {
                        match self.find(&Target::Review(n), room)? {
                            Ok(found) => selection.found.push(found),
                            Err(skip) => selection.skipped.push(skip),
                        }
                    }
                }
                Selector::Range { first, last } => {
                    selection.found.extend(found(&|i| (*first..=*last).contains(&i.number)));
                }
                Selector::All => {
                    let items = found(&|_| true);
                    selection.wide += items.len();
                    selection.found.extend(items);
                }
                Selector::From(server) => {
                    let items = found(&|i| i.user_id.server_name() == server);
                    selection.wide += items.len();
                    selection.found.extend(items);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        selection.found.retain(|f| seen.insert((f.room.clone(), f.user.clone())));
        Ok(selection)
    }

    /// A user as a moderator writes it, completed with the homeserver's own server.
    fn user_id(&self, user: &str) -> Result<OwnedUserId, NotAUser> {
        Target::user_id(user, self.shared.config.homeserver.server_name.as_str()).map_err(NotAUser)
    }
}

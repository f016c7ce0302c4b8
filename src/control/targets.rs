//! Which knock a moderator means: `#N` (a review item) or `@user` (their pending knock),
//! optionally in a named room (an ID, or an alias from the cache or the directory).

use ruma::{OwnedRoomId, OwnedUserId, RoomAliasId};

use super::{
    command::{RoomArg, Target},
    run::{Ctx, Done, Refusal, refused},
};
use crate::{homeserver::HsError, runner::ActionError, storage::ReviewItem};

/// The knock a moderator means.
pub(super) struct Found {
    pub room: OwnedRoomId,
    pub user: OwnedUserId,
    pub review: Option<ReviewItem>,
    pub audit_id: Option<u64>,
    /// The knock event the verdict answers.
    pub knock_event: ruma::OwnedEventId,
}

impl Ctx<'_> {
    /// Finds the room a room argument names: an ID as is, an alias from the cache or the
    /// homeserver's directory.
    pub async fn resolve_room(&self, room: &RoomArg) -> Result<Result<OwnedRoomId, Refusal>, ActionError> {
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
            Err(HsError::Api { status: 404, .. }) => {
                Ok(Err(Done::text(false, &format!("Unknown room {alias}: the homeserver has no such alias."))))
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(Err(refused(&format!("look up {alias}"), &e))),
        }
    }

    pub async fn find(&self, target: Target, room: Option<RoomArg>) -> Result<Result<Found, Refusal>, ActionError> {
        let store = self.store();
        let room_id = match &room {
            Some(r) => match self.resolve_room(r).await? {
                Ok(id) => Some(id),
                Err(refusal) => return Ok(Err(refusal)),
            },
            None => None,
        };
        match target {
            Target::Review(n) => {
                let Some(item) = store.reviews().get(n)? else {
                    return Ok(Err(Done::text(
                        false,
                        &format!("There is no review item #{n}; !knock pending lists the open ones."),
                    )));
                };
                if let Some(how) = &item.closed {
                    return Ok(Err(Done::text(false, &format!("#{n} is already closed: {how}."))));
                }
                if let (Some(want), Some(r)) = (&room_id, &room)
                    && want.as_str() != item.room_id
                {
                    let label = crate::notices::room_label(store, &item.room_id);
                    return Ok(Err(Done::text(false, &format!("#{n} is a knock on {label}, not on {}.", r.0))));
                }
                let parse = |e: ruma::IdParseError| ActionError::Permanent(e.to_string());
                Ok(Ok(Found {
                    room: OwnedRoomId::try_from(item.room_id.as_str()).map_err(parse)?,
                    user: OwnedUserId::try_from(item.user_id.as_str()).map_err(parse)?,
                    audit_id: Some(item.audit_id),
                    knock_event: item.event_id.clone(),
                    review: Some(item),
                }))
            }
            Target::User(u) => {
                let user = match Target::user_id(&u, self.shared.config.homeserver.server_name.as_str()) {
                    Ok(user) => user,
                    Err(e) => return Ok(Err(Done::text(false, &e))),
                };
                let mut knocks = store.knocks().of(user.as_str())?;
                if let Some(want) = &room_id {
                    knocks.retain(|k| k.room_id == want.as_str());
                }
                match knocks.as_slice() {
                    [] => {
                        let where_ = room.map(|r| format!(" on {}", r.0)).unwrap_or_default();
                        Ok(Err(Done::text(
                            false,
                            &format!("{user} has no pending knock{where_}; !knock pending lists the open reviews."),
                        )))
                    }
                    [k] => {
                        let parse = |e: ruma::IdParseError| ActionError::Permanent(e.to_string());
                        Ok(Ok(Found {
                            room: OwnedRoomId::try_from(k.room_id.as_str()).map_err(parse)?,
                            review: store.reviews().open_for(&k.room_id, user.as_str())?,
                            audit_id: k.audit_id,
                            knock_event: k.event_id.clone(),
                            user,
                        }))
                    }
                    many => {
                        let rooms: Vec<String> =
                            many.iter().map(|k| crate::notices::room_label(store, &k.room_id)).collect();
                        Ok(Err(Done::text(
                            false,
                            &format!(
                                "{user} is knocking on {} rooms: {}. Say which one, e.g. !knock approve {user} {}",
                                rooms.len(),
                                rooms.join(", "),
                                rooms[0]
                            ),
                        )))
                    }
                }
            }
        }
    }
}

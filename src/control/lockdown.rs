//! `!knock lockdown`: start, end and list lockdowns by hand (see [`crate::lockdown`]).

use ruma::OwnedUserId;

use super::{
    command::{LockdownArgs, LockdownRooms},
    ctx::Ctx,
    targets::RoomRefusal,
};
use crate::{
    notices::room_label,
    runner::ActionError,
    storage::{Lockdown, LockdownCause, Lockdowns, Op},
};

/// A room's lockdown, as a report names it.
pub(super) struct LockdownRow {
    pub room: String,
    pub lockdown: Lockdown,
}

/// What came of a lockdown command.
pub(super) enum LockdownReport {
    /// `!knock lockdown`: the rooms in lockdown.
    List(Vec<LockdownRow>),
    /// Lockdowns begun (or renewed) by the moderator.
    Began { rows: Vec<LockdownRow>, by: OwnedUserId },
    /// Lockdowns ended by the moderator.
    Ended { rows: Vec<LockdownRow>, by: OwnedUserId },
    /// `lockdown all`, and knockwarden manages no room.
    NoRooms,
    /// `lockdown off`, and the room (or every room: `None`) is not in lockdown.
    NotInLockdown(Option<String>),
    /// The room named was not found.
    Refused(RoomRefusal),
}

impl Ctx<'_> {
    pub async fn lockdown(&self, args: LockdownArgs, now: u64) -> Result<LockdownReport, ActionError> {
        let store = self.store();
        let row = |lockdown: Lockdown| LockdownRow { room: room_label(store, &lockdown.room_id), lockdown };
        let by = || OwnedUserId::try_from(self.sender).map_err(|e| ActionError::Permanent(e.to_string()));
        match args {
            LockdownArgs::List => {
                let rows = store.lockdowns().all()?.into_iter().filter(|l| l.is_active(now)).map(row).collect();
                Ok(LockdownReport::List(rows))
            }
            LockdownArgs::Begin { rooms, length } => {
                let rooms = match rooms {
                    LockdownRooms::One(r) => match self.resolve_room(&r).await? {
                        Ok(id) => vec![id],
                        Err(refusal) => return Ok(LockdownReport::Refused(refusal)),
                    },
                    LockdownRooms::All => self.managed_rooms()?,
                };
                if rooms.is_empty() {
                    return Ok(LockdownReport::NoRooms);
                }
                let by = by()?;
                let until_ms = now.saturating_add(length.as_millis() as u64);
                let mut began = Vec::new();
                for room_id in rooms {
                    let since_ms = store.lockdowns().active(room_id.as_str(), now)?.map_or(now, |l| l.since_ms);
                    let cause = LockdownCause::Moderator { user_id: by.clone() };
                    began.push(Lockdown { room_id, since_ms, until_ms, cause });
                }
                store.commit(&began.iter().map(Lockdowns::put).collect::<Vec<Op>>())?;
                tracing::warn!(by = %by, rooms = began.len(), until_ms, "lockdown begun by a moderator");
                Ok(LockdownReport::Began { rows: began.into_iter().map(row).collect(), by })
            }
            LockdownArgs::End { rooms } => {
                let ended: Vec<Lockdown> = match rooms {
                    LockdownRooms::One(r) => {
                        let id = match self.resolve_room(&r).await? {
                            Ok(id) => id,
                            Err(refusal) => return Ok(LockdownReport::Refused(refusal)),
                        };
                        match store.lockdowns().active(id.as_str(), now)? {
                            Some(l) => vec![l],
                            None => return Ok(LockdownReport::NotInLockdown(Some(room_label(store, &id)))),
                        }
                    }
                    LockdownRooms::All => store.lockdowns().all()?.into_iter().filter(|l| l.is_active(now)).collect(),
                };
                if ended.is_empty() {
                    return Ok(LockdownReport::NotInLockdown(None));
                }
                store.commit(&ended.iter().map(|l| Lockdowns::del(l.room_id.as_str())).collect::<Vec<Op>>())?;
                let by = by()?;
                tracing::info!(by = %by, rooms = ended.len(), "lockdown ended by a moderator");
                Ok(LockdownReport::Ended { rows: ended.into_iter().map(row).collect(), by })
            }
        }
    }

    /// The rooms knockwarden manages ([`super::reports::managed_rooms`]), as room IDs.
    fn managed_rooms(&self) -> Result<Vec<ruma::OwnedRoomId>, ActionError> {
        let control = self.shared.control_room_id();
        let rooms =
            super::reports::managed_rooms(self.store(), control.as_deref().map(|c| c.as_str()), &self.shared.lists)?;
        Ok(rooms.into_iter().filter_map(|r| ruma::OwnedRoomId::try_from(r).ok()).collect())
    }
}

//! Whether knockwarden can do its work, and if not, why: what `GET /ready` answers and
//! `/health` shows.
//!
//! Kept in memory, set by the parts that learn it: the start-up reconciliation
//! ([`crate::supervise::Tasks::set_ready`]), the control room's join
//! ([`crate::actions::rooms::join_control_room`], and the worker when the bot's membership
//! there changes), the homeserver's ping ([`crate::ping`]). The policies' inputs (aliases,
//! ban lists) are read where they are kept when asked.
//!
//! The runner holds back everything that needs the control room (messages, commands, answers
//! to invitations) until it is joined: [`Readiness::control_room_joined`].

use parking_lot::Mutex;
use ruma::OwnedRoomId;
use tokio::sync::watch;

/// The bot in its control room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRoom {
    /// Not joined yet in this run (the join is queued first, on every start).
    Joining,
    /// Joined.
    Joined(OwnedRoomId),
    /// The join failed; it is tried again when the bot is invited and on every start
    /// (`why`, for people).
    NotJoined { why: String },
}

/// Whether the homeserver reaches knockwarden ([`crate::ping`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// Not answered yet.
    Pending,
    /// The homeserver reached knockwarden.
    Reaches,
    /// The homeserver has no ping endpoint: it cannot say.
    Unsupported,
    /// The ping failed; `why` says what to check.
    Fails { why: String },
}

impl Ping {
    /// For `/health`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ping::Pending => "pending",
            Ping::Reaches => "ok",
            Ping::Unsupported => "unsupported",
            Ping::Fails { .. } => "failed",
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Readiness {
    control: Mutex<ControlRoom>,
    joined: watch::Sender<bool>,
    ping: Mutex<Ping>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            control: Mutex::new(ControlRoom::Joining),
            joined: watch::channel(false).0,
            ping: Mutex::new(Ping::Pending),
        }
    }
}

impl Readiness {
    pub fn set_control_room(&self, state: ControlRoom) {
        let joined = matches!(state, ControlRoom::Joined(_));
        *self.control.lock() = state;
        self.joined.send_replace(joined);
    }

    pub fn control_room(&self) -> ControlRoom {
        self.control.lock().clone()
    }

    pub fn is_control_room_joined(&self) -> bool {
        *self.joined.borrow()
    }

    /// Follows whether the control room is joined (the runner's gate).
    pub fn control_room_joined(&self) -> watch::Receiver<bool> {
        self.joined.subscribe()
    }

    pub fn set_ping(&self, ping: Ping) {
        *self.ping.lock() = ping;
    }

    pub fn ping(&self) -> Ping {
        self.ping.lock().clone()
    }
}

/// Why knockwarden is not ready, from what it knows now (empty: ready).
pub struct NotReady<'a> {
    /// The start-up reconciliation (with its catch-up on knocks) is done.
    pub reconciled: bool,
    /// The configured control room, as the admin wrote it.
    pub control_room_name: &'a str,
    pub control_room: ControlRoom,
    pub ping: Ping,
    /// The policies' aliases not looked up yet.
    pub unresolved_aliases: &'a [String],
    /// Ban lists the policies name that are not read yet, or cannot be matched against (with
    /// why).
    pub ban_lists: &'a [(String, String)],
}

impl NotReady<'_> {
    /// Each reason, for people; the first is the most basic.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.reconciled {
            reasons.push("starting: catching up with the homeserver".to_owned());
        }
        let room = self.control_room_name;
        match &self.control_room {
            ControlRoom::Joined(_) => {}
            ControlRoom::Joining => reasons.push(format!("joining the control room {room}")),
            ControlRoom::NotJoined { why } => {
                reasons.push(format!("not in the control room {room}: {why}; invite the bot there"))
            }
        }
        if let Ping::Fails { why } = &self.ping {
            reasons.push(format!("the homeserver cannot reach knockwarden (ping failed): {why}"));
        }
        if !self.unresolved_aliases.is_empty() {
            reasons.push(format!(
                "the policies' aliases not looked up yet (knocks that depend on them wait): {}",
                self.unresolved_aliases.join(", ")
            ));
        }
        for (name, why) in self.ban_lists {
            reasons.push(format!("the ban list {name} {why}"));
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_thing_is_a_reason_and_nothing_missing_is_ready() {
        let aliases = ["#a:x".to_owned()];
        let lists = [("#bans:x".to_owned(), "is not read yet".to_owned())];
        let all = NotReady {
            reconciled: false,
            control_room_name: "#control:x",
            control_room: ControlRoom::NotJoined { why: "the homeserver refused the join (403 M_FORBIDDEN)".into() },
            ping: Ping::Fails { why: "no route".into() },
            unresolved_aliases: &aliases,
            ban_lists: &lists,
        };
        let reasons = all.reasons();
        assert_eq!(reasons.len(), 5, "{reasons:#?}");
        assert!(reasons[1].contains("#control:x") && reasons[1].contains("invite the bot"), "{reasons:#?}");
        assert!(reasons[3].contains("#a:x"));
        assert_eq!(reasons[4], "the ban list #bans:x is not read yet");
        let fine = NotReady {
            reconciled: true,
            control_room_name: "#control:x",
            control_room: ControlRoom::Joined("!c:x".try_into().unwrap()),
            ping: Ping::Unsupported,
            unresolved_aliases: &[],
            ban_lists: &[],
        };
        assert!(fine.reasons().is_empty());
    }

    #[test]
    fn the_gate_follows_the_join() {
        let r = Readiness::default();
        let rx = r.control_room_joined();
        assert!(!*rx.borrow());
        r.set_control_room(ControlRoom::Joined("!c:x".try_into().unwrap()));
        assert!(*rx.borrow() && r.is_control_room_joined());
        r.set_control_room(ControlRoom::NotJoined { why: "left".into() });
        assert!(!*rx.borrow());
    }
}

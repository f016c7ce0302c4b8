//! How a knock was resolved, or why an action on it was not carried out: typed, so code
//! matches on variants and people read [`std::fmt::Display`].
//!
//! Records written before this type existed hold the same facts as free text; they read back
//! as [`Resolution::Text`] (see [`lenient`]), so no migration is needed.

use std::fmt;

use ruma::{OwnedUserId, events::room::member::MembershipState};
use serde::{Deserialize, Deserializer, Serialize};

/// How a knock ended, or why knockwarden left it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Resolution {
    /// A moderator's verdict, carried out by knockwarden.
    Approved {
        by: OwnedUserId,
    },
    Denied {
        by: OwnedUserId,
    },
    Banned {
        by: OwnedUserId,
    },
    /// Nobody reviewed it within `review.expire_after` (a duration as people write it).
    Expired {
        after: String,
        denied: bool,
    },
    /// The knocker knocked again: the newer knock is the one that counts.
    KnockedAgain,
    /// The knocker withdrew the knock.
    Withdrawn,
    /// The knocker joined.
    Joined,
    /// Someone changed the knocker's membership themselves (`by` is the sender).
    InvitedBy {
        by: OwnedUserId,
    },
    KickedBy {
        by: OwnedUserId,
    },
    BannedBy {
        by: OwnedUserId,
    },
    /// Knockwarden's own membership change arrived (it carried the action out).
    ByKnockwarden {
        membership: MembershipState,
    },
    /// Any other membership change.
    Membership {
        membership: MembershipState,
    },
    /// When an action was due, the knocker was no longer knocking with this knock.
    NotKnocking {
        membership: Option<MembershipState>,
    },
    /// The knock had already been decided: the first verdict stands.
    AlreadyDecided,
    /// Decided again while it waited for review (a ban list gained a rule that matches the
    /// knocker), with another outcome.
    DecidedAgain {
        why: String,
        action: crate::policy::Action,
    },
    /// Written before resolutions were typed.
    Text {
        text: String,
    },
}

impl Resolution {
    /// Whether a person decided it (a moderator through knockwarden, or someone directly).
    pub fn by_people(&self) -> bool {
        !matches!(self, Resolution::Expired { .. } | Resolution::ByKnockwarden { .. } | Resolution::DecidedAgain { .. })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Approved { by } => write!(f, "approved by {by}"),
            Resolution::Denied { by } => write!(f, "denied by {by}"),
            Resolution::Banned { by } => write!(f, "banned by {by}"),
            Resolution::Expired { after, denied: true } => write!(f, "expired after {after} without review: denied"),
            Resolution::Expired { after, denied: false } => write!(f, "expired after {after} without review"),
            Resolution::KnockedAgain => f.write_str("knocked again"),
            Resolution::Withdrawn => f.write_str("withdrawn"),
            Resolution::Joined => f.write_str("joined"),
            Resolution::InvitedBy { by } => write!(f, "accepted by {by}"),
            Resolution::KickedBy { by } => write!(f, "denied by {by}"),
            Resolution::BannedBy { by } => write!(f, "banned by {by}"),
            Resolution::ByKnockwarden { membership } => match membership {
                MembershipState::Invite => f.write_str("invited by knockwarden"),
                MembershipState::Leave => f.write_str("denied by knockwarden"),
                MembershipState::Ban => f.write_str("banned by knockwarden"),
                other => write!(f, "membership set to {other} by knockwarden"),
            },
            Resolution::Membership { membership } => write!(f, "membership is now {membership}"),
            Resolution::NotKnocking { membership } => {
                write!(f, "no longer knocking (membership: {})", membership.as_ref().map_or("none", |m| m.as_str()))
            }
            Resolution::AlreadyDecided => f.write_str("already decided"),
            Resolution::DecidedAgain { why, action } => write!(f, "decided again ({why}): {action}"),
            Resolution::Text { text } => f.write_str(text),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Typed(Resolution),
    Text(String),
}

impl From<Repr> for Resolution {
    fn from(r: Repr) -> Self {
        match r {
            Repr::Typed(r) => r,
            Repr::Text(text) => Resolution::Text { text },
        }
    }
}

/// Reads a resolution, or the free text older records hold in its place.
pub fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Resolution, D::Error> {
    Repr::deserialize(d).map(Resolution::from)
}

/// [`lenient`], for an optional field.
pub fn lenient_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Resolution>, D::Error> {
    Option::<Repr>::deserialize(d).map(|r| r.map(Resolution::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "lenient_opt", default)]
        closed: Option<Resolution>,
    }

    #[test]
    fn typed_and_old_text_both_read_back() {
        let by: OwnedUserId = "@mod:x".try_into().unwrap();
        let r = Resolution::Approved { by };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"how":"approved","by":"@mod:x"}"#);
        let h: Holder = serde_json::from_str(&format!(r#"{{"closed":{json}}}"#)).unwrap();
        assert_eq!(h.closed, Some(r));
        let old: Holder = serde_json::from_str(r#"{"closed":"approved by @mod:x"}"#).unwrap();
        assert_eq!(old.closed, Some(Resolution::Text { text: "approved by @mod:x".into() }));
        assert_eq!(old.closed.unwrap().to_string(), "approved by @mod:x");
        let text = Resolution::Text { text: "withdrawn".into() };
        let json = serde_json::to_string(&text).unwrap();
        let h: Holder = serde_json::from_str(&format!(r#"{{"closed":{json}}}"#)).unwrap();
        assert_eq!(h.closed, Some(text));
        let none: Holder = serde_json::from_str(r#"{"closed":null}"#).unwrap();
        assert_eq!(none.closed, None);
    }

    #[test]
    fn memberships_are_stored_as_the_strings_they_were_before_they_were_typed() {
        let r = Resolution::NotKnocking { membership: Some(MembershipState::Leave) };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"how":"not_knocking","membership":"leave"}"#);
        let h: Holder = serde_json::from_str(r#"{"closed":{"how":"by_knockwarden","membership":"ban"}}"#).unwrap();
        assert_eq!(h.closed, Some(Resolution::ByKnockwarden { membership: MembershipState::Ban }));
        assert_eq!(h.closed.unwrap().to_string(), "banned by knockwarden");
        let odd: Holder = serde_json::from_str(r#"{"closed":{"how":"membership","membership":"xyz"}}"#).unwrap();
        assert_eq!(odd.closed.unwrap().to_string(), "membership is now xyz");
    }
}

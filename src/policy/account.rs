//! What the homeserver says of a local knocker's account, and how `account:` conditions read
//! it (pure: the facts are looked up by the caller and handed in).

use std::time::Duration;

use super::ast::AccountAtom;

/// What the homeserver says of a knocker's account, for `account:` conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountFacts {
    Known {
        /// Since the account was created (`None`: the homeserver did not say).
        age: Option<Duration>,
        shadow_banned: bool,
        locked: bool,
        suspended: bool,
    },
    /// It cannot be known: why, for explanations ("@x:remote.example is not a local user").
    Unknown(String),
}

impl AccountFacts {
    /// One line for explanations.
    pub fn describe(&self) -> String {
        match self {
            AccountFacts::Known { age, shadow_banned, locked, suspended } => {
                let age = age
                    .map(|a| format!("created {} ago", crate::duration::format(a)))
                    .unwrap_or_else(|| "creation time not given".into());
                let flag = |name: &str, on: bool| if on { format!(", {name}") } else { String::new() };
                format!(
                    "{age}{}{}{}",
                    flag("shadow-banned", *shadow_banned),
                    flag("locked", *locked),
                    flag("suspended", *suspended)
                )
            }
            AccountFacts::Unknown(why) => format!("unknown: {why}"),
        }
    }
}

/// Whether an `account:` key holds for these facts (only `unknown: true` holds for an
/// account that cannot be known).
pub(super) fn account_holds(a: AccountAtom, facts: Option<&AccountFacts>) -> bool {
    let known = match facts {
        Some(AccountFacts::Known { age, shadow_banned, locked, suspended }) => {
            Some((age, shadow_banned, locked, suspended))
        }
        _ => None,
    };
    match (a, known) {
        (AccountAtom::Unknown(u), k) => k.is_none() == u,
        (_, None) => false,
        (AccountAtom::YoungerThan(d), Some((age, ..))) => age.is_some_and(|a| a < d),
        (AccountAtom::OlderThan(d), Some((age, ..))) => age.is_some_and(|a| a > d),
        (AccountAtom::ShadowBanned(b), Some((_, s, _, _))) => *s == b,
        (AccountAtom::Locked(b), Some((_, _, l, _))) => *l == b,
        (AccountAtom::Suspended(b), Some((_, _, _, s))) => *s == b,
    }
}

pub(super) fn describe_account(a: AccountAtom, facts: Option<&AccountFacts>, ok: bool) -> String {
    let held = if ok { "holds" } else { "does not hold" };
    let key = match a {
        AccountAtom::YoungerThan(d) => format!("younger than {}", crate::duration::format(d)),
        AccountAtom::OlderThan(d) => format!("older than {}", crate::duration::format(d)),
        AccountAtom::ShadowBanned(b) => format!("shadow_banned: {b}"),
        AccountAtom::Locked(b) => format!("locked: {b}"),
        AccountAtom::Suspended(b) => format!("suspended: {b}"),
        AccountAtom::Unknown(b) => format!("unknown: {b}"),
    };
    let facts = facts.map(AccountFacts::describe).unwrap_or_else(|| "unknown: not looked up".into());
    format!("account {key} {held} (account {facts})")
}

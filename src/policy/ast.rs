//! A policy file as read, with positions: what the reader produces and the compiler takes.

use std::time::Duration;

use super::{Action, problem::Spanned};

/// Which rooms a policy governs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomSel {
    /// `"*"`: every room no other policy claims.
    Any,
    /// A room ID (`!…`) or an alias (`#…:server`), as written.
    Named(String),
}

#[derive(Debug, Clone)]
pub struct PolicyAst {
    pub file: String,
    pub name: Spanned<String>,
    pub rooms: Vec<Spanned<RoomSel>>,
    pub default: Action,
    pub dry_run: bool,
    pub rules: Vec<RuleAst>,
}

#[derive(Debug, Clone)]
pub struct RuleAst {
    pub name: Spanned<String>,
    pub when: Cond,
    pub action: Action,
    pub reason: Option<Spanned<String>>,
    pub notify: Option<bool>,
    /// `lockdown`: how long a match puts the room in lockdown.
    pub lockdown: Option<std::time::Duration>,
}

/// A condition tree; a `when` mapping is an `All` of its keys.
#[derive(Debug, Clone)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Atom(Spanned<Atom>),
}

/// The primitive conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    /// Globs over the full user ID (any may match).
    User(Vec<String>),
    UserRegex(String),
    /// Globs over the server name (any may match).
    Server(Vec<String>),
    /// `reason.missing`: true holds when there is no (or an empty) reason.
    ReasonMissing(bool),
    ReasonMinLength(usize),
    ReasonMaxLength(usize),
    ReasonMatches(String),
    /// Case-insensitive whole words (or phrases); any may occur.
    ReasonContains(Vec<String>),
    DisplaynameMissing(bool),
    DisplaynameMatches(String),
    /// Rooms (IDs or aliases); holds when the knocker is joined to one of them.
    MemberOf(Vec<String>),
    /// Ban lists (room IDs or aliases); holds when a ban rule of one of them matches the
    /// knocker (see [`super::banlist`]).
    BanList(Vec<String>),
    RoomKnocks {
        more_than: u64,
        within: Duration,
    },
    UserKnocks {
        more_than: u64,
        within: Duration,
    },
    /// `account:`: what the homeserver says of a local knocker's account (see
    /// [`super::AccountFacts`]). Each key is one atom; only `unknown` holds when the account
    /// cannot be known.
    Account(AccountAtom),
}

/// The keys of `account:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAtom {
    YoungerThan(Duration),
    OlderThan(Duration),
    ShadowBanned(bool),
    Locked(bool),
    Suspended(bool),
    /// `unknown: true` holds when the account cannot be known (a remote knocker, no admin
    /// token, the homeserver refused or failed).
    Unknown(bool),
}

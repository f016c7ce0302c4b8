//! The context a command or reaction runs in: who sent it, where replies go, and the
//! service it may use.

use crate::{app::Shared, storage::Store};

/// One command being carried out: who sent it, and where replies go.
pub(super) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub sender: &'a str,
    /// The event replies go to (the command, or the review notice reacted to).
    pub reply_to: &'a str,
    pub by_reaction: bool,
}

impl Ctx<'_> {
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}

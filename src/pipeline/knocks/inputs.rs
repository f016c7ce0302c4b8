//! What deciding a knock needs: the policy that governs its room, the aliases and ban lists
//! that must be known first, and the context (counters, memberships) the policy reads.

use crate::{
    app::Shared,
    policy::{Knock, PolicySet},
    storage::{Store, StoreError},
};

/// The least of `aliases` (those that are aliases) that has not been looked up yet.
pub(super) fn first_unresolved<'a>(
    store: &Store,
    aliases: impl Iterator<Item = &'a String>,
) -> Result<Option<&'a String>, StoreError> {
    let mut unresolved = None;
    for a in aliases.filter(|a| a.starts_with('#')) {
        if store.aliases().get(a)?.is_none() && unresolved.is_none_or(|u: &String| a < u) {
            unresolved = Some(a);
        }
    }
    Ok(unresolved)
}

/// The aliases the active policies name that have not been looked up yet (for `/health`).
pub fn unresolved_aliases(shared: &Shared) -> Vec<String> {
    let active = shared.policies.current();
    let store = &shared.store;
    active.set.aliases().iter().filter(|a| store.aliases().get(a).is_ok_and(|r| r.is_none())).cloned().collect()
}

/// The alias a knock in `room` (known by `aliases`) waits for, if any: one not looked up
/// yet that may name the policy governing the room (no policy names the room by what is
/// known of it), or a room the `member_of` conditions of its policy ask about. Knocks in
/// rooms named otherwise are decided at once, whatever happens to that alias.
pub(super) fn waits_for_alias(
    store: &Store,
    set: &PolicySet,
    room: &str,
    aliases: &[String],
) -> Result<Option<String>, StoreError> {
    let named = set.policy_named_for(room, aliases);
    if named.is_none()
        && let Some(a) = first_unresolved(store, set.room_aliases())?
    {
        return Ok(Some(a.clone()));
    }
    let Some(policy) = set.policy_for(room, aliases) else { return Ok(None) };
    let member_of: Vec<String> = policy.member_of_rooms().collect();
    Ok(first_unresolved(store, member_of.iter())?.cloned())
}

/// The policy that governs `room`: never one for the control room, which is left to the
/// people in it, and a `"*"` policy does not cover the ban lists knockwarden follows (it is in
/// them to read them).
pub fn governing_policy<'p>(
    shared: &Shared,
    set: &'p PolicySet,
    room: &str,
    aliases: &[String],
) -> Option<&'p crate::policy::CompiledPolicy> {
    if shared.control_room_id().is_some_and(|c| c.as_str() == room) {
        return None;
    }
    if shared.lists.is_list_room(room) {
        return set.policy_named_for(room, aliases);
    }
    set.policy_for(room, aliases)
}

/// What is known around a knock, for deciding it (or explaining what would be decided).
pub struct Context {
    /// The room as the policies and people name it: its first alias, else its ID.
    pub label: String,
    pub room_counts: Vec<(std::time::Duration, u64)>,
    pub user_counts: Vec<(std::time::Duration, u64)>,
    /// Of the rooms the policies' `member_of` conditions name, those the knocker is in (as
    /// the policies name them).
    pub member_of: Vec<String>,
    /// The room is in lockdown.
    pub lockdown: bool,
}

impl Context {
    /// Knock counters and the knocker's memberships. `aliases` are the room's known aliases (the
    /// first names it). With `one_more`, the counters count one more knock: the one being
    /// decided, not recorded yet.
    pub fn gather(
        store: &Store,
        set: &PolicySet,
        room: &str,
        aliases: &[String],
        user: &str,
        now: u64,
        one_more: bool,
    ) -> Result<Self, StoreError> {
        let extra = u64::from(one_more);
        let windows = set.windows();
        let mut room_counts = Vec::with_capacity(windows.len());
        let mut user_counts = Vec::with_capacity(windows.len());
        for w in windows {
            let since = now.saturating_sub(w.as_millis() as u64);
            room_counts.push((*w, store.activity().room_knocks_since(room, since)? + extra));
            user_counts.push((*w, store.activity().user_knocks_since(user, room, since)? + extra));
        }
        // Only the rooms the policies name can matter: each is looked up (an alias through
        // what it resolves to), not every room the knocker is in.
        let mut member_of = Vec::new();
        for named in set.member_of_rooms() {
            let room_id =
                if named.starts_with('#') { store.aliases().get(named)?.flatten() } else { Some(named.clone()) };
            if let Some(room_id) = room_id
                && store.members().contains(&room_id, user)?
            {
                member_of.push(named.clone());
            }
        }
        let label = aliases.first().cloned().unwrap_or_else(|| room.to_owned());
        let lockdown = store.lockdowns().active(room, now)?.is_some();
        Ok(Context { label, room_counts, user_counts, member_of, lockdown })
    }

    pub fn knock<'a>(&'a self, user: &'a str, reason: Option<&'a str>, displayname: Option<&'a str>) -> Knock<'a> {
        Knock {
            user,
            room: &self.label,
            reason,
            displayname,
            member_of: &self.member_of,
            room_knocks: &self.room_counts,
            user_knocks: &self.user_counts,
            lists: None,
            account: None,
            lockdown: self.lockdown,
        }
    }
}

impl<'a> Knock<'a> {
    /// The same knock, decided against these ban lists.
    pub fn with_lists(self, lists: &'a dyn crate::policy::ListSource) -> Self {
        Knock { lists: Some(lists), ..self }
    }
}

//! Ban lists: joining a list room the policies name and reading its whole state.
//!
//! [`read`] resolves the name, records the room as a list (before joining, so the bot's join
//! is not taken for a room to manage), joins it (a list on another server over federation)
//! and reads `GET /rooms/{id}/state`. [`record`] stores what changed, in the transaction that
//! removes the action, says in the control room what it found, and decides again the knocks
//! waiting for review that a new rule bans.
//!
//! A list that cannot be read is reported once and its stored copy stays in use; the read is
//! retried with the runner's back-off (a refusal, such as an alias that does not exist, goes
//! to the failed list with its notice).

use ruma::{OwnedRoomId, RoomAliasId, RoomId};

use crate::{
    app::Shared,
    homeserver::HsError,
    notices, pipeline,
    policy::banlist::{self, Parsed, RuleKey},
    runner::ActionError,
    storage::{Action, ListRecord, ListRecords, Op, StoreError, now_ms},
};

/// A list's whole state, as read.
pub struct ListRead {
    pub name: String,
    pub room: OwnedRoomId,
    pub rules: Vec<(RuleKey, Parsed)>,
    /// The change number the read started at (see [`crate::lists::Lists::replace`]).
    pub since: u64,
    /// State events of rule types that could not be read.
    pub malformed: usize,
}

/// The fields of a state event a list needs (a room's state as the homeserver gives it: a
/// rule's sender and room are not needed).
#[derive(serde::Deserialize)]
struct StateWire {
    #[serde(rename = "type")]
    event_type: String,
    state_key: Option<String>,
    event_id: Option<String>,
    #[serde(default, deserialize_with = "crate::events::lenient::opt")]
    content: Option<banlist::RuleContent>,
}

/// Reads the rule events of a room's state; returns them and how many could not be read.
pub fn rules_of_state<'a>(events: impl IntoIterator<Item = &'a str>) -> (Vec<(RuleKey, Parsed)>, usize) {
    let mut rules = Vec::new();
    let mut malformed = 0;
    for json in events {
        let Ok(ev) = serde_json::from_str::<StateWire>(json) else {
            malformed += 1;
            continue;
        };
        let (Some(state_key), Some(event_id)) = (ev.state_key, ev.event_id) else { continue };
        if let Some(parsed) = banlist::parse(&ev.event_type, &ev.content.unwrap_or_default(), &event_id) {
            rules.push((RuleKey { event_type: ev.event_type, state_key }, parsed));
        }
    }
    (rules, malformed)
}

/// What the stored copy of a list is worth, for a notice.
fn stored_copy(shared: &Shared, room: Option<&RoomId>) -> String {
    match room.and_then(|r| shared.lists.counts(r.as_str())) {
        Some((u, s, _)) if u + s > 0 => {
            format!("its stored copy ({u} user rules, {s} server rules) is used meanwhile")
        }
        _ => "until it is read, its `ban_list` conditions do not hold".to_owned(),
    }
}

/// Reports a failed read once (on the action's first failure), records the error, and passes
/// it on: transient errors are retried, refusals go to the failed list.
fn failed(
    shared: &Shared,
    name: &str,
    room: Option<&OwnedRoomId>,
    attempts: u32,
    e: ActionError,
) -> Result<ListRead, ActionError> {
    shared.lists.mark_tried(name);
    shared.inputs_changed();
    let store = &shared.store;
    let mut ops = Vec::new();
    if let Some(room) = room {
        let mut rec = store.lists().get(room.as_str())?.unwrap_or_else(|| ListRecord::new(room.clone()));
        rec.error = Some(e.to_string());
        ops.push(ListRecords::put(&rec));
    }
    if e.is_transient() && attempts == 0 {
        tracing::warn!(list = name, error = %e, "cannot read a ban list now; retrying");
        let text = format!(
            "⚠️ Cannot read the ban list {name} now: {e}. Knockwarden tries again; {}.",
            stored_copy(shared, room.map(|r| r.as_ref()))
        );
        ops.push(store.outbox().push(notices::with_block(&text, None))?);
        shared.outbox_ready.notify_one();
    }
    store.commit(&ops)?;
    Err(e)
}

/// Resolves, records, joins and reads one list.
pub async fn read(shared: &Shared, name: &str, attempts: u32) -> Result<ListRead, ActionError> {
    let store = &shared.store;
    let room = if let Ok(id) = RoomId::parse(name) {
        id
    } else {
        let alias = RoomAliasId::parse(name).map_err(|e| ActionError::Permanent(format!("`{name}`: {e}")))?;
        match shared.homeserver.resolve_alias(&alias).await {
            Ok(room) => {
                store.commit(&[crate::storage::Aliases::put(name, Some(room.as_str()))])?;
                room
            }
            Err(HsError::Api { status: 404, .. }) => {
                store.commit(&[crate::storage::Aliases::put(name, None)])?;
                let e = ActionError::Permanent(format!("the alias {name} does not exist"));
                return failed(shared, name, None, attempts, e);
            }
            Err(e) => match store.aliases().get(name)? {
                Some(Some(known)) => OwnedRoomId::try_from(known.as_str())
                    .map_err(|_| ActionError::Permanent(format!("`{known}` is not a room ID")))?,
                _ => return failed(shared, name, None, attempts, e.into()),
            },
        }
    };
    // A list room from now on (before the join, so the bot's join there is read as such).
    shared.lists.follow(name, &room);
    let mut rec = store.lists().get(room.as_str())?.unwrap_or_else(|| ListRecord::new(room.clone()));
    if !rec.names.iter().any(|n| n == name) {
        rec.names.push(name.to_owned());
        rec.names.sort();
        store.commit(&[ListRecords::put(&rec)])?;
    }
    // By alias when the policy gives one: the homeserver then knows which servers to join via.
    let by_id: &RoomId = &room;
    let target: &ruma::RoomOrAliasId = match <&RoomAliasId>::try_from(name) {
        Ok(alias) => alias.into(),
        Err(_) => by_id.into(),
    };
    if let Err(e) = shared.homeserver.join(target).await {
        return failed(shared, name, Some(&room), attempts, e.into());
    }
    let since = shared.lists.seq();
    let state = match shared.homeserver.room_state(&room).await {
        Ok(s) => s,
        Err(e) => return failed(shared, name, Some(&room), attempts, e.into()),
    };
    let (rules, malformed) = rules_of_state(state.iter().map(|e| e.get()));
    Ok(ListRead { name: name.to_owned(), room, rules, since, malformed })
}

/// Stores what a read changed, and tells the control room what is new.
pub fn record(shared: &Shared, read: ListRead) -> Result<Vec<Op>, StoreError> {
    let store = &shared.store;
    let ListRead { name, room, rules, since, malformed } = read;
    let now = now_ms();
    let mut rec = store.lists().get(room.as_str())?.unwrap_or_else(|| ListRecord::new(room.clone()));
    let first = rec.read_ms.is_none();
    let changed = shared.lists.replace(&room, rules, since);
    let mut ops = Vec::new();
    for (key, rule) in &changed.set {
        ops.push(ListRecords::put_rule(room.as_str(), key, rule));
    }
    for key in &changed.removed {
        ops.push(ListRecords::del_rule(room.as_str(), key));
    }
    if ops.len() > crate::storage::BULK_CHUNK {
        // A large list's rules are written in chunks, at once (the stored copy is a cache:
        // the list is read whole again at every start); the rest goes with the record.
        store.commit_bulk(&ops)?;
        ops.clear();
    }
    rec.read_ms = Some(now);
    rec.error = None;
    if !changed.set.is_empty() || !changed.removed.is_empty() {
        rec.changed_ms = Some(now);
    }
    if !rec.names.contains(&name) {
        rec.names.push(name.clone());
        rec.names.sort();
    }
    ops.push(ListRecords::put(&rec));
    shared.lists.mark_tried(&name);
    let (users, servers, _) = shared.lists.counts(room.as_str()).unwrap_or_default();
    tracing::info!(list = %name, room = %room, users, servers, set = changed.set.len(), removed = changed.removed.len(), malformed, "read a ban list");
    if first {
        let text = format!("📋 Following the ban list {name}: {users} user rules, {servers} server rules.");
        ops.push(store.outbox().push(notices::with_block(&text, None))?);
    }
    ops.extend(pipeline::lists::rules_changed(shared, &name, &changed.set, pipeline::lists::Report::Now)?);
    ops.extend(pipeline::lists::availability_notice(shared, &name, shared.lists.recheck(room.as_str()))?);
    shared.inputs_changed();
    Ok(ops)
}

/// Posts the ignored rules of a list gathered from pushed events since the last report, in
/// one notice; a follow-up reports those gathered while it was posted.
pub async fn report_ignored(
    shared: &Shared,
    seq: u64,
    room: &OwnedRoomId,
    name: &str,
) -> Result<Vec<Action>, ActionError> {
    let ignored = shared.lists.gathered_ignored(room.as_str());
    if ignored.is_empty() {
        // Gathered before a restart: the rules are kept, marked ignored (`!knock lists`).
        return Ok(vec![]);
    }
    let notice = pipeline::lists::ignored_notice(name, &ignored);
    if let Action::Notice { plain, html, .. } = &notice {
        super::messages::notice(shared, seq, plain, html).await?;
    }
    let more = shared.lists.reported_ignored(room.as_str(), ignored.len());
    Ok(if more { vec![Action::ReportIgnoredRules { room_id: room.clone(), name: name.to_owned() }] } else { vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_from_a_state_answer_and_other_events_are_skipped() {
        let events = [
            r#"{"type":"m.policy.rule.user","state_key":"rule:1","event_id":"$1","content":{"entity":"@a:x","recommendation":"m.ban"}}"#,
            r#"{"type":"m.room.create","state_key":"","event_id":"$2","content":{}}"#,
            r#"{"type":"m.policy.rule.server","state_key":"s","event_id":"$3","content":{}}"#,
            r#"{"type": 7}"#,
        ];
        let (rules, malformed) = rules_of_state(events);
        assert_eq!(malformed, 1);
        assert_eq!(rules.len(), 2);
        assert!(matches!(rules[0].1, Parsed::Rule(_)));
        assert_eq!(rules[1].1, Parsed::Removed);
    }
}

//! Pushed events of ban list rooms: rule state events and their redactions.
//!
//! Each changes the list in memory and in the store (in the event's transaction). A rule that
//! would match everyone is kept, ignored, and reported once; a rule that comes into force
//! decides again the knocks waiting for review whose knockers it bans.

use super::knocks;
use crate::app::Shared;
use crate::{
    events::{Body, Event},
    notices,
    policy::banlist::{self, ListRule, Parsed, RuleKey},
    storage::{Action, ListRecord, ListRecords, Op, StoreError, now_ms},
};

/// What an event of a list room changes.
pub fn on_event(shared: &Shared, head: &Event) -> Result<Vec<Op>, StoreError> {
    let room = head.room_id.as_str();
    let lists = &shared.lists;
    let (key, parsed) = match &head.body {
        Body::Redaction { redacts } => match redacts.as_deref().and_then(|id| lists.key_of_event(room, id)) {
            Some(key) => (key, Parsed::Removed),
            None => return Ok(vec![]),
        },
        Body::PolicyRule { event_type, state_key, content, .. } => {
            match banlist::parse(event_type, content, head.event_id.as_str()) {
                Some(parsed) => (RuleKey { event_type: event_type.clone(), state_key: state_key.clone() }, parsed),
                None => return Ok(vec![]),
            }
        }
        _ => return Ok(vec![]),
    };
    let store = &shared.store;
    let old = lists.apply(room, key.clone(), parsed.clone());
    let mut ops = vec![match &parsed {
        Parsed::Rule(rule) => ListRecords::put_rule(room, &key, rule),
        Parsed::Removed => ListRecords::del_rule(room, &key),
    }];
    let mut rec = store.lists().get(room)?.unwrap_or_else(|| ListRecord::new(head.room_id.clone()));
    rec.changed_ms = Some(now_ms());
    ops.push(ListRecords::put(&rec));
    let name = rec.names.first().cloned().unwrap_or_else(|| room.to_owned());
    tracing::info!(list = %name, kind = %key.event_type, state_key = %key.state_key, removed = parsed == Parsed::Removed, "a ban list changed");
    if let Parsed::Rule(rule) = &parsed
        && old.as_ref() != Some(rule)
    {
        ops.extend(rules_changed(shared, &name, &[(key, rule.clone())], Report::Gathered(&head.room_id))?);
    }
    ops.extend(availability_notice(shared, &name, lists.recheck(room))?);
    Ok(ops)
}

/// The notice about a list's availability changing, if it did.
pub fn availability_notice(
    shared: &Shared,
    name: &str,
    change: Option<crate::lists::Availability>,
) -> Result<Option<Op>, StoreError> {
    let text = match change {
        None => return Ok(None),
        Some(crate::lists::Availability::Lost(why)) => {
            tracing::error!(list = %name, why, "a ban list is unavailable: knocks it would decide are held for review");
            format!(
                "⚠️ The ban list {name} is unavailable: {why}. Knocks that its rules would decide are held for review, never accepted, until it is fixed."
            )
        }
        Some(crate::lists::Availability::Regained) => {
            tracing::info!(list = %name, "a ban list is available again");
            format!("✅ The ban list {name} is available again.")
        }
    };
    Ok(Some(shared.store.outbox().push(notices::with_block(&text, None))?))
}

/// How ignored rules are reported: at once (a read of the whole list), or gathered and said
/// in one notice after the pushed events handled meanwhile (see [`Action::ReportIgnoredRules`]).
pub enum Report<'a> {
    Now,
    Gathered(&'a ruma::OwnedRoomId),
}

/// One line about an ignored rule, its entity cut short.
fn ignored_line(key: &RuleKey, rule: &ListRule) -> Option<String> {
    let why = rule.ignored.as_deref()?;
    let entity = rule.entity.to_string();
    let shown = match entity.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &entity[..cut]),
        None => entity,
    };
    Some(format!("{shown} ({}, state key {:?}): {why}", key.event_type, key.state_key))
}

/// The notice about the ignored rules of the list `name`: a count, and the first 20.
pub fn ignored_notice(name: &str, ignored: &[String]) -> Action {
    const SHOWN: usize = 20;
    let text = format!(
        "⚠️ The ban list {name} has {} that knockwarden ignores:",
        if ignored.len() == 1 { "a rule".to_owned() } else { format!("{} rules", ignored.len()) },
    );
    let mut block = ignored.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("\n");
    if ignored.len() > SHOWN {
        block.push_str(&format!("\n… and {} more (`!knock lists` counts them)", ignored.len() - SHOWN));
    }
    notices::with_block(&text, Some(&block))
}

/// What new or changed rules of the list `name` lead to: one notice for those ignored (as
/// over-broad, or too long to be a user ID or server name), and a new decision on the knocks
/// waiting for review that the others ban.
pub fn rules_changed(
    shared: &Shared,
    name: &str,
    rules: &[(RuleKey, ListRule)],
    report: Report,
) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::new();
    let ignored: Vec<String> = rules.iter().filter_map(|(k, r)| ignored_line(k, r)).collect();
    if !ignored.is_empty() {
        match report {
            Report::Now => ops.push(shared.store.outbox().push(ignored_notice(name, &ignored))?),
            Report::Gathered(room) => {
                if shared.lists.gather_ignored(room.as_str(), ignored) {
                    let report = Action::ReportIgnoredRules { room_id: room.clone(), name: name.to_owned() };
                    ops.push(shared.store.outbox().push(report)?);
                }
            }
        }
    }
    let gained: Vec<&ListRule> = rules.iter().map(|(_, r)| r).filter(|r| r.ignored.is_none()).collect();
    if !gained.is_empty() {
        let why = match gained.as_slice() {
            [one] => format!("{name} gained the rule {}", one.entity),
            many => format!("{name} gained {} rules", many.len()),
        };
        let banned = |user: &str| gained.iter().any(|r| banlist::rule_matches(r, user));
        ops.extend(knocks::redecide_reviews(shared, &banned, &why)?);
    }
    Ok(ops)
}

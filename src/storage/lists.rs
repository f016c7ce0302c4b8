//! The ban lists knockwarden follows: one record per list room, and each list's rules, kept so
//! that a restart decides with the stored copy before the homeserver is asked again.

use ruma::OwnedRoomId;
use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T};
use crate::policy::banlist::{ListRule, RuleKey};

/// What knockwarden knows of one list room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRecord {
    pub room_id: OwnedRoomId,
    /// The names (aliases or the room ID) the policies give it.
    pub names: Vec<String>,
    /// When its whole state was last read from the homeserver.
    pub read_ms: Option<u64>,
    /// When one of its rules last changed.
    pub changed_ms: Option<u64>,
    /// Why the last read failed (cleared by a read that succeeds).
    pub error: Option<String>,
}

impl ListRecord {
    pub fn new(room_id: OwnedRoomId) -> Self {
        Self { room_id, names: Vec::new(), read_ms: None, changed_ms: None, error: None }
    }
}

/// room \0 JSON [type, state_key]: state keys may hold any character.
fn rule_key(room: &str, key: &RuleKey) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.push(0);
    k.extend(serde_json::to_vec(&(&key.event_type, &key.state_key)).expect("strings serialize"));
    k
}

fn room_prefix(room: &str) -> Vec<u8> {
    let mut k = room.as_bytes().to_vec();
    k.push(0);
    k
}

impl Store {
    /// The ban lists followed and their rules.
    pub fn lists(&self) -> ListRecords<'_> {
        ListRecords { store: self }
    }
}

/// The ban lists followed and their rules, a narrow handle on the store ([`Store::lists`]).
#[derive(Clone, Copy)]
pub struct ListRecords<'s> {
    store: &'s Store,
}

impl ListRecords<'_> {
    pub fn put(rec: &ListRecord) -> Op {
        Op::put_json(T::Lists, rec.room_id.as_str(), rec)
    }

    pub fn get(&self, room: &str) -> Result<Option<ListRecord>, StoreError> {
        self.store.get_json(T::Lists, room.as_bytes())
    }

    /// Every list record, by room ID.
    pub fn all(&self) -> Result<Vec<ListRecord>, StoreError> {
        Ok(self.store.scan_json::<ListRecord>(T::Lists, b"")?.into_iter().map(|(_, r)| r).collect())
    }

    pub fn put_rule(room: &str, key: &RuleKey, rule: &ListRule) -> Op {
        Op::put_json(T::ListRules, rule_key(room, key), rule)
    }

    pub fn del_rule(room: &str, key: &RuleKey) -> Op {
        Op::del(T::ListRules, rule_key(room, key))
    }

    /// The stored rules of one list.
    pub fn rules(&self, room: &str) -> Result<Vec<(RuleKey, ListRule)>, StoreError> {
        let prefix = room_prefix(room);
        let mut out = Vec::new();
        for (k, rule) in self.store.scan_json::<ListRule>(T::ListRules, &prefix)? {
            let (event_type, state_key): (String, String) = serde_json::from_slice(&k[prefix.len()..])
                .map_err(|e| StoreError::Corrupt { tree: "list_rules", message: e.to_string() })?;
            out.push((RuleKey { event_type, state_key }, rule));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::banlist::{Entity, EntityKind};

    #[test]
    fn rules_are_kept_per_room_whatever_their_state_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let rule = ListRule {
            kind: EntityKind::User,
            entity: Entity::Glob("@a:x".into()),
            recommendation: crate::policy::banlist::Recommendation::Ban,
            reason: "r".into(),
            event_id: "$e".into(),
            ignored: None,
        };
        let odd = RuleKey { event_type: "m.policy.rule.user".into(), state_key: "a\0b\"c".into() };
        let other = RuleKey { event_type: "m.policy.rule.user".into(), state_key: "x".into() };
        s.commit(&[
            ListRecords::put_rule("!l:x", &odd, &rule),
            ListRecords::put_rule("!l:xy", &other, &rule),
            ListRecords::put(&ListRecord::new("!l:x".try_into().unwrap())),
        ])
        .unwrap();
        assert_eq!(s.lists().rules("!l:x").unwrap(), vec![(odd.clone(), rule.clone())]);
        s.commit(&[ListRecords::del_rule("!l:x", &odd)]).unwrap();
        assert!(s.lists().rules("!l:x").unwrap().is_empty());
        assert_eq!(s.lists().rules("!l:xy").unwrap().len(), 1);
        assert_eq!(s.lists().all().unwrap().len(), 1);
    }
}

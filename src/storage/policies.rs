//! Policy versions: every accepted set of policy files, numbered, with its source text.
//!
//! The last [`KEEP_VERSIONS`] versions are kept (the active one always is). Which version is
//! active is a store value too, so a rollback survives restarts.

use serde::{Deserialize, Serialize};

use super::{Op, Store, StoreError, T, now_ms};
use crate::policy::Source;

/// How many versions are kept.
pub const KEEP_VERSIONS: usize = 50;

const ACTIVE_KEY: &str = "active_policy_version";

/// Meta key prefix of the policies set from the control room.
const ROOM_POLICY_PREFIX: &str = "room_policy/";

/// One accepted set of policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub number: u64,
    pub created_ms: u64,
    /// [`crate::policy::content_hash`] of the sources.
    pub hash: String,
    /// What made it: `files`, `rollback to N`, …
    pub origin: String,
    pub sources: Vec<Source>,
}

impl Store {
    /// The policy versions and the policies set from the control room.
    pub fn policies(&self) -> PolicyVersions<'_> {
        PolicyVersions { store: self }
    }
}

/// The policy versions and the policies set from the control room, a narrow handle on the store ([`Store::policies`]).
#[derive(Clone, Copy)]
pub struct PolicyVersions<'s> {
    store: &'s Store,
}

impl PolicyVersions<'_> {
    /// Stores a new version (not yet active) and prunes old ones; returns it.
    pub fn add(&self, sources: Vec<Source>, hash: String, origin: &str) -> Result<PolicyVersion, StoreError> {
        let last = self.store.tree(T::PolicyVersions).last()?.map(|(k, _)| super::inbox::seq_of(&k)).unwrap_or(0);
        let version =
            PolicyVersion { number: last + 1, created_ms: now_ms(), hash, origin: origin.to_owned(), sources };
        let mut ops = vec![Op::put_json(T::PolicyVersions, version.number.to_be_bytes(), &version)];
        let keys = self.store.scan_keys(T::PolicyVersions, b"")?;
        let active = self.active()?;
        let excess = (keys.len() + 1).saturating_sub(KEEP_VERSIONS);
        for k in keys.iter().take(excess) {
            if Some(super::inbox::seq_of(k)) != active {
                ops.push(Op::del(T::PolicyVersions, k.clone()));
            }
        }
        self.store.commit(&ops)?;
        Ok(version)
    }

    pub fn get(&self, number: u64) -> Result<Option<PolicyVersion>, StoreError> {
        self.store.get_json(T::PolicyVersions, &number.to_be_bytes())
    }

    /// All kept versions, oldest first.
    pub fn all(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        Ok(self.store.scan_json::<PolicyVersion>(T::PolicyVersions, b"")?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn active(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.store.get_meta(ACTIVE_KEY)?.and_then(|s| s.parse().ok()))
    }

    pub fn set_active(&self, number: u64) -> Result<(), StoreError> {
        self.store.commit(&[Op::Put { tree: T::Meta, key: ACTIVE_KEY.into(), value: number.to_string().into_bytes() }])
    }

    /// Policies set from the control room (`!knock policy set`): name -> YAML text.
    pub fn set_in_room(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .store
            .scan_json::<String>(T::Meta, ROOM_POLICY_PREFIX.as_bytes())?
            .into_iter()
            .map(|(k, text)| (String::from_utf8_lossy(&k[ROOM_POLICY_PREFIX.len()..]).into_owned(), text))
            .collect())
    }

    /// Replaces the policies set from the control room, all at once.
    pub fn replace_set_in_room(&self, policies: &[(String, String)]) -> Result<(), StoreError> {
        let mut ops: Vec<Op> = self
            .store
            .scan_keys(T::Meta, ROOM_POLICY_PREFIX.as_bytes())?
            .into_iter()
            .map(|k| Op::del(T::Meta, k))
            .collect();
        for (name, text) in policies {
            ops.push(Op::put_json(T::Meta, format!("{ROOM_POLICY_PREFIX}{name}"), text));
        }
        self.store.commit(&ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_kept_to_fifty_and_the_active_one_survives() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let src = |i: u64| vec![Source { path: "p.yaml".into(), text: format!("# {i}") }];
        let first = s.policies().add(src(0), "h0".into(), "files").unwrap();
        assert_eq!(first.number, 1);
        s.policies().set_active(1).unwrap();
        for i in 1..60 {
            s.policies().add(src(i), format!("h{i}"), "files").unwrap();
        }
        let kept = s.policies().all().unwrap();
        assert_eq!(kept.len(), KEEP_VERSIONS + 1, "50 kept, plus the active one");
        assert_eq!(kept[0].number, 1);
        assert_eq!(kept.last().unwrap().number, 60);
        assert_eq!(s.policies().get(60).unwrap().unwrap().sources[0].text, "# 59");
        assert!(s.policies().get(5).unwrap().is_none());
        assert_eq!(s.policies().active().unwrap(), Some(1));
    }
}

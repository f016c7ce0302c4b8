//! Reads, as this thread's batch (if any) left the trees: what a batch staged is read back
//! before it is written ([`super::overlay`]).

use serde::de::DeserializeOwned;

use super::{Store, StoreError, T, decode, decode_u64, overlay, trees::TREE_NAMES};

/// A key and its value, as stored.
pub(super) type KeyValue = (Vec<u8>, Vec<u8>);

/// What one tree holds (see [`Store::tree_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub name: &'static str,
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl Store {
    /// A value, as this thread's batch (if any) left it.
    pub(super) fn get_raw(&self, tree: T, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match overlay::with(self.id(), |o| o.get(tree, key)) {
            Some(overlay::Staged::Value(v)) => Ok(Some(v)),
            Some(overlay::Staged::Removed) => Ok(None),
            Some(overlay::Staged::Untouched) | None => Ok(self.tree(tree).get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn get_json<V: DeserializeOwned>(&self, tree: T, key: &[u8]) -> Result<Option<V>, StoreError> {
        match self.get_raw(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, &bytes).map(Some),
        }
    }

    pub fn contains(&self, tree: T, key: &[u8]) -> Result<bool, StoreError> {
        match overlay::with(self.id(), |o| o.get(tree, key)) {
            Some(overlay::Staged::Value(_)) => Ok(true),
            Some(overlay::Staged::Removed) => Ok(false),
            Some(overlay::Staged::Untouched) | None => Ok(self.tree(tree).contains_key(key)?),
        }
    }

    /// Keys and values of a tree whose key starts with `prefix`, in key order, as this
    /// thread's batch (if any) left them.
    pub(super) fn scan_raw(&self, tree: T, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mut found = std::collections::BTreeMap::new();
        for kv in self.tree(tree).scan_prefix(prefix) {
            let (k, v) = kv?;
            found.insert(k.to_vec(), v.to_vec());
        }
        overlay::with(self.id(), |o| {
            for (k, v) in o.range(tree, prefix).take_while(|(k, _)| k.starts_with(prefix)) {
                match v {
                    Some(v) => found.insert(k.clone(), v.clone()),
                    None => found.remove(k),
                };
            }
        });
        Ok(found.into_iter().collect())
    }

    /// All values of a tree whose key starts with `prefix`, in key order.
    pub fn scan_json<V: DeserializeOwned>(&self, tree: T, prefix: &[u8]) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        self.scan_raw(tree, prefix)?.into_iter().map(|(k, v)| Ok((k, decode(tree, &v)?))).collect()
    }

    /// How many keys lie in `[from, to)`.
    pub fn count_range(&self, tree: T, from: Vec<u8>, to: Vec<u8>) -> Result<u64, StoreError> {
        let mut n: i64 = 0;
        for k in self.tree(tree).range(from.clone()..to.clone()).keys() {
            k?;
            n += 1;
        }
        n += self.staged_delta(tree, &from, &to)?;
        Ok(n.max(0) as u64)
    }

    /// How many keys in `[from, to)` this thread's batch added to what sled holds (less those
    /// it removed).
    pub(super) fn staged_delta(&self, tree: T, from: &[u8], to: &[u8]) -> Result<i64, StoreError> {
        let sled = self.tree(tree);
        let delta = overlay::with(self.id(), |o| o.delta(tree, from, to, |key| sled.contains_key(key)));
        Ok(delta.transpose()?.unwrap_or(0))
    }

    /// All keys of a tree that start with `prefix`.
    pub fn scan_keys(&self, tree: T, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.scan_raw(tree, prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// The first entry of a tree, in key order.
    pub fn first_json<V: DeserializeOwned>(&self, tree: T) -> Result<Option<(Vec<u8>, V)>, StoreError> {
        self.first_after(tree, None)
    }

    /// The first entry of a tree after `after` (from the start: `None`), in key order, as
    /// this thread's batch (if any) left it.
    pub fn first_after<V: DeserializeOwned>(
        &self,
        tree: T,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, V)>, StoreError> {
        use std::ops::Bound;
        let from = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Unbounded,
        };
        let id = self.id();
        let mut in_sled = None;
        for kv in self.tree(tree).range::<Vec<u8>, _>((from.clone(), Bound::Unbounded)) {
            let (k, v) = kv?;
            let removed = overlay::with(id, |o| matches!(o.get(tree, &k), overlay::Staged::Removed)).unwrap_or(false);
            if !removed {
                in_sled = Some((k.to_vec(), v.to_vec()));
                break;
            }
        }
        let staged = overlay::with(id, |o| {
            o.range(tree, after.unwrap_or(b""))
                .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
                .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        })
        .flatten();
        let first = match (in_sled, staged) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        // A key staged with a new value shows that value.
        let first = first.map(|(k, v)| match overlay::with(id, |o| o.get(tree, &k)) {
            Some(overlay::Staged::Value(staged)) => (k, staged),
            _ => (k, v),
        });
        match first {
            None => Ok(None),
            Some((k, v)) => Ok(Some((k, decode(tree, &v)?))),
        }
    }

    /// Each tree's name, number of entries and bytes of keys and values (a scan of every
    /// tree: for benchmarks and admins, not for hot paths).
    pub fn tree_stats(&self) -> Result<Vec<TreeStats>, StoreError> {
        let mut out = Vec::with_capacity(TREE_NAMES.len());
        for (name, tree) in TREE_NAMES.iter().zip(&self.trees) {
            let mut stats = TreeStats { name, entries: 0, bytes: 0 };
            for kv in tree.iter() {
                let (k, v) = kv?;
                stats.entries += 1;
                stats.bytes += (k.len() + v.len()) as u64;
            }
            out.push(stats);
        }
        Ok(out)
    }

    pub fn len(&self, tree: T) -> usize {
        self.tree(tree).len()
    }

    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        // Not while a batch moves the intake's counts into sled (they would count twice).
        let _counting = self.unwritten.moving.read();
        let stored = self.get_raw(T::Counters, name.as_bytes())?.map(|v| decode_u64(&v)).unwrap_or(0);
        let staged = overlay::with(self.id(), |o| o.added(name)).unwrap_or(0);
        // Events dropped by ingests that wrote nothing count as soon as they are dropped.
        let (dropped, malformed) = self.journal().unwritten_counts();
        let unwritten = match name {
            "events_dropped" => dropped,
            "events_malformed" => malformed,
            _ => 0,
        };
        Ok(stored.saturating_add(staged).saturating_add(unwritten))
    }
}

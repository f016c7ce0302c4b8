//! Batches: many commits made as one sled transaction.
//!
//! Inside [`Store::batch`], [`Store::commit`] does not write to sled: it stages its ops in
//! this thread's [`Overlay`], which the store's reads on this thread go through, so code
//! that reads what it committed a moment ago reads it. At the end of the batch the last
//! value of every key staged is written in one transaction. Others see nothing of a batch
//! until then, all of it at once after.
//!
//! This is how the worker handles many inbox entries for the price of one transaction:
//! sled's cost per transaction (on this project's 2-core machine, about 100 µs, more than
//! the writes of a knock themselves) was most of the worker's time.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{Op, T};

/// What a batch has staged so far.
#[derive(Default)]
pub(super) struct Overlay {
    /// The store the batch belongs to (see [`super::Store::id`]).
    pub(super) store: usize,
    /// Every op staged, in order (to undo the last ones, see [`Overlay::truncate`]).
    ops: Vec<Op>,
    /// Per tree: the last value staged for each key (`None`: removed).
    writes: HashMap<T, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Amounts added to counters.
    added: HashMap<String, u64>,
    /// Whether sled holds each staged key, as [`Overlay::delta`] found it: asked once per key
    /// and batch, not at every count.
    in_sled: HashMap<T, HashMap<Vec<u8>, bool>>,
}

thread_local! {
    static OVERLAY: RefCell<Option<Overlay>> = const { RefCell::new(None) };
}

/// What the overlay says of a key.
pub(super) enum Staged {
    /// Nothing: read sled.
    Untouched,
    Removed,
    Value(Vec<u8>),
}

impl Overlay {
    pub(super) fn new(store: usize) -> Self {
        Overlay { store, ..Default::default() }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { tree, key, value } => {
                self.writes.entry(*tree).or_default().insert(key.clone(), Some(value.clone()));
            }
            Op::Del { tree, key } => {
                self.writes.entry(*tree).or_default().insert(key.clone(), None);
            }
            Op::Add { counter, by } => {
                let n = self.added.entry(counter.clone()).or_default();
                *n = n.saturating_add(*by);
            }
        }
    }

    pub(super) fn stage(&mut self, ops: &[Op]) {
        for op in ops {
            self.apply(op);
        }
        self.ops.extend_from_slice(ops);
    }

    /// How many ops are staged (a mark for [`Overlay::truncate`]).
    pub(super) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Forgets every op staged after `mark`.
    pub(super) fn truncate(&mut self, mark: usize) {
        if mark >= self.ops.len() {
            return;
        }
        let mut kept = std::mem::take(&mut self.ops);
        kept.truncate(mark);
        *self = Overlay::new(self.store);
        self.stage(&kept);
    }

    pub(super) fn get(&self, tree: T, key: &[u8]) -> Staged {
        match self.writes.get(&tree).and_then(|w| w.get(key)) {
            None => Staged::Untouched,
            Some(None) => Staged::Removed,
            Some(Some(v)) => Staged::Value(v.clone()),
        }
    }

    pub(super) fn added(&self, counter: &str) -> u64 {
        self.added.get(counter).copied().unwrap_or(0)
    }

    /// The staged keys of `tree` from `from` on.
    pub(super) fn range<'a>(
        &'a self,
        tree: T,
        from: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a {
        self.writes
            .get(&tree)
            .into_iter()
            .flat_map(move |w| w.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)))
    }

    /// How many keys of `tree` in `[from, to)` the staged ops add to what sled holds, less
    /// those they remove; `in_sled` says whether sled holds a key.
    pub(super) fn delta<E>(
        &mut self,
        tree: T,
        from: &[u8],
        to: &[u8],
        mut in_sled: impl FnMut(&[u8]) -> Result<bool, E>,
    ) -> Result<i64, E> {
        let Some(writes) = self.writes.get(&tree) else { return Ok(0) };
        let known = self.in_sled.entry(tree).or_default();
        let mut n = 0;
        for (key, value) in writes.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to))) {
            let had = match known.get(key) {
                Some(had) => *had,
                None => {
                    let had = in_sled(key)?;
                    known.insert(key.clone(), had);
                    had
                }
            };
            match (value.is_some(), had) {
                (true, false) => n += 1,
                (false, true) => n -= 1,
                _ => {}
            }
        }
        Ok(n)
    }

    /// The ops to commit: the last value of each key, then the counters' additions.
    pub(super) fn into_ops(self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (tree, writes) in self.writes {
            for (key, value) in writes {
                ops.push(match value {
                    Some(value) => Op::Put { tree, key, value },
                    None => Op::Del { tree, key },
                });
            }
        }
        let mut added: Vec<_> = self.added.into_iter().collect();
        added.sort();
        ops.extend(added.into_iter().map(|(counter, by)| Op::Add { counter, by }));
        ops
    }
}

/// Runs `f` with this thread's overlay for `store`, if a batch of that store is open.
pub(super) fn with<R>(store: usize, f: impl FnOnce(&mut Overlay) -> R) -> Option<R> {
    OVERLAY.with(|o| match o.borrow_mut().as_mut() {
        Some(overlay) if overlay.store == store => Some(f(overlay)),
        _ => None,
    })
}

/// Opens a batch on this thread; `false` if one is open already (the outer one goes on).
pub(super) fn open(store: usize) -> bool {
    OVERLAY.with(|o| {
        let mut o = o.borrow_mut();
        if o.is_some() {
            return false;
        }
        *o = Some(Overlay::new(store));
        true
    })
}

/// Closes this thread's batch, returning what it staged.
pub(super) fn close() -> Option<Overlay> {
    OVERLAY.with(|o| o.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count asks sled about each staged key once per batch, however often it is counted;
    /// a key put that sled lacks counts in, one removed that sled holds counts out.
    #[test]
    fn delta_asks_sled_once_per_staged_key() {
        let mut o = Overlay::new(0);
        let put = |key: &[u8]| Op::Put { tree: T::RoomKnockTimes, key: key.to_vec(), value: vec![] };
        o.stage(&[put(b"a1"), put(b"a2"), Op::del(T::RoomKnockTimes, b"a3".to_vec()), put(b"b1")]);
        let mut asked = Vec::new();
        for _ in 0..3 {
            let n = o.delta(T::RoomKnockTimes, b"a", b"b", |key| {
                asked.push(key.to_vec());
                Ok::<_, ()>(key == b"a2" || key == b"a3")
            });
            assert_eq!(n, Ok(0), "a1 in, a2 there already, a3 out");
        }
        assert_eq!(asked, [b"a1".to_vec(), b"a2".to_vec(), b"a3".to_vec()], "once each, b1 not at all");
    }
}

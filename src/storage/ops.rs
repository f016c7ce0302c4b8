//! Writes: an [`Op`] is one put, removal or counter increment, applied with others in one
//! transaction by [`Store::commit`](super::Store::commit).

use serde::Serialize;

use super::T;

/// One write, applied inside [`Store::commit`]'s transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        tree: T,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Del {
        tree: T,
        key: Vec<u8>,
    },
    /// Adds to a u64 counter in [`T::Counters`].
    Add {
        counter: String,
        by: u64,
    },
}

impl Op {
    /// Whether it queues an action (a put in the outbox).
    pub fn queues_action(&self) -> bool {
        matches!(self, Op::Put { tree: T::Outbox, .. })
    }
}

impl Op {
    pub fn put_json(tree: T, key: impl Into<Vec<u8>>, value: &impl Serialize) -> Op {
        Op::Put { tree, key: key.into(), value: serde_json::to_vec(value).expect("records serialize") }
    }
    pub fn del(tree: T, key: impl Into<Vec<u8>>) -> Op {
        Op::Del { tree, key: key.into() }
    }
    /// Ops that add to counters, leaving out those that add nothing.
    pub fn adds<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Op> {
        counts.into_iter().filter(|(_, by)| *by > 0).map(|(c, by)| Op::Add { counter: c.into(), by }).collect()
    }
}

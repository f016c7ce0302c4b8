//! Aliases as looked up: what each resolves to, or that it does not exist.

use super::{Op, Store, StoreError, T};

impl Store {
    /// The aliases looked up.
    pub fn aliases(&self) -> Aliases<'_> {
        Aliases { store: self }
    }
}

/// The aliases looked up, a narrow handle on the store ([`Store::aliases`]).
#[derive(Clone, Copy)]
pub struct Aliases<'s> {
    store: &'s Store,
}

impl Aliases<'_> {
    /// Records what an alias resolves to (`None`: it does not exist).
    pub fn put(alias: &str, room: Option<&str>) -> Op {
        Op::put_json(T::Aliases, alias, &room)
    }

    /// `None`: not looked up yet; `Some(None)`: does not exist.
    pub fn get(&self, alias: &str) -> Result<Option<Option<String>>, StoreError> {
        self.store.get_json(T::Aliases, alias.as_bytes())
    }

    /// The aliases known to point at `room`.
    pub fn of(&self, room: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .scan_json::<Option<String>>(T::Aliases, b"")?
            .into_iter()
            .filter(|(_, r)| r.as_deref() == Some(room))
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }
}

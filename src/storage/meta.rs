//! Settings kept in the database: the run-time dry-run switch, and other meta values.

use super::{Op, Store, StoreError, T};

/// Meta key of the run-time dry-run switch (stored as `on`/`off`).
const DRY_RUN_KEY: &str = "dry_run";

impl Store {
    /// The run-time dry-run switch (`!knock dry-run on|off`), if it was ever set.
    pub fn dry_run_switch(&self) -> Result<Option<bool>, StoreError> {
        Ok(self.get_meta(DRY_RUN_KEY)?.map(|v| v == "on"))
    }

    pub fn set_dry_run_switch(&self, on: bool) -> Result<(), StoreError> {
        self.set_meta(DRY_RUN_KEY, if on { "on" } else { "off" })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_raw(T::Meta, key.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.commit(&[Op::Put { tree: T::Meta, key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }])
    }
}

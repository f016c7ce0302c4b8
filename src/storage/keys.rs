//! How records are keyed and encoded: JSON values, big-endian counters, pair keys.

use serde::de::DeserializeOwned;

use super::{StoreError, T, trees::TREE_NAMES};

pub(super) fn decode<V: DeserializeOwned>(tree: T, bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { tree: TREE_NAMES[tree as usize], message: e.to_string() })
}

pub(super) fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Key of a (first, second) pair: `first \0 second`.
pub fn pair_key(first: impl AsRef<str>, second: impl AsRef<str>) -> Vec<u8> {
    let (first, second) = (first.as_ref(), second.as_ref());
    let mut k = Vec::with_capacity(first.len() + second.len() + 1);
    k.extend_from_slice(first.as_bytes());
    k.push(0);
    k.extend_from_slice(second.as_bytes());
    k
}

/// Splits a [`pair_key`].
pub fn split_pair(key: &[u8]) -> Option<(String, String)> {
    let i = key.iter().position(|&b| b == 0)?;
    Some((String::from_utf8_lossy(&key[..i]).into_owned(), String::from_utf8_lossy(&key[i + 1..]).into_owned()))
}

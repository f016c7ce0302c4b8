//! Lenient reading of the optional fields of events: a field of another type than expected
//! reads as absent, as clients and servers treat it (a hostile or buggy sender's `reason: 5`
//! costs the field, not the event).

use serde::{Deserialize, Deserializer, de::IgnoredAny};

/// A value of type `T`, or anything else (read and ignored).
#[derive(Deserialize)]
#[serde(untagged)]
enum Or<T> {
    Is(T),
    Not(IgnoredAny),
}

/// An optional field: `None` when missing (with `#[serde(default)]`), null, or not a `T`.
pub fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(match Option::<Or<T>>::deserialize(d)? {
        Some(Or::Is(t)) => Some(t),
        _ => None,
    })
}

/// An optional string field (see [`opt`]).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    opt(d)
}

/// A list of strings: what is not a list is empty, what is not a string in it is skipped.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Option<Vec<Or<String>>> = opt(d)?;
    Ok(items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i {
            Or::Is(s) => Some(s),
            Or::Not(_) => None,
        })
        .collect())
}

/// A timestamp: an unsigned integer, else 0.
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(opt::<D, u64>(d)?.unwrap_or(0))
}

/// A power level: an integer, or (in old rooms) a string of one; anything else is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level(pub Option<i64>);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Int(i64),
            Text(String),
            Other(IgnoredAny),
        }
        Ok(Level(match Wire::deserialize(d)? {
            Wire::Int(i) => Some(i),
            Wire::Text(s) => s.trim().parse().ok(),
            Wire::Other(_) => None,
        }))
    }
}

/// An optional power level (see [`Level`]).
pub fn level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Level>::deserialize(d)?.and_then(|l| l.0))
}

/// A map of user IDs to power levels: what is not a map is empty, what is not a level in it is
/// left out.
pub fn levels<'de, D: Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, i64>, D::Error> {
    let map: Option<std::collections::BTreeMap<String, Level>> = opt(d)?;
    Ok(map.unwrap_or_default().into_iter().filter_map(|(k, l)| Some((k, l.0?))).collect())
}

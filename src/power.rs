//! Power levels, read from `m.room.power_levels` content (pure).
//!
//! Rooms of version 12 and later give their creators unlimited power and leave them out of
//! the `users` map; callers pass the creators they know of.

use crate::events::PowerLevels;

/// A user's power level; creators of v12+ rooms are `i64::MAX`.
pub fn user_level(power_levels: Option<&PowerLevels>, creators: &[String], user: &str) -> i64 {
    if creators.iter().any(|c| c == user) {
        return i64::MAX;
    }
    let Some(pl) = power_levels else {
        // No power levels event: the spec gives the creator 100 and everyone else 0; the
        // creator is in `creators` when known.
        return 0;
    };
    pl.users.get(user).copied().or(pl.users_default).unwrap_or(0)
}

/// The level an action needs (`invite`, `kick`, `ban`), with the spec's defaults.
pub fn action_level(power_levels: Option<&PowerLevels>, action: &str) -> i64 {
    let (level, default) = match action {
        "invite" => (power_levels.and_then(|pl| pl.invite), 0),
        "kick" => (power_levels.and_then(|pl| pl.kick), 50),
        _ => (power_levels.and_then(|pl| pl.ban), 50),
    };
    level.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_follow_the_spec_defaults() {
        let pl: PowerLevels = serde_json::from_value(
            json!({"users": {"@mod:x": 50, "@old:x": "75", "@odd:x": [1]}, "users_default": 0, "kick": 50, "invite": 0}),
        )
        .unwrap();
        assert_eq!(user_level(Some(&pl), &[], "@mod:x"), 50);
        assert_eq!(user_level(Some(&pl), &[], "@old:x"), 75);
        assert_eq!(user_level(Some(&pl), &[], "@nobody:x"), 0);
        assert_eq!(user_level(Some(&pl), &[], "@odd:x"), 0);
        assert_eq!(user_level(Some(&pl), &["@alice:x".into()], "@alice:x"), i64::MAX);
        assert_eq!(action_level(Some(&pl), "kick"), 50);
        assert_eq!(action_level(Some(&pl), "ban"), 50);
        assert_eq!(action_level(None, "invite"), 0);
    }
}

//! Power levels, read from `m.room.power_levels` content (pure).
//!
//! Rooms of version 12 and later give their creators unlimited power and leave them out of
//! the `users` map; callers pass the creators they know of.

use serde_json::Value;

/// A user's power level; creators of v12+ rooms are `i64::MAX`.
pub fn user_level(power_levels: Option<&Value>, creators: &[String], user: &str) -> i64 {
    if creators.iter().any(|c| c == user) {
        return i64::MAX;
    }
    let Some(pl) = power_levels else {
        // No power levels event: the spec gives the creator 100 and everyone else 0; the
        // creator is in `creators` when known.
        return 0;
    };
    pl.get("users")
        .and_then(|u| u.get(user))
        .and_then(as_level)
        .or_else(|| pl.get("users_default").and_then(as_level))
        .unwrap_or(0)
}

/// The level an action needs (`invite`, `kick`, `ban`), with the spec's defaults.
pub fn action_level(power_levels: Option<&Value>, action: &str) -> i64 {
    let default = match action {
        "invite" => 0,
        _ => 50,
    };
    power_levels.and_then(|pl| pl.get(action)).and_then(as_level).unwrap_or(default)
}

/// Levels are integers, or (in old rooms) strings of integers.
fn as_level(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_follow_the_spec_defaults() {
        let pl = json!({"users": {"@mod:x": 50, "@old:x": "75"}, "users_default": 0, "kick": 50, "invite": 0});
        assert_eq!(user_level(Some(&pl), &[], "@mod:x"), 50);
        assert_eq!(user_level(Some(&pl), &[], "@old:x"), 75);
        assert_eq!(user_level(Some(&pl), &[], "@nobody:x"), 0);
        assert_eq!(user_level(Some(&pl), &["@alice:x".into()], "@alice:x"), i64::MAX);
        assert_eq!(action_level(Some(&pl), "kick"), 50);
        assert_eq!(action_level(Some(&pl), "ban"), 50);
        assert_eq!(action_level(None, "invite"), 0);
    }
}

//! Facts about room versions (pure).

/// Whether a room version supports knocking (`knock` from v7, `knock_restricted` from v10).
pub fn supports_knock(version: &str, join_rule: &str) -> bool {
    let Ok(v) = version.parse::<u32>() else {
        // Unknown (e.g. unstable) versions: assume a modern version.
        return true;
    };
    match join_rule {
        "knock" => v >= 7,
        "knock_restricted" => v >= 10,
        _ => false,
    }
}

/// Whether room creators have unlimited power (room version 12 and later).
pub fn creators_have_infinite_power(version: &str) -> bool {
    version.parse::<u32>().map(|v| v >= 12).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(supports_knock("7", "knock"));
        assert!(!supports_knock("6", "knock"));
        assert!(!supports_knock("9", "knock_restricted"));
        assert!(supports_knock("12", "knock_restricted"));
        assert!(!supports_knock("12", "invite"));
        assert!(creators_have_infinite_power("12"));
        assert!(!creators_have_infinite_power("10"));
    }
}

/// Why knocking cannot work in a room, as far as the bot knows (empty when all is well).
pub fn warnings(rec: &crate::storage::RoomRecord, bot: &str, room_label: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(version), Some(rule)) = (rec.room_version.as_deref(), rec.join_rule.as_ref().map(|j| j.as_str())) {
        if !matches!(rule, "knock" | "knock_restricted") {
            out.push(format!(
                "{room_label} has join rule `{rule}`: nobody can knock there (use `knock` or `knock_restricted`)"
            ));
        } else if !supports_knock(version, rule) {
            out.push(format!(
                "{room_label} is a version {version} room: `{rule}` needs version {}",
                if rule == "knock" { 7 } else { 10 }
            ));
        }
    }
    if rec.power_levels.is_some() || !rec.creators.is_empty() {
        let pl = rec.power_levels.as_ref();
        let have = crate::power::user_level(pl, &rec.creators, bot);
        for action in ["invite", "kick", "ban"] {
            let need = crate::power::action_level(pl, action);
            if have < need {
                out.push(format!("knockwarden needs power level {need} to {action} in {room_label} (it has {have})"));
            }
        }
    }
    out
}

#[cfg(test)]
mod warning_tests {
    use super::*;
    use crate::storage::RoomRecord;

    #[test]
    fn warns_about_join_rule_version_and_power() {
        let mut rec = RoomRecord {
            room_version: Some("6".into()),
            join_rule: Some(ruma::room::JoinRuleKind::Knock),
            power_levels: Some(crate::events::PowerLevels {
                users: [("@kw:x".to_owned(), 0)].into(),
                kick: Some(50),
                ban: Some(50),
                invite: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = warnings(&rec, "@kw:x", "#r:x");
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("version 6") && w[0].contains("needs version 7"));
        assert_eq!(w[1], "knockwarden needs power level 50 to kick in #r:x (it has 0)");
        rec.room_version = Some("10".into());
        rec.join_rule = Some(ruma::room::JoinRuleKind::Invite);
        rec.power_levels =
            Some(crate::events::PowerLevels { users: [("@kw:x".to_owned(), 50)].into(), ..Default::default() });
        let w = warnings(&rec, "@kw:x", "#r:x");
        assert_eq!(w, vec!["#r:x has join rule `invite`: nobody can knock there (use `knock` or `knock_restricted`)"]);
    }
}

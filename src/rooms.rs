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

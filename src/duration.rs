//! Human durations such as `90s`, `10m`, `24h`, `7d`, used by config and policies.

use std::time::Duration;

/// Parses `<number><unit>` where unit is `s`, `m`, `h`, `d` or `w`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a duration; write a number and a unit, like 90s, 10m, 24h or 7d");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("`{text}` is zero; a duration must be positive"));
    }
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// Formats a duration the way [`parse`] reads it, in the largest exact unit.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(format(Duration::from_secs(604_800)), "1w");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "10", "m", "1.5h", "10 parsecs", "-3s", "0s", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}

//! Fitting a message into one event: the homeserver refuses events over 64 KiB.
//!
//! What the bot sends is free-form Matrix event content, so it is built and fitted as a
//! `serde_json::Value` (the one place such a value remains: see [`crate::events`]).

use crate::text::escape;

/// Largest message content knockwarden sends, in bytes of JSON. The homeserver refuses events
/// over 65,536 bytes, content and envelope (IDs, hashes, signatures) together.
pub const MAX_CONTENT_BYTES: usize = 60_000;

/// Makes a message's content fit in `budget` bytes of JSON. Content that fits is returned as
/// it is. Otherwise its plain body is cut after the last whole line that fits, with a line
/// saying how much was cut, and its HTML body is rebuilt from that plain text (so no tag is
/// ever cut in half). An edit's `m.new_content` is fitted the same way.
pub fn fit(content: &serde_json::Value, budget: usize) -> serde_json::Value {
    if json_len(content) <= budget {
        return content.clone();
    }
    let mut out = content.clone();
    let has_new = out.get("m.new_content").is_some_and(|n| n.get("body").is_some());
    // What is not a body (relations, msgtype, …) stays; the bodies share the rest.
    let mut bare = out.clone();
    strip_bodies(&mut bare);
    if let Some(n) = bare.get_mut("m.new_content") {
        strip_bodies(n);
    }
    let room = budget.saturating_sub(json_len(&bare));
    let share = if has_new { room / 2 } else { room };
    fit_bodies(&mut out, share);
    if has_new && let Some(n) = out.get_mut("m.new_content") {
        fit_bodies(n, share);
    }
    out
}

fn json_len(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

fn strip_bodies(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("body");
        o.remove("formatted_body");
    }
}

/// Cuts `body` (and rebuilds `formatted_body`, if there is one) to fit in `share` bytes.
fn fit_bodies(v: &mut serde_json::Value, share: usize) {
    let Some(plain) = v.get("body").and_then(|b| b.as_str()).map(str::to_owned) else { return };
    let html = v.get("formatted_body").is_some();
    let size = |p: &str, h: Option<&str>| {
        json_len(&serde_json::Value::from(p)) + h.map(|h| json_len(&serde_json::Value::from(h)) + 20).unwrap_or(0) + 12
    };
    let build = |kept: &str, cut: usize| {
        let note = format!("… ({cut} more line(s) cut to fit in one message)");
        let p = if kept.is_empty() { note.clone() } else { format!("{kept}\n{note}") };
        let h = html.then(|| escape(&p).replace('\n', "<br>"));
        (p, h)
    };
    let lines: Vec<&str> = plain.split('\n').collect();
    // The most whole lines that fit (binary search; 0 lines always leaves the note).
    let (mut lo, mut hi) = (0usize, lines.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let (p, h) = build(&lines[..mid].join("\n"), lines.len() - mid);
        if size(&p, h.as_deref()) <= share { lo = mid } else { hi = mid - 1 }
    }
    let (mut p, mut h) = build(&lines[..lo].join("\n"), lines.len() - lo);
    if lo == 0 && !lines.is_empty() {
        // Not even the first line fits whole: keep as many of its characters as fit.
        let first: Vec<char> = lines[0].chars().collect();
        let (mut a, mut b) = (0usize, first.len());
        while a < b {
            let mid = (a + b).div_ceil(2);
            let (p2, h2) = build(&first[..mid].iter().collect::<String>(), lines.len());
            if size(&p2, h2.as_deref()) <= share { a = mid } else { b = mid - 1 }
        }
        (p, h) = build(&first[..a].iter().collect::<String>(), lines.len());
    }
    v["body"] = p.into();
    if let Some(h) = h {
        v["formatted_body"] = h.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{notices::Msg, storage::Action};

    #[test]
    fn oversized_content_is_cut_at_a_line_and_fits() {
        let plain: String = (0..2_000).map(|i| format!("line {i} \u{1}\u{2}<b>\n")).collect();
        let content = crate::homeserver::notice_content(&plain, &escape(&plain));
        let fitted = fit(&content, 10_000);
        assert!(json_len(&fitted) <= 10_000, "{}", json_len(&fitted));
        let body = fitted["body"].as_str().unwrap();
        assert!(body.starts_with("line 0 "), "{body}");
        assert!(body.ends_with("line(s) cut to fit in one message)"), "{body}");
        assert!(!fitted["formatted_body"].as_str().unwrap().contains("<b>"), "user text stays escaped");
        assert_eq!(fitted["msgtype"], "m.notice");
        // Small content is left alone.
        let small = crate::homeserver::notice_content("hi", "<b>hi</b>");
        assert_eq!(fit(&small, 10_000), small);
        // One enormous line is cut within the line.
        let one = crate::homeserver::notice_content(&"x".repeat(50_000), "y");
        assert!(json_len(&fit(&one, 5_000)) <= 5_000);
    }

    #[test]
    fn edits_are_fitted_in_both_bodies() {
        let long = "a line\n".repeat(10_000);
        let Action::Send { content, .. } = Msg { plain: long.clone(), html: escape(&long) }.replacing("$n") else {
            panic!()
        };
        let fitted = fit(&content, 8_000);
        assert!(json_len(&fitted) <= 8_000, "{}", json_len(&fitted));
        assert!(fitted["m.new_content"]["body"].as_str().unwrap().contains("cut to fit"));
        assert_eq!(fitted["m.relates_to"]["rel_type"], "m.replace");
    }
}

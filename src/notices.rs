//! Control-room notices: plain text with an HTML twin. All user-supplied text is escaped.
//!
//! What the bot sends is free-form Matrix event content, so it is built and fitted as a
//! `serde_json::Value` (the one place such a value remains: see [`crate::events`]).

use crate::storage::Action;

/// Escapes text for HTML bodies.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A notice with a headline and, optionally, a preformatted block (e.g. policy problems).
pub fn with_block(headline: &str, block: Option<&str>) -> Action {
    let (plain, html) = match block {
        Some(b) => {
            (format!("{headline}\n{b}"), format!("<p>{}</p><pre><code>{}</code></pre>", escape(headline), escape(b)))
        }
        None => (headline.to_owned(), format!("<p>{}</p>", escape(headline))),
    };
    Action::Notice { plain, html, about_failure: false }
}

/// Longest user text (reason, display name) quoted in a notice, in characters.
pub const MAX_QUOTE: usize = 300;

/// Shortens user text for a notice (never a 1 MB notice for a 1 MB reason), showing control
/// characters and bidirectional overrides as `�`: they would take six bytes each in the
/// event's JSON, and could make a notice read other than it says.
pub fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTE).map(|c| if is_unsafe(c) { '\u{fffd}' } else { c }).collect();
    if text.chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

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

/// What a decision led to, in a few words ("accepted", "would ban", …).
pub fn verdict(action: crate::policy::Action, dry_run: bool) -> &'static str {
    use crate::policy::Action::*;
    match (action, dry_run) {
        (Accept, false) => "accepted (invited)",
        (Deny, false) => "denied (kicked)",
        (Ban, false) => "banned",
        (Review, false) => "waiting for review",
        (Ignore, false) => "ignored",
        (Accept, true) => "would accept (dry run)",
        (Deny, true) => "would deny (dry run)",
        (Ban, true) => "would ban (dry run)",
        (Review, true) => "would ask for review (dry run)",
        (Ignore, true) => "would ignore (dry run)",
    }
}

/// The facts a decision notice shows.
pub struct KnockNotice<'a> {
    pub user: &'a str,
    pub room: &'a str,
    pub reason: Option<&'a str>,
    pub displayname: Option<&'a str>,
    pub outcome: &'a str,
    pub rule: Option<&'a str>,
    pub policy: &'a str,
    pub version: u64,
    /// The review number, for review notices.
    pub review: Option<u64>,
    /// How the review ended, once it has (replaces the "reply or react" hint).
    pub closed: Option<&'a str>,
}

/// One concise notice about a decision.
pub fn knock(n: &KnockNotice) -> Msg {
    let who = match n.displayname {
        Some(d) if !d.trim().is_empty() => format!("{} ({})", clip(d), n.user),
        _ => n.user.to_owned(),
    };
    let reason = n.reason.filter(|r| !r.trim().is_empty()).map(clip);
    let rule = n.rule.unwrap_or("default");
    let number = n.review.map(|r| format!("#{r} ")).unwrap_or_default();
    let mut plain = format!("{number}{who} knocked on {}", n.room);
    let mut html = format!("{}<b>{}</b> knocked on <b>{}</b>", escape(&number), escape(&who), escape(n.room));
    match &reason {
        Some(r) => {
            plain.push_str(&format!(": \"{r}\""));
            html.push_str(&format!(": <i>“{}”</i>", escape(r)));
        }
        None => {
            plain.push_str(" (no reason given)");
            html.push_str(" (no reason given)");
        }
    }
    plain.push_str(&format!("\n→ {} · rule {rule} · policy {} v{}", n.outcome, n.policy, n.version));
    html.push_str(&format!(
        "<br>→ {} · rule <code>{}</code> · policy <code>{}</code> v{}",
        escape(n.outcome),
        escape(rule),
        escape(n.policy),
        n.version
    ));
    if let Some(how) = n.closed {
        plain.push_str(&format!("\n✔ Closed: {how}"));
        html.push_str(&format!("<br>✔ <b>Closed</b>: {}", escape(how)));
    } else if let Some(r) = n.review {
        plain.push_str(&format!("\nReply !knock approve {r} / !knock deny {r} / !knock ban {r}, or react ✅ ❌ 🔨"));
        html.push_str(&format!(
            "<br>Reply <code>!knock approve {r}</code> / <code>!knock deny {r}</code> / <code>!knock ban {r}</code>, or react ✅ ❌ 🔨"
        ));
    }
    Msg { plain, html }
}

/// A message built in plain text and HTML side by side; every piece of text is escaped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Msg {
    pub plain: String,
    pub html: String,
}

impl Msg {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(&mut self, t: &str) -> &mut Self {
        self.plain.push_str(t);
        self.html.push_str(&escape(t));
        self
    }

    pub fn bold(&mut self, t: &str) -> &mut Self {
        self.plain.push_str(t);
        self.html.push_str(&format!("<b>{}</b>", escape(t)));
        self
    }

    pub fn code(&mut self, t: &str) -> &mut Self {
        self.plain.push_str(t);
        self.html.push_str(&format!("<code>{}</code>", escape(t)));
        self
    }

    /// User text in quotes, clipped to [`MAX_QUOTE`] characters.
    pub fn quote(&mut self, t: &str) -> &mut Self {
        let t = clip(t);
        self.plain.push_str(&format!("\"{t}\""));
        self.html.push_str(&format!("<i>“{}”</i>", escape(&t)));
        self
    }

    pub fn line(&mut self) -> &mut Self {
        self.plain.push('\n');
        self.html.push_str("<br>");
        self
    }

    /// A preformatted block on its own lines.
    pub fn pre(&mut self, block: &str) -> &mut Self {
        if !self.plain.is_empty() && !self.plain.ends_with('\n') {
            self.plain.push('\n');
        }
        self.plain.push_str(block);
        self.html.push_str(&format!("<pre><code>{}</code></pre>", escape(block)));
        self
    }

    /// As a notice in the control room.
    pub fn notice(self) -> Action {
        Action::Notice { plain: self.plain, html: self.html, about_failure: false }
    }

    /// As a notice about a failed action or event (if posting it fails, that is not
    /// reported again).
    pub fn failure_notice(self) -> Action {
        Action::Notice { plain: self.plain, html: self.html, about_failure: true }
    }

    /// As a notice replying to `event_id`.
    pub fn reply_to(self, event_id: impl AsRef<str>) -> Action {
        let event_id = event_id.as_ref();
        let mut content = crate::homeserver::notice_content(&self.plain, &self.html);
        content["m.relates_to"] = serde_json::json!({"m.in_reply_to": {"event_id": event_id}});
        Action::Send { event_type: "m.room.message".into(), content }
    }

    /// As an edit (`m.replace`) of the notice `event_id`.
    pub fn replacing(self, event_id: impl AsRef<str>) -> Action {
        let event_id = event_id.as_ref();
        let new = crate::homeserver::notice_content(&self.plain, &self.html);
        let mut content = crate::homeserver::notice_content(&format!("* {}", self.plain), &format!("* {}", self.html));
        content["m.new_content"] = new;
        content["m.relates_to"] = serde_json::json!({"rel_type": "m.replace", "event_id": event_id});
        Action::Send { event_type: "m.room.message".into(), content }
    }
}

/// A reaction (`m.annotation`) with `key` on `event_id`.
pub fn react(event_id: impl AsRef<str>, key: &str) -> Action {
    let event_id = event_id.as_ref();
    Action::Send {
        event_type: "m.reaction".into(),
        content: serde_json::json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn quoted_user_text_shows_no_control_characters() {
        assert_eq!(clip("a\u{1}b\u{202e}c"), "a\u{fffd}b\u{fffd}c");
    }

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(escape("<b>\"hi\" & 'bye'</b>"), "&lt;b&gt;&quot;hi&quot; &amp; &#39;bye&#39;&lt;/b&gt;");
        let Action::Notice { plain, html, .. } = with_block("Refused:", Some("a.yaml:1:1: <bad>")) else { panic!() };
        assert_eq!(plain, "Refused:\na.yaml:1:1: <bad>");
        assert!(html.contains("&lt;bad&gt;"));
    }
}

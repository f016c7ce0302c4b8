//! Control-room notices: plain text with an HTML twin. All user-supplied text is escaped.

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
    Action::Notice { plain, html }
}

/// Longest user text (reason, display name) quoted in a notice, in characters.
pub const MAX_QUOTE: usize = 300;

/// Shortens user text for a notice (never a 1 MB notice for a 1 MB reason).
pub fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTE).collect();
    if text.chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
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
        Action::Notice { plain: self.plain, html: self.html }
    }

    /// As a notice replying to `event_id`.
    pub fn reply_to(self, event_id: &str) -> Action {
        let mut content = crate::homeserver::notice_content(&self.plain, &self.html);
        content["m.relates_to"] = serde_json::json!({"m.in_reply_to": {"event_id": event_id}});
        Action::Send { event_type: "m.room.message".into(), content }
    }

    /// As an edit (`m.replace`) of the notice `event_id`.
    pub fn replacing(self, event_id: &str) -> Action {
        let new = crate::homeserver::notice_content(&self.plain, &self.html);
        let mut content = crate::homeserver::notice_content(&format!("* {}", self.plain), &format!("* {}", self.html));
        content["m.new_content"] = new;
        content["m.relates_to"] = serde_json::json!({"rel_type": "m.replace", "event_id": event_id});
        Action::Send { event_type: "m.room.message".into(), content }
    }
}

/// A reaction (`m.annotation`) with `key` on `event_id`.
pub fn react(event_id: &str, key: &str) -> Action {
    Action::Send {
        event_type: "m.reaction".into(),
        content: serde_json::json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(escape("<b>\"hi\" & 'bye'</b>"), "&lt;b&gt;&quot;hi&quot; &amp; &#39;bye&#39;&lt;/b&gt;");
        let Action::Notice { plain, html } = with_block("Refused:", Some("a.yaml:1:1: <bad>")) else { panic!() };
        assert_eq!(plain, "Refused:\na.yaml:1:1: <bad>");
        assert!(html.contains("&lt;bad&gt;"));
    }
}

//! Control-room notices: plain text with an HTML twin ([`Msg`]). All user-supplied text is
//! escaped ([`crate::text`]); what is sent is fitted into one event ([`fit`]); knocks and
//! decisions are shown by [`knocks`].

mod fit;
mod knocks;
mod mentions;

use crate::storage::Action;

pub use crate::text::{MAX_QUOTE, clip, escape};
pub use fit::{MAX_CONTENT_BYTES, fit};
pub use knocks::{KnockNotice, entry_notice, knock, room_label, verdict};
pub use mentions::{Mentions, content as with_mentions};

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
    fn a_block_is_escaped() {
        let Action::Notice { plain, html, .. } = with_block("Refused:", Some("a.yaml:1:1: <bad>")) else { panic!() };
        assert_eq!(plain, "Refused:\na.yaml:1:1: <bad>");
        assert!(html.contains("&lt;bad&gt;"));
    }
}

//! Reading control-room events: which messages are commands, which reactions are verdicts.
//! Pure: no I/O.

use super::Message;

/// The command a message carries: the text after a leading `!knock`, or after a leading
/// mention of the bot (its user ID, or a mention pill such as `knockwarden:` when the message's
/// `m.mentions` names the bot). `None` for anything else, for edits (a command runs once, as
/// first sent) and for notices (bots talk in notices; answering them could loop).
pub fn command_text(message: &Message, bot: &str) -> Option<String> {
    if message.msgtype.as_deref() != Some("m.text") || message.is_edit {
        return None;
    }
    let body = strip_reply_fallback(message.body.as_deref()?);
    let body = body.trim_start();
    if let Some(rest) = after_word(body, "!knock") {
        return Some(rest.to_owned());
    }
    if let Some(rest) = body.strip_prefix(bot) {
        let rest = rest.strip_prefix([':', ',']).unwrap_or(rest);
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Some(rest.trim_start().to_owned());
        }
    }
    let mentions_bot = message.mentions.iter().any(|id| id == bot);
    let pill_first = message
        .formatted_body
        .as_deref()
        .is_some_and(|html| html.trim_start().starts_with("<a href=\"https://matrix.to/#/") && html.contains(bot));
    if mentions_bot && pill_first {
        let (first, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        if first.ends_with(':') || first.ends_with(',') {
            return Some(rest.trim_start().to_owned());
        }
    }
    None
}

/// `text` without a leading `word`, if it starts with it as a whole word.
fn after_word<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let rest = text.strip_prefix(word)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim_start())
}

/// Drops the quoted lines (`> …`) older clients put before a reply's own text.
fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        rest = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// A moderator's verdict given by reacting to a review notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
    Ban,
}

impl Verdict {
    /// ✅ approves, ❌ denies, 🔨 bans (with or without the emoji variation selector).
    pub fn from_key(key: &str) -> Option<Verdict> {
        match key.trim_end_matches('\u{fe0f}') {
            "✅" | "✔" => Some(Verdict::Approve),
            "❌" | "✖" => Some(Verdict::Deny),
            "🔨" => Some(Verdict::Ban),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const BOT: &str = "@knockwarden:example.org";

    fn text(content: Value) -> Option<String> {
        command_text(&serde_json::from_value(content).unwrap(), BOT)
    }

    #[test]
    fn commands_start_with_the_prefix_or_a_mention() {
        assert_eq!(text(json!({"msgtype": "m.text", "body": "!knock approve 3"})).as_deref(), Some("approve 3"));
        assert_eq!(text(json!({"msgtype": "m.text", "body": "  !knock"})).as_deref(), Some(""));
        assert_eq!(text(json!({"msgtype": "m.text", "body": "!knockknock"})), None);
        assert_eq!(text(json!({"msgtype": "m.text", "body": "hello !knock pending"})), None);
        assert_eq!(
            text(json!({"msgtype": "m.text", "body": "@knockwarden:example.org: pending"})).as_deref(),
            Some("pending")
        );
        assert_eq!(
            text(json!({"msgtype": "m.text", "body": "@knockwarden:example.org pending"})).as_deref(),
            Some("pending")
        );
        // Element's mention pill: the display name in the body, the link in the HTML.
        let pill = json!({
            "msgtype": "m.text", "body": "knockwarden: deny 4 spam",
            "format": "org.matrix.custom.html",
            "formatted_body": "<a href=\"https://matrix.to/#/@knockwarden:example.org\">knockwarden</a>: deny 4 spam",
            "m.mentions": {"user_ids": [BOT]}
        });
        assert_eq!(text(pill).as_deref(), Some("deny 4 spam"));
        // A reply to the bot mentions it too, but is not a command.
        let reply = json!({
            "msgtype": "m.text", "body": "thanks!", "m.mentions": {"user_ids": [BOT]},
            "m.relates_to": {"m.in_reply_to": {"event_id": "$n"}}
        });
        assert_eq!(text(reply), None);
    }

    #[test]
    fn notices_edits_and_other_messages_are_not_commands() {
        assert_eq!(text(json!({"msgtype": "m.notice", "body": "!knock pending"})), None);
        assert_eq!(text(json!({"msgtype": "m.text", "body": "good morning"})), None);
        let edit = json!({"msgtype": "m.text", "body": "* !knock ban 3", "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}});
        assert_eq!(text(edit), None);
        assert_eq!(text(json!({"body": "!knock pending"})), None);
    }

    #[test]
    fn reply_fallbacks_are_skipped() {
        let body = "> <@knockwarden:example.org> #3 @a:b knocked\n> on lobby\n\n!knock approve 3";
        assert_eq!(text(json!({"msgtype": "m.text", "body": body})).as_deref(), Some("approve 3"));
    }

    #[test]
    fn reactions_name_their_event_and_key() {
        let reaction = |content: Value| {
            let ev = json!({"event_id": "$r", "room_id": "!c:x", "sender": "@m:x", "type": "m.reaction", "content": content});
            match crate::events::Event::parse(&ev.to_string()).unwrap().body {
                crate::events::Body::Reaction(a) => a.map(|a| (a.event_id, a.key)),
                other => panic!("not a reaction: {other:?}"),
            }
        };
        let r = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$n", "key": "✅"}});
        assert_eq!(reaction(r), Some(("$n".into(), "✅".into())));
        assert_eq!(Verdict::from_key("✅"), Some(Verdict::Approve));
        assert_eq!(Verdict::from_key("❌"), Some(Verdict::Deny));
        assert_eq!(Verdict::from_key("🔨"), Some(Verdict::Ban));
        assert_eq!(Verdict::from_key("✔\u{fe0f}"), Some(Verdict::Approve));
        assert_eq!(Verdict::from_key("👍"), None);
        assert_eq!(reaction(json!({})), None);
    }
}

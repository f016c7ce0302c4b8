//! Text for people: user-supplied text escaped for HTML, and clipped to a safe length with
//! control characters shown as `�`. Pure, and below everything that shows text (storage's
//! descriptions of actions included).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_user_text_shows_no_control_characters() {
        assert_eq!(clip("a\u{1}b\u{202e}c"), "a\u{fffd}b\u{fffd}c");
    }

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(escape("<b>\"hi\" & 'bye'</b>"), "&lt;b&gt;&quot;hi&quot; &amp; &#39;bye&#39;&lt;/b&gt;");
    }
}

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

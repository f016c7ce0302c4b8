//! A problem found in a policy file: `file:line:column: message`, with the line quoted.

use std::fmt;

/// A position in a file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub at: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, at: Pos) -> Self {
        Self { value, at }
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub at: Pos,
    pub message: String,
    /// The offending line, as written.
    pub line_text: String,
}

impl Problem {
    pub fn new(file: &str, source: &str, at: Pos, message: impl Into<String>) -> Self {
        let line_text = source.lines().nth(at.line.saturating_sub(1)).unwrap_or_default().to_owned();
        Self { file: file.to_owned(), at, message: message.into(), line_text }
    }
}

impl fmt::Display for Problem {
    /// ```text
    /// policies/support.yaml:12:7: unknown key `servr`; did you mean `server`?
    ///    12 |       servr: ["spam.example"]
    ///       |       ^
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.at.line, self.at.col, self.message)?;
        if !self.line_text.is_empty() {
            let n = self.at.line.to_string();
            let pad = " ".repeat(n.len());
            let caret = " ".repeat(self.at.col.saturating_sub(1));
            write!(f, "\n {n} | {}\n {pad} | {caret}^", self.line_text)?;
        }
        Ok(())
    }
}

/// Formats a list of problems, one after another.
pub fn format_problems(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The closest of `candidates` to `word`, if close enough to suggest.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_the_line_with_a_caret() {
        let src = "name: x\nrules:\n  - nme: y\n";
        let p = Problem::new("p.yaml", src, Pos { line: 3, col: 5 }, "unknown key `nme`; did you mean `name`?");
        assert_eq!(p.to_string(), "p.yaml:3:5: unknown key `nme`; did you mean `name`?\n 3 |   - nme: y\n   |     ^");
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("servr", &["server", "user", "reason"]), Some("server"));
        assert_eq!(did_you_mean("acept", &["accept", "deny"]), Some("accept"));
        assert_eq!(did_you_mean("zzzzzz", &["accept", "deny"]), None);
    }
}

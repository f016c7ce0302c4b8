//! Whole-word matching for `reason.contains`: case-insensitive, on Unicode word characters
//! (letters, digits, `_`).

/// The words of a text, lowercased once and kept as spans (no allocation per word).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    text: String,
    spans: Vec<(usize, usize)>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Tokens {
    pub fn new(text: &str) -> Self {
        let text = if text.chars().any(char::is_uppercase) { text.to_lowercase() } else { text.to_owned() };
        let mut spans = Vec::with_capacity(16);
        let mut start = None;
        for (i, c) in text.char_indices() {
            match (is_word_char(c), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    spans.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            spans.push((s, text.len()));
        }
        Self { text, spans }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().map(|&(a, b)| &self.text[a..b])
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether the word sequence `phrase` occurs.
    pub fn contains_phrase(&self, phrase: &[String]) -> bool {
        let n = phrase.len();
        n > 0
            && self.spans.len() >= n
            && (0..=self.spans.len() - n).any(|i| {
                phrase.iter().enumerate().all(|(j, w)| {
                    let (a, b) = self.spans[i + j];
                    &self.text[a..b] == w
                })
            })
    }
}

/// The lowercase words of `text`, in order.
pub fn tokenize(text: &str) -> Vec<String> {
    Tokens::new(text).iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_case_insensitive() {
        let t = Tokens::new("Free CRYPTO airdrop, today!");
        assert!(t.contains_phrase(&tokenize("crypto")));
        assert!(t.contains_phrase(&tokenize("crypto airdrop")));
        assert!(!t.contains_phrase(&tokenize("crypt")));
        assert!(!t.contains_phrase(&tokenize("airdrop crypto")));
        assert!(!Tokens::new("cryptography").contains_phrase(&tokenize("crypto")));
        assert_eq!(tokenize("Über-cool snake_case 42"), vec!["über", "cool", "snake_case", "42"]);
        assert!(Tokens::new(" ,.! ").is_empty());
    }
}

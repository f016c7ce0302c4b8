//! Whole-word matching for `reason.contains`: case-insensitive, on Unicode word characters.

/// The lowercase words of `text`, in order.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Whether the word sequence `phrase` occurs in `words`.
pub fn contains_phrase(words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_case_insensitive() {
        let w = tokenize("Free CRYPTO airdrop, today!");
        assert!(contains_phrase(&w, &tokenize("crypto")));
        assert!(contains_phrase(&w, &tokenize("crypto airdrop")));
        assert!(!contains_phrase(&w, &tokenize("crypt")));
        assert!(!contains_phrase(&tokenize("cryptography"), &tokenize("crypto")));
        assert_eq!(tokenize("über-cool"), vec!["über", "cool"]);
    }
}

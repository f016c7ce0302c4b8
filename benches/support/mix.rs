//! The realistic rule mix the policy benchmarks share, in equal parts: server globs, user
//! globs, user regexes, reason regexes and word lists.

/// `n` rules of the mix, as YAML list items (`  - name: rule-{i}` …).
pub fn rules(n: usize) -> String {
    let mut y = String::new();
    for i in 0..n {
        let (when, action) = match i % 5 {
            0 => (format!("server: [\"spam{i}.example\", \"*.bad{i}.example\"]"), "ban"),
            1 => (format!("user: \"@spammer{i}*:*\""), "ban"),
            2 => (format!("user_regex: \"^@bot{i}[0-9]+:\""), "ban"),
            3 => (format!("reason: {{ matches: \"(?i)\\\\bpromo{i}\\\\b\" }}"), "ban"),
            _ => (format!("reason: {{ contains: [word{i}, \"phrase {i} here\"] }}"), "deny"),
        };
        y.push_str(&format!("  - name: rule-{i}\n    when: {{ {when} }}\n    action: {action}\n"));
    }
    y
}

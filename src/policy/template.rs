//! Reason templates: `{user}`, `{server}`, `{room}`, `{rule}` are filled in.

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["user", "server", "room", "rule"];

/// Checks that every `{…}` is a known placeholder.
pub fn check(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("`reason`: unclosed `{{` in \"{template}\""));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "`reason`: unknown placeholder `{{{name}}}` (use {})",
                PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Fills in a checked template.
pub fn render(template: &str, user: &str, server: &str, room: &str, rule: &str) -> String {
    template.replace("{user}", user).replace("{server}", server).replace("{room}", room).replace("{rule}", rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert!(check("Knocks from {server} are not accepted in {room}.").is_ok());
        assert!(check("no placeholders").is_ok());
        assert!(check("bad {usr}").unwrap_err().contains("unknown placeholder `{usr}`"));
        assert!(check("open {user").unwrap_err().contains("unclosed"));
        assert_eq!(render("{user} from {server} ({rule})", "@a:b", "b", "!r", "x"), "@a:b from b (x)");
    }
}

//! Reason templates: `{user}`, `{server}`, `{room}`, `{rule}` are filled in, and for a rule that
//! matched a ban list, `{list}` (the list as the policy names it) and `{list_reason}` (the list
//! entry's reason). Without a list match, those two are empty.

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["user", "server", "room", "rule", "list", "list_reason"];

/// What a template is filled in with.
pub struct Values<'a> {
    pub user: &'a str,
    pub server: &'a str,
    pub room: &'a str,
    pub rule: &'a str,
    pub list: &'a str,
    pub list_reason: &'a str,
}

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

/// Fills in a checked template, in one pass (a value that itself reads like a placeholder, as
/// a list entry's reason may, is not filled in again).
pub fn render(template: &str, v: &Values) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let value = match &after[..close] {
            "user" => Some(v.user),
            "server" => Some(v.server),
            "room" => Some(v.room),
            "rule" => Some(v.rule),
            "list" => Some(v.list),
            "list_reason" => Some(v.list_reason),
            _ => None,
        };
        match value {
            Some(text) => out.push_str(text),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
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
        let v = Values { user: "@a:b", server: "b", room: "!r", rule: "x", list: "#l:b", list_reason: "{user} spam" };
        assert_eq!(render("{user} from {server} ({rule})", &v), "@a:b from b (x)");
        assert_eq!(render("Listed on {list}: {list_reason} {", &v), "Listed on #l:b: {user} spam {");
        assert!(check("Listed on {list}: {list_reason}").is_ok());
    }
}

//! Reading a policy file into a [`PolicyAst`], collecting **every** problem with its position.
//!
//! The YAML is parsed into a tree that keeps positions (marked-yaml); the reader walks it,
//! checks keys (suggesting the closest known one), types, regex and glob syntax, room IDs and
//! aliases, durations and reason templates, and goes on after each problem.

use marked_yaml::{
    Node,
    types::{MarkedMappingNode, MarkedScalarNode},
};

mod conditions;

use super::{
    Action,
    ast::{Cond, PolicyAst, RoomSel, RuleAst},
    problem::{Pos, Problem, Spanned, did_you_mean},
    template,
};

const POLICY_KEYS: &[&str] = &["name", "rooms", "default", "dry_run", "rules"];
const RULE_KEYS: &[&str] = &["name", "when", "action", "reason", "notify", "lockdown"];
const WHEN_KEYS: &[&str] = &[
    "user",
    "user_regex",
    "server",
    "reason",
    "displayname",
    "member_of",
    "ban_list",
    "account",
    "room_knocks",
    "user_knocks",
    "any",
    "all",
    "not",
];
const REASON_KEYS: &[&str] = &["missing", "min_length", "max_length", "matches", "contains"];
const DISPLAYNAME_KEYS: &[&str] = &["missing", "matches"];
const COUNT_KEYS: &[&str] = &["more_than", "within"];
const ACCOUNT_KEYS: &[&str] = &["younger_than", "older_than", "shadow_banned", "locked", "suspended", "unknown"];

struct Reader<'a> {
    file: &'a str,
    source: &'a str,
    problems: Vec<Problem>,
}

fn pos_of(node: &Node) -> Pos {
    node.span().start().map(|m| Pos { line: m.line(), col: m.column() }).unwrap_or_default()
}

fn key_pos(key: &MarkedScalarNode) -> Pos {
    key.span().start().map(|m| Pos { line: m.line(), col: m.column() }).unwrap_or_default()
}

fn describe(node: &Node) -> &'static str {
    match node {
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// Reads one policy file. `stem` is the file name without extension (the default name).
pub fn read(file: &str, stem: &str, source: &str) -> Result<PolicyAst, Vec<Problem>> {
    let mut r = Reader { file, source, problems: Vec::new() };
    let root = match marked_yaml::parse_yaml_with_options(
        0,
        source,
        marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true),
    ) {
        Ok(root) => root,
        Err(e) => {
            let (at, message) = load_error(&e);
            return Err(vec![Problem::new(file, source, at, message)]);
        }
    };
    let ast = r.policy(&root, stem);
    match ast {
        Some(ast) if r.problems.is_empty() => Ok(ast),
        _ => {
            r.problems.sort_by_key(|p| p.at);
            Err(r.problems)
        }
    }
}

fn load_error(e: &marked_yaml::LoadError) -> (Pos, String) {
    use marked_yaml::LoadError::*;
    let at = |m: &marked_yaml::Marker| Pos { line: m.line(), col: m.column() };
    match e {
        TopLevelMustBeMapping(m) => (at(m), "a policy file must be a mapping of keys to values".into()),
        DuplicateKey(inner) => {
            let key = &inner.key;
            (key_pos(key), format!("the key `{}` is given twice", key.as_str()))
        }
        ScanError(m, _) | UnexpectedAnchor(m) | MappingKeyMustBeScalar(m) | UnexpectedTag(m) => {
            // The message after "line:col: ".
            let text = e.to_string();
            let msg = text.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or(text);
            (at(m), format!("not valid YAML: {msg}"))
        }
        TopLevelMustBeSequence(m) => (at(m), "unexpected top level".into()),
        #[allow(unreachable_patterns)]
        other => (Pos::default(), format!("not valid YAML: {other}")),
    }
}

impl Reader<'_> {
    fn problem(&mut self, at: Pos, message: impl Into<String>) {
        self.problems.push(Problem::new(self.file, self.source, at, message));
    }

    /// A mapping whose keys must come from `allowed`; unknown keys are reported.
    fn mapping<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<&'n MarkedMappingNode> {
        let Some(map) = node.as_mapping() else {
            self.problem(pos_of(node), format!("{what} must be a mapping, not {}", describe(node)));
            return None;
        };
        for key in map.keys() {
            let k = key.as_str();
            if !allowed.contains(&k) {
                let hint = did_you_mean(k, allowed)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!(" (known keys: {})", allowed.join(", ")));
                self.problem(key_pos(key), format!("unknown key `{k}` in {what}{hint}"));
            }
        }
        Some(map)
    }

    fn scalar<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        match node.as_scalar() {
            Some(s) => Some(s),
            None => {
                self.problem(pos_of(node), format!("{what} must be a single value, not {}", describe(node)));
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        self.scalar(node, what).map(|s| Spanned::new(s.as_str().to_owned(), pos_of(node)))
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let s = self.scalar(node, what)?;
        match s.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.problem(pos_of(node), format!("{what} must be true or false, not `{other}`"));
                None
            }
        }
    }

    fn number(&mut self, node: &Node, what: &str) -> Option<u64> {
        let s = self.scalar(node, what)?;
        match s.as_str().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.problem(pos_of(node), format!("{what} must be a whole number, not `{}`", s.as_str()));
                None
            }
        }
    }

    /// A single value or a list of values.
    fn one_or_many(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        match node {
            Node::Sequence(seq) => {
                if seq.is_empty() {
                    self.problem(pos_of(node), format!("{what} must not be an empty list"));
                    return None;
                }
                let items: Vec<_> = seq.iter().map(|n| self.string(n, what)).collect();
                items.into_iter().collect()
            }
            _ => self.string(node, what).map(|s| vec![s]),
        }
    }

    fn action(&mut self, node: &Node, what: &str) -> Option<Action> {
        let s = self.scalar(node, what)?;
        match s.as_str().parse::<Action>() {
            Ok(a) => Some(a),
            Err(()) => {
                let hint = did_you_mean(s.as_str(), Action::NAMES)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                self.problem(
                    pos_of(node),
                    format!("unknown action `{}` (use one of {}){hint}", s.as_str(), Action::NAMES.join(", ")),
                );
                None
            }
        }
    }

    fn policy(&mut self, root: &Node, stem: &str) -> Option<PolicyAst> {
        let map = self.mapping(root, "a policy", POLICY_KEYS)?;
        let name = match map.get_node("name") {
            Some(n) => self.string(n, "`name`"),
            None => Some(Spanned::new(stem.to_owned(), Pos { line: 1, col: 1 })),
        };
        if let Some(n) = &name
            && n.value.trim().is_empty()
        {
            self.problem(n.at, "`name` must not be empty");
        }
        let rooms = match map.get_node("rooms") {
            Some(n) => self.rooms(n),
            None => {
                self.problem(
                    pos_of(root),
                    "missing key `rooms`: list the rooms this policy governs (IDs, aliases or \"*\")",
                );
                None
            }
        };
        let default = match map.get_node("default") {
            Some(n) => self.action(n, "`default`"),
            None => Some(Action::Review),
        };
        let dry_run = match map.get_node("dry_run") {
            Some(n) => self.boolean(n, "`dry_run`"),
            None => Some(false),
        };
        let rules = match map.get_node("rules") {
            Some(n) => self.rules(n),
            None => {
                self.problem(pos_of(root), "missing key `rules`: a policy needs at least one rule");
                None
            }
        };
        Some(PolicyAst {
            file: self.file.to_owned(),
            name: name?,
            rooms: rooms?,
            default: default?,
            dry_run: dry_run?,
            rules: rules?,
        })
    }

    fn rooms(&mut self, node: &Node) -> Option<Vec<Spanned<RoomSel>>> {
        let items = self.one_or_many(node, "`rooms`")?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            let sel = match room_sel(item.value.trim()) {
                Ok(sel) => Some(sel),
                Err(e) => {
                    self.problem(item.at, e);
                    None
                }
            };
            match sel {
                Some(s) => out.push(Spanned::new(s, item.at)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn rules(&mut self, node: &Node) -> Option<Vec<RuleAst>> {
        let Some(seq) = node.as_sequence() else {
            self.problem(pos_of(node), format!("`rules` must be a list of rules, not {}", describe(node)));
            return None;
        };
        if seq.is_empty() {
            self.problem(
                pos_of(node),
                "`rules` is empty: a policy needs at least one rule (or use only `default` with a catch-all rule)",
            );
            return None;
        }
        let mut rules = Vec::new();
        let mut seen: std::collections::HashMap<String, Pos> = std::collections::HashMap::new();
        let mut ok = true;
        for (i, n) in seq.iter().enumerate() {
            // Duplicate names are found even in rules that have other problems.
            if let Some(name) = n.as_mapping().and_then(|m| m.get_node("name")).and_then(|v| v.as_scalar()) {
                let at = pos_of(n.as_mapping().and_then(|m| m.get_node("name")).expect("just found"));
                let name = name.as_str().to_owned();
                if let Some(first) = seen.get(&name) {
                    let first = *first;
                    self.problem(at, format!("duplicate rule name `{name}` (first used on line {})", first.line));
                    ok = false;
                }
                seen.entry(name).or_insert(at);
            }
            match self.rule(n, i) {
                Some(rule) => rules.push(rule),
                None => ok = false,
            }
        }
        ok.then_some(rules)
    }

    fn rule(&mut self, node: &Node, index: usize) -> Option<RuleAst> {
        let what = format!("rule {}", index + 1);
        let map = self.mapping(node, &what, RULE_KEYS)?;
        let name = match map.get_node("name") {
            Some(n) => self.string(n, "`name`"),
            None => {
                self.problem(pos_of(node), format!("{what} has no `name`"));
                None
            }
        };
        let when = match map.get_node("when") {
            Some(n) => self.condition(n),
            None => Some(Cond::All(vec![])),
        };
        let action = match map.get_node("action") {
            Some(n) => self.action(n, "`action`"),
            None => {
                self.problem(pos_of(node), format!("{what} has no `action` (accept, deny, ban, review or ignore)"));
                None
            }
        };
        let reason = match map.get_node("reason") {
            Some(n) => {
                let s = self.string(n, "`reason`");
                if let Some(s) = &s
                    && let Err(e) = template::check(&s.value)
                {
                    self.problem(s.at, e);
                }
                s.map(Some)
            }
            None => Some(None),
        };
        let notify = match map.get_node("notify") {
            Some(n) => self.boolean(n, "`notify`").map(Some),
            None => Some(None),
        };
        let lockdown = match map.get_node("lockdown") {
            Some(n) => self.duration(n, "`lockdown`").map(Some),
            None => Some(None),
        };
        Some(RuleAst {
            name: name?,
            when: when?,
            action: action?,
            reason: reason?,
            notify: notify?,
            lockdown: lockdown?,
        })
    }
}

/// A `rooms` entry: `*`, a room ID or an alias.
fn room_sel(v: &str) -> Result<RoomSel, String> {
    if v == "*" {
        return Ok(RoomSel::Any);
    }
    if v.starts_with('!') {
        spec_sized(v)
            .and_then(|()| ruma::RoomId::parse(v).map_err(|e| e.to_string()))
            .map(|_| RoomSel::Named(v.to_owned()))
            .map_err(|e| format!("`{v}` is not a valid room ID: {e}"))
    } else if v.starts_with('#') {
        spec_sized(v)
            .and_then(|()| ruma::RoomAliasId::parse(v).map_err(|e| e.to_string()))
            .map(|_| RoomSel::Named(v.to_owned()))
            .map_err(|e| format!("`{v}` is not a valid room alias (#name:server): {e}"))
    } else {
        Err(format!("`{v}` is not a room: write a room ID (!…), an alias (#…:server) or \"*\""))
    }
}

/// The spec's limits on identifiers: at most 255 bytes, no white space.
fn spec_sized(id: &str) -> Result<(), String> {
    if id.len() > 255 {
        Err("longer than 255 bytes".into())
    } else if id.chars().any(char::is_whitespace) {
        Err("contains white space".into())
    } else {
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

//! Reading a rule's `when:` conditions: `all`/`any`/`not`, and each condition key with its
//! own checks (globs, regexes, reason and display name tests, lists, counters, accounts).

use marked_yaml::Node;

use super::{
    ACCOUNT_KEYS, COUNT_KEYS, DISPLAYNAME_KEYS, REASON_KEYS, Reader, WHEN_KEYS, describe, one_line, pos_of, room_sel,
};
use crate::policy::{
    ast::{Atom, Cond, RoomSel},
    problem::Spanned,
};

impl Reader<'_> {
    /// A `when` mapping: all of its keys must hold.
    pub(super) fn condition(&mut self, node: &Node) -> Option<Cond> {
        let map = self.mapping(node, "`when`", WHEN_KEYS)?;
        let mut parts = Vec::new();
        let mut ok = true;
        for (key, value) in map.iter() {
            let at = pos_of(value);
            let atom = |a: Atom| Some(Cond::Atom(Spanned::new(a, at)));
            let part = match key.as_str() {
                "user" => self.globs(value, "`user`").and_then(|g| atom(Atom::User(g))),
                "server" => self.globs(value, "`server`").and_then(|g| atom(Atom::Server(g))),
                "user_regex" => self.regex(value, "`user_regex`").and_then(|r| atom(Atom::UserRegex(r))),
                "reason" => self.reason(value),
                "displayname" => self.displayname(value),
                "member_of" => self.named_rooms(value, "`member_of`").and_then(|r| atom(Atom::MemberOf(r))),
                "ban_list" => self.named_rooms(value, "`ban_list`").and_then(|r| atom(Atom::BanList(r))),
                "account" => self.account(value),
                "room_knocks" => self
                    .count(value, "`room_knocks`")
                    .and_then(|(n, d)| atom(Atom::RoomKnocks { more_than: n, within: d })),
                "user_knocks" => self
                    .count(value, "`user_knocks`")
                    .and_then(|(n, d)| atom(Atom::UserKnocks { more_than: n, within: d })),
                "any" => self.cond_list(value, "`any`").map(Cond::Any),
                "all" => self.cond_list(value, "`all`").map(Cond::All),
                "not" => self.condition(value).map(|c| Cond::Not(Box::new(c))),
                _ => None, // reported by `mapping`
            };
            match part {
                Some(p) => parts.push(p),
                None => ok = false,
            }
        }
        ok.then_some(Cond::All(parts))
    }

    pub(super) fn cond_list(&mut self, node: &Node, what: &str) -> Option<Vec<Cond>> {
        let Some(seq) = node.as_sequence() else {
            self.problem(pos_of(node), format!("{what} must be a list of conditions, not {}", describe(node)));
            return None;
        };
        if seq.is_empty() {
            self.problem(pos_of(node), format!("{what} must list at least one condition"));
            return None;
        }
        let items: Vec<_> = seq.iter().map(|n| self.condition(n)).collect();
        items.into_iter().collect()
    }

    pub(super) fn globs(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let items = self.one_or_many(node, what)?;
        let mut ok = true;
        for g in &items {
            if let Err(e) = globset::Glob::new(&g.value) {
                self.problem(g.at, format!("{what}: `{}` is not a valid glob: {}", g.value, e.kind()));
                ok = false;
            }
        }
        ok.then(|| items.into_iter().map(|s| s.value).collect())
    }

    pub(super) fn regex(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node, what)?;
        match crate::policy::compile::check_regex(&s.value) {
            Ok(()) => Some(s.value),
            Err(e) => {
                self.problem(s.at, format!("{what}: invalid regex: {}", one_line(&e)));
                None
            }
        }
    }

    /// A mapping of sub-conditions (`reason`, `displayname`), all of which must hold; `atom`
    /// reads one key.
    pub(super) fn sub_conditions(
        &mut self,
        node: &Node,
        what: &str,
        keys: &[&str],
        atom: fn(&mut Self, &str, &Node) -> Option<Atom>,
    ) -> Option<Cond> {
        let map = self.mapping(node, what, keys)?;
        let mut parts = Vec::new();
        let mut ok = true;
        for (key, value) in map.iter() {
            match atom(self, key.as_str(), value) {
                Some(a) => parts.push(Cond::Atom(Spanned::new(a, pos_of(value)))),
                None => ok = false,
            }
        }
        ok.then_some(Cond::All(parts))
    }

    pub(super) fn reason(&mut self, node: &Node) -> Option<Cond> {
        self.sub_conditions(node, "`reason`", REASON_KEYS, |r, key, value| match key {
            "missing" => r.boolean(value, "`reason.missing`").map(Atom::ReasonMissing),
            "min_length" => r.number(value, "`reason.min_length`").map(|n| Atom::ReasonMinLength(n as usize)),
            "max_length" => r.number(value, "`reason.max_length`").map(|n| Atom::ReasonMaxLength(n as usize)),
            "matches" => r.regex(value, "`reason.matches`").map(Atom::ReasonMatches),
            "contains" => r.words(value).map(Atom::ReasonContains),
            _ => None, // reported by `mapping`
        })
    }

    pub(super) fn account(&mut self, node: &Node) -> Option<Cond> {
        use crate::policy::ast::AccountAtom as A;
        self.sub_conditions(node, "`account`", ACCOUNT_KEYS, |r, key, value| {
            let what = format!("`account.{key}`");
            let a = match key {
                "younger_than" => A::YoungerThan(r.duration(value, &what)?),
                "older_than" => A::OlderThan(r.duration(value, &what)?),
                "shadow_banned" => A::ShadowBanned(r.boolean(value, &what)?),
                "locked" => A::Locked(r.boolean(value, &what)?),
                "suspended" => A::Suspended(r.boolean(value, &what)?),
                "unknown" => A::Unknown(r.boolean(value, &what)?),
                _ => return None, // reported by `mapping`
            };
            Some(Atom::Account(a))
        })
    }

    /// A duration such as `1d` or `30m`.
    pub(super) fn duration(&mut self, node: &Node, what: &str) -> Option<std::time::Duration> {
        let s = self.string(node, what)?;
        match crate::duration::parse(&s.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(s.at, format!("{what}: {e}"));
                None
            }
        }
    }

    pub(super) fn words(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.one_or_many(node, "`reason.contains`")?;
        let mut ok = true;
        for w in &items {
            if crate::policy::words::tokenize(&w.value).is_empty() {
                self.problem(w.at, format!("`reason.contains`: `{}` has no word in it", w.value));
                ok = false;
            }
        }
        ok.then(|| items.into_iter().map(|s| s.value).collect())
    }

    pub(super) fn displayname(&mut self, node: &Node) -> Option<Cond> {
        self.sub_conditions(node, "`displayname`", DISPLAYNAME_KEYS, |r, key, value| match key {
            "missing" => r.boolean(value, "`displayname.missing`").map(Atom::DisplaynameMissing),
            "matches" => r.regex(value, "`displayname.matches`").map(Atom::DisplaynameMatches),
            _ => None,
        })
    }

    /// Rooms named by ID or alias (`member_of`, `ban_list`).
    pub(super) fn named_rooms(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let items = self.one_or_many(node, what)?;
        let mut ok = true;
        for r in &items {
            let v = r.value.as_str();
            if !matches!(room_sel(v), Ok(RoomSel::Named(_))) {
                self.problem(r.at, format!("{what}: `{v}` is not a room ID (!…) or alias (#…:server)"));
                ok = false;
            }
        }
        ok.then(|| items.into_iter().map(|s| s.value).collect())
    }

    pub(super) fn count(&mut self, node: &Node, what: &str) -> Option<(u64, std::time::Duration)> {
        let map = self.mapping(node, what, COUNT_KEYS)?;
        let more_than = match map.get_node("more_than") {
            Some(n) => self.number(n, &format!("{what}.more_than")),
            None => {
                self.problem(pos_of(node), format!("{what} needs `more_than`"));
                None
            }
        };
        let within = match map.get_node("within") {
            Some(n) => {
                let s = self.string(n, &format!("{what}.within"))?;
                match crate::duration::parse(&s.value) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.problem(s.at, format!("{what}.within: {e}"));
                        None
                    }
                }
            }
            None => {
                self.problem(pos_of(node), format!("{what} needs `within` (like 10m)"));
                None
            }
        };
        Some((more_than?, within?))
    }
}

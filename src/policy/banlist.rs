//! Moderation policy lists (ban lists): rooms whose `m.policy.rule.user` and
//! `m.policy.rule.server` state events name who is banned (Matrix spec, "Moderation policy
//! lists"). Pure: a [`BanList`] is built from state events handed in, and matched against
//! knockers.
//!
//! - Rule types: `m.policy.rule.user|server`, the legacy `m.room.rule.user|server` and
//!   `org.matrix.mjolnir.rule.user|server`. (Room rules do not concern knockers.)
//! - Ban recommendations: `m.ban`, `org.matrix.mjolnir.ban`, `m.takedown`,
//!   `org.matrix.msc4204.takedown`. A state event with another recommendation, none, or neither
//!   an `entity` nor hashes removes the rule held under its type and state key; so does its
//!   redaction.
//! - Entities are globs (`*` any run of characters, `?` one character) matched
//!   case-insensitively against the full user ID (user rules) or the server name (server
//!   rules). Without an `entity`, `org.matrix.msc4205.hashes.sha256` (base64 of the SHA-256 of
//!   the user ID or server name) matches exactly.
//! - A rule whose entity would match everyone or nearly everyone (nothing but `*`, `?`, `@`,
//!   `:` and `.`: `*`, `*:*`, `@*`, `?*`) is kept, marked ignored, and never matches.
//!
//! - A rule whose entity is longer than 255 bytes (no user ID or server name is) is kept,
//!   marked ignored, and never matches.
//!
//! Matching is indexed: exact entities and hashes in hash maps, the common glob shapes
//! (`*:server`, `@prefix*:server`, `*.domain`) in maps by server or domain, changed rule by
//! rule, and other globs in one glob set (rebuilt on first use after such a rule changed), so
//! deciding against lists of a hundred thousand entries costs a few lookups. A list that
//! cannot be matched against (its glob set cannot be built, or it holds more than
//! `ban_lists.max_rules` rules) is *unavailable*: [`find_in`] says so, and the policy engine
//! never accepts a knock on its word.

use std::collections::HashMap;

use base64::Engine;
use globset::GlobBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::events::{EntityKind, RuleContent};

mod index;
use index::KindIndex;
/// The recommendations that ban, as a rule's `recommendation` spells them (and as a stored
/// rule keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recommendation {
    #[serde(rename = "m.ban")]
    Ban,
    #[serde(rename = "org.matrix.mjolnir.ban")]
    MjolnirBan,
    #[serde(rename = "m.takedown")]
    Takedown,
    #[serde(rename = "org.matrix.msc4204.takedown")]
    Msc4204Takedown,
}

impl Recommendation {
    /// Every recommendation that bans.
    pub const ALL: [Recommendation; 4] =
        [Recommendation::Ban, Recommendation::MjolnirBan, Recommendation::Takedown, Recommendation::Msc4204Takedown];

    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Ban => "m.ban",
            Recommendation::MjolnirBan => "org.matrix.mjolnir.ban",
            Recommendation::Takedown => "m.takedown",
            Recommendation::Msc4204Takedown => "org.matrix.msc4204.takedown",
        }
    }

    /// The ban recommendation `text` names; `None` for any other.
    pub fn of(text: &str) -> Option<Recommendation> {
        Recommendation::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
/// The longest entity a rule may have: no user ID or server name is longer (the spec's limit
/// is 255 bytes); a longer one is ignored.
pub const MAX_ENTITY_BYTES: usize = 255;
/// Where hashed entities are given (MSC4205).
pub const HASHES_KEY: &str = "org.matrix.msc4205.hashes";

/// Where a rule lives in its room's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleKey {
    pub event_type: String,
    pub state_key: String,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A glob over the user ID or server name.
    Glob(String),
    /// The unpadded base64 SHA-256 of the user ID or server name.
    Sha256(String),
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entity::Glob(g) => f.write_str(g),
            Entity::Sha256(h) => write!(f, "sha256:{h}"),
        }
    }
}

/// One ban rule of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRule {
    pub kind: EntityKind,
    pub entity: Entity,
    pub recommendation: Recommendation,
    /// The rule's `reason` (empty when it gives none).
    pub reason: String,
    /// The state event that set it (its redaction removes the rule).
    pub event_id: String,
    /// Set when the rule is ignored: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// What a rule state event says for its type and state key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A ban rule.
    Rule(ListRule),
    /// No ban rule any more (no entity, no recommendation, or another recommendation).
    Removed,
}

/// Reads a state event of a rule type; `None` when the type is not one knockwarden reads.
pub fn parse(event_type: &str, content: &RuleContent, event_id: &str) -> Option<Parsed> {
    let kind = EntityKind::of_type(event_type)?;
    let Some(recommendation) = content.recommendation.as_deref().and_then(Recommendation::of) else {
        return Some(Parsed::Removed);
    };
    let entity = match content.entity.as_deref().filter(|e| !e.is_empty()) {
        Some(glob) => Entity::Glob(glob.to_owned()),
        None => match content.hashes.as_ref().and_then(|h| h.sha256.as_deref()) {
            Some(h) if !h.trim_end_matches('=').is_empty() => Entity::Sha256(h.trim_end_matches('=').to_owned()),
            _ => return Some(Parsed::Removed),
        },
    };
    let ignored = match &entity {
        Entity::Glob(g) if g.len() > MAX_ENTITY_BYTES => Some(format!(
            "the entity is {} bytes long: no Matrix user ID or server name is over {MAX_ENTITY_BYTES}",
            g.len()
        )),
        Entity::Glob(g) if is_over_broad(g) => {
            Some(format!("the entity `{g}` would match everyone or nearly everyone"))
        }
        _ => None,
    };
    Some(Parsed::Rule(ListRule {
        kind,
        entity,
        recommendation,
        reason: content.reason.clone().unwrap_or_default(),
        event_id: event_id.to_owned(),
        ignored,
    }))
}

/// Whether a glob would match everyone or nearly everyone: it names nothing but wildcards and
/// the punctuation every ID has (`*`, `*:*`, `@*`, `?*`, `*.*`).
pub fn is_over_broad(glob: &str) -> bool {
    glob.chars().all(|c| matches!(c, '*' | '?' | '@' | ':' | '.'))
}

fn has_wildcard(glob: &str) -> bool {
    glob.contains(['*', '?'])
}

/// The spec's glob (only `*` and `?` are special) as a globset glob, lowercased.
fn to_glob(glob: &str) -> Option<globset::Glob> {
    let mut pattern = String::with_capacity(glob.len() + 8);
    let mut literal = String::new();
    for c in glob.to_lowercase().chars() {
        if c == '*' || c == '?' {
            pattern.push_str(&globset::escape(&literal));
            literal.clear();
            pattern.push(c);
        } else {
            literal.push(c);
        }
    }
    pattern.push_str(&globset::escape(&literal));
    GlobBuilder::new(&pattern).literal_separator(false).backslash_escape(false).build().ok()
}

/// The unpadded standard base64 SHA-256 of a text, as hashed entities give it.
pub fn sha256_b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// The most rules a list may hold before it is unavailable (`ban_lists.max_rules`).
pub const DEFAULT_MAX_RULES: usize = 200_000;

/// One list's rules, indexed for matching.
#[derive(Debug, Clone)]
pub struct BanList {
    rules: HashMap<RuleKey, ListRule>,
    by_event: HashMap<String, RuleKey>,
    users: KindIndex,
    servers: KindIndex,
    /// Past this many rules the list is unavailable.
    max_rules: usize,
}

impl Default for BanList {
    fn default() -> Self {
        Self::with_max_rules(DEFAULT_MAX_RULES)
    }
}

/// A list entry that matched a knocker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListHit {
    /// The list as the policy names it (alias or room ID).
    pub list: String,
    pub kind: EntityKind,
    pub entity: String,
    pub reason: String,
    pub event_type: String,
}

impl BanList {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list that becomes unavailable past `max_rules` rules.
    pub fn with_max_rules(max_rules: usize) -> Self {
        Self {
            rules: HashMap::new(),
            by_event: HashMap::new(),
            users: KindIndex::default(),
            servers: KindIndex::default(),
            max_rules,
        }
    }

    /// Builds a list from its rules.
    pub fn from_rules(rules: impl IntoIterator<Item = (RuleKey, ListRule)>) -> Self {
        let mut list = Self::new();
        for (k, r) in rules {
            list.set(k, r);
        }
        list
    }

    /// Sets the rule held under `key`; returns the rule it replaced.
    pub fn set(&mut self, key: RuleKey, rule: ListRule) -> Option<ListRule> {
        let old = self.remove(&key);
        self.by_event.insert(rule.event_id.clone(), key.clone());
        if rule.ignored.is_none() {
            match rule.kind {
                EntityKind::User => self.users.insert(&key, &rule),
                EntityKind::Server => self.servers.insert(&key, &rule),
            }
        }
        self.rules.insert(key, rule);
        old
    }

    /// Removes the rule held under `key`, if any.
    pub fn remove(&mut self, key: &RuleKey) -> Option<ListRule> {
        let old = self.rules.remove(key)?;
        if self.by_event.get(&old.event_id) == Some(key) {
            self.by_event.remove(&old.event_id);
        }
        if old.ignored.is_none() {
            match old.kind {
                EntityKind::User => self.users.remove(key, &old),
                EntityKind::Server => self.servers.remove(key, &old),
            }
        }
        Some(old)
    }

    /// Applies what a state event says under `key`; returns the rule it replaced or removed.
    pub fn apply(&mut self, key: RuleKey, parsed: Parsed) -> Option<ListRule> {
        match parsed {
            Parsed::Rule(r) => self.set(key, r),
            Parsed::Removed => self.remove(&key),
        }
    }

    /// The key of the rule the event set, if it still holds (for redactions).
    pub fn key_of_event(&self, event_id: &str) -> Option<&RuleKey> {
        self.by_event.get(event_id)
    }

    pub fn get(&self, key: &RuleKey) -> Option<&ListRule> {
        self.rules.get(key)
    }

    pub fn rules(&self) -> impl Iterator<Item = (&RuleKey, &ListRule)> {
        self.rules.iter()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules in force (not ignored): (users, servers).
    pub fn counts(&self) -> (usize, usize) {
        let live = self.rules.values().filter(|r| r.ignored.is_none());
        live.fold((0, 0), |(u, s), r| match r.kind {
            EntityKind::User => (u + 1, s),
            EntityKind::Server => (u, s + 1),
        })
    }

    /// Why the list cannot be matched against, if it cannot: it holds more rules than
    /// `ban_lists.max_rules`, or its wildcard rules cannot be compiled. Knocks are then never
    /// accepted on its word (see [`find_in`]). Compiles the wildcard rules if not done yet.
    pub fn unavailable(&self) -> Option<String> {
        if self.rules.len() > self.max_rules {
            return Some(format!(
                "it holds {} rules, more than ban_lists.max_rules ({})",
                self.rules.len(),
                self.max_rules
            ));
        }
        [&self.users, &self.servers]
            .into_iter()
            .filter(|ix| !ix.glob_keys.is_empty())
            .find_map(|ix| ix.globs(&self.rules).set.as_ref().err().cloned())
    }

    /// The rule banning `user` (a full user ID), by user or by server, if any. User rules are
    /// looked at first. An error says why the list cannot be matched against.
    pub fn find(&self, user: &str) -> Result<Option<(&RuleKey, &ListRule)>, String> {
        if self.rules.len() > self.max_rules {
            return Err(self.unavailable().unwrap_or_default());
        }
        let server = user.split_once(':').map(|(_, s)| s).unwrap_or("");
        match self.users.find(&self.rules, &lowercase(user), user)? {
            Some(hit) => Ok(Some(hit)),
            None => self.servers.find(&self.rules, &lowercase(server), server),
        }
    }
}

fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_uppercase) { s.to_lowercase().into() } else { s.into() }
}

/// Whether a rule (in force) bans `user`, matched on its own (the index is not needed).
pub fn rule_matches(rule: &ListRule, user: &str) -> bool {
    if rule.ignored.is_some() {
        return false;
    }
    let text = match rule.kind {
        EntityKind::User => user,
        EntityKind::Server => user.split_once(':').map(|(_, s)| s).unwrap_or(""),
    };
    match &rule.entity {
        Entity::Glob(g) if has_wildcard(g) => {
            to_glob(g).is_some_and(|g| g.compile_matcher().is_match(text.to_lowercase()))
        }
        Entity::Glob(g) => g.to_lowercase() == text.to_lowercase(),
        Entity::Sha256(h) => *h == sha256_b64(text),
    }
}

/// Where the policy engine finds the lists a policy names (by alias or room ID, as written).
pub trait ListSource: Sync {
    fn list(&self, name: &str) -> Option<&BanList>;
}

impl std::fmt::Debug for dyn ListSource + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListSource")
    }
}

/// Lists by name, for tests and the command line.
impl ListSource for HashMap<String, BanList> {
    fn list(&self, name: &str) -> Option<&BanList> {
        self.get(name)
    }
}

/// A matched entry, for people: `#bans:example.org, user rule "@spam*:evil.org"
/// (m.policy.rule.user), reason "spam"`.
pub fn describe_hit(h: &ListHit) -> String {
    let reason = if h.reason.is_empty() { String::new() } else { format!(", reason {:?}", h.reason) };
    format!("{}, {} rule {:?} ({}){reason}", h.list, h.kind.as_str(), h.entity, h.event_type)
}

/// A list that could not be matched against, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub list: String,
    pub why: String,
}

/// The first entry of the named lists that bans `user`. When none does but one of the lists
/// is unavailable, that list: whether `user` is listed cannot be known (fail closed).
pub fn find_in(lists: &dyn ListSource, names: &[String], user: &str) -> Result<Option<ListHit>, Unavailable> {
    let mut unavailable = None;
    for name in names {
        let Some(list) = lists.list(name) else { continue };
        match list.find(user) {
            Ok(Some((key, rule))) => {
                return Ok(Some(ListHit {
                    list: name.clone(),
                    kind: rule.kind,
                    entity: rule.entity.to_string(),
                    reason: rule.reason.clone(),
                    event_type: key.event_type.clone(),
                }));
            }
            Ok(None) => {}
            Err(why) => {
                unavailable.get_or_insert(Unavailable { list: name.clone(), why });
            }
        }
    }
    match unavailable {
        Some(u) => Err(u),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn key(t: &str, k: &str) -> RuleKey {
        RuleKey { event_type: t.into(), state_key: k.into() }
    }

    fn rule(t: &str, content: Value, id: &str) -> Parsed {
        parse(t, &serde_json::from_value(content).unwrap(), id).expect("a rule type")
    }

    fn list(rules: &[(&str, &str, Value)]) -> BanList {
        let mut l = BanList::new();
        for (i, (t, k, c)) in rules.iter().enumerate() {
            l.apply(key(t, k), rule(t, c.clone(), &format!("$e{i}")));
        }
        l
    }

    #[test]
    fn globs_match_case_insensitively_and_only_star_and_question_mark_are_special() {
        let l = list(&[
            (
                "m.policy.rule.user",
                "a",
                json!({"entity": "@spam*:evil.org", "recommendation": "m.ban", "reason": "spam"}),
            ),
            ("m.policy.rule.server", "b", json!({"entity": "bad?.example", "recommendation": "m.ban"})),
            ("m.policy.rule.server", "c", json!({"entity": "[v6]", "recommendation": "m.ban"})),
            ("m.policy.rule.user", "d", json!({"entity": "@Exact:Example.org", "recommendation": "m.ban"})),
        ]);
        assert_eq!(l.find("@SpamBot42:EVIL.org").unwrap().unwrap().1.reason, "spam");
        assert!(l.find("@ham:evil.org").unwrap().is_none());
        assert!(l.find("@x:bad1.example").unwrap().is_some());
        assert!(l.find("@x:bad12.example").unwrap().is_none(), "? is one character");
        assert!(l.find("@x:[v6]").unwrap().is_some(), "[ is literal");
        assert!(l.find("@x:v").unwrap().is_none());
        assert!(l.find("@exact:example.org").unwrap().is_some());
        assert_eq!(l.counts(), (2, 2));
        for user in ["@SpamBot42:EVIL.org", "@x:bad1.example", "@x:[v6]", "@exact:example.org", "@ham:evil.org"] {
            let by_index = l.find(user).unwrap().is_some();
            assert_eq!(by_index, l.rules().any(|(_, r)| rule_matches(r, user)), "{user}");
        }
    }

    #[test]
    fn legacy_types_and_recommendations_are_read() {
        for t in ["m.room.rule.user", "org.matrix.mjolnir.rule.user"] {
            for rec in Recommendation::ALL.map(Recommendation::as_str) {
                let l = list(&[(t, "x", json!({"entity": "@a:b", "recommendation": rec}))]);
                assert!(l.find("@a:b").unwrap().is_some(), "{t} {rec}");
            }
        }
        let l = list(&[(
            "org.matrix.mjolnir.rule.server",
            "x",
            json!({"entity": "b", "recommendation": "org.matrix.mjolnir.ban"}),
        )]);
        assert!(l.find("@anyone:b").unwrap().is_some());
        assert!(parse("m.policy.rule.room", &RuleContent::default(), "$e").is_none());
    }

    #[test]
    fn a_stored_rule_keeps_its_recommendation_as_the_list_spells_it() {
        for rec in Recommendation::ALL {
            let content = RuleContent {
                entity: Some("@a:b".into()),
                recommendation: Some(rec.as_str().into()),
                ..RuleContent::default()
            };
            let Some(Parsed::Rule(rule)) = parse("m.policy.rule.user", &content, "$e") else { panic!("{rec:?}") };
            assert_eq!(rule.recommendation, rec);
            let json = serde_json::to_value(&rule).unwrap();
            assert_eq!(json["recommendation"], rec.as_str(), "stored as before it was typed");
            assert_eq!(serde_json::from_value::<ListRule>(json).unwrap(), rule);
        }
        let other = RuleContent {
            entity: Some("@a:b".into()),
            recommendation: Some("m.mute".into()),
            ..RuleContent::default()
        };
        assert_eq!(parse("m.policy.rule.user", &other, "$e"), Some(Parsed::Removed));
    }

    #[test]
    fn hashed_entities_match_exactly() {
        let h = sha256_b64("@hidden:example.org");
        let padded = format!("{h}=");
        let l = list(&[
            ("m.policy.rule.user", "h", json!({"recommendation": "m.ban", HASHES_KEY: {"sha256": padded}})),
            (
                "m.policy.rule.server",
                "s",
                json!({"recommendation": "m.ban", HASHES_KEY: {"sha256": sha256_b64("hidden.example")}}),
            ),
        ]);
        assert!(l.find("@hidden:example.org").unwrap().is_some());
        assert!(l.find("@Hidden:example.org").unwrap().is_none());
        assert!(l.find("@who:hidden.example").unwrap().is_some());
        assert_eq!(l.find("@hidden:example.org").unwrap().unwrap().1.entity, Entity::Sha256(h));
        // An entity wins over hashes.
        let p = rule(
            "m.policy.rule.user",
            json!({"entity": "@e:x", "recommendation": "m.ban", HASHES_KEY: {"sha256": "abc"}}),
            "$e",
        );
        assert!(matches!(p, Parsed::Rule(ListRule { entity: Entity::Glob(_), .. })));
    }

    #[test]
    fn removal_by_empty_content_other_recommendation_and_redaction() {
        let mut l = list(&[
            ("m.policy.rule.user", "a", json!({"entity": "@a:x", "recommendation": "m.ban"})),
            ("m.policy.rule.user", "b", json!({"entity": "@b*:x", "recommendation": "m.ban"})),
            ("m.policy.rule.user", "c", json!({"entity": "@c:x", "recommendation": "m.ban"})),
        ]);
        assert!(
            l.find("@a:x").unwrap().is_some()
                && l.find("@bee:x").unwrap().is_some()
                && l.find("@c:x").unwrap().is_some()
        );
        l.apply(key("m.policy.rule.user", "a"), rule("m.policy.rule.user", json!({}), "$r1"));
        assert!(l.find("@a:x").unwrap().is_none(), "no entity: removed");
        l.apply(
            key("m.policy.rule.user", "b"),
            rule("m.policy.rule.user", json!({"entity": "@b*:x", "recommendation": "m.mute"}), "$r2"),
        );
        assert!(l.find("@bee:x").unwrap().is_none(), "not a ban: removed");
        let k = l.key_of_event("$e2").cloned().unwrap();
        assert!(l.remove(&k).is_some());
        assert!(l.find("@c:x").unwrap().is_none(), "redacted: removed");
        assert!(l.is_empty());
        assert!(matches!(rule("m.policy.rule.user", json!({"entity": "@a:x"}), "$e"), Parsed::Removed));
    }

    #[test]
    fn over_broad_rules_are_ignored() {
        for g in ["*", "*:*", "@*", "?*", "@*:*", "*.*"] {
            let l = list(&[("m.policy.rule.user", "x", json!({"entity": g, "recommendation": "m.ban"}))]);
            assert!(l.find("@anyone:anywhere.org").unwrap().is_none(), "{g}");
            assert!(l.get(&key("m.policy.rule.user", "x")).unwrap().ignored.is_some());
            assert_eq!(l.counts(), (0, 0));
        }
        assert!(!is_over_broad("*.evil.org"));
        assert!(!is_over_broad("@a*"));
    }

    #[test]
    fn named_lists_report_the_entry() {
        let mut lists = HashMap::new();
        lists.insert(
            "#bans:x".to_owned(),
            list(&[(
                "m.policy.rule.server",
                "s",
                json!({"entity": "*.evil.org", "recommendation": "m.ban", "reason": "spam hub"}),
            )]),
        );
        let hit = find_in(&lists, &["#other:x".into(), "#bans:x".into()], "@a:chat.evil.org").unwrap().unwrap();
        assert_eq!(hit.list, "#bans:x");
        assert_eq!(hit.entity, "*.evil.org");
        assert_eq!(hit.reason, "spam hub");
        assert_eq!(hit.kind, EntityKind::Server);
        assert!(find_in(&lists, &["#bans:x".into()], "@a:good.org").unwrap().is_none());
    }

    #[test]
    fn a_glob_set_that_cannot_be_built_makes_the_list_unavailable_not_empty() {
        let mut l =
            list(&[("m.policy.rule.user", "evil", json!({"entity": "*:evil.example", "recommendation": "m.ban"}))]);
        // Rules no parse would leave in force (over 255 bytes), set directly: their globs are
        // past what globset compiles. Before, the set silently became empty and banned nobody.
        let huge = ListRule {
            kind: EntityKind::User,
            entity: Entity::Glob(String::new()),
            recommendation: Recommendation::Ban,
            reason: String::new(),
            event_id: "$huge".into(),
            ignored: None,
        };
        for i in 0..5 {
            let rule = ListRule { entity: Entity::Glob(format!("{i}{}", "?".repeat(60_000))), ..huge.clone() };
            l.set(key("m.policy.rule.user", &format!("huge{i}")), rule);
        }
        let why = l.unavailable().expect("unavailable");
        assert!(why.contains("cannot be compiled"), "{why}");
        assert!(l.find("@anyone:good.example").is_err());
        let lists: HashMap<String, BanList> = [("#l:x".to_owned(), l)].into();
        let u = find_in(&lists, &["#l:x".into()], "@anyone:good.example").unwrap_err();
        assert_eq!(u.list, "#l:x");
    }

    #[test]
    fn common_glob_shapes_match_as_the_glob_would() {
        let l = list(&[
            ("m.policy.rule.user", "a", json!({"entity": "*:Evil.example", "recommendation": "m.ban"})),
            ("m.policy.rule.user", "b", json!({"entity": "@spam*:bad.example", "recommendation": "m.ban"})),
            ("m.policy.rule.server", "c", json!({"entity": "*.hub.example", "recommendation": "m.ban"})),
            ("m.policy.rule.user", "d", json!({"entity": "*:8448", "recommendation": "m.ban"})),
        ]);
        let users = [
            "@x:evil.example",
            "@x:EVIL.example",
            "@x:notevil.example",
            "@x:evil.example:8448",
            "@spam:bad.example",
            "@spambot:bad.example",
            "@spa:bad.example",
            "@xspam:bad.example",
            "@x:a.hub.example",
            "@x:hub.example",
            "@x:a.b.hub.example",
            "@x:a.hub.example:8448",
            "@x:other.example:8448",
        ];
        for user in users {
            let by_index = l.find(user).unwrap().is_some();
            assert_eq!(by_index, l.rules().any(|(_, r)| rule_matches(r, user)), "{user}");
        }
        assert!(l.find("@x:evil.example").unwrap().is_some());
        assert!(l.find("@x:a.hub.example").unwrap().is_some());
        assert!(l.find("@x:hub.example").unwrap().is_none());
        assert_eq!(l.users.glob_keys.len(), 0, "no glob set needed");
        assert_eq!(l.servers.glob_keys.len(), 0, "no glob set needed");
    }

    #[test]
    fn an_entity_over_255_bytes_is_ignored() {
        let long = format!("@{}:x", "a".repeat(300));
        let l = list(&[("m.policy.rule.user", "x", json!({"entity": long, "recommendation": "m.ban"}))]);
        assert!(l.get(&key("m.policy.rule.user", "x")).unwrap().ignored.as_deref().unwrap().contains("bytes long"));
        assert_eq!(l.counts(), (0, 0));
    }
}

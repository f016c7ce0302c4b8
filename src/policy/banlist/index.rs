//! A list's rules indexed for matching: exact entities and hashes in maps, the common glob
//! shapes (`*:server`, `@prefix*:server`, `*.domain`) in maps by server or domain, changed rule
//! by rule, and the other globs in one glob set rebuilt on first use after a change.

use std::{
    collections::{BTreeSet, HashMap},
    sync::OnceLock,
};

use globset::{GlobSet, GlobSetBuilder};

use super::{Entity, EntityKind, ListRule, RuleKey, has_wildcard, sha256_b64, to_glob};

/// The globs of one kind that no shape below covers, compiled together (or why they could
/// not be: the list is then unavailable, never silently empty).
#[derive(Debug, Clone)]
pub(super) struct Globs {
    pub(super) set: Result<GlobSet, String>,
    pub(super) keys: Vec<RuleKey>,
}

/// A glob entity in a shape matched without a glob set, so that the common rules of large
/// lists (`*:server`, `@prefix*:server`, `*.domain`) are kept in maps and changed one by one,
/// and only the rare other shapes need the (rebuilt) glob set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape {
    /// A user glob `*:server` or `@prefix*:server` (server and prefix without wildcards or
    /// `:`): the user IDs ending with `:server` and starting with `@prefix` (empty: any).
    UserOf { server: String, prefix: String },
    /// A server glob `*.domain` (no other wildcard): the servers ending with `.domain`.
    Subdomain(String),
    /// Anything else: the glob set.
    Other,
}

/// The shape of a lowercase glob with a wildcard.
pub(super) fn shape(kind: EntityKind, glob: &str) -> Shape {
    let plain = |t: &str| !t.contains(['*', '?', ':']);
    match kind {
        EntityKind::User => {
            let Some((left, server)) = glob.rsplit_once(':') else { return Shape::Other };
            let Some(prefix) = left.strip_suffix('*') else { return Shape::Other };
            let prefix_ok = prefix.is_empty() || (prefix.starts_with('@') && plain(prefix));
            if prefix_ok && plain(server) && !server.is_empty() {
                Shape::UserOf { server: server.to_owned(), prefix: prefix.to_owned() }
            } else {
                Shape::Other
            }
        }
        EntityKind::Server => match glob.strip_prefix('*') {
            Some(domain) if domain.starts_with('.') && domain.len() > 1 && plain(domain) => {
                Shape::Subdomain(domain.to_owned())
            }
            _ => Shape::Other,
        },
    }
}

/// The rules of one kind, indexed.
#[derive(Debug, Clone, Default)]
pub(super) struct KindIndex {
    /// Lowercase entity -> rules.
    pub(super) exact: HashMap<String, BTreeSet<RuleKey>>,
    /// Hash -> rules.
    pub(super) hashes: HashMap<String, BTreeSet<RuleKey>>,
    /// `*:server` and `@prefix*:server` rules, by server: (prefix, rule).
    pub(super) user_of: HashMap<String, Vec<(String, RuleKey)>>,
    /// `*.domain` rules, by `.domain`.
    pub(super) subdomains: HashMap<String, BTreeSet<RuleKey>>,
    /// Rules with a wildcard entity of another shape.
    pub(super) glob_keys: BTreeSet<RuleKey>,
    pub(super) globs: OnceLock<Globs>,
}

impl KindIndex {
    pub(super) fn insert(&mut self, key: &RuleKey, rule: &ListRule) {
        match &rule.entity {
            Entity::Glob(g) if has_wildcard(g) => match shape(rule.kind, &g.to_lowercase()) {
                Shape::UserOf { server, prefix } => self.user_of.entry(server).or_default().push((prefix, key.clone())),
                Shape::Subdomain(d) => {
                    self.subdomains.entry(d).or_default().insert(key.clone());
                }
                Shape::Other => {
                    self.glob_keys.insert(key.clone());
                    self.globs = OnceLock::new();
                }
            },
            Entity::Glob(g) => {
                self.exact.entry(g.to_lowercase()).or_default().insert(key.clone());
            }
            Entity::Sha256(h) => {
                self.hashes.entry(h.clone()).or_default().insert(key.clone());
            }
        }
    }

    pub(super) fn remove(&mut self, key: &RuleKey, rule: &ListRule) {
        let drop_from = |map: &mut HashMap<String, BTreeSet<RuleKey>>, k: &str| {
            if let Some(set) = map.get_mut(k) {
                set.remove(key);
                if set.is_empty() {
                    map.remove(k);
                }
            }
        };
        match &rule.entity {
            Entity::Glob(g) if has_wildcard(g) => match shape(rule.kind, &g.to_lowercase()) {
                Shape::UserOf { server, .. } => {
                    if let Some(v) = self.user_of.get_mut(&server) {
                        v.retain(|(_, k)| k != key);
                        if v.is_empty() {
                            self.user_of.remove(&server);
                        }
                    }
                }
                Shape::Subdomain(d) => drop_from(&mut self.subdomains, &d),
                Shape::Other => {
                    self.glob_keys.remove(key);
                    self.globs = OnceLock::new();
                }
            },
            Entity::Glob(g) => drop_from(&mut self.exact, &g.to_lowercase()),
            Entity::Sha256(h) => drop_from(&mut self.hashes, h),
        }
    }

    pub(super) fn globs(&self, rules: &HashMap<RuleKey, ListRule>) -> &Globs {
        self.globs.get_or_init(|| {
            let mut b = GlobSetBuilder::new();
            let mut keys = Vec::new();
            for key in &self.glob_keys {
                let Some(Entity::Glob(g)) = rules.get(key).map(|r| &r.entity) else { continue };
                if let Some(glob) = to_glob(g) {
                    b.add(glob);
                    keys.push(key.clone());
                }
            }
            let set = b.build().map_err(|e| format!("its {} wildcard rules cannot be compiled: {e}", keys.len()));
            Globs { set, keys }
        })
    }

    /// The first rule (in key order) matching `text` (lowercase) or its hash; an error when
    /// the glob set that some of the rules need could not be built.
    pub(super) fn find<'r>(
        &self,
        rules: &'r HashMap<RuleKey, ListRule>,
        lower: &str,
        original: &str,
    ) -> Result<Option<(&'r RuleKey, &'r ListRule)>, String> {
        let mut best: Option<&RuleKey> = self.exact.get(lower).and_then(|s| s.first());
        if !self.hashes.is_empty()
            && let Some(k) = self.hashes.get(&sha256_b64(original)).and_then(|s| s.first())
        {
            best = Some(best.map_or(k, |b| b.min(k)));
        }
        if !self.user_of.is_empty()
            && let Some((_, server)) = lower.rsplit_once(':')
            && let Some(rules_of) = self.user_of.get(server)
        {
            let local = &lower[..lower.len() - server.len() - 1];
            for (prefix, k) in rules_of {
                if local.starts_with(prefix.as_str()) {
                    best = Some(best.map_or(k, |b| b.min(k)));
                }
            }
        }
        if !self.subdomains.is_empty() {
            for (i, _) in lower.match_indices('.') {
                if let Some(k) = self.subdomains.get(&lower[i..]).and_then(|s| s.first()) {
                    best = Some(best.map_or(k, |b| b.min(k)));
                }
            }
        }
        if !self.glob_keys.is_empty() {
            let globs = self.globs(rules);
            let set = globs.set.as_ref().map_err(Clone::clone)?;
            if let Some(k) = set.matches(lower).into_iter().map(|i| &globs.keys[i]).min() {
                best = Some(best.map_or(k, |b| b.min(k)));
            }
        }
        Ok(best.and_then(|k| rules.get_key_value(k)))
    }
}

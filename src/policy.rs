//! The policy engine: YAML knock rules in, decisions out. Pure: no I/O, no async, no sled.
//!
//! - [`reader`] reads a file into an AST, reporting every problem with its position.
//! - [`compile`] turns the AST into matchers and indexes.
//! - [`decide`] decides a [`Knock`] (fast, indexed), decides it plainly rule by rule, or
//!   explains it.
//! - [`PolicySet`] is all the policies of one version: which policy governs which room.
//! - [`banlist`] holds moderation policy lists (ban lists) and matches knockers against them.
//! - [`format`] describes the file format for the JSON Schema (`policies/schema.json`).
//!
//! The caller hands in everything that needs I/O (knock counters, memberships, resolved
//! aliases) and performs the decision; this module never does.

mod account;
mod ast;
pub mod banlist;
pub mod compile;
pub mod decide;
pub mod format;
pub mod problem;
pub mod reader;
pub mod template;
pub mod words;

use std::{collections::HashMap, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ast::RoomSel;
pub use banlist::{BanList, ListHit, ListSource};
pub use compile::{CompiledPolicy, CompiledRule};
pub use decide::{AccountFacts, Decision, Knock, RuleTrace, Trace};
pub use problem::{Pos, Problem, format_problems};

/// What to do with a knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Invite the knocker.
    Accept,
    /// Kick the knocker: the knock is refused, and they may knock again.
    Deny,
    /// Ban the knocker.
    Ban,
    /// Ask the moderators in the control room.
    Review,
    /// Do nothing, say nothing.
    Ignore,
}

impl Action {
    pub const NAMES: &'static [&'static str] = &["accept", "deny", "ban", "review", "ignore"];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Deny => "deny",
            Action::Ban => "ban",
            Action::Review => "review",
            Action::Ignore => "ignore",
        }
    }
}

impl FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "accept" => Ok(Action::Accept),
            "deny" => Ok(Action::Deny),
            "ban" => Ok(Action::Ban),
            "review" => Ok(Action::Review),
            "ignore" => Ok(Action::Ignore),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One policy file's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file's path as shown in messages (e.g. `policies/support.yaml`).
    pub path: String,
    pub text: String,
}

impl Source {
    /// The name of the policy this source defines (its `name:`, else its file name), read
    /// even when the rest of the file has problems.
    pub fn policy_name(&self) -> String {
        let named = serde_yaml::from_str::<serde_yaml::Value>(&self.text)
            .ok()
            .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned));
        named.unwrap_or_else(|| self.stem().to_owned())
    }

    fn stem(&self) -> &str {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")).unwrap_or(name)
    }
}

/// A hash of a set of sources (order-independent), to tell versions apart.
pub fn content_hash(sources: &[Source]) -> String {
    let mut sorted: Vec<&Source> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for s in sorted {
        h.update(s.path.as_bytes());
        h.update([0]);
        h.update(s.text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// All the policies of one version.
#[derive(Debug, Clone)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
    /// Room ID or alias -> policy index.
    rooms: HashMap<String, usize>,
    wildcard: Option<usize>,
    hash: String,
    /// What [`PolicySet::aliases`], [`PolicySet::windows`] and [`PolicySet::member_of_rooms`]
    /// answer, worked out once (each knock asks; with 10,000 rules, collecting them took a
    /// tenth of the worker's time).
    aliases: Vec<String>,
    windows: Vec<Duration>,
    member_of: Vec<String>,
}

/// What a file check found: one line per good file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: String,
    pub policy: String,
    pub rules: usize,
    pub rooms: Vec<String>,
    pub default: Action,
    /// It has `account:` conditions.
    pub uses_account: bool,
}

impl PolicySet {
    /// Reads, checks and compiles a set of files. Any problem in any file refuses the whole set;
    /// every problem of every file is reported.
    pub fn load(sources: &[Source]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut policies = Vec::new();
        let mut asts = Vec::new();
        for src in sources {
            match reader::read(&src.path, src.stem(), &src.text) {
                Ok(ast) => match compile::compile(&ast, &src.text) {
                    Ok(p) => {
                        asts.push((ast, src));
                        policies.push(p);
                    }
                    Err(ps) => problems.extend(ps),
                },
                Err(ps) => problems.extend(ps),
            }
        }
        // Across files: unique names, one policy per room, one "*".
        let mut names: HashMap<&str, (&str, usize)> = HashMap::new();
        let mut rooms: HashMap<String, usize> = HashMap::new();
        let mut room_at: HashMap<String, (String, usize)> = HashMap::new();
        let mut wildcard: Option<(usize, String, usize)> = None;
        for (i, (ast, src)) in asts.iter().enumerate() {
            let name = ast.name.value.as_str();
            if let Some((file, line)) = names.get(name) {
                problems.push(Problem::new(
                    &src.path,
                    &src.text,
                    ast.name.at,
                    format!("a policy named `{name}` is already defined in {file}:{line}"),
                ));
            } else {
                names.insert(name, (&src.path, ast.name.at.line));
            }
            for room in &ast.rooms {
                match &room.value {
                    RoomSel::Any => {
                        if let Some((_, file, line)) = &wildcard {
                            problems.push(Problem::new(
                                &src.path,
                                &src.text,
                                room.at,
                                format!("\"*\" is already claimed by the policy in {file}:{line}"),
                            ));
                        } else {
                            wildcard = Some((i, src.path.clone(), room.at.line));
                        }
                    }
                    RoomSel::Named(r) => {
                        if let Some((file, line)) = room_at.get(r) {
                            problems.push(Problem::new(
                                &src.path,
                                &src.text,
                                room.at,
                                format!("room `{r}` is already governed by the policy in {file}:{line}"),
                            ));
                        } else {
                            room_at.insert(r.clone(), (src.path.clone(), room.at.line));
                            rooms.insert(r.clone(), i);
                        }
                    }
                }
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| (a.file.as_str(), a.at).cmp(&(b.file.as_str(), b.at)));
            return Err(problems);
        }
        Ok(PolicySet::new(policies, rooms, wildcard.map(|(i, _, _)| i), content_hash(sources)))
    }

    /// A set of compiled policies, with the aliases and windows they name worked out.
    fn new(
        policies: Vec<CompiledPolicy>,
        rooms: HashMap<String, usize>,
        wildcard: Option<usize>,
        hash: String,
    ) -> Self {
        let aliases = aliases_of(&rooms, &policies);
        let windows = windows_of(&policies);
        let mut member_of: Vec<String> = policies.iter().flat_map(|p| p.member_of_rooms()).collect();
        member_of.sort();
        member_of.dedup();
        PolicySet { policies, rooms, wildcard, hash, aliases, windows, member_of }
    }

    /// An empty set: no room is governed.
    pub fn empty() -> Self {
        PolicySet::new(Vec::new(), HashMap::new(), None, content_hash(&[]))
    }

    /// Stamps the stored version number on the set (and so on its decisions).
    pub fn with_version(mut self, version: u64) -> Self {
        for p in &mut self.policies {
            p.version = version;
        }
        self
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    pub fn policy(&self, name: &str) -> Option<&CompiledPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policy governing a room, looked up by its ID, then by any of its aliases, then `*`.
    pub fn policy_for(&self, room_id: &str, aliases: &[String]) -> Option<&CompiledPolicy> {
        std::iter::once(room_id)
            .chain(aliases.iter().map(String::as_str))
            .find_map(|r| self.rooms.get(r))
            .or(self.wildcard.as_ref())
            .map(|&i| &self.policies[i])
    }

    /// The policy naming a room (by its ID or one of its aliases) in its `rooms`; `"*"` does
    /// not count.
    pub fn policy_named_for(&self, room_id: &str, aliases: &[String]) -> Option<&CompiledPolicy> {
        std::iter::once(room_id)
            .chain(aliases.iter().map(String::as_str))
            .find_map(|r| self.rooms.get(r))
            .map(|&i| &self.policies[i])
    }

    /// The aliases named in `rooms` of any policy (not `member_of`).
    pub fn room_aliases(&self) -> impl Iterator<Item = &String> {
        self.rooms.keys().filter(|r| r.starts_with('#'))
    }

    /// The aliases named in `rooms` or `member_of` of any policy (to be resolved by the
    /// caller), sorted.
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// The ban lists (room IDs or aliases, as written) any policy names, deduplicated, sorted.
    pub fn ban_lists(&self) -> Vec<String> {
        let mut out: Vec<String> = self.policies.iter().flat_map(|p| p.ban_lists().iter().cloned()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every time window a knock counter needs, across policies (deduplicated, sorted).
    pub fn windows(&self) -> &[Duration] {
        &self.windows
    }

    /// The rooms (IDs or aliases, as written) that `member_of` conditions of any policy name,
    /// deduplicated, sorted: the only memberships a decision can ask about.
    pub fn member_of_rooms(&self) -> &[String] {
        &self.member_of
    }

    /// One summary per policy, in file order.
    pub fn summaries(&self) -> Vec<FileSummary> {
        self.policies
            .iter()
            .map(|p| FileSummary {
                path: p.file.clone(),
                policy: p.name.clone(),
                rules: p.rules.len(),
                rooms: p
                    .rooms
                    .iter()
                    .map(|r| match r {
                        RoomSel::Any => "*".to_owned(),
                        RoomSel::Named(n) => n.clone(),
                    })
                    .collect(),
                default: p.default,
                uses_account: p.uses_account(),
            })
            .collect()
    }

    /// The policies with `account:` conditions (they need `homeserver.admin_token_file`).
    pub fn account_policies(&self) -> Vec<&str> {
        self.policies.iter().filter(|p| p.uses_account()).map(|p| p.name.as_str()).collect()
    }
}

/// The aliases named in `rooms` or `member_of` of any policy, deduplicated, sorted.
fn aliases_of(rooms: &HashMap<String, usize>, policies: &[CompiledPolicy]) -> Vec<String> {
    let mut out: Vec<String> = rooms
        .keys()
        .cloned()
        .chain(policies.iter().flat_map(|p| p.member_of_rooms()))
        .filter(|r| r.starts_with('#'))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every time window a knock counter needs, across `policies`, deduplicated, sorted.
fn windows_of(policies: &[CompiledPolicy]) -> Vec<Duration> {
    let mut w: Vec<Duration> = policies.iter().flat_map(|p| p.windows()).collect();
    w.sort();
    w.dedup();
    w
}

#[cfg(test)]
mod tests;

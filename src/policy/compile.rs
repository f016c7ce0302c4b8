//! Compiling a [`PolicyAst`] into matchers and indexes.
//!
//! Each primitive condition (atom) gets its own matcher, used by the plain rule-by-rule
//! evaluation (`explain`, and the reference in property tests). For speed, the atoms that can
//! be indexed go into per-kind sets: all server globs into one `GlobSet`, all user globs into
//! another, user/reason/displayname regexes into regex sets, `contains` phrases into a map by
//! their rarest word. Each rule gets a *trigger* set: atoms of which at least one must hold for the
//! rule to hold (a conjunction picks its most selective child; a disjunction needs all
//! children indexable). Deciding a knock runs each set once, collects the rules whose triggers
//! hit plus the rules that cannot be indexed, and evaluates only those, in rule order: first
//! match still wins.

use std::{collections::HashMap, sync::OnceLock, time::Duration};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex_automata::{Input, MatchKind, PatternSet, meta};

use super::{
    Action,
    ast::{Atom, Cond, PolicyAst, RoomSel},
    problem::Problem,
    words,
};

/// Size limit of one compiled regex: 1 MiB, enough for Unicode classes repeated a few times
/// (`\w{2,20}`), not for a pattern that would take megabytes.
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// Checks a regex: its syntax (with the regex engine's message), then what building its
/// matcher ([`build_regex`]) can fail on, under the same configuration: the forward NFA (with
/// captures) and the reverse NFA, each within the size limit. Cheaper than building the whole
/// matcher (no literal extraction, no lazy engines), and it fails exactly when that would.
pub fn check_regex(pattern: &str) -> Result<(), String> {
    use regex_automata::nfa::thompson::{Compiler, Config, WhichCaptures};
    let hir = regex_syntax::Parser::new().parse(pattern).map_err(|e| e.to_string())?;
    let too_big = |_| format!("compiled, it is over the size limit of {} KiB", REGEX_SIZE_LIMIT / 1024);
    let forward = Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)).shrink(false);
    let reverse = forward.clone().which_captures(WhichCaptures::None).reverse(true);
    Compiler::new().configure(forward).build_from_hir(&hir).map_err(too_big)?;
    Compiler::new().configure(reverse).build_from_hir(&hir).map_err(too_big)?;
    Ok(())
}

/// How every regex is built: one pattern's own matcher, and the sets (whose size limit grows
/// with their number of patterns). No literal prefilter: see [`ReSet`].
fn regex_config(patterns: usize) -> meta::Config {
    meta::Config::new().auto_prefilter(false).nfa_size_limit(Some(REGEX_SIZE_LIMIT.saturating_mul(patterns.max(1))))
}

/// Builds one checked regex (for the plain path).
pub fn build_regex(pattern: &str) -> Result<meta::Regex, String> {
    meta::Regex::builder().configure(regex_config(1)).build(pattern).map_err(|e| e.to_string())
}

/// Many regexes searched at once, reporting every one that matches (like `regex::RegexSet`).
/// Built without a literal prefilter: with case-insensitive patterns the prefilter costs far
/// more to build (and even to run) than it saves on short knock texts.
#[derive(Debug, Clone)]
pub(crate) struct ReSet {
    re: Option<meta::Regex>,
}

impl ReSet {
    fn new(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Ok(Self { re: None });
        }
        let config = regex_config(patterns.len()).match_kind(MatchKind::All).hybrid_cache_capacity(16 * 1024 * 1024);
        meta::Regex::builder()
            .configure(config)
            .build_many(patterns)
            .map(|re| Self { re: Some(re) })
            .map_err(|e| e.to_string())
    }

    /// Appends the indexes of the matching patterns to `out`.
    pub fn matches_into(&self, text: &str, out: &mut Vec<usize>) {
        let Some(re) = &self.re else { return };
        let input = Input::new(text);
        if !re.is_match(input.clone()) {
            return;
        }
        let mut set = PatternSet::new(re.pattern_len());
        re.which_overlapping_matches(&input, &mut set);
        out.extend(set.iter().map(|p| p.as_usize()));
    }
}

fn build_globset(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(glob(g)?);
    }
    b.build().map_err(|e| e.to_string())
}

/// Globs match case-insensitively: patterns are lowercased here and inputs when deciding
/// (globset's own case-insensitive mode is much slower to build and to match).
fn glob(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(&pattern.to_lowercase()).literal_separator(false).build().map_err(|e| e.to_string())
}

/// A compiled primitive condition. Its own glob matcher is only needed by the plain path
/// (`explain`, and the reference for tests), so it is built on first use.
#[derive(Debug, Clone)]
pub(crate) struct CompiledAtom {
    pub atom: Atom,
    /// For regex atoms: the pattern's own regex, built on first use (the check built the
    /// same, so it never fails; were it to, the atom would not match rather than panic).
    regex: OnceLock<Option<meta::Regex>>,
    /// For `contains`: each phrase as lowercase words.
    pub phrases: Vec<Vec<String>>,
    globs: OnceLock<GlobSet>,
}

impl CompiledAtom {
    /// Whether the atom's regex (if it has one) matches `text`.
    pub fn regex_matches(&self, text: &str) -> bool {
        let pattern = match &self.atom {
            Atom::UserRegex(r) | Atom::ReasonMatches(r) | Atom::DisplaynameMatches(r) => r,
            _ => return false,
        };
        self.regex.get_or_init(|| build_regex(pattern).ok()).as_ref().is_some_and(|re| re.is_match(text))
    }

    /// The atom's own glob matcher (lowercase), built on first use.
    pub fn globs(&self) -> &GlobSet {
        self.globs.get_or_init(|| match &self.atom {
            Atom::User(g) | Atom::Server(g) => build_globset(g).unwrap_or_else(|_| GlobSet::empty()),
            _ => GlobSet::empty(),
        })
    }
}

/// A compiled condition tree over atom indexes.
#[derive(Debug, Clone)]
pub(crate) enum CCond {
    All(Vec<CCond>),
    Any(Vec<CCond>),
    Not(Box<CCond>),
    Atom(usize),
}

#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    /// Line of the rule's name in its file.
    pub line: usize,
    pub action: Action,
    pub reason: Option<String>,
    pub notify: Option<bool>,
    /// A match puts the room in lockdown for this long (extended if already in one).
    pub lockdown: Option<std::time::Duration>,
    pub(crate) cond: CCond,
}

/// The per-kind indexes of a policy (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub server: GlobSet,
    pub server_atoms: Vec<usize>,
    pub user: GlobSet,
    pub user_atoms: Vec<usize>,
    pub user_re: ReSet,
    pub user_re_atoms: Vec<usize>,
    pub reason_re: ReSet,
    pub reason_re_atoms: Vec<usize>,
    pub display_re: ReSet,
    pub display_re_atoms: Vec<usize>,
    /// First word of a `contains` phrase -> atoms.
    pub words: HashMap<String, Vec<usize>>,
    /// Atom -> rules it triggers.
    pub atom_rules: Vec<Vec<u32>>,
    /// Rules evaluated for every knock (no trigger).
    pub always: Vec<u32>,
    /// Atoms whose truth the indexes give exactly (globs and regexes).
    pub exact: Vec<bool>,
}

/// One compiled policy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub name: String,
    pub file: String,
    pub rooms: Vec<RoomSel>,
    pub default: Action,
    pub dry_run: bool,
    pub rules: Vec<CompiledRule>,
    pub(crate) atoms: Vec<CompiledAtom>,
    pub(crate) index: Index,
    /// The explanation of a default decision.
    pub(crate) default_why: String,
    /// The stored version this policy belongs to (0 until the set is stored).
    pub version: u64,
    /// What [`CompiledPolicy::ban_lists`] answers, collected once: each knock asks (with
    /// 10,000 rules, walking the atoms for it took 8 % of knockwarden's CPU under load).
    ban_lists: Vec<String>,
    /// Whether an atom is an `account:` condition.
    uses_account: bool,
}

impl CompiledPolicy {
    /// The rooms its `member_of` conditions name.
    pub fn member_of_rooms(&self) -> impl Iterator<Item = String> + '_ {
        self.atoms.iter().flat_map(|a| match &a.atom {
            Atom::MemberOf(rooms) => rooms.clone(),
            _ => Vec::new(),
        })
    }

    /// Whether it has `account:` conditions (deciding a local knock then waits for the
    /// homeserver's word on the account).
    pub fn uses_account(&self) -> bool {
        self.uses_account
    }

    /// The ban lists its `ban_list` conditions name.
    pub fn ban_lists(&self) -> &[String] {
        &self.ban_lists
    }

    /// The time windows its knock counters use.
    pub fn windows(&self) -> impl Iterator<Item = Duration> + '_ {
        self.atoms.iter().filter_map(|a| match a.atom {
            Atom::RoomKnocks { within, .. } | Atom::UserKnocks { within, .. } => Some(within),
            _ => None,
        })
    }
}

struct Compiler {
    atoms: Vec<CompiledAtom>,
}

impl Compiler {
    fn cond(&mut self, c: &Cond) -> CCond {
        match c {
            Cond::All(cs) => CCond::All(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Any(cs) => CCond::Any(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Not(c) => CCond::Not(Box::new(self.cond(c))),
            Cond::Atom(a) => {
                let phrases = match &a.value {
                    Atom::ReasonContains(ws) => ws.iter().map(|w| words::tokenize(w)).collect(),
                    _ => Vec::new(),
                };
                self.atoms.push(CompiledAtom {
                    atom: a.value.clone(),
                    regex: OnceLock::new(),
                    phrases,
                    globs: OnceLock::new(),
                });
                CCond::Atom(self.atoms.len() - 1)
            }
        }
    }
}

/// Whether an atom can be found through an index.
fn indexable(a: &Atom) -> bool {
    matches!(
        a,
        Atom::User(_)
            | Atom::Server(_)
            | Atom::UserRegex(_)
            | Atom::ReasonMatches(_)
            | Atom::DisplaynameMatches(_)
            | Atom::ReasonContains(_)
    )
}

/// How selective an atom kind is (lower: tried first as a trigger).
fn selectivity(a: &Atom) -> u8 {
    match a {
        Atom::Server(_) => 0,
        Atom::User(_) => 1,
        Atom::UserRegex(_) => 2,
        Atom::ReasonContains(_) => 3,
        Atom::DisplaynameMatches(_) => 4,
        _ => 5,
    }
}

/// Atoms of which at least one holds whenever `c` holds; `None` when no such set is indexable.
fn triggers(c: &CCond, atoms: &[CompiledAtom]) -> Option<Vec<usize>> {
    match c {
        CCond::Atom(i) => indexable(&atoms[*i].atom).then(|| vec![*i]),
        CCond::All(cs) => cs
            .iter()
            .filter_map(|c| triggers(c, atoms))
            .min_by_key(|t| (t.len(), t.iter().map(|i| selectivity(&atoms[*i].atom)).max().unwrap_or(5))),
        CCond::Any(cs) => {
            let mut all = Vec::new();
            for c in cs {
                all.extend(triggers(c, atoms)?);
            }
            (!all.is_empty()).then_some(all)
        }
        CCond::Not(_) => None,
    }
}

/// Compiles one checked policy; problems (regex size limit) come with positions.
pub fn compile(ast: &PolicyAst, source: &str) -> Result<CompiledPolicy, Vec<Problem>> {
    let mut c = Compiler { atoms: Vec::new() };
    let mut rules = Vec::with_capacity(ast.rules.len());
    for r in &ast.rules {
        let cond = c.cond(&r.when);
        rules.push(CompiledRule {
            name: r.name.value.clone(),
            line: r.name.at.line,
            action: r.action,
            reason: r.reason.as_ref().map(|s| s.value.clone()),
            notify: r.notify,
            lockdown: r.lockdown,
            cond,
        });
    }
    let atoms = c.atoms;
    let ban_lists = atoms
        .iter()
        .flat_map(|a| match &a.atom {
            Atom::BanList(rooms) => rooms.clone(),
            _ => Vec::new(),
        })
        .collect();
    let uses_account = atoms.iter().any(|a| matches!(a.atom, Atom::Account(_)));
    let index = build_index(&rules, &atoms).map_err(|e| {
        vec![Problem::new(&ast.file, source, ast.name.at, format!("cannot build the policy's indexes: {e}"))]
    })?;
    Ok(CompiledPolicy {
        name: ast.name.value.clone(),
        file: ast.file.clone(),
        rooms: ast.rooms.iter().map(|r| r.value.clone()).collect(),
        default: ast.default,
        dry_run: ast.dry_run,
        version: 0,
        default_why: format!("no rule matched ({} rules); the policy's default applies", rules.len()),
        rules,
        atoms,
        index,
        ban_lists,
        uses_account,
    })
}

/// Patterns of one kind, each with the atom it belongs to.
#[derive(Default)]
struct Bucket {
    patterns: Vec<String>,
    atoms: Vec<usize>,
}

fn build_index(rules: &[CompiledRule], atoms: &[CompiledAtom]) -> Result<Index, String> {
    let (mut server, mut user) = (Bucket::default(), Bucket::default());
    let (mut user_re, mut reason_re, mut display_re) = (Bucket::default(), Bucket::default(), Bucket::default());
    let mut words: HashMap<String, Vec<usize>> = HashMap::new();
    let mut exact = vec![false; atoms.len()];
    // How often each word appears in a phrase: phrases are indexed by their rarest word, so a
    // common word ("free") does not make every phrase a candidate.
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for a in atoms {
        for w in a.phrases.iter().flatten() {
            *freq.entry(w.as_str()).or_default() += 1;
        }
    }
    for (i, a) in atoms.iter().enumerate() {
        let (bucket, patterns): (&mut Bucket, &[String]) = match &a.atom {
            Atom::Server(gs) => (&mut server, gs),
            Atom::User(gs) => (&mut user, gs),
            Atom::UserRegex(r) => (&mut user_re, std::slice::from_ref(r)),
            Atom::ReasonMatches(r) => (&mut reason_re, std::slice::from_ref(r)),
            Atom::DisplaynameMatches(r) => (&mut display_re, std::slice::from_ref(r)),
            Atom::ReasonContains(_) => {
                for p in &a.phrases {
                    let key = p
                        .iter()
                        .min_by_key(|w| freq.get(w.as_str()).copied().unwrap_or(0))
                        .expect("phrases have words");
                    let list = words.entry(key.clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
                continue;
            }
            _ => continue,
        };
        for p in patterns {
            bucket.patterns.push(p.clone());
            bucket.atoms.push(i);
        }
        exact[i] = true;
    }
    let mut atom_rules = vec![Vec::new(); atoms.len()];
    let mut always = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        match triggers(&rule.cond, atoms) {
            Some(ts) => {
                for t in ts {
                    if atom_rules[t].last() != Some(&(r as u32)) {
                        atom_rules[t].push(r as u32);
                    }
                }
            }
            None => always.push(r as u32),
        }
    }
    Ok(Index {
        server: build_globset(&server.patterns)?,
        server_atoms: server.atoms,
        user: build_globset(&user.patterns)?,
        user_atoms: user.atoms,
        user_re: ReSet::new(&user_re.patterns)?,
        user_re_atoms: user_re.atoms,
        reason_re: ReSet::new(&reason_re.patterns)?,
        reason_re_atoms: reason_re.atoms,
        display_re: ReSet::new(&display_re.patterns)?,
        display_re_atoms: display_re.atoms,
        words,
        atom_rules,
        always,
        exact,
    })
}

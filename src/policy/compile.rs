//! Compiling a [`PolicyAst`] into matchers and indexes.
//!
//! Each primitive condition (atom) gets its own matcher, used by the plain rule-by-rule
//! evaluation (`explain`, and the reference in property tests). For speed, the atoms that can
//! be indexed go into per-kind sets: all server globs into one `GlobSet`, all user globs into
//! another, user/reason/displayname regexes into `RegexSet`s, `contains` words into a map by
//! first word. Each rule gets a *trigger* set: atoms of which at least one must hold for the
//! rule to hold (a conjunction picks its most selective child; a disjunction needs all
//! children indexable). Deciding a knock runs each set once, collects the rules whose triggers
//! hit plus the rules that cannot be indexed, and evaluates only those, in rule order: first
//! match still wins.

use std::{collections::HashMap, time::Duration};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::{
    Action,
    ast::{Atom, Cond, PolicyAst, RoomSel},
    problem::Problem,
    words,
};

/// Size limit of one compiled regex.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Builds one user regex with the size limit.
pub fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| e.to_string())
}

fn build_globset(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(glob(g)?);
    }
    b.build().map_err(|e| e.to_string())
}

fn glob(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(pattern).case_insensitive(true).literal_separator(false).build().map_err(|e| e.to_string())
}

fn build_regex_set(patterns: &[&str]) -> Result<RegexSet, String> {
    RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT.saturating_mul(patterns.len().max(1)))
        .dfa_size_limit(64 * 1024 * 1024)
        .build()
        .map_err(|e| e.to_string())
}

/// A compiled primitive condition.
#[derive(Debug, Clone)]
pub(crate) struct CompiledAtom {
    pub atom: Atom,
    pub matcher: Matcher,
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    None,
    Globs(GlobSet),
    Regex(Regex),
    Phrases(Vec<Vec<String>>),
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
    pub(crate) cond: CCond,
}

/// The per-kind indexes of a policy (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub server: GlobSet,
    pub server_atoms: Vec<usize>,
    pub user: GlobSet,
    pub user_atoms: Vec<usize>,
    pub user_re: RegexSet,
    pub user_re_atoms: Vec<usize>,
    pub reason_re: RegexSet,
    pub reason_re_atoms: Vec<usize>,
    pub display_re: RegexSet,
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
}

impl CompiledPolicy {
    /// The time windows its knock counters use.
    pub fn windows(&self) -> impl Iterator<Item = Duration> + '_ {
        self.atoms.iter().filter_map(|a| match a.atom {
            Atom::RoomKnocks { within, .. } | Atom::UserKnocks { within, .. } => Some(within),
            _ => None,
        })
    }
}

struct Compiler<'a> {
    file: &'a str,
    source: &'a str,
    atoms: Vec<CompiledAtom>,
    problems: Vec<Problem>,
}

impl Compiler<'_> {
    fn cond(&mut self, c: &Cond) -> CCond {
        match c {
            Cond::All(cs) => CCond::All(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Any(cs) => CCond::Any(cs.iter().map(|c| self.cond(c)).collect()),
            Cond::Not(c) => CCond::Not(Box::new(self.cond(c))),
            Cond::Atom(a) => {
                let matcher = match &a.value {
                    Atom::User(g) | Atom::Server(g) => build_globset(g).map(Matcher::Globs),
                    Atom::UserRegex(r) | Atom::ReasonMatches(r) | Atom::DisplaynameMatches(r) => {
                        build_regex(r).map(Matcher::Regex)
                    }
                    Atom::ReasonContains(ws) => Ok(Matcher::Phrases(ws.iter().map(|w| words::tokenize(w)).collect())),
                    _ => Ok(Matcher::None),
                };
                let matcher = matcher.unwrap_or_else(|e| {
                    self.problems.push(Problem::new(self.file, self.source, a.at, e));
                    Matcher::None
                });
                self.atoms.push(CompiledAtom { atom: a.value.clone(), matcher });
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
    let mut c = Compiler { file: &ast.file, source, atoms: Vec::new(), problems: Vec::new() };
    let mut rules = Vec::with_capacity(ast.rules.len());
    for r in &ast.rules {
        let cond = c.cond(&r.when);
        rules.push(CompiledRule {
            name: r.name.value.clone(),
            line: r.name.at.line,
            action: r.action,
            reason: r.reason.as_ref().map(|s| s.value.clone()),
            notify: r.notify,
            cond,
        });
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let atoms = c.atoms;
    let index = build_index(&rules, &atoms).map_err(|e| {
        vec![Problem::new(&ast.file, source, ast.name.at, format!("cannot build the policy's indexes: {e}"))]
    })?;
    Ok(CompiledPolicy {
        name: ast.name.value.clone(),
        file: ast.file.clone(),
        rooms: ast.rooms.iter().map(|r| r.value.clone()).collect(),
        default: ast.default,
        dry_run: ast.dry_run,
        rules,
        atoms,
        index,
    })
}

fn build_index(rules: &[CompiledRule], atoms: &[CompiledAtom]) -> Result<Index, String> {
    let mut server_globs = Vec::new();
    let mut server_atoms = Vec::new();
    let mut user_globs = Vec::new();
    let mut user_atoms = Vec::new();
    let (mut user_re, mut user_re_atoms) = (Vec::new(), Vec::new());
    let (mut reason_re, mut reason_re_atoms) = (Vec::new(), Vec::new());
    let (mut display_re, mut display_re_atoms) = (Vec::new(), Vec::new());
    let mut words: HashMap<String, Vec<usize>> = HashMap::new();
    let mut exact = vec![false; atoms.len()];
    for (i, a) in atoms.iter().enumerate() {
        match (&a.atom, &a.matcher) {
            (Atom::Server(gs), _) => {
                for g in gs {
                    server_globs.push(g.clone());
                    server_atoms.push(i);
                }
                exact[i] = true;
            }
            (Atom::User(gs), _) => {
                for g in gs {
                    user_globs.push(g.clone());
                    user_atoms.push(i);
                }
                exact[i] = true;
            }
            (Atom::UserRegex(r), _) => {
                user_re.push(r.as_str());
                user_re_atoms.push(i);
                exact[i] = true;
            }
            (Atom::ReasonMatches(r), _) => {
                reason_re.push(r.as_str());
                reason_re_atoms.push(i);
                exact[i] = true;
            }
            (Atom::DisplaynameMatches(r), _) => {
                display_re.push(r.as_str());
                display_re_atoms.push(i);
                exact[i] = true;
            }
            (Atom::ReasonContains(_), Matcher::Phrases(ps)) => {
                for p in ps {
                    let list = words.entry(p[0].clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            _ => {}
        }
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
        server: build_globset(&server_globs)?,
        server_atoms,
        user: build_globset(&user_globs)?,
        user_atoms,
        user_re: build_regex_set(&user_re)?,
        user_re_atoms,
        reason_re: build_regex_set(&reason_re)?,
        reason_re_atoms,
        display_re: build_regex_set(&display_re)?,
        display_re_atoms,
        words,
        atom_rules,
        always,
        exact,
    })
}

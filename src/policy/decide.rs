//! Deciding a knock: the fast indexed path, the plain rule-by-rule path, and explanations.
//!
//! Missing text is treated as empty: a missing reason has length 0, matches only regexes that
//! match the empty string, and contains no words. `reason.missing: true` holds when the reason
//! is absent or blank. Lengths count characters of the trimmed text.

use std::{borrow::Cow, time::Duration};

use globset::Candidate;

pub use super::account::AccountFacts;
use super::{
    Action,
    account::{account_holds, describe_account},
    ast::Atom,
    banlist::{self, ListHit, ListSource, Unavailable},
    compile::{CCond, CompiledAtom, CompiledPolicy, ReSet},
    template, words,
};

/// What is known about a knock when it is decided. Counters and memberships are looked up by
/// the caller and handed in.
#[derive(Debug, Clone, Default)]
pub struct Knock<'a> {
    /// The knocker's full user ID.
    pub user: &'a str,
    /// The room knocked on (as shown in reason templates).
    pub room: &'a str,
    pub reason: Option<&'a str>,
    pub displayname: Option<&'a str>,
    /// Rooms (IDs and aliases) the knocker is joined to, as far as the bot knows.
    pub member_of: &'a [String],
    /// Knocks on this room within each window (the current knock included).
    pub room_knocks: &'a [(Duration, u64)],
    /// Knocks by this user on this room within each window (the current knock included).
    pub user_knocks: &'a [(Duration, u64)],
    /// The ban lists as knockwarden holds them (`None`: no list is known, and `ban_list`
    /// never holds).
    pub lists: Option<&'a dyn ListSource>,
    /// What the homeserver says of the knocker's account (`None`: not asked; `account:`
    /// conditions then take it as unknown).
    pub account: Option<&'a AccountFacts>,
    /// The room is in lockdown: a decision to accept becomes `review`.
    pub lockdown: bool,
}

impl Knock<'_> {
    /// Everything after the first `:` of the user ID (ports are kept).
    pub fn server(&self) -> &str {
        self.user.split_once(':').map(|(_, s)| s).unwrap_or("")
    }
}

/// The outcome of a decision, with what is needed to audit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub policy: String,
    /// The policy set's stored version.
    pub version: u64,
    /// The rule that decided; `None` when the policy's default did.
    pub rule: Option<String>,
    pub action: Action,
    /// The rule's reason, filled in.
    pub reason: Option<String>,
    /// The rule's own `notify`, overriding the global setting.
    pub notify: Option<bool>,
    /// The policy's `dry_run`.
    pub dry_run: bool,
    /// Why: the conditions that held, or that no rule matched.
    pub explanation: String,
    /// The ban list entry that matched, when the deciding rule has a `ban_list` that held.
    pub list: Option<ListHit>,
    /// The deciding rule's `lockdown`: the room enters lockdown for this long.
    pub lockdown: Option<Duration>,
    /// Held for review, not accepted, because the room is in lockdown (or enters it now).
    pub held_by_lockdown: bool,
}

/// How one rule fared, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: String,
    pub matched: bool,
    /// Which condition failed, or (for the deciding rule) which held.
    pub detail: String,
}

/// A decision and how every rule up to the deciding one fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub decision: Decision,
    pub rules: Vec<RuleTrace>,
}

fn count(windows: &[(Duration, u64)], within: Duration) -> u64 {
    windows.iter().find(|(d, _)| *d == within).map(|(_, n)| *n).unwrap_or(0)
}

/// What looking a knocker up in the named lists came to: the entry banning them, if any, or
/// a list that could not be asked.
type Lookup = Result<Option<ListHit>, Unavailable>;

/// Per-knock facts computed once (or lazily) and shared by the atoms.
struct Facts<'k> {
    pub(super) knock: &'k Knock<'k>,
    /// Lowercase user ID and server, for the (lowercase) globs.
    pub(super) user: Cow<'k, str>,
    pub(super) server: Cow<'k, str>,
    pub(super) words: std::cell::OnceCell<words::Tokens>,
    /// Ban list lookups made so far, by `ban_list` atom (its names' address: atoms live as
    /// long as the decision), so that deciding, explaining and filling in the reason look
    /// each up once.
    pub(super) list_hits: std::cell::RefCell<Vec<(usize, Lookup)>>,
    /// The first unavailable list a `ban_list` condition asked about: the decision is then
    /// never `accept` (fail closed).
    pub(super) unavailable: std::cell::RefCell<Option<Unavailable>>,
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) { Cow::Owned(s.to_lowercase()) } else { Cow::Borrowed(s) }
}

impl<'k> Facts<'k> {
    pub(super) fn new(knock: &'k Knock<'k>) -> Self {
        Self {
            knock,
            user: lowercase(knock.user),
            server: lowercase(knock.server()),
            words: std::cell::OnceCell::new(),
            list_hits: std::cell::RefCell::new(Vec::new()),
            unavailable: std::cell::RefCell::new(None),
        }
    }

    /// The entry of the named lists that bans the knocker, if any, or the list that could
    /// not be asked (looked up once per atom).
    pub(super) fn list_lookup(&self, names: &[String]) -> Lookup {
        let id = names.as_ptr() as usize;
        if let Some((_, hit)) = self.list_hits.borrow().iter().find(|(i, _)| *i == id) {
            return hit.clone();
        }
        let Some(lists) = self.knock.lists else { return Ok(None) };
        let hit = banlist::find_in(lists, names, self.knock.user);
        if let Err(u) = &hit {
            self.unavailable.borrow_mut().get_or_insert_with(|| u.clone());
        }
        self.list_hits.borrow_mut().push((id, hit.clone()));
        hit
    }

    /// The entry of the named lists that bans the knocker, if any.
    pub(super) fn list_hit(&self, names: &[String]) -> Option<ListHit> {
        self.list_lookup(names).ok().flatten()
    }
    pub(super) fn reason(&self) -> &str {
        self.knock.reason.unwrap_or("")
    }
    pub(super) fn words(&self) -> &words::Tokens {
        self.words.get_or_init(|| words::Tokens::new(self.reason()))
    }
}

/// Evaluates one atom with its own matcher.
fn eval_atom(a: &CompiledAtom, f: &Facts) -> bool {
    let k = f.knock;
    let re = |text: &str| a.regex_matches(text);
    match &a.atom {
        Atom::User(_) => a.globs().is_match(f.user.as_ref()),
        Atom::Server(_) => a.globs().is_match(f.server.as_ref()),
        Atom::UserRegex(_) => re(k.user),
        Atom::ReasonMatches(_) => re(f.reason()),
        Atom::DisplaynameMatches(_) => re(k.displayname.unwrap_or("")),
        Atom::ReasonContains(_) => a.phrases.iter().any(|p| f.words().contains_phrase(p)),
        Atom::ReasonMissing(m) => f.reason().trim().is_empty() == *m,
        Atom::ReasonMinLength(n) => f.reason().trim().chars().count() >= *n,
        Atom::ReasonMaxLength(n) => f.reason().trim().chars().count() <= *n,
        Atom::DisplaynameMissing(m) => k.displayname.unwrap_or("").trim().is_empty() == *m,
        Atom::MemberOf(rooms) => rooms.iter().any(|r| k.member_of.iter().any(|m| m == r)),
        Atom::BanList(names) => f.list_hit(names).is_some(),
        Atom::RoomKnocks { more_than, within } => count(k.room_knocks, *within) > *more_than,
        Atom::UserKnocks { more_than, within } => count(k.user_knocks, *within) > *more_than,
        Atom::Account(a) => account_holds(*a, k.account),
    }
}

/// The first `ban_list` of a condition tree that holds, with its entry.
fn first_list_hit(c: &CCond, atoms: &[CompiledAtom], f: &Facts) -> Option<ListHit> {
    match c {
        CCond::All(cs) | CCond::Any(cs) => cs.iter().find_map(|c| first_list_hit(c, atoms, f)),
        CCond::Not(_) => None,
        CCond::Atom(i) => match &atoms[*i].atom {
            Atom::BanList(names) => f.list_hit(names),
            _ => None,
        },
    }
}

/// Adds the atoms whose globs match `text` (lowercase) to `hits`.
fn glob_hits(set: &globset::GlobSet, atoms: &[usize], text: &str, found: &mut Vec<usize>, hits: &mut Vec<usize>) {
    if set.is_empty() {
        return;
    }
    let cand = Candidate::new(text);
    if set.is_match_candidate(&cand) {
        set.matches_candidate_into(&cand, found);
        hits.extend(found.iter().map(|&p| atoms[p]));
    }
}

/// Adds the atoms whose regexes match `text` to `hits`.
fn regex_hits(set: &ReSet, atoms: &[usize], text: &str, found: &mut Vec<usize>, hits: &mut Vec<usize>) {
    found.clear();
    set.matches_into(text, found);
    hits.extend(found.iter().map(|&p| atoms[p]));
}

fn eval(c: &CCond, atom: &mut impl FnMut(usize) -> bool) -> bool {
    match c {
        CCond::All(cs) => cs.iter().all(|c| eval(c, atom)),
        CCond::Any(cs) => cs.iter().any(|c| eval(c, atom)),
        CCond::Not(c) => !eval(c, atom),
        CCond::Atom(i) => atom(*i),
    }
}

impl CompiledPolicy {
    fn decision(&self, rule: Option<usize>, facts: &Facts, explanation: String) -> Decision {
        let knock = facts.knock;
        let (name, mut action, reason, notify, lockdown) = match rule {
            Some(i) => {
                let r = &self.rules[i];
                (Some(r.name.clone()), r.action, r.reason.clone(), r.notify, r.lockdown)
            }
            None => (None, self.default, None, None, None),
        };
        let mut explanation = explanation;
        // Fail closed: a knock is never accepted when a ban list it was to be checked against
        // could not be.
        if action == Action::Accept
            && let Some(u) = facts.unavailable.borrow().as_ref()
        {
            action = Action::Review;
            explanation = format!(
                "{explanation}; held for review, not accepted: the ban list {} is unavailable ({})",
                u.list, u.why
            );
        }
        // A room in lockdown (or entering it with this very rule) lets no one in by policy.
        let mut held_by_lockdown = false;
        if action == Action::Accept && (knock.lockdown || lockdown.is_some()) {
            action = Action::Review;
            held_by_lockdown = true;
            explanation = format!("{explanation}; held for review, not accepted: the room is in lockdown");
        }
        let rule_name = name.as_deref().unwrap_or("default");
        let list = rule.and_then(|i| first_list_hit(&self.rules[i].cond, &self.atoms, facts));
        let values = template::Values {
            user: knock.user,
            server: knock.server(),
            room: knock.room,
            rule: rule_name,
            list: list.as_ref().map_or("", |h| h.list.as_str()),
            list_reason: list.as_ref().map_or("", |h| h.reason.as_str()),
        };
        Decision {
            policy: self.name.clone(),
            version: self.version,
            reason: reason.map(|t| template::render(&t, &values)),
            list,
            rule: name,
            action,
            notify,
            dry_run: self.dry_run,
            explanation,
            lockdown,
            held_by_lockdown,
        }
    }

    /// Decides a knock using the indexes.
    pub fn decide(&self, knock: &Knock) -> Decision {
        let ix = &self.index;
        let facts = Facts::new(knock);
        let mut hits: Vec<usize> = Vec::new();
        let mut found: Vec<usize> = Vec::new();
        glob_hits(&ix.server, &ix.server_atoms, &facts.server, &mut found, &mut hits);
        glob_hits(&ix.user, &ix.user_atoms, &facts.user, &mut found, &mut hits);
        regex_hits(&ix.user_re, &ix.user_re_atoms, knock.user, &mut found, &mut hits);
        regex_hits(&ix.reason_re, &ix.reason_re_atoms, facts.reason(), &mut found, &mut hits);
        regex_hits(&ix.display_re, &ix.display_re_atoms, knock.displayname.unwrap_or(""), &mut found, &mut hits);
        hits.sort_unstable();
        hits.dedup();
        let mut candidates: Vec<u32> = Vec::with_capacity(ix.always.len() + hits.len());
        candidates.extend_from_slice(&ix.always);
        for &a in &hits {
            candidates.extend_from_slice(&ix.atom_rules[a]);
        }
        if !ix.words.is_empty() {
            for w in facts.words().iter() {
                if let Some(atoms) = ix.words.get(w) {
                    for &a in atoms {
                        candidates.extend_from_slice(&ix.atom_rules[a]);
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut atom = |i: usize| {
            if ix.exact[i] { hits.binary_search(&i).is_ok() } else { eval_atom(&self.atoms[i], &facts) }
        };
        for &r in &candidates {
            if eval(&self.rules[r as usize].cond, &mut atom) {
                let why = self.explain_rule(r as usize, &facts).detail;
                return self.decision(Some(r as usize), &facts, why);
            }
        }
        self.decision(None, &facts, self.default_why.clone())
    }

    /// Decides a knock rule by rule, without the indexes (the reference for the fast path).
    pub fn decide_plainly(&self, knock: &Knock) -> Decision {
        let facts = Facts::new(knock);
        let mut atom = |i: usize| eval_atom(&self.atoms[i], &facts);
        for (r, rule) in self.rules.iter().enumerate() {
            if eval(&rule.cond, &mut atom) {
                let why = self.explain_rule(r, &facts).detail;
                return self.decision(Some(r), &facts, why);
            }
        }
        self.decision(None, &facts, self.default_why.clone())
    }

    /// Decides a knock and says, for each rule up to the deciding one, why it did or did not
    /// match.
    pub fn explain(&self, knock: &Knock) -> Trace {
        let facts = Facts::new(knock);
        let mut rules = Vec::new();
        for (r, _) in self.rules.iter().enumerate() {
            let t = self.explain_rule(r, &facts);
            let matched = t.matched;
            rules.push(t);
            if matched {
                let why = rules.last().map(|t| t.detail.clone()).unwrap_or_default();
                return Trace { decision: self.decision(Some(r), &facts, why), rules };
            }
        }
        Trace { decision: self.decision(None, &facts, self.default_why.clone()), rules }
    }

    fn explain_rule(&self, r: usize, facts: &Facts) -> RuleTrace {
        let rule = &self.rules[r];
        let (matched, detail) = self.explain_cond(&rule.cond, facts);
        let detail = if matched && detail.is_empty() { "no conditions: always matches".to_owned() } else { detail };
        RuleTrace { rule: rule.name.clone(), matched, detail }
    }

    /// (holds, why): for a failure, the first failing condition; for a success, what held.
    fn explain_cond(&self, c: &CCond, f: &Facts) -> (bool, String) {
        match c {
            CCond::Atom(i) => {
                let a = &self.atoms[*i];
                let ok = eval_atom(a, f);
                (ok, describe(a, f, ok))
            }
            CCond::All(cs) => {
                let mut held = Vec::new();
                for c in cs {
                    let (ok, why) = self.explain_cond(c, f);
                    if !ok {
                        return (false, why);
                    }
                    held.push(why);
                }
                (true, held.join("; "))
            }
            CCond::Any(cs) => {
                let mut failed = Vec::new();
                for c in cs {
                    let (ok, why) = self.explain_cond(c, f);
                    if ok {
                        return (true, why);
                    }
                    failed.push(why);
                }
                (false, format!("none of: {}", failed.join(" / ")))
            }
            CCond::Not(c) => {
                let (ok, why) = self.explain_cond(c, f);
                (!ok, format!("not ({why})"))
            }
        }
    }
}

fn quote_list(items: &[String]) -> String {
    items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

/// Shortens user text for explanations.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    format!("{out:?}")
}

fn describe(a: &CompiledAtom, f: &Facts, ok: bool) -> String {
    let k = f.knock;
    let is = if ok { "" } else { " not" };
    let does = if ok { "" } else { " does not" };
    let verb = |yes: &str, no: &str| if ok { yes.to_owned() } else { no.to_owned() };
    match &a.atom {
        Atom::User(g) => format!("user {:?}{does} {} [{}]", k.user, verb("matches", "match"), quote_list(g)),
        Atom::Server(g) => format!("server {:?}{does} {} [{}]", k.server(), verb("matches", "match"), quote_list(g)),
        Atom::UserRegex(r) => format!("user {:?}{does} {} /{r}/", k.user, verb("matches", "match")),
        Atom::ReasonMatches(r) => format!("reason {}{does} {} /{r}/", short(f.reason()), verb("matches", "match")),
        Atom::DisplaynameMatches(r) => {
            format!("display name {}{does} {} /{r}/", short(k.displayname.unwrap_or("")), verb("matches", "match"))
        }
        Atom::ReasonContains(ws) => format!("reason{does} {} any of [{}]", verb("contains", "contain"), quote_list(ws)),
        Atom::ReasonMissing(true) => format!("reason is{is} missing"),
        Atom::ReasonMissing(false) => format!("reason is{} given", if ok { "" } else { " not" }),
        Atom::ReasonMinLength(n) => {
            format!(
                "reason has {} characters ({} {n})",
                f.reason().trim().chars().count(),
                verb("at least", "fewer than")
            )
        }
        Atom::ReasonMaxLength(n) => {
            format!(
                "reason has {} characters ({} {n})",
                f.reason().trim().chars().count(),
                verb("at most", "more than")
            )
        }
        Atom::DisplaynameMissing(true) => format!("display name is{is} missing"),
        Atom::DisplaynameMissing(false) => {
            format!("display name is{} given", if ok { "" } else { " not" })
        }
        Atom::MemberOf(rooms) => format!("knocker is{is} joined to one of [{}]", quote_list(rooms)),
        Atom::BanList(names) => match f.list_hit(names) {
            Some(h) => format!("knocker is listed on {}", banlist::describe_hit(&h)),
            None if let Err(u) = f.list_lookup(names) => {
                format!("knocker cannot be checked against {}: it is unavailable ({})", u.list, u.why)
            }
            None if k.lists.is_none() => format!("knocker is not listed on [{}] (no lists known)", quote_list(names)),
            None => format!("knocker is not listed on any of [{}]", quote_list(names)),
        },
        Atom::RoomKnocks { more_than, within } => format!(
            "{} knocks on this room within {} ({} more than {more_than})",
            count(k.room_knocks, *within),
            crate::duration::format(*within),
            verb("is", "is not")
        ),
        Atom::UserKnocks { more_than, within } => format!(
            "{} knocks by this user within {} ({} more than {more_than})",
            count(k.user_knocks, *within),
            crate::duration::format(*within),
            verb("is", "is not")
        ),
        Atom::Account(a) => describe_account(*a, k.account, ok),
    }
}

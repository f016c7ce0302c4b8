//! Ban lists: what deciding a knock against lists totalling 50,000 entries costs on top of the
//! same policy without them, and what keeping the lists costs (building one, changing a rule).
//!
//! Run with `cargo bench --bench ban_lists`. First, before criterion's groups, one list of
//! 100,000 rules (half globs, in the shapes large community lists have: `*:server` and
//! `@prefix*:server`; the rest exact user IDs) is read as knockwarden reads one (the state
//! events' JSON parsed, the list replaced, every rule written to sled in one transaction), and
//! decided against: it prints the read's time, the process's peak resident size, and the p99
//! of a decision, also right after a glob rule changed (`cargo bench --bench ban_lists --
//! large` prints only that). Two lists of 25,000 entries each, shaped like
//! community lists: mostly exact user IDs, some exact servers, hashed users (MSC4205) and
//! server globs (`*.domain`), 1 % each kind of the rest. The policy is 100 rules of the
//! realistic mix of `benches/policy.rs`, with a `ban_list` rule naming both lists first
//! ("with lists") or without it ("without"). The unlisted knocker goes through both lists and
//! every rule, then falls to the default: the worst case.

use std::{collections::HashMap, hint::black_box};

use criterion::{Criterion, criterion_group};
use knockwarden::policy::{
    BanList, Knock, PolicySet, Source,
    banlist::{self, RuleKey},
};
use serde_json::json;

#[path = "support/mix.rs"]
mod mix;

const PER_LIST: usize = 25_000;

fn policy(with_lists: bool) -> String {
    let mut y = String::from("name: bench\nrooms: [\"!room:example.org\"]\ndefault: review\nrules:\n");
    if with_lists {
        y.push_str("  - name: lists\n    when: { ban_list: [\"#list-0:example.org\", \"#list-1:example.org\"] }\n    action: ban\n    reason: \"Listed on {list}: {list_reason}\"\n");
    }
    y.push_str(&mix::rules(100));
    y
}

/// The rules of list `l`: 97 % exact users, 1 % exact servers, 1 % hashed users, 1 % server globs.
fn rules(l: usize) -> Vec<(RuleKey, banlist::ListRule)> {
    (0..PER_LIST)
        .map(|i| {
            let (kind, content) = match i % 100 {
                0 => ("m.policy.rule.server", json!({"entity": format!("spam{l}-{i}.example"), "recommendation": "m.ban"})),
                1 => (
                    "m.policy.rule.user",
                    json!({"recommendation": "m.ban", banlist::HASHES_KEY: {"sha256": banlist::sha256_b64(&format!("@hidden{l}-{i}:example.net"))}}),
                ),
                2 => ("m.policy.rule.server", json!({"entity": format!("*.evil{l}-{i}.example"), "recommendation": "m.ban"})),
                _ => ("m.policy.rule.user", json!({"entity": format!("@spammer{l}-{i}:matrix.example"), "recommendation": "m.ban", "reason": "spam"})),
            };
            let key = RuleKey { event_type: kind.into(), state_key: format!("rule:{i}") };
            let Some(banlist::Parsed::Rule(rule)) = banlist::parse(kind, &serde_json::from_value(content).unwrap(), &format!("$e{l}-{i}")) else {
                unreachable!("bench rules are bans")
            };
            (key, rule)
        })
        .collect()
}

fn lists() -> HashMap<String, BanList> {
    (0..2).map(|l| (format!("#list-{l}:example.org"), BanList::from_rules(rules(l)))).collect()
}

fn decide(c: &mut Criterion) {
    let lists = lists();
    let with = PolicySet::load(&[Source { path: "b.yaml".into(), text: policy(true) }]).unwrap();
    let without = PolicySet::load(&[Source { path: "b.yaml".into(), text: policy(false) }]).unwrap();
    let (with, without) =
        (with.policy_for("!room:example.org", &[]).unwrap(), without.policy_for("!room:example.org", &[]).unwrap());
    let base = Knock {
        user: "@alice:example.org",
        room: "!room:example.org",
        reason: Some("Hello, I would like to join the support room please"),
        displayname: Some("Alice"),
        ..Default::default()
    };
    let unlisted = Knock { lists: Some(&lists), ..base.clone() };
    assert!(with.decide(&unlisted).rule.is_none());
    for (name, user) in [
        ("exact_user", "@spammer1-503:matrix.example"),
        ("hashed_user", "@hidden0-201:example.net"),
        ("server_glob", "@x:chat.evil1-902.example"),
    ] {
        assert_eq!(
            with.decide(&Knock { user, lists: Some(&lists), ..base.clone() }).rule.as_deref(),
            Some("lists"),
            "{name}"
        );
    }
    let mut group = c.benchmark_group("ban_lists_decide");
    group.bench_function("without_lists/unlisted", |b| b.iter(|| without.decide(black_box(&base))));
    group.bench_function("with_50k_entries/unlisted", |b| b.iter(|| with.decide(black_box(&unlisted))));
    let listed = Knock { user: "@spammer1-503:matrix.example", lists: Some(&lists), ..base.clone() };
    group.bench_function("with_50k_entries/listed_user", |b| b.iter(|| with.decide(black_box(&listed))));
    let by_server = Knock { user: "@x:chat.evil1-902.example", lists: Some(&lists), ..base.clone() };
    group.bench_function("with_50k_entries/listed_server_glob", |b| b.iter(|| with.decide(black_box(&by_server))));
    group.finish();
}

fn keep(c: &mut Criterion) {
    let mut group = c.benchmark_group("ban_lists_keep");
    group.sample_size(10);
    let r = rules(0);
    group.bench_function("build_25k_entries", |b| b.iter(|| BanList::from_rules(black_box(r.clone()))));
    let mut list = BanList::from_rules(r.clone());
    let exact = r.iter().find(|(k, _)| k.state_key == "rule:503").unwrap().clone();
    group.bench_function("change_an_exact_rule", |b| {
        b.iter(|| {
            list.set(exact.0.clone(), exact.1.clone());
            list.find(black_box("@spammer0-503:matrix.example")).unwrap().is_some()
        })
    });
    let glob = r.iter().find(|(k, _)| k.state_key == "rule:902").unwrap().clone();
    group.bench_function("change_a_glob_rule_then_match", |b| {
        b.iter(|| {
            list.set(glob.0.clone(), glob.1.clone());
            list.find(black_box("@x:chat.evil0-902.example")).unwrap().is_some()
        })
    });
    group.finish();
}

/// Resident size now and at its peak, from `/proc/self/status` (KiB).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The state event of rule `i` of the 100,000-rule list, as the homeserver sends it.
fn large_rule_event(i: usize) -> String {
    let (kind, entity) = match i % 4 {
        0 => ("m.policy.rule.user", format!("*:spam{i}.example")),
        1 => ("m.policy.rule.user", format!("@bot{}*:hub{}.example", i % 97, i % 1_000)),
        _ => ("m.policy.rule.user", format!("@spammer{i}:matrix.example")),
    };
    json!({"type": kind, "state_key": format!("rule:{i}"), "event_id": format!("$e{i}"), "sender": "@mod:example.org",
           "content": {"entity": entity, "recommendation": "m.ban", "reason": "spam"}})
    .to_string()
}

fn p99(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() * 99 / 100]
}

/// The 100,000-rule list: read, then decided against (see the module's doc).
fn large_list() {
    use knockwarden::{
        lists::Lists,
        storage::{ListRecords, Store},
    };
    use std::time::Instant;
    const RULES: usize = 100_000;
    let events: Vec<String> = (0..RULES).map(large_rule_event).collect();
    let (_, before) = rss_kib();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let room: ruma::OwnedRoomId = "!list:example.org".try_into().unwrap();
    let started = Instant::now();
    let (rules, malformed) = knockwarden::actions::lists::rules_of_state(events.iter().map(String::as_str));
    assert_eq!((rules.len(), malformed), (RULES, 0));
    let lists = Lists::new(banlist::DEFAULT_MAX_RULES);
    lists.follow("#large:example.org", &room);
    let (parsed, _) = rss_kib();
    let changed = lists.replace(&room, rules, 0);
    let (built, _) = rss_kib();
    assert!(lists.recheck(room.as_str()).is_none(), "the list is usable");
    let ops: Vec<_> = changed.set.iter().map(|(k, r)| ListRecords::put_rule(room.as_str(), k, r)).collect();
    // As `actions::lists::record` writes a large list: in chunks.
    store.commit_bulk(&ops).unwrap();
    store.flush_blocking().unwrap();
    let (written, _) = rss_kib();
    let read = started.elapsed();
    drop((ops, changed, events));
    let (now, peak) = rss_kib();
    let policy = "name: bench\nrooms: [\"!room:example.org\"]\ndefault: review\nrules:\n  - name: lists\n    when: { ban_list: [\"#large:example.org\"] }\n    action: ban\n"
        .to_owned()
        + mix::rules(100).as_str();
    let set = PolicySet::load(&[Source { path: "b.yaml".into(), text: policy }]).unwrap();
    let policy = set.policy_for("!room:example.org", &[]).unwrap();
    let decide = |user: &str| {
        let view = lists.view();
        let knock = Knock {
            user,
            room: "!room:example.org",
            reason: Some("Hello, I would like to join the support room please"),
            displayname: Some("Alice"),
            lists: Some(&view),
            ..Default::default()
        };
        policy.decide(&knock)
    };
    assert_eq!(decide("@bot5xyz:hub5.example").rule.as_deref(), Some("lists"));
    assert_eq!(decide("@x:spam8.example").rule.as_deref(), Some("lists"));
    assert!(decide("@alice:example.org").rule.is_none());
    let mut steady = Vec::new();
    for i in 0..10_000 {
        let user =
            if i % 2 == 0 { "@alice:example.org".to_owned() } else { format!("@spammer{}:matrix.example", i * 4 + 2) };
        let t = Instant::now();
        black_box(decide(&user));
        steady.push(t.elapsed());
    }
    // A glob rule changes (as a pushed event would change it), then the next knock is decided.
    let mut after_change = Vec::new();
    for i in 0..2_000 {
        let key = RuleKey { event_type: "m.policy.rule.user".into(), state_key: format!("rule:new{i}") };
        let content = json!({"entity": format!("@new{i}*:fresh{i}.example"), "recommendation": "m.ban"});
        let parsed =
            banlist::parse("m.policy.rule.user", &serde_json::from_value(content).unwrap(), &format!("$n{i}")).unwrap();
        let t = Instant::now();
        lists.apply(room.as_str(), key, parsed);
        black_box(lists.recheck(room.as_str()));
        black_box(decide(&format!("@new{i}x:fresh{i}.example")));
        after_change.push(t.elapsed());
    }
    println!(
        "ban_lists_large: {RULES} rules read in {:.2} s; RSS {} MiB (peak {} MiB; {} MiB before, {} parsed, {} the list built, {} written to sled); decision p99 {:.1} µs, right after a glob rule changed (change included) {:.1} µs",
        read.as_secs_f64(),
        now / 1024,
        peak / 1024,
        before / 1024,
        parsed / 1024,
        built / 1024,
        written / 1024,
        p99(steady).as_secs_f64() * 1e6,
        p99(after_change).as_secs_f64() * 1e6,
    );
}

criterion_group!(benches, decide, keep);

fn main() {
    large_list();
    if std::env::args().any(|a| a == "large") {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! Ban lists: what deciding a knock against lists totalling 50,000 entries costs on top of the
//! same policy without them, and what keeping the lists costs (building one, changing a rule).
//!
//! Run with `cargo bench --bench ban_lists`. Two lists of 25,000 entries each, shaped like
//! community lists: mostly exact user IDs, some exact servers, hashed users (MSC4205) and
//! server globs (`*.domain`), 1 % each kind of the rest. The policy is 100 rules of the
//! realistic mix of `benches/policy.rs`, with a `ban_list` rule naming both lists first
//! ("with lists") or without it ("without"). The unlisted knocker goes through both lists and
//! every rule, then falls to the default: the worst case.

use std::{collections::HashMap, hint::black_box};

use criterion::{Criterion, criterion_group, criterion_main};
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
            let Some(banlist::Parsed::Rule(rule)) = banlist::parse(kind, &content, &format!("$e{l}-{i}")) else {
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
            list.find(black_box("@spammer0-503:matrix.example")).is_some()
        })
    });
    let glob = r.iter().find(|(k, _)| k.state_key == "rule:902").unwrap().clone();
    group.bench_function("change_a_glob_rule_then_match", |b| {
        b.iter(|| {
            list.set(glob.0.clone(), glob.1.clone());
            list.find(black_box("@x:chat.evil0-902.example")).is_some()
        })
    });
    group.finish();
}

criterion_group!(benches, decide, keep);
criterion_main!(benches);

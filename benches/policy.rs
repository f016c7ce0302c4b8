//! Policy engine speed: deciding a knock and loading policies, at 10, 1,000 and 10,000 rules.
//!
//! Run with `cargo bench --bench policy`. The rules are a realistic mix, in equal parts:
//! server globs, user globs, user regexes, reason regexes and word lists. The knock that
//! "matches nothing" goes through every index and falls to the default; the "last rule" knock
//! is decided by the last rule (a worst case for first-match order).

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use knockwarden::policy::{Knock, PolicySet, Source};

#[path = "support/mix.rs"]
mod mix;

/// A policy of `n` rules of the realistic mix.
fn policy(n: usize) -> String {
    let mut y = String::from("name: bench\nrooms: [\"!room:example.org\"]\ndefault: review\nrules:\n");
    y.push_str(&mix::rules(n));
    y
}

fn load(n: usize) -> PolicySet {
    PolicySet::load(&[Source { path: "bench.yaml".into(), text: policy(n) }]).expect("the bench policy loads")
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for n in [10, 1_000, 10_000] {
        let set = load(n);
        let p = set.policy_for("!room:example.org", &[]).unwrap();
        let nothing = Knock {
            user: "@alice:example.org",
            room: "!room:example.org",
            reason: Some("Hello, I would like to join the support room please"),
            displayname: Some("Alice"),
            ..Default::default()
        };
        assert!(p.decide(&nothing).rule.is_none());
        group.bench_with_input(BenchmarkId::new("matches_nothing", n), &nothing, |b, k| {
            b.iter(|| p.decide(black_box(k)))
        });

        let last = n - 1;
        let reason = format!("hi, phrase {last} here");
        let last_rule = Knock { reason: Some(&reason), ..nothing.clone() };
        assert_eq!(p.decide(&last_rule).rule.as_deref(), Some(format!("rule-{last}").as_str()));
        group.bench_with_input(BenchmarkId::new("last_rule", n), &last_rule, |b, k| b.iter(|| p.decide(black_box(k))));
    }
    group.finish();
}

fn load_and_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [10, 1_000, 10_000] {
        let text = policy(n);
        group.bench_with_input(BenchmarkId::new("load_and_compile", n), &text, |b, t| {
            b.iter(|| PolicySet::load(&[Source { path: "bench.yaml".into(), text: t.clone() }]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, decide, load_and_compile);
criterion_main!(benches);

//! Actions at scale: how fast knockwarden carries out its decisions, and whether one
//! knocker's trouble delays the others.
//!
//! Run with `cargo bench --bench actions` (all scenarios) or `cargo bench --bench actions --
//! SCENARIO` with one of:
//!
//! - `paced`: 5,000 knocks at 1,000/s against an instant fake homeserver: knock received ->
//!   invite sent, p50/p99.
//! - `one-bad`: the same, with one knocker first whose invites always fail with 502: the
//!   others' p50/p99 (compare with `paced`).
//! - `slow`: 2,000 knocks at once against a fake homeserver that answers every request after
//!   50 ms: actions per second.
//! - `unpaced`: Synapse-shaped traffic as fast as it is acknowledged (100-event transactions,
//!   10 % knocks, one transaction in flight) for 5 s: intake and action rates, the backlog
//!   when sending stops, and the last knock's lag (its transaction sent -> its invite sent).
//!
//! knockwarden runs in this process (the real `Application`) against the test suite's fake
//! homeserver, as in `benches/pipeline.rs`.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::percentile;

const ROOM: &str = "!bench:test.local";
const POLICY: &str = "rooms: [\"!bench:test.local\"]\nrules:\n  - { name: everyone, action: accept }\n";

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        if run("paced") {
            paced(false).await;
        }
        if run("one-bad") {
            paced(true).await;
        }
        if run("slow") {
            slow().await;
        }
        if run("unpaced") {
            unpaced().await;
        }
    });
}

fn users(n: usize, tag: &str) -> Vec<String> {
    // Knockers of the homeserver itself: requests about another server's users are capped
    // per server (homeserver.max_requests_per_server), which would be measured instead.
    (0..n).map(|i| format!("@{tag}{i}:test.local")).collect()
}

/// Waits until `user` is invited (a cheap look-up: the harness must not hold the fake's
/// lock); false if not within `within`.
async fn until_invited(bench: &support::Bench, user: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while bench.hs.membership(ROOM, user).as_deref() != Some("invite") {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// 5,000 knocks at 1,000/s (one transaction in flight, each carrying what arrived meanwhile);
/// with `bad`, one knocker whose invites always fail knocks first.
async fn paced(bad: bool) {
    const RATE: u64 = 1_000;
    const TOTAL: usize = 5_000;
    let bench = support::start(POLICY, "").await;
    let client = reqwest::Client::new();
    let mut txn = 0;
    if bad {
        let bad = "@unreachable:down.example";
        bench.hs.fail_user(bad, 502);
        bench.hs.set_membership(ROOM, bad, "knock");
        txn += 1;
        bench.put(&client, txn, vec![support::knock(usize::MAX, ROOM, bad)]).await;
        let store = bench.store.clone();
        while !store.outbox().all().unwrap().iter().any(|(_, e)| e.attempts >= 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let users = users(TOTAL, "knocker");
    for u in &users {
        bench.hs.set_membership(ROOM, u, "knock");
    }
    let (sent_at, _, _) = bench.send_paced(&client, ROOM, &users, RATE, txn).await;
    let label = if bad { "one-bad (one knocker's invites always 502)" } else { "paced" };
    if !until_invited(&bench, users.last().unwrap(), Duration::from_secs(60)).await {
        let n = bench
            .hs
            .requests_to("POST", "/invite")
            .iter()
            .filter(|r| sent_at.contains_key(r.body["user_id"].as_str().unwrap_or_default()))
            .count();
        println!("{label}: {TOTAL} knocks at {RATE}/s; only {n} invited within 60 s of the last knock");
        bench.stop().await;
        return;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat: Vec<Duration> = bench
        .hs
        .requests_to("POST", "/invite")
        .iter()
        .filter_map(|r| sent_at.get(r.body["user_id"].as_str()?).map(|t| r.at.duration_since(*t)))
        .collect();
    assert_eq!(lat.len(), users.len(), "every knock is invited once");
    lat.sort();
    println!(
        "{label}: {TOTAL} knocks at {RATE}/s; knock received -> invite sent: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    bench.stop().await;
}

/// 2,000 knocks at once, every request answered after 50 ms.
async fn slow() {
    const TOTAL: usize = 2_000;
    let bench = support::start(POLICY, "").await;
    bench.hs.delay("/_matrix/client/", Duration::from_millis(50));
    let users = users(TOTAL, "slow");
    for u in &users {
        bench.hs.set_membership(ROOM, u, "knock");
    }
    let client = reqwest::Client::new();
    let start = Instant::now();
    for (n, chunk) in users.chunks(100).enumerate() {
        let events = chunk.iter().enumerate().map(|(i, u)| support::knock(n * 100 + i, ROOM, u)).collect();
        bench.put(&client, n as u64 + 1, events).await;
    }
    let sent = start.elapsed();
    for u in &users {
        assert!(until_invited(&bench, u, Duration::from_secs(600)).await, "{u} not invited");
    }
    let took = start.elapsed();
    let invites = bench.hs.requests_to("POST", "/invite").len();
    assert_eq!(invites, TOTAL);
    println!(
        "slow (50 ms per request): {TOTAL} knocks sent in {sent:.2?}, all invited after {took:.2?}: {:.0} actions/s",
        TOTAL as f64 / took.as_secs_f64()
    );
    bench.stop().await;
}

/// A Synapse-shaped event that knockwarden does not need: a message in a room it does not manage.
fn chatter(i: usize) -> Value {
    json!({"event_id": format!("$m{i}"), "room_id": format!("!chat{}:elsewhere.example", i % 50),
           "sender": format!("@talker{}:elsewhere.example", i % 300), "type": "m.room.message",
           "content": {"msgtype": "m.text", "body": "just chatting about the weather and other things"},
           "origin_server_ts": 1_795_403_555_095u64, "unsigned": {"age": 12}})
}

/// Transactions of 100 events (10 knocks), each sent as soon as the last was acknowledged.
async fn unpaced() {
    const SECONDS: u64 = 5;
    let bench = support::start(POLICY, "").await;
    let client = reqwest::Client::new();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut knocks = 0;
    let mut other = 0;
    let mut txn = 0;
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(SECONDS) {
        let mut events = Vec::with_capacity(100);
        for j in 0..100 {
            if j % 10 == 0 {
                let u = format!("@wave{knocks}:test.local");
                bench.hs.set_membership(ROOM, &u, "knock");
                events.push(support::knock(knocks, ROOM, &u));
                last = u;
                knocks += 1;
            } else {
                events.push(chatter(other));
                other += 1;
            }
        }
        let t = Instant::now();
        for e in events.iter().filter(|e| e["type"] == "m.room.member") {
            sent_at.insert(e["state_key"].as_str().unwrap().to_owned(), t);
        }
        txn += 1;
        bench.put(&client, txn, events).await;
    }
    let sending = start.elapsed();
    let backlog = bench.store.outbox().len();
    let invited_by_then = bench.hs.requests_to("POST", "/invite").len();
    assert!(until_invited(&bench, &last, Duration::from_secs(600)).await, "{last} not invited");
    let invites = bench.hs.requests_to("POST", "/invite");
    let last_at = invites.iter().find(|r| r.body["user_id"] == last.as_str()).unwrap().at;
    let lag = last_at.duration_since(sent_at[&last]);
    println!(
        "unpaced: {txn} transactions of 100 events ({knocks} knocks) in {sending:.2?}: {:.0} knocks/s taken in, {:.0} invites/s while sending; backlog when sending stopped {backlog}; last knock's lag {lag:.2?}",
        knocks as f64 / sending.as_secs_f64(),
        invited_by_then as f64 / sending.as_secs_f64(),
    );
    bench.stop().await;
}

//! Pipeline latency: from the moment a transaction with a knock reaches knockwarden to the
//! moment the invite request reaches the homeserver, at 1,000 knocks per second.
//!
//! Run with `cargo bench --bench pipeline`. knockwarden runs in this process (the real
//! `Application`: HTTP server, sled on a temporary directory, worker, runner, matrix-sdk
//! client) against the in-process fake homeserver of the test suite. The sender plays Synapse:
//! one transaction in flight at a time, each carrying every knock that arrived meanwhile.

mod support;

use std::time::{Duration, Instant};

use support::percentile;

const ROOM: &str = "!bench:test.local";
const RATE: u64 = 1_000;
const SECONDS: u64 = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let bench =
        support::start(&format!("rooms: [\"{ROOM}\"]\nrules:\n  - {{ name: everyone, action: accept }}\n"), "").await;
    let hs = bench.hs.clone();

    let total = RATE * SECONDS;
    // Knockers of the homeserver itself: requests about another server's users are capped
    // per server (homeserver.max_requests_per_server), which would be measured instead.
    let users: Vec<String> = (0..total).map(|i| format!("@knocker{i}:test.local")).collect();
    for u in &users {
        hs.set_membership(ROOM, u, "knock");
    }
    let client = reqwest::Client::new();
    let start = Instant::now();
    let (sent_at, txn, mut batches) = bench.send_paced(&client, ROOM, &users, RATE, 0).await;
    let sending = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Poll cheaply (a look-up, not a copy of every request) so the harness does not hold the
    // fake homeserver's lock while knockwarden is talking to it.
    while hs.membership(ROOM, users.last().unwrap()).as_deref() != Some("invite") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let invites = hs.requests_to("POST", "/invite");
    assert_eq!(invites.len(), users.len(), "every knock is invited once");

    let mut latencies: Vec<Duration> = invites
        .iter()
        .map(|r| {
            let user = r.body["user_id"].as_str().unwrap();
            r.at.duration_since(sent_at[user])
        })
        .collect();
    latencies.sort();
    batches.sort();
    println!(
        "pipeline: {total} knocks at {RATE}/s in {txn} transactions (median {} knocks each), sent in {sending:.2?}",
        percentile(&batches, 0.5)
    );
    println!(
        "transaction received -> invite sent: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    bench.stop().await;
}

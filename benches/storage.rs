//! On-disk growth: what 1,000 knocks add to the database, and that retention keeps it bounded.
//!
//! Run with `cargo bench --bench storage`. The real `Application` on a temporary database with
//! the test suite's fake homeserver; knocks arrive in 100-event transactions, each accepted by
//! the policy (an audit entry, an invite, the bot's invite pushed back as Synapse does), whose
//! knock-wave rule counts knocks over 5 s.
//! Phase 1 (default retention): 10,000 knocks, with the database measured after every 1,000.
//! Phase 2 (`retention.events: 2s`, `retention.audit: 2s`): the same stream at about 1,000
//! knocks a second for 20 s; the entries kept level off instead of growing.

mod support;

use std::{path::Path, time::Duration};

use serde_json::json;

const ROOM: &str = "!bench:test.local";
const BOT: &str = "@knockwarden:test.local";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        phase("default retention", "", 10, Duration::ZERO).await;
        phase("retention 2s", "retention: {events: 2s, audit: 2s}\n", 20, Duration::from_millis(1_000)).await;
    });
}

async fn phase(label: &str, extra: &str, rounds: usize, pause: Duration) {
    // A knock-wave rule (that never fires here) makes knockwarden count knocks over 5 s.
    let policy = format!(
        "rooms: [\"{ROOM}\"]\nrules:\n  - {{ name: wave, when: {{ room_knocks: {{ more_than: 1000000, within: 5s }} }}, action: review }}\n  - {{ name: everyone, action: accept }}\n"
    );
    let bench = support::start(&policy, extra).await;
    let client = reqwest::Client::new();
    let db = bench.dir.path().join("data/knockwarden");
    println!("{label}:");
    println!("  knocks   disk (KiB)   entries   key+value bytes   largest trees (entries)");
    // The bot is in the room, so every membership change there is pushed and kept.
    let join = json!({"event_id": "$bot-join", "room_id": ROOM, "sender": BOT, "state_key": BOT,
        "type": "m.room.member", "content": {"membership": "join"}, "origin_server_ts": 1_795_403_555_095u64});
    let res = client.put(format!("{}/0", bench.url)).bearer_auth(&bench.hs_token).json(&json!({"events": [join]}));
    assert_eq!(res.send().await.unwrap().status(), 200);
    while !bench.store.outbox().is_empty() || bench.store.journal().backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut txn = 0;
    let mut last_disk = dir_size(&db);
    for round in 0..rounds {
        for batch in 0..10 {
            let events: Vec<_> = (0..100)
                .flat_map(|j| {
                    let i = round * 1_000 + batch * 100 + j;
                    let user = format!("@knocker{i}:elsewhere.example");
                    bench.hs.set_membership(ROOM, &user, "knock");
                    // The knock, and the invite knockwarden sent for the previous one, pushed back.
                    let mut evs = vec![support::knock(i, ROOM, &user)];
                    if i > 0 {
                        let prev = format!("@knocker{}:elsewhere.example", i - 1);
                        evs.push(json!({"event_id": format!("$i{i}"), "room_id": ROOM, "sender": BOT,
                            "state_key": prev, "type": "m.room.member", "content": {"membership": "invite"},
                            "origin_server_ts": 1_795_403_555_095u64}));
                    }
                    evs
                })
                .collect();
            txn += 1;
            bench.put(&client, txn, events).await;
        }
        while !bench.store.outbox().is_empty() || bench.store.journal().backlog() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bench.store.flush().await.unwrap();
        tokio::time::sleep(pause).await;
        let disk = dir_size(&db);
        let stats = bench.store.tree_stats().unwrap();
        let entries: u64 = stats.iter().map(|s| s.entries).sum();
        let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
        let mut top: Vec<_> = stats.iter().filter(|s| s.entries > 0).collect();
        top.sort_by_key(|s| std::cmp::Reverse(s.bytes));
        let top: Vec<String> = top.iter().take(4).map(|s| format!("{} {}", s.name, s.entries)).collect();
        println!(
            "  {:>6}   {:>10}   {:>7}   {:>15}   {}   (+{} KiB on disk)",
            (round + 1) * 1_000,
            disk / 1024,
            entries,
            bytes,
            top.join(", "),
            disk.saturating_sub(last_disk) / 1024
        );
        last_disk = disk;
    }
    bench.stop().await;
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

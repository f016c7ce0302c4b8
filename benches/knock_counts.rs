//! Knock counters under a wave: what counting a room's knocks in a window costs per knock.
//!
//! Run with `cargo bench --bench knock_counts`. Through the public `Store` on a temporary
//! database: N knocks on one room (1,000, 10,000, 50,000), all inside the window; then the
//! mean time of one count as the worker makes it (`Activity::room_knocks_since`: in memory, with
//! what the batch staged) against counting the same keys one by one in sled
//! (`Store::count_range`, how it was counted before). A policy's `room_knocks` condition
//! makes the worker count once per knock and window.

use std::time::Instant;

use knockwarden::storage::{Activity, Store, T};

const ROOM: &str = "!wave:example.org";

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut written = 0u64;
    for n in [1_000u64, 10_000, 50_000] {
        let mut ops = Vec::new();
        while written < n {
            ops.extend(Activity::record(ROOM, &format!("@u{written}:example.org"), 1_000_000 + written, written));
            written += 1;
            if ops.len() >= 2_000 {
                store.commit(&ops).unwrap();
                ops.clear();
            }
        }
        store.commit(&ops).unwrap();
        // Enough counts to take milliseconds, so one interruption of the thread does not
        // show as a mean several times the others.
        let rounds = 20_000;
        let started = Instant::now();
        for _ in 0..rounds {
            assert_eq!(store.activity().room_knocks_since(ROOM, 0).unwrap(), n);
        }
        let now = started.elapsed() / rounds;
        let mut from = ROOM.as_bytes().to_vec();
        from.push(0);
        from.extend_from_slice(&0u64.to_be_bytes());
        let mut to = ROOM.as_bytes().to_vec();
        to.push(1);
        let by_key_rounds = 20;
        let started = Instant::now();
        for _ in 0..by_key_rounds {
            assert_eq!(store.count_range(T::RoomKnockTimes, from.clone(), to.clone()).unwrap(), n);
        }
        let by_key = started.elapsed() / by_key_rounds;
        println!(
            "knock counts: {n:>6} knocks in the window: {now:>10.2?} per count (key by key in sled: {by_key:.2?})"
        );
    }
    // As the worker counts inside its batch: each knock staged, then counted, 128 a batch;
    // against the same batches staged and committed without counting, in turns.
    let batches = 40u64;
    let mut per = [std::time::Duration::ZERO; 2];
    for round in 0..batches {
        let count = round % 2 == 0;
        let started = Instant::now();
        store
            .batch(|| {
                for _ in 0..128 {
                    let user = format!("@w{written}:example.org");
                    store.commit(&Activity::record(ROOM, &user, 1_000_000 + written, written))?;
                    written += 1;
                    if count {
                        assert_eq!(store.activity().room_knocks_since(ROOM, 0)?, written);
                    }
                }
                Ok(())
            })
            .unwrap();
        per[usize::from(count)] += started.elapsed();
    }
    let [without, with] = per.map(|d| d / (batches / 2 * 128) as u32);
    println!(
        "knock counts: inside batches of 128 knocks on one room: {:>10.2?} per count ({with:.2?} per knock staged, counted and committed; {without:.2?} without the count)",
        with.saturating_sub(without)
    );
}

//! The floor under every write knockwarden makes: what sled itself costs per insert on this
//! machine, with no knockwarden code around it.
//!
//! Run with `cargo bench --bench sled_floor`. Eight trees (as many as a knock touches), 20,000
//! entries of eight inserts each (100-byte values; keys alternately sequential and user/room
//! pairs, as knockwarden's are), in sled's `HighThroughput` mode as the service opens it:
//! - one sled transaction per entry, then per 10 and per 100 entries;
//! - plain inserts, no transaction.
//!
//! Prints microseconds per entry (eight inserts).

use std::time::Instant;

use sled::Transactional;

const ENTRIES: u64 = 20_000;

fn key(tree: usize, n: u64) -> Vec<u8> {
    if tree.is_multiple_of(2) {
        n.to_be_bytes().to_vec()
    } else {
        format!("@user{}:example.org\0!room{}:example.org", n * 7919 % 100_000, n % 50).into_bytes()
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).open().unwrap();
    let trees: Vec<sled::Tree> = (0..8).map(|i| db.open_tree(format!("t{i}")).unwrap()).collect();
    let value = vec![7u8; 100];
    for (round, batch) in [1u64, 10, 100].into_iter().enumerate() {
        let base = round as u64 * 1_000_000;
        let started = Instant::now();
        let mut n = 0;
        while n < ENTRIES {
            let done: Result<(), sled::transaction::TransactionError<()>> = trees.as_slice().transaction(|view| {
                for j in 0..batch {
                    for (t, tree) in view.iter().enumerate() {
                        tree.insert(key(t, base + n + j), value.as_slice())?;
                    }
                }
                Ok(())
            });
            done.unwrap();
            n += batch;
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / ENTRIES as f64;
        println!("sled floor: one transaction per {batch:>3} entries: {us:6.1} µs per entry of 8 inserts");
    }
    let started = Instant::now();
    for n in 0..ENTRIES {
        for (t, tree) in trees.iter().enumerate() {
            tree.insert(key(t, 9_000_000 + n), value.as_slice()).unwrap();
        }
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / ENTRIES as f64;
    println!("sled floor: plain inserts, no transaction: {us:6.1} µs per entry of 8 inserts");
}

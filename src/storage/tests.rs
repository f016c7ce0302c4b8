//! The store's own tests: commits, batches, flushes, formats.

use super::*;
use std::panic::AssertUnwindSafe;

/// Many writers flushing at once, as transactions and catch-ups do under load: every
/// flush returns. (With sled's own `flush_async`, the flushes starve sled's I/O pool and
/// the database stops; this test then times out.)
#[test]
fn concurrent_flushes_all_return() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = s.clone();
    // On its own thread: a stopped database blocks every thread that touches it.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..32u64)
                .map(|t| {
                    let s = writer.clone();
                    tokio::spawn(async move {
                        for i in 0..40u64 {
                            let key = format!("{t}-{i}").into_bytes();
                            s.commit(&[Op::Put { tree: T::Meta, key, value: vec![7; 2048] }]).unwrap();
                            s.flush().await.unwrap();
                        }
                    })
                })
                .collect();
            futures_util::future::join_all(tasks).await;
        });
        let _ = tx.send(());
    });
    let done = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert!(done.is_ok(), "the flushes did not all return within 60 s: the database stopped");
    assert_eq!(s.len(T::Meta), 32 * 40 + 1);
}

fn put(tree: T, key: &str, value: &str) -> Op {
    Op::Put { tree, key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
}

fn keys(s: &Store, tree: T, prefix: &str) -> Vec<String> {
    s.scan_keys(tree, prefix.as_bytes()).unwrap().into_iter().map(|k| String::from_utf8(k).unwrap()).collect()
}

#[test]
fn a_batch_reads_what_it_staged_and_commits_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.commit(&[put(T::Knocks, "a1", "1"), put(T::Knocks, "a2", "2"), put(T::Knocks, "b1", "3")]).unwrap();
    let other = s.clone();
    s.batch(|| {
        s.commit(&[put(T::Knocks, "a3", "4"), Op::del(T::Knocks, "a1"), put(T::Knocks, "a2", "5")])?;
        s.commit(&[Op::Add { counter: "n".into(), by: 2 }, Op::Add { counter: "n".into(), by: 3 }])?;
        // This thread sees the batch; another thread does not, yet.
        assert_eq!(keys(&s, T::Knocks, "a"), ["a2", "a3"]);
        assert_eq!(s.get_json::<u64>(T::Knocks, b"a2")?, Some(5));
        assert!(!s.contains(T::Knocks, b"a1")?);
        assert_eq!(s.count_range(T::Knocks, b"a".to_vec(), b"b".to_vec())?, 2);
        assert_eq!(s.counter("n")?, 5);
        let first = s.first_after::<u64>(T::Knocks, None)?.unwrap();
        assert_eq!((first.0.as_slice(), first.1), (b"a2".as_slice(), 5));
        let next = s.first_after::<u64>(T::Knocks, Some(b"a2"))?.unwrap();
        assert_eq!(next.0, b"a3");
        let seen = std::thread::scope(|t| t.spawn(|| keys(&other, T::Knocks, "a")).join().unwrap());
        assert_eq!(seen, ["a1", "a2"]);
        Ok(())
    })
    .unwrap();
    assert_eq!(keys(&s, T::Knocks, ""), ["a2", "a3", "b1"]);
    assert_eq!(s.get_json::<u64>(T::Knocks, b"a2").unwrap(), Some(5));
    assert_eq!(s.counter("n").unwrap(), 5);
}

#[test]
fn a_failed_or_panicking_batch_writes_nothing_and_a_mark_undoes_what_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let failed = s.batch(|| {
        s.commit(&[put(T::Knocks, "a", "1")])?;
        Err::<(), _>(StoreError::Corrupt { tree: "knocks", message: "test".into() })
    });
    assert!(failed.is_err());
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
        s.batch::<()>(|| {
            s.commit(&[put(T::Knocks, "b", "1")])?;
            panic!("in a batch")
        })
    }));
    assert!(panicked.is_err());
    assert!(keys(&s, T::Knocks, "").is_empty());
    // The thread is out of the batch: a commit writes at once.
    s.commit(&[put(T::Knocks, "c", "1")]).unwrap();
    assert_eq!(keys(&s, T::Knocks, ""), ["c"]);
    s.batch(|| {
        s.commit(&[put(T::Knocks, "d", "1")])?;
        let mark = s.staged_mark();
        s.commit(&[put(T::Knocks, "e", "1"), Op::del(T::Knocks, "c")])?;
        s.unstage_to(mark);
        assert_eq!(keys(&s, T::Knocks, ""), ["c", "d"]);
        Ok(())
    })
    .unwrap();
    assert_eq!(keys(&s, T::Knocks, ""), ["c", "d"]);
}

#[test]
fn a_batch_counts_the_queues_and_feeds_the_runner_when_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.outbox().watch();
    s.batch(|| {
        s.commit(&[put(T::Outbox, "\0\0\0\0\0\0\0\x07", "{}")])?;
        assert_eq!(s.queue_depth(Queue::Outbox), 0, "not committed yet");
        Ok(())
    })
    .unwrap();
    assert_eq!(s.queue_depth(Queue::Outbox), 1);
    assert_eq!(s.outbox().take_queued().len(), 1);
}

#[test]
fn commit_is_atomic_and_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.commit(&[
            Op::put_json(T::Meta, "a", &1u32),
            Op::put_json(T::Rooms, "b", &"x"),
            Op::Add { counter: "n".into(), by: 2 },
            Op::Add { counter: "n".into(), by: 3 },
        ])
        .unwrap();
        s.flush_blocking().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.get_json::<u32>(T::Meta, b"a").unwrap(), Some(1));
    assert_eq!(s.get_json::<String>(T::Rooms, b"b").unwrap().as_deref(), Some("x"));
    assert_eq!(s.counter("n").unwrap(), 5);
    assert!(s.is_healthy());
}

#[test]
fn the_format_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.format().unwrap(), FORMAT);
        s.tree(T::Meta).insert(FORMAT_KEY, "4").unwrap();
        s.flush_blocking().unwrap();
    }
    let err = Store::open(dir.path()).err().expect("a newer format is refused").to_string();
    assert!(err.contains("written by a newer knockwarden (format 4; this one reads up to 3)"), "{err}");
}

#[test]
fn an_unversioned_database_is_upgraded_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        // As the first release left it: no format, no indexes marker.
        s.tree(T::Meta).remove(FORMAT_KEY).unwrap();
        s.flush_blocking().unwrap();
        assert_eq!(s.format().unwrap(), 1);
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.format().unwrap(), FORMAT);
}

#[test]
fn a_format_2_database_loses_the_indexes_by_user_and_keeps_its_knocks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = KnockRecord {
        room_id: ruma::owned_room_id!("!r:x"),
        user_id: ruma::owned_user_id!("@u:x"),
        event_id: ruma::owned_event_id!("$k"),
        reason: None,
        displayname: None,
        origin_server_ts: 1,
        audit_id: None,
    };
    {
        let s = Store::open(dir.path()).unwrap();
        s.commit(&Knocks::put(&rec)).unwrap();
        // As format 2 left it: knocks and memberships also indexed by user.
        s.db.open_tree("knockers").unwrap().insert(pair_key("@u:x", "!r:x"), b"").unwrap();
        s.db.open_tree("memberships").unwrap().insert(pair_key("@m:x", "!r:x"), b"").unwrap();
        s.tree(T::Meta).insert(FORMAT_KEY, "2").unwrap();
        s.flush_blocking().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.format().unwrap(), FORMAT);
    let names: Vec<Vec<u8>> = s.db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    assert!(!names.contains(&b"knockers".to_vec()) && !names.contains(&b"memberships".to_vec()), "{names:?}");
    assert!(s.knocks().is_knocker("@u:x"), "the knocker is known from the knocks");
    assert_eq!(s.knocks().of("@u:x").unwrap().len(), 1);
}

#[test]
fn pair_keys_split_back() {
    let k = pair_key("!r:x", "@u:y:8448");
    assert_eq!(split_pair(&k), Some(("!r:x".into(), "@u:y:8448".into())));
}

#![allow(dead_code)] // each benchmark uses part of it

//! What the benchmarks share: the real `Application` on a temporary database, against the
//! test suite's in-process fake homeserver.

pub use knockwarden_test_support::fake_homeserver;

use std::time::Duration;

use fake_homeserver::FakeHomeserver;
use knockwarden::{config::Settings, registration::NewRegistration, startup::Application, storage::Store};

/// The value at fraction `p` (0.5 for the median, 0.99 for p99) of `sorted`, which is sorted
/// and not empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A running knockwarden for a benchmark.
pub struct Bench {
    pub hs: FakeHomeserver,
    pub dir: tempfile::TempDir,
    pub store: Store,
    /// Where transactions are PUT (append `/{txnId}`).
    pub url: String,
    pub hs_token: String,
    stopper: knockwarden::startup::Stopper,
    running: tokio::task::JoinHandle<Result<(), knockwarden::startup::StartError>>,
}

/// Writes the bot's registration (`registration.yaml`) into `dir`, as the config expects it;
/// returns its `hs_token`.
pub fn registration(dir: &std::path::Path) -> String {
    NewRegistration {
        id: "knockwarden",
        url: "http://127.0.0.1:0",
        localpart: "knockwarden",
        server_name: ruma::server_name!("test.local"),
    }
    .write(&dir.join("registration.yaml"), false)
    .unwrap()
    .hs_token
}

/// Starts knockwarden with one policy file and `extra_config` appended to the config; returns
/// once start-up actions are done.
pub async fn start(policy: &str, extra_config: &str) -> Bench {
    let hs = FakeHomeserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hs_token = registration(dir.path());
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/bench.yaml"), policy).unwrap();
    let config = format!(
        "homeserver: {{url: \"{}\", server_name: test.local}}\nappservice: {{listen: \"127.0.0.1:0\"}}\ncontrol_room: \"!ctrl:test.local\"\nnotify: none\n{extra_config}",
        hs.url()
    );
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let app = Application::build(Settings::load(&dir.path().join("config.yaml")).unwrap()).await.unwrap();
    let url = format!("http://127.0.0.1:{}/_matrix/app/v1/transactions", app.port());
    let store = app.store().clone();
    let stopper = app.stopper();
    let running = tokio::spawn(app.run_until_stopped());
    while !store.outbox().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Bench { hs, dir, store, url, hs_token, stopper, running }
}

impl Bench {
    /// PUTs transaction `txn` with `events`, as the homeserver would; it must be taken in.
    pub async fn put(&self, client: &reqwest::Client, txn: u64, events: Vec<serde_json::Value>) {
        let res = client
            .put(format!("{}/{txn}", self.url))
            .bearer_auth(&self.hs_token)
            .json(&serde_json::json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    /// Sends knocks by `users` on `room` at `rate` per second as Synapse would: one
    /// transaction in flight, each carrying every knock that has arrived meanwhile (numbered
    /// from `txn + 1`). Returns when each user's knock was sent, the last transaction number,
    /// and the number of knocks in each transaction.
    pub async fn send_paced(
        &self,
        client: &reqwest::Client,
        room: &str,
        users: &[String],
        rate: u64,
        mut txn: u64,
    ) -> (std::collections::HashMap<String, std::time::Instant>, u64, Vec<usize>) {
        let mut sent_at = std::collections::HashMap::new();
        let mut batches = Vec::new();
        let start = std::time::Instant::now();
        let mut next = 0;
        while next < users.len() {
            let due = ((start.elapsed().as_micros() as u64 * rate / 1_000_000) as usize + 1).min(users.len());
            if due <= next {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let events: Vec<_> = (next..due).map(|i| knock(i, room, &users[i])).collect();
            let t = std::time::Instant::now();
            for u in &users[next..due] {
                sent_at.insert(u.clone(), t);
            }
            batches.push(due - next);
            txn += 1;
            self.put(client, txn, events).await;
            next = due;
        }
        (sent_at, txn, batches)
    }

    pub async fn stop(self) {
        self.stopper.stop().await;
        self.running.await.unwrap().unwrap();
    }
}

/// A Synapse-shaped knock by `user` on `room`.
pub fn knock(i: usize, room: &str, user: &str) -> serde_json::Value {
    serde_json::json!({"event_id": format!("$k{i}"), "room_id": room, "sender": user, "state_key": user,
           "type": "m.room.member", "content": {"membership": "knock", "reason": "hello"},
           "origin_server_ts": 1_795_403_555_095u64, "unsigned": {}})
}

//! Ingestion: Synapse-shaped transactions pushed as fast as knockwarden acknowledges them.
//!
//! Run with `cargo bench --bench ingest` (100 and 10,000 rules), or
//! `cargo bench --bench ingest -- RULES [SECONDS [EVENTS_PER_S]]` (with a rate: transactions
//! sent at that pace, still one in flight, to see the ack times below capacity). The real `knockwarden serve` binary runs as
//! a child process on a temporary database (so its memory and CPU are its own), against the
//! test suite's fake homeserver in this process. The sender plays Synapse: one transaction in
//! flight, each of 100 events of about 470 bytes (fixed seed, unique event IDs): 10 % knocks
//! (with `knock_room_state`, as Synapse sends them) spread over 50 managed rooms, the rest
//! messages, reactions and joins in those rooms. The rules are the shipped format's realistic
//! mix (server globs, user globs and regexes, reason regexes and words, `benches/support/mix.rs`);
//! no knock matches one, so each falls through every index to the default (accept).
//!
//! Prints first the disk's floor ([`disk_floor`]), then, for each rule count: the time until
//! the service answers a transaction after it is started; events/s acknowledged (each 200
//! comes after the flush); ack p50/p99; knock -> invite p50/p99 and the last invite's lag
//! after the last acknowledgement; knockwarden's CPU time; its RSS idle (after start-up,
//! before traffic) and peak (VmHWM); and where the time before each 200 went, step by step
//! (the means of knockwarden's own `knockwarden_transaction_phase_duration_seconds`), with how
//! many transactions waited for the worker because the journal held its most.

#[path = "support/mix.rs"]
mod mix;
mod support;

use std::{
    collections::HashMap,
    fmt::Write as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use support::{fake_homeserver::FakeHomeserver, percentile};

const ROOMS: usize = 50;
const EVENTS_PER_TXN: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    // Events per second offered (a transaction every 100 of them); none: as fast as acknowledged.
    let pace: Option<u64> = args.get(2).and_then(|s| s.parse().ok());
    let rules: Vec<usize> = match args.first().and_then(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![100, 10_000],
    };
    disk_floor();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    for n in rules {
        rt.block_on(run(n, seconds, pace));
    }
}

/// The disk's floor under a durable acknowledgement, on the file system of the databases
/// (the temporary directory): 2,000 appends of one transaction's size (45 KB), each followed
/// by `fdatasync`, nothing else running. With one transaction in flight, the acknowledged
/// rate cannot exceed the events of a transaction over the mean of these, and the ack p99
/// cannot be below their p99.
fn disk_floor() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("floor")).unwrap();
    let block = vec![b'x'; 45_000];
    let mut took: Vec<Duration> = (0..2_000)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&block).unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    took.sort();
    println!(
        "disk floor: append 45 KB + fdatasync p50 {:.2?} p99 {:.2?} mean {:.2?}: at most {:.0} events/s with one transaction in flight",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        mean,
        EVENTS_PER_TXN as f64 / mean.as_secs_f64()
    );
}

fn room(k: usize) -> String {
    format!("!room{k}:test.local")
}

fn policy(rules: usize) -> String {
    let rooms: Vec<String> = (0..ROOMS).map(|k| format!("\"{}\"", room(k))).collect();
    let mut y = format!("name: bench\nrooms: [{}]\ndefault: accept\nrules:\n", rooms.join(", "));
    y.push_str(&mix::rules(rules));
    y
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Appends one event of the workload to `out` (a JSON array being written); returns the
/// knocker's user ID for a knock.
fn event(out: &mut String, rng: &mut StdRng, i: usize, knock: bool) -> Option<String> {
    let r = room(rng.random_range(0..ROOMS));
    let ts = 1_795_403_555_095u64 + i as u64;
    if knock {
        // Knockers of the homeserver itself: requests about another server's users are capped
        // per server (homeserver.max_requests_per_server), which would be measured instead.
        let user = format!("@newcomer{i}:test.local");
        let _ = write!(
            out,
            r#"{{"event_id":"$k{i}","room_id":"{r}","sender":"{user}","state_key":"{user}","type":"m.room.member","content":{{"membership":"knock","displayname":"newcomer {i}","reason":"hello, I would like to join","avatar_url":"mxc://elsewhere.example/AbCdEfGhIjKlMnOpQrStUvWx"}},"origin_server_ts":{ts},"unsigned":{{"age":12,"knock_room_state":[{{"type":"m.room.join_rules","state_key":"","sender":"@owner:test.local","content":{{"join_rule":"knock"}}}},{{"type":"m.room.name","state_key":"","sender":"@owner:test.local","content":{{"name":"Support"}}}}]}}}}"#
        );
        return Some(user);
    }
    let sender = format!("@member{}:elsewhere.example", rng.random_range(0..2_000));
    let _ = match rng.random_range(0..10) {
        0 => write!(
            out,
            r#"{{"event_id":"$j{i}","room_id":"{r}","sender":"{sender}","state_key":"{sender}","type":"m.room.member","content":{{"membership":"join","displayname":"a member of the room, with a longer display name","avatar_url":"mxc://elsewhere.example/AbCdEfGhIjKlMnOpQrStUvWx"}},"origin_server_ts":{ts},"unsigned":{{"age":12,"replaces_state":"$j{}"}}}}"#,
            i.saturating_sub(7)
        ),
        1 | 2 => write!(
            out,
            r#"{{"event_id":"$r{i}","room_id":"{r}","sender":"{sender}","type":"m.reaction","content":{{"m.relates_to":{{"rel_type":"m.annotation","event_id":"$m{}","key":"👍"}}}},"sender_device":"ABCDEFGHIJ","origin_server_ts":{ts},"unsigned":{{"age":12,"transaction_id":"r{i}"}},"depth":{i},"hashes":{{"sha256":"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8"}}}}"#,
            i.saturating_sub(3)
        ),
        _ => write!(
            out,
            r#"{{"event_id":"$m{i}","room_id":"{r}","sender":"{sender}","type":"m.room.message","content":{{"msgtype":"m.text","body":"just chatting about the weather, the release and other things of the day in this room; nothing knockwarden needs to read, but every byte of it arrives all the same"}},"origin_server_ts":{ts},"unsigned":{{"age":12,"transaction_id":"m{i}","m.relations":{{"m.thread":{{"count":0}}}}}}}}"#
        ),
    };
    None
}

struct Service {
    child: Child,
    url: String,
    metrics_url: String,
    hs_token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `knockwarden serve` with `rules` rules; returns once it answers a transaction, and
/// how long that took.
async fn start(hs: &FakeHomeserver, rules: usize, client: &reqwest::Client) -> (Service, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let hs_token = support::registration(dir.path());
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/bench.yaml"), policy(rules)).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let config = format!(
        "homeserver: {{url: \"{}\", server_name: test.local}}\nappservice: {{listen: \"127.0.0.1:{port}\"}}\nmetrics: {{listen: \"127.0.0.1:{metrics_port}\"}}\ncontrol_room: \"!ctrl:test.local\"\nnotify: none\nlog_format: json\n",
        hs.url()
    );
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_knockwarden"))
        .args(["serve", "-c"])
        .arg(dir.path().join("config.yaml"))
        .env("RUST_LOG", "warn,matrix_sdk=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let service = Service {
        child,
        url: format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions"),
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        hs_token,
        _dir: dir,
    };
    loop {
        let res = client
            .put(format!("{}/probe", service.url))
            .bearer_auth(&service.hs_token)
            .body(r#"{"events":[]}"#)
            .header("content-type", "application/json")
            .send()
            .await;
        if res.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "knockwarden did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (service, started.elapsed())
}

async fn put(client: &reqwest::Client, s: &Service, txn: u64, body: String) {
    let res = client
        .put(format!("{}/{txn}", s.url))
        .bearer_auth(&s.hs_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn run(rules: usize, seconds: u64, pace: Option<u64>) {
    let hs = FakeHomeserver::start().await;
    let client = reqwest::Client::new();
    let (service, ready) = start(&hs, rules, &client).await;
    let pid = service.child.id();
    // The bot is in every room (pushed, as a homeserver would); start-up work settles.
    let mut joins = String::from(r#"{"events":["#);
    for k in 0..ROOMS {
        if k > 0 {
            joins.push(',');
        }
        let _ = write!(
            joins,
            r#"{{"event_id":"$bot{k}","room_id":"{}","sender":"@knockwarden:test.local","state_key":"@knockwarden:test.local","type":"m.room.member","content":{{"membership":"join"}},"origin_server_ts":1,"unsigned":{{}}}}"#,
            room(k)
        );
    }
    joins.push_str("]}");
    put(&client, &service, 0, joins).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = status_kib(pid, "VmRSS:");
    let cpu_before = cpu(pid);

    let mut rng = StdRng::seed_from_u64(7);
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut acks = Vec::new();
    let (mut i, mut txn, mut bytes) = (0usize, 0u64, 0usize);
    let mut last = String::new();
    let begin = Instant::now();
    let every = pace.map(|rate| Duration::from_secs_f64(EVENTS_PER_TXN as f64 / rate.max(1) as f64));
    while begin.elapsed() < Duration::from_secs(seconds) {
        if let Some(every) = every {
            tokio::time::sleep_until((begin + every * txn as u32).into()).await;
        }
        let mut body = String::with_capacity(EVENTS_PER_TXN * 600);
        body.push_str(r#"{"events":["#);
        let mut knockers = Vec::new();
        for j in 0..EVENTS_PER_TXN {
            if j > 0 {
                body.push(',');
            }
            let before = body.len();
            knockers.extend(event(&mut body, &mut rng, i, j % 10 == 0));
            bytes += body.len() - before;
            i += 1;
        }
        body.push_str(r#"],"ephemeral":[]}"#);
        txn += 1;
        let t = Instant::now();
        for k in &knockers {
            sent_at.insert(k.clone(), t);
        }
        last = knockers.last().cloned().unwrap_or(last);
        put(&client, &service, txn, body).await;
        acks.push(t.elapsed());
    }
    let sending = begin.elapsed();
    let acked = Instant::now();
    let deadline = acked + Duration::from_secs(600);
    while hs.requests_to("POST", "/invite").len() < sent_at.len() {
        assert!(Instant::now() < deadline, "not every knock was acted on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_used = cpu(pid).saturating_sub(cpu_before);
    let peak = status_kib(pid, "VmHWM:");
    let invites = hs.requests_to("POST", "/invite");
    let mut lat: Vec<Duration> = invites
        .iter()
        .filter_map(|r| sent_at.get(r.body["user_id"].as_str()?).map(|t| r.at.duration_since(*t)))
        .collect();
    let last_at = invites.iter().find(|r| r.body["user_id"] == last.as_str()).map(|r| r.at).unwrap();
    lat.sort();
    acks.sort();
    println!(
        "ingest, {rules} rules: ready in {ready:.0?}; {i} events ({} bytes on average, {} knocks) in {txn} transactions over {sending:.2?}: {:.0} events/s acknowledged, ack p50 {:.2?} p99 {:.2?}; knock -> invite p50 {:.2?} p99 {:.2?}, the last invite {:.2?} after the last ack; knockwarden CPU {:.2?} ({:.2} cores); RSS idle {:.1} MiB, peak {:.1} MiB",
        bytes / i.max(1),
        sent_at.len(),
        i as f64 / sending.as_secs_f64(),
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        last_at.saturating_duration_since(acked),
        cpu_used,
        cpu_used.as_secs_f64() / (acked - begin + last_at.saturating_duration_since(acked)).as_secs_f64(),
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    println!(
        "  where the time before the 200 goes (means, and the bucket bound of the p99, from knockwarden's metrics): {}",
        phases(&client, &service).await
    );
    assert_eq!(lat.len(), sent_at.len(), "every knock invited once");
}

/// The mean time of each step of taking in a transaction, from
/// `knockwarden_transaction_phase_duration_seconds` (its sums and counts).
async fn phases(client: &reqwest::Client, service: &Service) -> String {
    let text = client.get(&service.metrics_url).send().await.unwrap().text().await.unwrap();
    let value = |name: &str, phase: &str| {
        let prefix = format!("knockwarden_transaction_phase_duration_seconds_{name}{{phase=\"{phase}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
    };
    if value("count", "check") == 0.0 {
        return "not reported (a knockwarden before these metrics)".to_owned();
    }
    // The bucket bound under which 99 % of a phase's times fall (cumulative bucket counts).
    let p99 = |phase: &str| {
        let tag = format!("phase=\"{phase}\"");
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("knockwarden_transaction_phase_duration_seconds_bucket{") && l.contains(&tag))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
        buckets.iter().find(|(_, n)| *n >= total * 0.99).map(|(le, _)| *le * 1e6).unwrap_or(0.0)
    };
    let mut out: Vec<String> = ["check", "filter", "store", "flush"]
        .iter()
        .map(|p| format!("{p} {:.0} µs (p99 ≤ {:.0})", value("sum", p) / value("count", p).max(1.0) * 1e6, p99(p)))
        .collect();
    // Transactions that waited for the worker (the journal held its most), and how long.
    let waits = value("count", "wait");
    out.push(format!(
        "waited for the worker in {waits:.0} transactions ({:.0} µs each)",
        value("sum", "wait") / waits.max(1.0) * 1e6
    ));
    out.join(", ")
}

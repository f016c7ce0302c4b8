//! Prometheus metrics, with `prometheus-client`, served on `metrics.listen` (its own listener,
//! never the appservice port) at `GET /metrics`.
//!
//! Names start with `knockwarden_`, carry their unit (`_seconds`, `_total`), and have low
//! cardinality: rooms and policies are labels (an admin has a handful), users never are.
//! Counters are counted where things happen; queue depths, the oldest action's age, the
//! failed list and the pending reviews are read when scraped (from memory, or from small
//! trees).

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KnockLabels {
    pub room: String,
    pub policy: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// The steps of taking in a pushed transaction, each timed on its own
/// ([`Metrics::transaction_phases`]): where the time before the 200 goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Hashing the body and looking its txnId up among the last ones (is it a replay?).
    Check,
    /// Splitting the body into its events, reading each one's routing fields, and choosing
    /// the events needed.
    Filter,
    /// Waiting for the worker while the journal holds its most (see
    /// [`crate::pipeline::intake::memory::BACKLOG_EVENTS`]).
    Wait,
    /// Appending them to the journal.
    Store,
    /// Making them durable (the journal's `fdatasync`, shared by every transaction waiting).
    Flush,
}

impl Phase {
    /// The `phase` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Filter => "filter",
            Phase::Wait => "wait",
            Phase::Store => "store",
            Phase::Flush => "flush",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric knockwarden keeps.
pub struct Metrics {
    registry: Registry,
    /// Transactions pushed: `taken`, `replayed`, `refused`.
    pub transactions: Family<OutcomeLabel, Counter>,
    /// Events pushed or caught up: `stored`, `duplicate`, `dropped`, `malformed`.
    pub events: Family<OutcomeLabel, Counter>,
    /// Knocks decided, by room, policy and decision.
    pub knocks: Family<KnockLabels, Counter>,
    /// Attempts at actions, by kind and outcome (`done`, `retried`, `failed`).
    pub actions: Family<ActionLabels, Counter>,
    /// Homeserver requests, by endpoint and outcome (`ok`, `error`).
    pub homeserver: Family<EndpointLabels, Histogram>,
    /// Time to decide one knock (the policy engine).
    pub decision: Histogram,
    /// Time of each step of taking in a pushed transaction, by [`Phase`].
    transaction_phases: Family<PhaseLabel, Histogram>,
    /// The active policy version.
    pub policy_version: Gauge,
    /// Policy reloads: `activated`, `unchanged`, `refused`.
    pub reloads: Family<OutcomeLabel, Counter>,
    queue_depth: Family<QueueLabel, Gauge>,
    oldest_action: Gauge<f64, std::sync::atomic::AtomicU64>,
    failed: Gauge,
    reviews_pending: Gauge,
    /// Damaged places found in the journal (kept aside, skipped).
    pub journal_damage: Counter,
    waiting_knocks: Gauge,
    unresolved_aliases: Gauge,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms to about 33 s.
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 17)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("knockwarden");
        let transactions = Family::<OutcomeLabel, Counter>::default();
        registry.register("transactions", "Transactions pushed by the homeserver, by outcome", transactions.clone());
        let events = Family::<OutcomeLabel, Counter>::default();
        registry.register("events", "Events pushed or caught up, by outcome", events.clone());
        let knocks = Family::<KnockLabels, Counter>::default();
        registry.register("knocks_decided", "Knocks decided, by room, policy and decision", knocks.clone());
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("actions", "Attempts at actions, by kind and outcome", actions.clone());
        let homeserver =
            Family::<EndpointLabels, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
        registry.register_with_unit(
            "homeserver_request_duration",
            "Requests to the homeserver, by endpoint and outcome",
            Unit::Seconds,
            homeserver.clone(),
        );
        let decision = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_001, 4.0, 12));
        registry.register_with_unit("decision_duration", "Time to decide one knock", Unit::Seconds, decision.clone());
        let transaction_phases = Family::<PhaseLabel, Histogram>::new_with_constructor(|| {
            // 10 µs to about 0.3 s: a step under load takes tens of µs to a few ms.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_01, 2.0, 16))
        });
        registry.register_with_unit(
            "transaction_phase_duration",
            "Time of each step of taking in a pushed transaction, before its 200",
            Unit::Seconds,
            transaction_phases.clone(),
        );
        let policy_version = Gauge::default();
        registry.register("policy_version", "The active policy version", policy_version.clone());
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register("policy_reloads", "Policy reloads, by outcome", reloads.clone());
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        registry.register("queue_depth", "Entries in the inbox and the outbox", queue_depth.clone());
        let oldest_action = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "oldest_action_age",
            "Age of the oldest queued action (0 when none is queued)",
            Unit::Seconds,
            oldest_action.clone(),
        );
        let failed = Gauge::default();
        registry.register("failed_actions", "Entries in the failed list, waiting for !knock retry", failed.clone());
        let reviews_pending = Gauge::default();
        registry.register("review_items_pending", "Open review items", reviews_pending.clone());
        let journal_damage = Counter::default();
        registry.register(
            "journal_damage",
            "Damaged places found in the journal: kept aside under journal-damaged/, the records after them handled",
            journal_damage.clone(),
        );
        let waiting_knocks = Gauge::default();
        registry.register(
            "waiting_knocks",
            "Knocks put aside until a policy's alias is looked up or a ban list read",
            waiting_knocks.clone(),
        );
        let unresolved_aliases = Gauge::default();
        registry.register(
            "unresolved_aliases",
            "Aliases the active policies name that could not be looked up yet (GET /health lists them)",
            unresolved_aliases.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "knockwarden's version", build);
        Metrics {
            registry,
            transactions,
            events,
            knocks,
            actions,
            homeserver,
            decision,
            transaction_phases,
            policy_version,
            reloads,
            queue_depth,
            oldest_action,
            failed,
            reviews_pending,
            journal_damage,
            waiting_knocks,
            unresolved_aliases,
        }
    }
}

/// What is read when scraped.
pub struct Snapshot {
    pub inbox: u64,
    pub outbox: u64,
    pub oldest_action_age: Option<Duration>,
    pub failed: u64,
    pub reviews_pending: u64,
    pub waiting_knocks: u64,
    pub unresolved_aliases: u64,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one of `outcome`.
    pub fn add(family: &Family<OutcomeLabel, Counter>, outcome: &'static str, n: u64) {
        if n > 0 {
            family.get_or_create(&OutcomeLabel { outcome }).inc_by(n);
        }
    }

    /// Records how long a step of taking in a transaction took, from `since` to now.
    pub fn phase(&self, phase: Phase, since: std::time::Instant) {
        self.transaction_phases
            .get_or_create(&PhaseLabel { phase: phase.as_str() })
            .observe(since.elapsed().as_secs_f64());
    }

    /// The text exposition, with the scrape-time values set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        self.queue_depth.get_or_create(&QueueLabel { queue: "inbox" }).set(now.inbox as i64);
        self.queue_depth.get_or_create(&QueueLabel { queue: "outbox" }).set(now.outbox as i64);
        self.oldest_action.set(now.oldest_action_age.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        self.failed.set(now.failed as i64);
        self.reviews_pending.set(now.reviews_pending as i64);
        self.waiting_knocks.set(now.waiting_knocks as i64);
        self.unresolved_aliases.set(now.unresolved_aliases as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in the exposition (`# TYPE` lines), with the suffixes a scraper adds.
    fn names() -> Vec<String> {
        // Families show up once they hold a series: give each one.
        let m = Metrics::default();
        for f in [&m.transactions, &m.events, &m.reloads] {
            Metrics::add(f, "x", 1);
        }
        m.knocks.get_or_create(&KnockLabels { room: "r".into(), policy: "p".into(), decision: "accept" }).inc();
        m.actions.get_or_create(&ActionLabels { kind: "invite", outcome: "done" }).inc();
        m.homeserver.get_or_create(&EndpointLabels { endpoint: "invite", outcome: "ok" }).observe(0.1);
        let text = m.render(Snapshot {
            inbox: 0,
            outbox: 0,
            oldest_action_age: None,
            failed: 0,
            reviews_pending: 0,
            waiting_knocks: 0,
            unresolved_aliases: 0,
        });
        let mut out = Vec::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            match kind {
                "counter" => out.push(format!("{name}_total")),
                "histogram" => out.extend(["_bucket", "_count", "_sum"].map(|s| format!("{name}{s}"))),
                _ => out.push(name.to_owned()),
            }
        }
        out
    }

    #[test]
    fn names_are_prefixed_and_carry_units() {
        let names = names();
        assert!(names.iter().all(|n| n.starts_with("knockwarden_")), "{names:?}");
        for n in [
            "knockwarden_actions_total",
            "knockwarden_homeserver_request_duration_seconds_count",
            "knockwarden_oldest_action_age_seconds",
        ] {
            assert!(names.iter().any(|m| m == n), "{n} not in {names:?}");
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_that_exist() {
        let names = names();
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../contrib/grafana-dashboard.json")).expect("valid JSON");
        let re = regex::Regex::new(r"knockwarden_[a-z_]+").unwrap();
        let mut used = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                for m in re.find_iter(target["expr"].as_str().unwrap()) {
                    assert!(
                        names.iter().any(|n| n == m.as_str()),
                        "{} uses {}, which is not exported",
                        panel["title"],
                        m.as_str()
                    );
                    used += 1;
                }
            }
        }
        assert!(used >= 10);
    }
}

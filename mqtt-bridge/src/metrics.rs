//! Prometheus metrics, served on `/metrics` (see [`crate::health`]).

use std::sync::Arc;

use substrate_prometheus_endpoint::{
    exponential_buckets, register, Counter, CounterVec, Gauge, Histogram, HistogramOpts,
    MetricSource, Opts, PrometheusError, Registry, SourcedGauge, U64,
};

use crate::audit::{lock, SharedJournal};

/// What the bridge counts.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Envelopes forwarded.
    pub forwarded: Counter<U64>,
    /// Envelopes the broker handed over again after a crash or reconnect, forwarded again
    /// (not counted in `forwarded`).
    pub redelivered: Counter<U64>,
    /// Envelopes refused, by reason code.
    pub refused: CounterVec<U64>,
    /// Envelopes that would have been refused on the cache's state, held until newer
    /// finalized state was applied, and checked again on it.
    pub held_for_newer_state: Counter<U64>,
    /// Time the gate took per envelope, in seconds.
    pub check_latency: Histogram,
    /// Envelopes per write group: whose records share one sync before any is acknowledged.
    pub write_groups: Histogram,
    /// Seconds since the cache was last brought to a finalized block.
    pub cache_age: Gauge<U64>,
    /// The finalized block the cache reflects.
    pub cache_block: Gauge<U64>,
    /// Group keys set by this bridge as key manager.
    pub rekeys: Counter<U64>,
    /// CONNECTs at the front, by outcome ("accepted" or the refusal).
    pub front_connects: CounterVec<U64>,
    /// Device sessions open through the front.
    pub front_sessions: Gauge<U64>,
    /// Publishes, subscriptions and deliveries the front's topic policy denied.
    pub front_denied: CounterVec<U64>,
    /// Sessions closed because the device stopped being active in finalized state.
    pub front_kicked: Counter<U64>,
    /// Refusal notices not sent because the sender was over its notice budget.
    pub notices_suppressed: Counter<U64>,
    /// QoS 0 ingress dropped because the forward loop's queue was full.
    pub ingress_dropped: Counter<U64>,
}

impl Metrics {
    pub fn new() -> Result<Self, PrometheusError> {
        let registry = Registry::new_custom(Some("keymesh_bridge".into()), None)?;
        let refused = register(
            CounterVec::new(
                Opts::new("refused_total", "Envelopes refused, by reason"),
                &["reason"],
            )?,
            &registry,
        )?;
        // Every reason shows, at 0, from the start.
        for code in crate::gate::Reason::CODES {
            refused.with_label_values(&[code]);
        }
        let front_connects = register(
            CounterVec::new(
                Opts::new("front_connects_total", "CONNECTs at the front, by outcome"),
                &["outcome"],
            )?,
            &registry,
        )?;
        front_connects.with_label_values(&["accepted"]);
        for label in crate::front::auth::ConnectRefusal::LABELS {
            front_connects.with_label_values(&[label]);
        }
        let front_denied = register(
            CounterVec::new(
                Opts::new("front_denied_total", "Denied by the front's topic policy"),
                &["what"],
            )?,
            &registry,
        )?;
        for what in ["publish", "subscribe", "delivery"] {
            front_denied.with_label_values(&[what]);
        }
        Ok(Metrics {
            front_connects,
            front_denied,
            front_sessions: register(
                Gauge::new("front_sessions", "Device sessions open through the front")?,
                &registry,
            )?,
            front_kicked: register(
                Counter::new(
                    "front_kicked_total",
                    "Sessions closed on a device's suspension or revocation",
                )?,
                &registry,
            )?,
            notices_suppressed: register(
                Counter::new(
                    "notices_suppressed_total",
                    "Refusal notices dropped over a sender's notice budget",
                )?,
                &registry,
            )?,
            ingress_dropped: register(
                Counter::new(
                    "ingress_dropped_total",
                    "QoS 0 ingress dropped with the forward queue full",
                )?,
                &registry,
            )?,
            forwarded: register(
                Counter::new("forwarded_total", "Envelopes forwarded")?,
                &registry,
            )?,
            redelivered: register(
                Counter::new(
                    "redelivered_total",
                    "Broker redeliveries of forwarded envelopes, forwarded again",
                )?,
                &registry,
            )?,
            refused,
            held_for_newer_state: register(
                Counter::new(
                    "held_for_newer_state_total",
                    "Envelopes held until newer finalized state was applied, then checked again",
                )?,
                &registry,
            )?,
            check_latency: register(
                Histogram::with_opts(
                    HistogramOpts::new("check_seconds", "Gate check latency")
                        .buckets(exponential_buckets(0.000_05, 2.0, 16)?),
                )?,
                &registry,
            )?,
            write_groups: register(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "write_group_envelopes",
                        "Envelopes whose records share one sync to disk",
                    )
                    .buckets(exponential_buckets(1.0, 2.0, 10)?),
                )?,
                &registry,
            )?,
            cache_age: register(
                Gauge::new(
                    "cache_age_seconds",
                    "Age of the finalized head the cache reflects, by its timestamp",
                )?,
                &registry,
            )?,
            cache_block: register(
                Gauge::new("cache_block", "Finalized block the key cache reflects")?,
                &registry,
            )?,
            rekeys: register(
                Counter::new("rekeys_total", "Group epoch keys submitted")?,
                &registry,
            )?,
            registry,
        })
    }
}

/// The audit journal's backlog, read from the journal whenever `/metrics` is scraped, so
/// the gauge is never behind the journal.
#[derive(Clone)]
struct Backlog(Arc<SharedJournal>);

impl MetricSource for Backlog {
    type N = u64;

    fn collect(&self, mut set: impl FnMut(&[&str], u64)) {
        set(&[], lock(&self.0).pending() as u64);
    }
}

/// Registers `audit_backlog`: exchange records journaled and not yet on chain.
pub fn register_backlog(
    registry: &Registry,
    journal: Arc<SharedJournal>,
) -> Result<(), PrometheusError> {
    let opts = Opts::new(
        "audit_backlog",
        "Exchange records journaled and not yet on chain",
    );
    register(SourcedGauge::new(&opts, Backlog(journal))?, registry)?;
    Ok(())
}

//! Prometheus metrics, served on `/metrics` (substrate-prometheus-endpoint).

use substrate_prometheus_endpoint::{
    exponential_buckets, register, Counter, CounterVec, Gauge, Histogram, HistogramOpts, Opts,
    PrometheusError, Registry, U64,
};

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
    /// Time the gate took per envelope, in seconds.
    pub check_latency: Histogram,
    /// Seconds since the cache was last brought to a finalized block.
    pub cache_age: Gauge<U64>,
    /// The finalized block the cache reflects.
    pub cache_block: Gauge<U64>,
    /// Exchange records queued, not yet submitted.
    pub audit_backlog: Gauge<U64>,
    /// Group keys set by this bridge as key manager.
    pub rekeys: Counter<U64>,
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
        Ok(Metrics {
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
            check_latency: register(
                Histogram::with_opts(
                    HistogramOpts::new("check_seconds", "Gate check latency")
                        .buckets(exponential_buckets(0.000_05, 2.0, 16)?),
                )?,
                &registry,
            )?,
            cache_age: register(
                Gauge::new(
                    "cache_age_seconds",
                    "Seconds since the last finalized update",
                )?,
                &registry,
            )?,
            cache_block: register(
                Gauge::new("cache_block", "Finalized block the key cache reflects")?,
                &registry,
            )?,
            audit_backlog: register(
                Gauge::new("audit_backlog", "Exchange records not yet submitted")?,
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

//! Bulk registration: `count` `devices.register` transactions, signed by Alice under
//! consecutive nonces, all submitted at once; then the time until every one is in a
//! finalized block, and (given the bridge's metrics endpoint) until the bridge's key cache
//! has that block.
//!
//! "At once" means back to back on one connection, in nonce order, without waiting for any
//! to land ([`crate::chain`] says why).

use std::time::{Duration, Instant};

use crate::{
    chain::{register_calls, run_tag, Api, Node},
    metrics::bridge_cache_block,
    registration::BenchError,
};

/// What to submit and where.
pub struct Bulk {
    pub node: String,
    pub count: u32,
    /// Device ids are `{prefix}{i}`; a prefix unique to the run when `None`.
    pub prefix: Option<String>,
    /// The DER public key every device is registered with.
    pub key: Vec<u8>,
    /// The bridge's `/metrics` address (host:port), to measure until the bridge has them.
    pub bridge_metrics: Option<String>,
    /// How long to wait for all of them before reporting a stall.
    pub within: Duration,
}

/// Submits the batch and waits; the figure as JSON. A batch not all finalized within
/// `within` is reported (`"stalled": true`, how many landed), not an error.
pub async fn measure(bulk: &Bulk) -> Result<serde_json::Value, BenchError> {
    let node = Node::connect(&bulk.node).await?;
    let prefix = bulk
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bulk-{}-", run_tag()));
    let calls = register_calls(&prefix, bulk.count, &bulk.key);
    let signing = Instant::now();
    let signed = node.sign_as_alice(&calls, &format!("{prefix}*")).await?;
    let sign_s = signing.elapsed().as_secs_f64();
    let started = Instant::now();
    let refused = node.submit_in_order(&signed).await;
    let submit_s = started.elapsed().as_secs_f64();
    let landing = wait_landed(&node.api, &prefix, bulk.count, started, bulk.within).await?;
    let bridge_s = match (&bulk.bridge_metrics, landing.last_block) {
        (Some(metrics), Some(block)) if landing.landed == bulk.count => {
            wait_bridge(metrics, block, started, bulk.within).await
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "figure": "bulk_registration",
        "node": bulk.node,
        "count": bulk.count,
        "prefix": prefix,
        "sign_s": sign_s,
        "submit_s": submit_s,
        "refused": refused.len(),
        "refusals": refused.iter().take(5).collect::<Vec<_>>(),
        "finalized": landing.landed,
        "stalled": landing.landed < bulk.count,
        "all_finalized_s": landing.all_s,
        "per_block": landing.per_block,
        "last_block": landing.last_block,
        "bridge_usable_s": bridge_s,
    }))
}

/// How the batch landed in finalized blocks.
struct Landing {
    landed: u32,
    all_s: Option<f64>,
    /// (block, registrations of the batch in it).
    per_block: Vec<(u64, u32)>,
    last_block: Option<u64>,
}

/// Follows finalized blocks, counting the batch's `DeviceRegistered` events, until all `count`
/// have landed or `within` has passed.
async fn wait_landed(
    api: &Api,
    prefix: &str,
    count: u32,
    started: Instant,
    within: Duration,
) -> Result<Landing, BenchError> {
    let query = |e: &dyn std::fmt::Display| BenchError::Query(e.to_string());
    let mut blocks = api.stream_blocks().await.map_err(|e| query(&e))?;
    let mut landing = Landing {
        landed: 0,
        all_s: None,
        per_block: Vec::new(),
        last_block: None,
    };
    let deadline = tokio::time::Instant::from_std(started + within);
    // Drawn only on a terminal.
    let progress = indicatif::ProgressBar::new(u64::from(count)).with_message("finalized");
    while landing.landed < count {
        let block = match tokio::time::timeout_at(deadline, blocks.next()).await {
            Ok(Some(block)) => block.map_err(|e| query(&e))?,
            Ok(None) => return Err(BenchError::Query("block stream ended".into())),
            Err(_) => break,
        };
        let at = block.at().await.map_err(|e| query(&e))?;
        let events = at.events().fetch().await.map_err(|e| query(&e))?;
        let mut here = 0;
        for event in events.iter() {
            let event = event.map_err(|e| query(&e))?;
            if event.pallet_name() != "Devices" || event.event_name() != "DeviceRegistered" {
                continue;
            }
            let device = event
                .decode_fields_unchecked_as::<Registered>()
                .map_err(|e| query(&e))?
                .device;
            if device.starts_with(prefix.as_bytes()) {
                here += 1;
            }
        }
        if here > 0 {
            progress.inc(u64::from(here));
            landing.landed += here;
            landing.per_block.push((block.number(), here));
            landing.last_block = Some(block.number());
        }
    }
    progress.finish_and_clear();
    if landing.landed >= count {
        landing.all_s = Some(started.elapsed().as_secs_f64());
    }
    Ok(landing)
}

#[derive(subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct Registered {
    device: Vec<u8>,
}

/// Polls the bridge's `cache_block` until it reaches `block`: the seconds since `started`.
async fn wait_bridge(metrics: &str, block: u64, started: Instant, within: Duration) -> Option<f64> {
    while started.elapsed() < within {
        if bridge_cache_block(metrics)
            .await
            .is_some_and(|b| b >= block)
        {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

//! Bulk registration: `count` `devices.register` transactions, signed by Alice under
//! consecutive nonces, all submitted at once; then the time until every one is in a
//! finalized block, and (given the bridge's metrics endpoint) until the bridge's key cache
//! has that block.
//!
//! "At once" means back to back on one connection, in nonce order, without waiting for any
//! to land. Submitted concurrently instead, the pool validates them in no particular order
//! and parks each whose predecessor it has not seen yet in its future queue, which holds a
//! tenth of `--pool-limit` (819 by default). A batch of 1,000 whose first nonces validate
//! last overflows it, the pool evicts some, and the rest wait for ever behind the gap: the
//! "stall with nothing refused" (the pool's debug log shows `views=[(4, 0, 819)]`). In
//! order, each transaction is ready on arrival and the future queue stays empty.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use subxt::{
    config::{DefaultExtrinsicParamsBuilder, RpcConfigFor},
    dynamic::Value,
    rpcs::{LegacyRpcMethods, RpcClient},
    OnlineClient, PolkadotConfig,
};
use subxt_signer::sr25519::dev;

use crate::{metrics::bridge_cache_block, registration::BenchError};

/// Blocks each transaction of the batch stays valid for. Signing with subxt's online
/// defaults costs a node round trip per transaction (about 44 ms here) and a 32-block era:
/// a batch of 1,000 outlived its era while being signed and every signature failed.
const MORTALITY: u64 = 256;

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
    let connect = |e: &dyn std::fmt::Display| BenchError::Connect {
        url: bulk.node.clone(),
        reason: e.to_string(),
    };
    let rpc = RpcClient::from_insecure_url(&bulk.node)
        .await
        .map_err(|e| connect(&e))?;
    let api = OnlineClient::<PolkadotConfig>::from_rpc_client(rpc.clone())
        .await
        .map_err(|e| connect(&e))?;
    let methods = LegacyRpcMethods::<RpcConfigFor<PolkadotConfig>>::new(rpc);
    let prefix = bulk.prefix.clone().unwrap_or_else(|| {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("bulk-{run}-")
    });
    let signing = Instant::now();
    let signed = sign_all(&api, &methods, bulk, &prefix).await?;
    let sign_s = signing.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut refused = Vec::new();
    for tx in &signed {
        if let Err(e) = methods.author_submit_extrinsic(tx.as_slice()).await {
            refused.push(format!("{e:?}"));
        }
    }
    let submit_s = started.elapsed().as_secs_f64();
    let landing = wait_landed(&api, &prefix, bulk.count, started, bulk.within).await?;
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

/// Every registration, signed offline under consecutive nonces from Alice's next one,
/// mortal for [`MORTALITY`] blocks from the current block.
async fn sign_all(
    api: &OnlineClient<PolkadotConfig>,
    methods: &LegacyRpcMethods<RpcConfigFor<PolkadotConfig>>,
    bulk: &Bulk,
    prefix: &str,
) -> Result<Vec<Vec<u8>>, BenchError> {
    let alice = dev::alice();
    let failed = |e: &dyn std::fmt::Display| BenchError::Register {
        device: format!("{prefix}*"),
        reason: e.to_string(),
    };
    let account = subxt::utils::AccountId32(alice.public_key().0);
    let first = methods
        .system_account_next_index(&account)
        .await
        .map_err(|e| failed(&e))?;
    let at = api.at_current_block().await.map_err(|e| failed(&e))?;
    let tx = at.tx();
    let mut signed = Vec::with_capacity(bulk.count as usize);
    for i in 0..bulk.count {
        let payload = subxt::dynamic::tx(
            "Devices",
            "register",
            vec![
                Value::from_bytes(format!("{prefix}{i}").as_bytes()),
                Value::from_bytes(&bulk.key),
                Value::from_bytes(alice.public_key().0),
            ],
        );
        let params = DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
            .nonce(first + u64::from(i))
            .mortal_from_unchecked(MORTALITY, at.block_number(), at.block_hash())
            .build();
        let submittable = tx
            .create_signable_offline(&payload, params)
            .and_then(|mut signable| signable.sign(&alice))
            .map_err(|e| failed(&e))?;
        signed.push(submittable.into_encoded());
    }
    Ok(signed)
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
    api: &OnlineClient<PolkadotConfig>,
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
            landing.landed += here;
            landing.per_block.push((block.number(), here));
            landing.last_block = Some(block.number());
        }
    }
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

//! Key check before a send: `keymesh_checkKey` answered by the node from finalized state,
//! one call after another, each for one of `ids` in turn. The fingerprint asked about is
//! all zeros, so every answer is `mismatch` with the expected fingerprint: the node does the
//! same read and comparison as for a match.

use std::time::{Duration, Instant};

use subxt::rpcs::{client::rpc_params, RpcClient};

use crate::{registration::BenchError, stats::quantile};

/// `calls` checks spread over `ids`; the figure as JSON.
pub async fn measure(
    url: &str,
    ids: &[String],
    calls: u32,
) -> Result<serde_json::Value, BenchError> {
    let rpc = RpcClient::from_insecure_url(url)
        .await
        .map_err(|e| BenchError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let zeros = format!("0x{}", "00".repeat(32));
    let mut samples = Vec::with_capacity(calls as usize);
    for (_, id) in (0..calls).zip(ids.iter().cycle()) {
        let started = Instant::now();
        let answer: serde_json::Value = rpc
            .request("keymesh_checkKey", rpc_params![id, &zeros])
            .await
            .map_err(|e| BenchError::Query(format!("keymesh_checkKey({id}): {e}")))?;
        samples.push(started.elapsed());
        if answer["result"] != "mismatch" {
            return Err(BenchError::Query(format!(
                "keymesh_checkKey({id}) answered {answer}, expected a mismatch"
            )));
        }
    }
    let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    Ok(serde_json::json!({
        "figure": "check_key",
        "node": url,
        "devices": ids.len(),
        "calls": calls,
        "p50_s": seconds(quantile(&samples, 0.5)),
        "p99_s": seconds(quantile(&samples, 0.99)),
    }))
}

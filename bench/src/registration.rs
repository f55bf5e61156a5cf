//! Registration until finalized. Each sample runs from submitting one `devices.register`
//! to the node reporting the block that holds it finalized: the wait an operator sees when
//! onboarding one device, and what the seed paper's registration figure measures.

use std::time::{Duration, Instant};

use subxt::dynamic::Value;
use subxt_signer::sr25519::dev;

use crate::{
    chain::{run_tag, Api, Node},
    stats::summary,
};

/// A development key (RSA-2048); devices may share a key, and the runtime validates it.
pub const DEVICE_KEY: &[u8] = include_bytes!("../../runtime/dev-keys/1111.der");

/// Why a measurement stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot reach the node at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("registering {device}: {reason}")]
    Register { device: String, reason: String },
    #[error("chain query failed: {0}")]
    Query(String),
    #[error("device key {0}")]
    Key(String),
    #[error("report: {0}")]
    Report(String),
    #[error("no samples (count was 0)")]
    NoSamples,
}

/// Registers `count` fresh devices one after another and returns the figure as JSON.
pub async fn measure(node: &str, count: u32) -> Result<serde_json::Value, BenchError> {
    let api = Node::connect(node).await?.api;
    // Ids unique to this run, so runs against one chain never collide.
    let run = run_tag();
    let mut samples = Vec::new();
    // Drawn only on a terminal.
    let progress = indicatif::ProgressBar::new(u64::from(count));
    for i in 0..count {
        let device = format!("reg-{run}-{i}");
        samples.push(register_one(&api, &device).await?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut figure = summary(&samples).ok_or(BenchError::NoSamples)?;
    figure.insert("figure".into(), "registration_until_finalized".into());
    figure.insert("node".into(), node.into());
    figure.insert("count".into(), count.into());
    Ok(serde_json::Value::Object(figure))
}

/// One registration, signed by Alice: the time from submission to finality.
async fn register_one(api: &Api, device: &str) -> Result<Duration, BenchError> {
    let failed = |e: &dyn std::fmt::Display| BenchError::Register {
        device: device.to_string(),
        reason: e.to_string(),
    };
    let alice = dev::alice();
    let payload = subxt::dynamic::tx(
        "Devices",
        "register",
        vec![
            Value::from_bytes(device.as_bytes()),
            Value::from_bytes(DEVICE_KEY),
            Value::from_bytes(alice.public_key().0),
        ],
    );
    let started = Instant::now();
    let progress = api
        .tx()
        .await
        .map_err(|e| failed(&e))?
        .sign_and_submit_then_watch_default(&payload, &alice)
        .await
        .map_err(|e| failed(&e))?;
    let in_block = progress
        .wait_for_finalized()
        .await
        .map_err(|e| failed(&e))?;
    let elapsed = started.elapsed();
    // Checked after the clock stops: fetching the block's events is not part of the wait.
    in_block.wait_for_success().await.map_err(|e| failed(&e))?;
    Ok(elapsed)
}

//! Topic registration: from the operator's first call to a group key its members can use
//! at a finalized block. The operator creates the group and adds its members in one go
//! (signed in nonce order, so they share a block and one finality wait); the bridge, as
//! key manager, answers the group's `RekeyRequired` with `groups.set_epoch_key`; the clock
//! stops when the finalized head holds the group's topic key.
//!
//! Each group gets members of its own, registered (untimed) before the first sample: a
//! device may be in only `MaxGroupsPerDevice` groups, and a run makes many groups.

use std::time::{Duration, Instant};

use subxt::dynamic::Value;
use subxt_signer::sr25519::dev;

use crate::{
    chain::{register_calls, run_tag, Api, Node},
    registration::BenchError,
    stats::summary,
};

#[derive(subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct GroupRecord {
    topic_key: Option<TopicKey>,
}

#[derive(subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct TopicKey {
    epoch: u32,
}

/// Registers `count` groups, one after another, each with `members` fresh devices; the
/// figure as JSON.
pub async fn measure(
    url: &str,
    members: u32,
    count: u32,
    within: Duration,
) -> Result<serde_json::Value, BenchError> {
    let node = Node::connect(url).await?;
    let run = run_tag();
    let prefix = format!("member-{run}-");
    register_devices(&node, &prefix, members * count, within).await?;
    let ids: Vec<String> = (0..members * count)
        .map(|i| format!("{prefix}{i}"))
        .collect();
    let members: Vec<&[String]> = ids.chunks(members.max(1) as usize).collect();
    let mut samples = Vec::new();
    // Drawn only on a terminal.
    let progress = indicatif::ProgressBar::new(u64::from(count));
    for i in 0..count {
        let group = format!("topic-{run}-{i}");
        let members = members.get(i as usize).copied().unwrap_or_default();
        samples.push(register_one(&node, &group, members, within).await?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut figure = summary(&samples).ok_or(BenchError::NoSamples)?;
    figure.insert("figure".into(), "topic_registration".into());
    figure.insert("node".into(), url.into());
    figure.insert(
        "members".into(),
        members.first().map_or(0, |m| m.len()).into(),
    );
    figure.insert("count".into(), count.into());
    Ok(serde_json::Value::Object(figure))
}

/// One group: create it, add the members, wait for its key at the finalized head.
async fn register_one(
    node: &Node,
    group: &str,
    members: &[String],
    within: Duration,
) -> Result<Duration, BenchError> {
    let alice = dev::alice().public_key().0;
    let mut calls = vec![subxt::dynamic::tx(
        "Groups",
        "create_group",
        vec![Value::from_bytes(group), Value::from_bytes(alice)],
    )];
    calls.extend(members.iter().map(|device| {
        subxt::dynamic::tx(
            "Groups",
            "add_member",
            vec![
                Value::from_bytes(group),
                Value::from_bytes(device),
                Value::unnamed_variant("Both", []),
            ],
        )
    }));
    let signed = node.sign_as_alice(&calls, group).await?;
    let started = Instant::now();
    let refused = node.submit_in_order(&signed).await;
    if let Some(first) = refused.first() {
        return Err(BenchError::Register {
            device: group.to_string(),
            reason: first.clone(),
        });
    }
    while started.elapsed() < within {
        if finalized_epoch(&node.api, group).await?.is_some() {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::Register {
        device: group.to_string(),
        reason: format!("no topic key at the finalized head within {within:?}"),
    })
}

/// Registers `{prefix}0..{prefix}{n - 1}` (with device 1111's dev key) and waits until the
/// last of them is at the finalized head.
async fn register_devices(
    node: &Node,
    prefix: &str,
    n: u32,
    within: Duration,
) -> Result<(), BenchError> {
    let calls = register_calls(prefix, n, crate::registration::DEVICE_KEY);
    let signed = node.sign_as_alice(&calls, prefix).await?;
    if let Some(first) = node.submit_in_order(&signed).await.first() {
        return Err(BenchError::Register {
            device: format!("{prefix}*"),
            reason: first.clone(),
        });
    }
    let last = format!("{prefix}{}", n.saturating_sub(1));
    let started = Instant::now();
    while started.elapsed() < within {
        let at = node
            .api
            .at_current_block()
            .await
            .map_err(|e| BenchError::Query(e.to_string()))?;
        let address = subxt::dynamic::storage::<(Vec<u8>,), Value>("Devices", "Devices");
        let found = at
            .storage()
            .try_fetch(address, (last.as_bytes().to_vec(),))
            .await
            .map_err(|e| BenchError::Query(e.to_string()))?;
        if found.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::Register {
        device: last,
        reason: format!("not at the finalized head within {within:?}"),
    })
}

/// The epoch of `group`'s topic key at the finalized head, if it has one.
async fn finalized_epoch(api: &Api, group: &str) -> Result<Option<u32>, BenchError> {
    let query = |e: &dyn std::fmt::Display| BenchError::Query(e.to_string());
    let at = api.at_current_block().await.map_err(|e| query(&e))?;
    let address = subxt::dynamic::storage::<(Vec<u8>,), GroupRecord>("Groups", "Groups");
    let value = at
        .storage()
        .try_fetch(address, (group.as_bytes().to_vec(),))
        .await
        .map_err(|e| query(&e))?;
    match value {
        None => Ok(None),
        Some(v) => Ok(v
            .decode()
            .map_err(|e| query(&e))?
            .topic_key
            .map(|k| k.epoch)),
    }
}

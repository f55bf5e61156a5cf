//! Networked commands on the agent: send, publish, listen, and rotation.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use keymesh_device::{
    agent::{Agent, AgentConfig, AgentEvent, Message, Target},
    keys::{self, KeyBits},
    onboard,
};
use subxt_signer::sr25519::Keypair;

use crate::Result;

/// How long a send waits for the broker's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// A client-id tag of its own for each one-shot send, so two sends never displace each
/// other's connection.
pub fn send_tag() -> String {
    format!("send-{}", hex::encode(rand::random::<[u8; 4]>()))
}

/// Sends one message, then waits `settle_ms` for the bridge's verdict: a refusal fails
/// the command, a resend (the key rotated meanwhile) is reported and waited on again.
pub async fn send(
    config: AgentConfig,
    target: Target,
    payload: &[u8],
    settle_ms: u64,
) -> Result<()> {
    let (agent, mut events) = Agent::start(config).await?;
    let id = match &target {
        Target::Device(to) => agent.send(to, payload).await?,
        Target::Group(group) => agent.publish(group, payload).await?,
    };
    agent.flush(ACK_WAIT).await?;
    println!("published message {} to {target}", hex::encode(id));
    let mut current = id;
    let settle = Duration::from_millis(settle_ms);
    loop {
        let event = match tokio::time::timeout(settle, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => break,
        };
        match event {
            AgentEvent::Refused {
                message_id,
                reason,
                detail,
            } if message_id == current || message_id == id => {
                agent.stop().await;
                return Err(format!(
                    "the bridge refused {}: {reason}: {detail}",
                    hex::encode(message_id)
                )
                .into());
            }
            AgentEvent::Resent {
                message_id,
                attempt,
                ..
            } => {
                println!(
                    "resent as {} (attempt {attempt}): the key of {target} changed",
                    hex::encode(message_id)
                );
                current = message_id;
                agent.flush(ACK_WAIT).await?;
            }
            AgentEvent::KeyRefreshed { device, epoch } => {
                println!("the key of {device} rotated (epoch {epoch}); sealed to the new one");
            }
            _ => {}
        }
    }
    agent.stop().await;
    Ok(())
}

/// Prints what arrives until `count` deliveries were handled (for ever without it).
pub async fn listen(config: AgentConfig, count: Option<usize>, json: bool) -> Result<()> {
    let device = config.device.clone();
    let (_agent, mut events) = Agent::start(config).await?;
    eprintln!("listening as {device}: inbox, groups and the key directory");
    let mut handled = 0usize;
    while count.is_none_or(|c| handled < c) {
        let Some(event) = events.recv().await else {
            return Err("the agent stopped".into());
        };
        let delivery = matches!(
            event,
            AgentEvent::Message(_) | AgentEvent::Undeliverable { .. }
        );
        let line = if json {
            json_line(&event)
        } else {
            text_line(&event, &device)
        };
        if let Some(line) = line {
            println!("{line}");
            std::io::stdout().flush()?;
        }
        if delivery {
            handled += 1;
        }
    }
    Ok(())
}

fn message_topic(message: &Message, device: Option<&str>) -> String {
    match (&message.group, device) {
        (Some(group), _) => keymesh_device::mqtt::group_topic(group),
        (None, Some(device)) => keymesh_device::mqtt::inbox_topic(device),
        (None, None) => "inbox".into(),
    }
}

fn text_line(event: &AgentEvent, device: &str) -> Option<String> {
    Some(match event {
        AgentEvent::Message(m) => format!(
            "{}: from {}: {} (checked by bridge {} at block #{})",
            message_topic(m, Some(device)),
            m.sender,
            String::from_utf8_lossy(&m.payload),
            &hex::encode(m.bridge)[..8],
            m.block
        ),
        AgentEvent::Undeliverable { topic, reason } => format!("{topic}: cannot open: {reason}"),
        AgentEvent::GroupKey {
            group,
            epoch,
            joined,
        } => format!(
            "group {group}: reading epoch {epoch}{}",
            if *joined { " (joined)" } else { "" }
        ),
        AgentEvent::Removed { group, block } => {
            format!("group {group}: this device was removed at block #{block}")
        }
        AgentEvent::OwnKeyRotated { fingerprint } => {
            format!("own key rotated to {}", hex::encode(fingerprint))
        }
        AgentEvent::Disconnected { reason } => format!("disconnected: {reason}; reconnecting"),
        _ => return None,
    })
}

fn json_line(event: &AgentEvent) -> Option<String> {
    let value = match event {
        AgentEvent::Message(m) => serde_json::json!({
            "event": "message",
            "sender": m.sender,
            "group": m.group,
            "messageId": hex::encode(m.message_id),
            "block": m.block,
            "bridge": hex::encode(m.bridge),
            "payload": String::from_utf8_lossy(&m.payload),
        }),
        AgentEvent::Undeliverable { topic, reason } => serde_json::json!({
            "event": "undeliverable", "topic": topic, "reason": reason,
        }),
        AgentEvent::GroupKey {
            group,
            epoch,
            joined,
        } => serde_json::json!({
            "event": "groupKey", "group": group, "epoch": epoch, "joined": joined,
        }),
        AgentEvent::Removed { group, block } => serde_json::json!({
            "event": "removed", "group": group, "block": block,
        }),
        AgentEvent::OwnKeyRotated { fingerprint } => serde_json::json!({
            "event": "ownKeyRotated", "fingerprint": hex::encode(fingerprint),
        }),
        AgentEvent::Disconnected { reason } => serde_json::json!({
            "event": "disconnected", "reason": reason,
        }),
        _ => return None,
    };
    Some(value.to_string())
}

/// `<key>.next` while the rotation is under way, `<key>.prev` after it.
fn sibling(key: &Path, suffix: &str) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Rotates this device's key: the new key is written to `<key>.next` first, submitted,
/// and moved to `<key>` only once finalized; the old key stays as `<key>.prev`.
pub async fn rotate(
    node: &str,
    owner: &Keypair,
    device: &str,
    key_path: &Path,
    bits: KeyBits,
) -> Result<()> {
    let next_path = sibling(key_path, ".next");
    if next_path.exists() {
        return Err(format!(
            "{} exists: an earlier rotation did not finish; check `keymesh_device` for the current fingerprint, then keep or delete it",
            next_path.display()
        )
        .into());
    }
    let next = keys::generate(bits)?;
    keys::write_private(&next_path, &next)?;
    let block = onboard::rotate_key(node, owner, device, &next.to_public_key()).await?;
    let prev_path = sibling(key_path, ".prev");
    std::fs::rename(key_path, &prev_path)?;
    std::fs::rename(&next_path, key_path)?;
    println!(
        "rotated device {device} to key {} in finalized block {block}; the old key is {}",
        hex::encode(keys::fingerprint(&next.to_public_key())),
        prev_path.display()
    );
    Ok(())
}

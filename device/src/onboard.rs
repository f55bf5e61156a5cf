//! Onboarding and rotation on chain: `devices.register` with an operator's signer and
//! `devices.rotate_key` with the owner's, each submitted through subxt and waited on until
//! finalized. Signers come from a file or the environment, never from a flag alone, so
//! they stay out of shell history and process lists.

use std::{path::Path, str::FromStr};

use rsa::RsaPublicKey;
use subxt::{dynamic::Value, utils::AccountId32};
use subxt_signer::{sr25519::Keypair, SecretUri};

use crate::keys::public_der;

/// The environment variable a signer may come from.
pub const SIGNER_ENV: &str = "KEYMESH_SIGNER";

/// Why an on-chain step failed.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("signer: {0}")]
    Signer(String),
    #[error("cannot reach the node at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{call}: {reason}")]
    Call { call: &'static str, reason: String },
    #[error("owner {0:?} is not an SS58 account")]
    BadOwner(String),
}

/// Reads a signer: the secret URI (`//Alice`, a mnemonic, or `0x` seed) in `file`, else
/// in `$KEYMESH_SIGNER`.
pub fn load_signer(file: Option<&Path>) -> Result<Keypair, OnboardError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| OnboardError::Signer(format!("{}: {e}", path.display())))?,
        None => std::env::var(SIGNER_ENV)
            .map_err(|_| OnboardError::Signer(format!("give --signer-file or set {SIGNER_ENV}")))?,
    };
    let uri = SecretUri::from_str(text.trim()).map_err(|e| OnboardError::Signer(e.to_string()))?;
    Keypair::from_uri(&uri).map_err(|e| OnboardError::Signer(e.to_string()))
}

/// Parses an SS58 account.
pub fn account(text: &str) -> Result<AccountId32, OnboardError> {
    AccountId32::from_str(text).map_err(|_| OnboardError::BadOwner(text.to_string()))
}

/// Submits `pallet.call(args)` signed by `signer` and waits until it is finalized and
/// succeeded. Returns the finalized block's hash.
async fn submit_finalized(
    node: &str,
    signer: &Keypair,
    call: &'static str,
    args: Vec<Value>,
) -> Result<String, OnboardError> {
    let failed = |e: &dyn std::fmt::Display| OnboardError::Call {
        call,
        reason: e.to_string(),
    };
    let (api, _) = crate::node_client::connect(node)
        .await
        .map_err(|e| OnboardError::Connect {
            url: node.to_string(),
            reason: e.to_string(),
        })?;
    let payload = subxt::dynamic::tx("Devices", call, args);
    let progress = api
        .tx()
        .await
        .map_err(|e| failed(&e))?
        .sign_and_submit_then_watch_default(&payload, signer)
        .await
        .map_err(|e| failed(&e))?;
    let in_block = progress
        .wait_for_finalized()
        .await
        .map_err(|e| failed(&e))?;
    in_block.wait_for_success().await.map_err(|e| failed(&e))?;
    Ok(format!("{:?}", in_block.block_hash()))
}

/// Registers `device` with `key`, owned by `owner`. Only an operator's (or root's) signer
/// succeeds. Returns the hash of the block it was finalized in.
pub async fn register(
    node: &str,
    operator: &Keypair,
    device: &str,
    key: &RsaPublicKey,
    owner: &AccountId32,
) -> Result<String, OnboardError> {
    let args = vec![
        Value::from_bytes(device.as_bytes()),
        Value::from_bytes(public_der(key)),
        Value::from_bytes(owner.0),
    ];
    submit_finalized(node, operator, "register", args).await
}

/// Replaces `device`'s key with `key`. Only the owner's (or an operator's) signer succeeds.
pub async fn rotate_key(
    node: &str,
    owner: &Keypair,
    device: &str,
    key: &RsaPublicKey,
) -> Result<String, OnboardError> {
    let args = vec![
        Value::from_bytes(device.as_bytes()),
        Value::from_bytes(public_der(key)),
    ];
    submit_finalized(node, owner, "rotate_key", args).await
}

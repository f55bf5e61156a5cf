//! A subxt client of a KeyMesh node, for every KeyMesh program that reads or writes the
//! chain (the bridge, the onboarding commands, the benchmarks).
//!
//! It speaks the node's legacy JSON-RPC methods (`chain_*`, `state_*`, `author_*`). subxt's
//! default backend prefers the newer `archive_v1_*` and `chainHead_v1_*` methods, and
//! against our node on loopback every block lookup, event fetch and storage read through
//! them took 44 ms; through the legacy methods each takes well under a millisecond. The
//! bridge reads several of them for every finalized block, so this is what keeps its key
//! cache within a millisecond or two of the node's finalized head rather than a fifth of a
//! second behind it.

use std::sync::Arc;

use subxt::{backend::LegacyBackend, rpcs::RpcClient, OnlineClient, PolkadotConfig};

/// Why a node could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("cannot read the node's runtime: {0}")]
    Client(String),
}

/// Connects to the node at `url` (`ws://` or `wss://`). Returns the subxt client and the raw
/// RPC client it runs on, for the node's own methods.
pub async fn connect(
    url: &str,
) -> Result<(OnlineClient<PolkadotConfig>, RpcClient), NodeClientError> {
    let rpc = RpcClient::from_insecure_url(url)
        .await
        .map_err(|e| NodeClientError::Connect(e.to_string()))?;
    let backend = LegacyBackend::builder().build(rpc.clone());
    let api = OnlineClient::from_backend(Arc::new(backend))
        .await
        .map_err(|e| NodeClientError::Client(e.to_string()))?;
    Ok((api, rpc))
}

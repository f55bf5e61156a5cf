//! Peers limited to the nodes that `pallet-node-authorization` authorizes, on every node
//! and from start-up on.
//!
//! The pallet's offchain worker hands the authorized set to the network on each imported
//! block, but only where offchain workers run (by default, validators only), and only once
//! a block is imported. So a full node or an RPC node would accept any peer, and every node
//! would accept any peer until its first import. Here the network starts by refusing peers
//! that are not reserved, and it reserves the well-known nodes that the node's own best
//! state lists. The offchain worker (enabled on every node) keeps that set current after
//! that.

use std::collections::HashSet;

use codec::Decode;
use sc_client_api::StorageProvider;
use sc_network::{config::NonReservedPeerMode, NetworkPeers, PeerId};
use sp_core::storage::StorageKey;
use sp_runtime::traits::Block as BlockT;

/// Storage key of `NodeAuthorization::WellKnownNodes`.
fn well_known_nodes_key() -> StorageKey {
    let mut key = sp_io::hashing::twox_128(b"NodeAuthorization").to_vec();
    key.extend_from_slice(&sp_io::hashing::twox_128(b"WellKnownNodes"));
    StorageKey(key)
}

/// The well-known nodes in the state at `at`. A PeerId that does not decode is skipped
/// (and logged): it can never connect anyway.
pub fn well_known_nodes<B, C>(client: &C, at: B::Hash) -> Result<HashSet<PeerId>, String>
where
    B: BlockT,
    C: StorageProvider<B, sc_service::TFullBackend<B>>,
{
    let Some(raw) = client
        .storage(at, &well_known_nodes_key())
        .map_err(|e| format!("reading the well-known nodes: {e}"))?
    else {
        return Ok(HashSet::new());
    };
    let nodes = Vec::<Vec<u8>>::decode(&mut &raw.0[..])
        .map_err(|e| format!("decoding the well-known nodes: {e}"))?;
    Ok(nodes
        .iter()
        .filter_map(|bytes| match PeerId::from_bytes(bytes) {
            Ok(peer) => Some(peer),
            Err(e) => {
                log::warn!("a well-known node is not a PeerId ({e}); skipped");
                None
            }
        })
        .collect())
}

/// Makes the network configuration refuse every peer that is not reserved. Call before the
/// network is built, so no connection is accepted before [`reserve`] names the peers.
pub fn refuse_strangers(network: &mut sc_network::config::NetworkConfiguration) {
    network.default_peers_set.non_reserved_mode = NonReservedPeerMode::Deny;
}

/// Reserves `nodes` as the only peers, as the offchain worker would.
pub fn reserve(network: &dyn NetworkPeers, nodes: HashSet<PeerId>) {
    log::info!(
        "peers limited to the {} well-known nodes of the chain state",
        nodes.len()
    );
    network.set_authorized_peers(nodes);
    network.set_authorized_only(true);
}

//! The bench's connection to a node and its way of submitting many calls at once: signed
//! offline by Alice against one block under consecutive nonces, then submitted back to
//! back in nonce order.
//!
//! Submitted concurrently instead, the pool validates transactions in no particular order
//! and parks each whose predecessor it has not seen yet in its future queue, which holds a
//! tenth of `--pool-limit` (819 by default). A batch of 1,000 whose first nonces validate
//! last overflows it, the pool evicts some, and the rest wait for ever behind the gap: the
//! "stall with nothing refused" (the pool's debug log shows `views=[(4, 0, 819)]`). In
//! order, each transaction is ready on arrival and the future queue stays empty.

use std::time::SystemTime;

use subxt::{
    config::{DefaultExtrinsicParamsBuilder, RpcConfigFor},
    dynamic::Value,
    rpcs::LegacyRpcMethods,
    tx::DynamicPayload,
    OnlineClient, PolkadotConfig,
};
use subxt_signer::sr25519::dev;

use crate::registration::BenchError;

/// Blocks each transaction stays valid for. Signing with subxt's online defaults costs a
/// node round trip per transaction (about 44 ms here) and a 32-block era: a batch of 1,000
/// outlived its era while being signed and every signature failed.
const MORTALITY: u64 = 256;

pub type Api = OnlineClient<PolkadotConfig>;
pub type Rpc = LegacyRpcMethods<RpcConfigFor<PolkadotConfig>>;

/// One connection, seen through subxt's typed API and its raw RPC methods.
pub struct Node {
    pub api: Api,
    pub rpc: Rpc,
}

impl Node {
    pub async fn connect(url: &str) -> Result<Node, BenchError> {
        let connect = |e: &dyn std::fmt::Display| BenchError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let (api, rpc) = keymesh_device::node_client::connect(url)
            .await
            .map_err(|e| connect(&e))?;
        Ok(Node {
            api,
            rpc: LegacyRpcMethods::new(rpc),
        })
    }

    /// Signs `calls` as Alice, offline against the current block, under consecutive nonces
    /// from her next one; `what` names them in errors.
    pub async fn sign_as_alice(
        &self,
        calls: &[DynamicPayload<Vec<Value>>],
        what: &str,
    ) -> Result<Vec<Vec<u8>>, BenchError> {
        let alice = dev::alice();
        let failed = |e: &dyn std::fmt::Display| BenchError::Register {
            device: what.to_string(),
            reason: e.to_string(),
        };
        let account = subxt::utils::AccountId32(alice.public_key().0);
        let first = self
            .rpc
            .system_account_next_index(&account)
            .await
            .map_err(|e| failed(&e))?;
        let at = self.api.at_current_block().await.map_err(|e| failed(&e))?;
        let tx = at.tx();
        let mut signed = Vec::with_capacity(calls.len());
        for (nonce, call) in (first..).zip(calls) {
            let params = DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
                .nonce(nonce)
                .mortal_from_unchecked(MORTALITY, at.block_number(), at.block_hash())
                .build();
            let submittable = tx
                .create_signable_offline(call, params)
                .and_then(|mut signable| signable.sign(&alice))
                .map_err(|e| failed(&e))?;
            signed.push(submittable.into_encoded());
        }
        Ok(signed)
    }

    /// Submits `signed` back to back in order; the pool's refusals.
    pub async fn submit_in_order(&self, signed: &[Vec<u8>]) -> Vec<String> {
        let mut refused = Vec::new();
        for tx in signed {
            if let Err(e) = self.rpc.author_submit_extrinsic(tx.as_slice()).await {
                refused.push(format!("{e:?}"));
            }
        }
        refused
    }
}

/// `devices.register` of `{prefix}0` .. `{prefix}{n - 1}`, each with the DER public `key`
/// and owned by Alice.
pub fn register_calls(prefix: &str, n: u32, key: &[u8]) -> Vec<DynamicPayload<Vec<Value>>> {
    let alice = dev::alice().public_key().0;
    (0..n)
        .map(|i| {
            subxt::dynamic::tx(
                "Devices",
                "register",
                vec![
                    Value::from_bytes(format!("{prefix}{i}").as_bytes()),
                    Value::from_bytes(key),
                    Value::from_bytes(alice),
                ],
            )
        })
        .collect()
}

/// A name unique to this run, so runs against one chain never collide.
pub fn run_tag() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

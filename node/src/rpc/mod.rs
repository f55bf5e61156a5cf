//! The node's JSON-RPC extensions, on top of Substrate's own methods.

use std::sync::Arc;

pub mod keymesh;

use jsonrpsee::RpcModule;
use keymesh_runtime::{opaque::Block, AccountId, Balance, Nonce};
use sc_transaction_pool_api::TransactionPool;
use sp_api::ProvideRuntimeApi;
use sp_block_builder::BlockBuilder;
use sp_blockchain::{Error as BlockChainError, HeaderBackend, HeaderMetadata};

/// What the RPC handlers need from the node.
pub struct FullDeps<C, P> {
    /// The client, to read chain state.
    pub client: Arc<C>,
    /// The transaction pool, to answer nonce queries that count pending transactions.
    pub pool: Arc<P>,
}

/// Builds the RPC module with every extension.
pub fn create_full<C, P>(
    deps: FullDeps<C, P>,
) -> Result<RpcModule<()>, Box<dyn std::error::Error + Send + Sync>>
where
    C: ProvideRuntimeApi<Block>
        + HeaderBackend<Block>
        + HeaderMetadata<Block, Error = BlockChainError>
        + Send
        + Sync
        + 'static,
    C::Api: substrate_frame_rpc_system::AccountNonceApi<Block, AccountId, Nonce>,
    C::Api: pallet_transaction_payment_rpc::TransactionPaymentRuntimeApi<Block, Balance>,
    C::Api: BlockBuilder<Block>,
    C::Api:
        keymesh_primitives::api::KeyDirectoryApi<Block, AccountId, keymesh_runtime::BlockNumber>,
    P: TransactionPool + 'static,
{
    use pallet_transaction_payment_rpc::{TransactionPayment, TransactionPaymentApiServer};
    use substrate_frame_rpc_system::{System, SystemApiServer};

    let mut module = RpcModule::new(());
    let FullDeps { client, pool } = deps;

    module.merge(System::new(client.clone(), pool).into_rpc())?;
    module.merge(TransactionPayment::new(client.clone()).into_rpc())?;
    module.merge(keymesh::KeyMeshApiServer::into_rpc(keymesh::KeyMesh::new(
        client,
    )))?;
    Ok(module)
}

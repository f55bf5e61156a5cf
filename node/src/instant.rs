//! Instant sealing for development and tests: a block for every transaction, an empty block
//! every [`HEARTBEAT`] besides, each finalized at once, stamped with the wall clock.
//!
//! Both differences from `run_instant_seal_and_finalize` exist for clients that judge
//! staleness by the finalized head's timestamp (the bridge refuses everything once that
//! head is older than its `max_staleness`): an idle chain must keep finalizing, and its
//! timestamps must follow the clock rather than advance one slot per block.

use std::{sync::Arc, time::Duration};

use futures::{stream, StreamExt};
use keymesh_runtime::opaque::Block;
use sc_consensus_manual_seal::EngineCommand;
use sp_blockchain::HeaderBackend;
use sp_consensus_aura::sr25519::AuthoritySignature;
use sp_runtime::traits::Block as BlockT;

/// How often an idle instant-seal chain seals an empty block.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

type Hash = <Block as BlockT>::Hash;

/// A seal for every transaction the pool imports, and an empty one every [`HEARTBEAT`].
pub fn commands(
    imports: impl stream::Stream<Item = Hash> + Send + 'static,
) -> stream::BoxStream<'static, EngineCommand<Hash>> {
    let seal = |create_empty| EngineCommand::SealNewBlock {
        create_empty,
        finalize: true,
        parent_hash: None,
        sender: None,
    };
    let transactions = imports.map(move |_| seal(false));
    let heartbeat = stream::unfold((), |()| async {
        tokio::time::sleep(HEARTBEAT).await;
        Some(((), ()))
    })
    .map(move |()| seal(true));
    stream::select(transactions, heartbeat).boxed()
}

/// The timestamp of the block after `parent`: the wall clock, but at least one slot past
/// the parent's slot, as Aura and the timestamp pallet require however fast blocks come.
pub fn next_timestamp<C: HeaderBackend<Block>>(
    client: &Arc<C>,
    parent: Hash,
    slot_ms: u64,
) -> Result<sp_timestamp::Timestamp, Box<dyn std::error::Error + Send + Sync>> {
    let header = client
        .header(parent)?
        .ok_or_else(|| format!("parent block {parent} is not known"))?;
    let parent_slot = sc_consensus_aura::find_pre_digest::<Block, AuthoritySignature>(&header)
        .map_err(|e| {
            Box::new(std::io::Error::other(format!("{e:?}")))
                as Box<dyn std::error::Error + Send + Sync>
        })?;
    let earliest = u64::from(parent_slot)
        .saturating_add(1)
        .saturating_mul(slot_ms);
    let now = sp_timestamp::Timestamp::current();
    Ok(now.max(earliest.into()))
}

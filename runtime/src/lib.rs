//! The KeyMesh runtime.
//!
//! A permissioned chain: Aura authors blocks every [`MILLISECS_PER_BLOCK`], GRANDPA
//! finalizes them, an operator set (a `pallet-membership` instance) holds the right to
//! administer the fleet, and `pallet-node-authorization` decides which libp2p peers the
//! validators talk to.
#![cfg_attr(not(feature = "std"), no_std)]
// `impl_runtime_apis!` and `#[frame_support::runtime]` expand into code clippy dislikes.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "std")]
include!(concat!(env!("OUT_DIR"), "/wasm_binary.rs"));

extern crate alloc;

// Before `apis`: its `define_benchmarks!` defines the macros the `Benchmark` API expands.
#[cfg(feature = "runtime-benchmarks")]
#[macro_use]
pub mod benchmarks;
pub mod apis;
pub mod configs;
#[cfg(test)]
mod cost_tests;
pub mod genesis_config_presets;
pub mod known_signers;
pub mod migrations;
#[cfg(test)]
mod operator_tests;
pub mod weights;

use alloc::{borrow::Cow, vec::Vec};
use sp_runtime::{
    generic, impl_opaque_keys,
    traits::{BlakeTwo256, IdentifyAccount, Verify},
    MultiAddress, MultiSignature,
};
use sp_version::RuntimeVersion;

pub use keymesh_primitives::MILLISECS_PER_BLOCK;
pub use pallet_balances::Call as BalancesCall;
#[cfg(feature = "std")]
pub use sp_runtime::BuildStorage;

/// Types the node needs without knowing the runtime's extrinsic format.
pub mod opaque {
    use super::*;
    pub use sp_runtime::OpaqueExtrinsic as UncheckedExtrinsic;

    /// Opaque block header.
    pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
    /// Opaque block.
    pub type Block = generic::Block<Header, UncheckedExtrinsic>;
}

impl_opaque_keys! {
    /// The keys a validator's node holds: Aura for authoring, GRANDPA for finality votes.
    pub struct SessionKeys {
        pub aura: Aura,
        pub grandpa: Grandpa,
    }
}

#[sp_version::runtime_version]
pub const VERSION: RuntimeVersion = RuntimeVersion {
    spec_name: Cow::Borrowed("keymesh"),
    impl_name: Cow::Borrowed("keymesh"),
    authoring_version: 1,
    spec_version: 105,
    impl_version: 1,
    apis: apis::RUNTIME_API_VERSIONS,
    transaction_version: 4,
    system_version: 1,
};

/// The Aura slot. It cannot change once a chain has started: slots already authored
/// would no longer line up with their timestamps.
pub const SLOT_DURATION: u64 = MILLISECS_PER_BLOCK;

/// Smallest unit of the fee token, scaled like the template chains.
pub const UNIT: Balance = 1_000_000_000_000;
/// An account below this balance is reaped.
pub const EXISTENTIAL_DEPOSIT: Balance = UNIT / 1_000;

/// Signature of a transaction.
pub type Signature = MultiSignature;
/// Account id: the signer's public key.
pub type AccountId = <<Signature as Verify>::Signer as IdentifyAccount>::AccountId;
/// Fee-token balance.
pub type Balance = u128;
/// Transaction counter of an account.
pub type Nonce = u32;
/// Block and state hash.
pub type Hash = sp_core::H256;
/// Block height.
pub type BlockNumber = u32;
/// Address format of transactions.
pub type Address = MultiAddress<AccountId, ()>;
/// Block header.
pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
/// Block.
pub type Block = generic::Block<Header, UncheckedExtrinsic>;

/// The checks every signed transaction goes through.
pub type TxExtension = (
    frame_system::CheckNonZeroSender<Runtime>,
    known_signers::CheckKnownSigner,
    frame_system::CheckSpecVersion<Runtime>,
    frame_system::CheckTxVersion<Runtime>,
    frame_system::CheckGenesis<Runtime>,
    frame_system::CheckEra<Runtime>,
    frame_system::CheckNonce<Runtime>,
    frame_system::CheckWeight<Runtime>,
    pallet_transaction_payment::ChargeTransactionPayment<Runtime>,
    frame_metadata_hash_extension::CheckMetadataHash<Runtime>,
);

/// Extrinsic as the runtime decodes it.
pub type UncheckedExtrinsic =
    generic::UncheckedExtrinsic<Address, RuntimeCall, Signature, TxExtension>;
/// What a signer signs.
pub type SignedPayload = generic::SignedPayload<RuntimeCall, TxExtension>;

/// The storage migrations a runtime upgrade runs, oldest first. Each is guarded by its
/// pallet's storage version, so one that already ran (or a chain that started later) skips
/// it. A layout change adds its step here and to its pallet's `migrations` module.
pub type Migrations = (
    pallet_devices::migrations::v1::IndexOwners<Runtime>,
    pallet_groups::migrations::v1::IndexAdmins<Runtime>,
    pallet_groups::migrations::v2::RecordKeyViews<Runtime>,
    migrations::MoveKeyManagers,
);

/// Dispatches blocks and extrinsics to the pallets.
pub type Executive = frame_executive::Executive<
    Runtime,
    Block,
    frame_system::ChainContext<Runtime>,
    Runtime,
    AllPalletsWithSystem,
    Migrations,
>;

#[frame_support::runtime]
mod runtime {
    #[runtime::runtime]
    #[runtime::derive(
        RuntimeCall,
        RuntimeEvent,
        RuntimeError,
        RuntimeOrigin,
        RuntimeFreezeReason,
        RuntimeHoldReason,
        RuntimeSlashReason,
        RuntimeLockId,
        RuntimeTask,
        RuntimeViewFunction
    )]
    pub struct Runtime;

    #[runtime::pallet_index(0)]
    pub type System = frame_system;

    #[runtime::pallet_index(1)]
    pub type Timestamp = pallet_timestamp;

    #[runtime::pallet_index(2)]
    pub type Aura = pallet_aura;

    #[runtime::pallet_index(3)]
    pub type Grandpa = pallet_grandpa;

    #[runtime::pallet_index(4)]
    pub type Balances = pallet_balances;

    #[runtime::pallet_index(5)]
    pub type TransactionPayment = pallet_transaction_payment;

    #[runtime::pallet_index(6)]
    pub type Sudo = pallet_sudo;

    /// The operators: accounts that may register devices and create groups.
    #[runtime::pallet_index(7)]
    pub type Operators = pallet_membership<Instance1>;

    /// The peers validators accept connections from.
    #[runtime::pallet_index(8)]
    pub type NodeAuthorization = pallet_node_authorization;

    /// Device identities and their RSA public keys.
    #[runtime::pallet_index(9)]
    pub type Devices = pallet_devices;

    /// The audit trail of key exchanges and key mismatches; who the bridges are.
    #[runtime::pallet_index(10)]
    pub type ExchangeLog = pallet_exchange_log;

    /// Groups (MQTT topics): members, roles and the topic key of each epoch.
    #[runtime::pallet_index(11)]
    pub type Groups = pallet_groups;
}

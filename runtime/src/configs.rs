//! Pallet configuration.

use frame_support::{
    derive_impl,
    dispatch::DispatchClass,
    parameter_types,
    traits::{ConstBool, ConstU128, ConstU32, ConstU64, ConstU8, EitherOfDiverse, VariantCountOf},
    weights::{
        constants::{ParityDbWeight, WEIGHT_REF_TIME_PER_SECOND},
        IdentityFee, Weight,
    },
};
use frame_system::{
    limits::{BlockLength, BlockWeights},
    EnsureRoot, EnsureSignedBy,
};
use pallet_transaction_payment::{ConstFeeMultiplier, FungibleAdapter, Multiplier};
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_runtime::{traits::One, Perbill};
use sp_version::RuntimeVersion;

use super::{
    AccountId, Aura, Balance, Balances, Block, BlockNumber, Devices, Groups, Hash, Nonce,
    Operators, PalletInfo, Runtime, RuntimeCall, RuntimeEvent, RuntimeFreezeReason,
    RuntimeHoldReason, RuntimeOrigin, RuntimeTask, System, EXISTENTIAL_DEPOSIT, SLOT_DURATION,
    VERSION,
};

const NORMAL_DISPATCH_RATIO: Perbill = Perbill::from_percent(75);
/// 5 MiB: room for a large group's rekey (one 512-byte wrap per member) in one block.
const MAX_BLOCK_LENGTH: u32 = 5 * 1024 * 1024;

parameter_types! {
    pub const BlockHashCount: BlockNumber = 2400;
    pub const Version: RuntimeVersion = VERSION;
    /// A third of the one-second slot for execution, so a block can be authored, gossiped and
    /// imported by every validator inside its slot.
    pub RuntimeBlockWeights: BlockWeights = BlockWeights::with_sensible_defaults(
        Weight::from_parts(WEIGHT_REF_TIME_PER_SECOND / 3, u64::MAX),
        NORMAL_DISPATCH_RATIO,
    );
    pub RuntimeBlockLength: BlockLength = BlockLength::builder()
        .max_length(MAX_BLOCK_LENGTH)
        .modify_max_length_for_class(DispatchClass::Normal, |max| {
            *max = NORMAL_DISPATCH_RATIO * MAX_BLOCK_LENGTH
        })
        .build();
    pub const SS58Prefix: u8 = 42;
}

#[derive_impl(frame_system::config_preludes::SolochainDefaultConfig)]
impl frame_system::Config for Runtime {
    type Block = Block;
    type BlockWeights = RuntimeBlockWeights;
    type BlockLength = RuntimeBlockLength;
    type AccountId = AccountId;
    type Nonce = Nonce;
    type Hash = Hash;
    type BlockHashCount = BlockHashCount;
    /// The node stores state in ParityDB, so storage is priced with its weights.
    type DbWeight = ParityDbWeight;
    type Version = Version;
    type AccountData = pallet_balances::AccountData<Balance>;
    type SS58Prefix = SS58Prefix;
    type MaxConsumers = ConstU32<16>;
}

impl pallet_aura::Config for Runtime {
    type AuthorityId = AuraId;
    type DisabledValidators = ();
    type MaxAuthorities = ConstU32<32>;
    type AllowMultipleBlocksPerSlot = ConstBool<false>;
    type SlotDuration = pallet_aura::MinimumPeriodTimesTwo<Runtime>;
}

impl pallet_grandpa::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type WeightInfo = ();
    type MaxAuthorities = ConstU32<32>;
    type MaxNominators = ConstU32<0>;
    type MaxSetIdSessionEntries = ConstU64<0>;
    type KeyOwnerProof = sp_core::Void;
    type EquivocationReportSystem = ();
}

impl pallet_timestamp::Config for Runtime {
    type Moment = u64;
    type OnTimestampSet = Aura;
    type MinimumPeriod = ConstU64<{ SLOT_DURATION / 2 }>;
    type WeightInfo = ();
}

impl pallet_balances::Config for Runtime {
    type MaxLocks = ConstU32<50>;
    type MaxReserves = ();
    type ReserveIdentifier = [u8; 8];
    type Balance = Balance;
    type RuntimeEvent = RuntimeEvent;
    type DustRemoval = ();
    type ExistentialDeposit = ConstU128<EXISTENTIAL_DEPOSIT>;
    type AccountStore = System;
    type WeightInfo = pallet_balances::weights::SubstrateWeight<Runtime>;
    type FreezeIdentifier = RuntimeFreezeReason;
    type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
    type RuntimeHoldReason = RuntimeHoldReason;
    type RuntimeFreezeReason = RuntimeFreezeReason;
    type DoneSlashHandler = ();
}

parameter_types! {
    pub FeeMultiplier: Multiplier = Multiplier::one();
}

impl pallet_transaction_payment::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type OnChargeTransaction = FungibleAdapter<Balances, ()>;
    type OperationalFeeMultiplier = ConstU8<5>;
    type WeightToFee = IdentityFee<Balance>;
    type LengthToFee = IdentityFee<Balance>;
    type FeeMultiplierUpdate = ConstFeeMultiplier<FeeMultiplier>;
    type WeightInfo = pallet_transaction_payment::weights::SubstrateWeight<Runtime>;
}

impl pallet_sudo::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type RuntimeCall = RuntimeCall;
    type WeightInfo = pallet_sudo::weights::SubstrateWeight<Runtime>;
}

/// Most operators a fleet can have. Each is one account; 32 covers shifts and sites
/// while keeping the membership checks of later pallets cheap.
pub type MaxOperators = ConstU32<32>;

/// Operators are named by root (sudo on the dev chain, governance in production):
/// adding an operator hands out fleet-wide powers, so no operator may add another.
impl pallet_membership::Config<pallet_membership::Instance1> for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type AddOrigin = EnsureRoot<AccountId>;
    type RemoveOrigin = EnsureRoot<AccountId>;
    type SwapOrigin = EnsureRoot<AccountId>;
    type ResetOrigin = EnsureRoot<AccountId>;
    type PrimeOrigin = EnsureRoot<AccountId>;
    type MembershipInitialized = ();
    type MembershipChanged = ();
    type MaxMembers = MaxOperators;
    type WeightInfo = pallet_membership::weights::SubstrateWeight<Runtime>;
}

/// Root, or a signed member of the operator set: the one origin the KeyMesh pallets ask
/// for when they say "operator". Swapping this (say, for a collective) changes who runs the
/// fleet without touching a pallet.
pub type EnsureOperator =
    EitherOfDiverse<EnsureRoot<AccountId>, EnsureSignedBy<Operators, AccountId>>;

parameter_types! {
    /// Most peers the validators accept: validators, full nodes serving key queries,
    /// and bridges' nodes.
    pub const MaxWellKnownNodes: u32 = 64;
    /// A libp2p PeerId of an Ed25519 key is 38 bytes; 128 leaves room for other key types.
    pub const MaxPeerIdLength: u32 = 128;
}

/// Which nodes join the network is a root decision, like the operator set.
impl pallet_node_authorization::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type MaxWellKnownNodes = MaxWellKnownNodes;
    type MaxPeerIdLength = MaxPeerIdLength;
    type AddOrigin = EnsureRoot<AccountId>;
    type RemoveOrigin = EnsureRoot<AccountId>;
    type SwapOrigin = EnsureRoot<AccountId>;
    type ResetOrigin = EnsureRoot<AccountId>;
    type WeightInfo = crate::weights::pallet_node_authorization::WeightInfo<Runtime>;
}

parameter_types! {
    /// Keys remembered per device: enough to audit a device rotating monthly for years.
    pub const MaxKeyHistory: u32 = 32;
}

/// Operators (the membership set) or root register devices; owners rotate and revoke.
impl pallet_devices::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = EnsureOperator;
    type MaxKeyHistory = MaxKeyHistory;
    /// A revoked device leaves every group.
    type OnChanged = Groups;
    type WeightInfo = pallet_devices::weights::SubstrateWeight<Runtime>;
}

parameter_types! {
    /// Records in one `exchange_log.record`: a bridge flushes once a block, and at 1 s
    /// blocks 1024 records covers 1,000 devices each sending once a second.
    pub const MaxExchangeBatch: u32 = 1024;
    /// Bridge accounts (and key-manager accounts) the chain accepts.
    pub const MaxBridges: u32 = 16;
}

/// Root or operators register bridges and key managers; bridges write the log.
impl pallet_exchange_log::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = EnsureOperator;
    type MaxBatch = MaxExchangeBatch;
    type MaxBridges = MaxBridges;
    type Devices = Devices;
    type Groups = Groups;
    type WeightInfo = pallet_exchange_log::weights::SubstrateWeight<Runtime>;
    #[cfg(feature = "runtime-benchmarks")]
    type BenchmarkHelper = crate::benchmarks::Directory;
}

parameter_types! {
    /// Members of one group: a fleet's topic of a thousand sensors fits.
    pub const MaxGroupMembers: u32 = 1024;
    /// Groups one device may be in; bounds what revoking it costs.
    pub const MaxGroupsPerDevice: u32 = 16;
    /// A sealed topic private key: PKCS#8 DER of RSA-4096 (about 2.4 KB) plus nonce and tag.
    pub const MaxSealedKeyLen: u32 = 4096;
    /// One epoch-key wrap: the modulus length of an RSA-4096 device key.
    pub const MaxWrapLen: u32 = 512;
    /// Wraps per `set_epoch_key` call (about 150 KB): a 1,024-member rekey takes 4 calls.
    pub const MaxWrapsPerCall: u32 = 256;
}

/// Operators create groups, admins manage members, key managers (bridges) set epoch keys.
impl pallet_groups::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type OperatorOrigin = EnsureOperator;
    type MaxKeyManagers = MaxBridges;
    type Devices = Devices;
    type MaxMembers = MaxGroupMembers;
    type MaxGroupsPerDevice = MaxGroupsPerDevice;
    type MaxSealedKeyLen = MaxSealedKeyLen;
    type MaxWrapLen = MaxWrapLen;
    type MaxWrapsPerCall = MaxWrapsPerCall;
    type WeightInfo = pallet_groups::weights::SubstrateWeight<Runtime>;
    #[cfg(feature = "runtime-benchmarks")]
    type BenchmarkHelper = crate::benchmarks::Directory;
}

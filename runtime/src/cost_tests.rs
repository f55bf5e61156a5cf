//! What KeyMesh's calls cost in this runtime, with its real configuration: the weights
//! charged (the pallets' benchmarked `weights.rs` at ParityDB database weights) and the
//! storage one device and one group member occupy, measured by walking the state. Run with `--nocapture` to see the
//! figures; the assertions check that every call fits in a block and that storage per item
//! stays within its bound.

use crate::{
    configs::MaxWrapsPerCall, AccountId, Runtime, RuntimeCall, RuntimeGenesisConfig, RuntimeOrigin,
    System,
};
use frame_support::{
    dispatch::{DispatchClass, GetDispatchInfo},
    storage::StoragePrefixedMap,
    traits::UnfilteredDispatchable,
    weights::{constants::WEIGHT_REF_TIME_PER_MICROS, Weight},
};
use sp_runtime::BuildStorage;

const KEY_2048: &[u8] = include_bytes!("../dev-keys/1111.der");
const KEY_4096: &[u8] = include_bytes!("../../pallets/devices/testdata/rsa4096.der");

/// Bytes (keys + values) of every storage entry under `prefix`.
fn bytes_under(prefix: &[u8]) -> usize {
    let mut total = 0;
    let mut cursor = prefix.to_vec();
    while let Some(next) = sp_io::storage::next_key(&cursor) {
        if !next.starts_with(prefix) {
            break;
        }
        total += next.len() + sp_io::storage::get(&next).map_or(0, |v| v.len());
        cursor = next;
    }
    total
}

fn device_bytes() -> usize {
    bytes_under(&pallet_devices::Devices::<Runtime>::final_prefix())
        + bytes_under(&pallet_devices::KeyHistory::<Runtime>::final_prefix())
}

fn member_bytes() -> usize {
    bytes_under(&pallet_groups::Members::<Runtime>::final_prefix())
        + bytes_under(&pallet_groups::EpochWraps::<Runtime>::final_prefix())
        + bytes_under(&pallet_groups::DeviceGroups::<Runtime>::final_prefix())
}

fn id(s: &str) -> pallet_groups::Id {
    s.as_bytes().to_vec().try_into().expect("short id")
}

fn device_id(i: usize) -> String {
    format!("d{i:04}")
}

/// Dispatches `call` as `origin`; returns (charged up front, charged after refund).
fn dispatch(call: RuntimeCall, origin: RuntimeOrigin) -> (Weight, Weight) {
    let info = call.get_dispatch_info();
    let post = call
        .dispatch_bypass_filter(origin)
        .unwrap_or_else(|e| panic!("dispatch failed: {e:?}"));
    (info.call_weight, post.calc_actual_weight(&info))
}

fn micros(w: Weight) -> f64 {
    w.ref_time() as f64 / WEIGHT_REF_TIME_PER_MICROS as f64
}

#[test]
fn call_weights_and_storage_per_device_and_member() {
    let storage = RuntimeGenesisConfig::default()
        .build_storage()
        .expect("default genesis builds");
    let mut ext = sp_io::TestExternalities::new(storage);
    ext.execute_with(|| {
        System::set_block_number(1);
        let max_extrinsic = <Runtime as frame_system::Config>::BlockWeights::get()
            .get(DispatchClass::Normal)
            .max_extrinsic
            .expect("normal class has a limit");
        let owner = AccountId::from([7u8; 32]);
        let key_manager = AccountId::from([9u8; 32]);

        // Devices: 1,000 registrations, then a rotation.
        let before = device_bytes();
        let mut register = Weight::zero();
        for i in 0..1_000 {
            let call = RuntimeCall::Devices(pallet_devices::Call::register {
                device: id(&device_id(i)),
                public_key: KEY_2048.to_vec().try_into().expect("fits"),
                owner: owner.clone(),
            });
            register = dispatch(call, RuntimeOrigin::root()).1;
        }
        let per_device = (device_bytes() - before) / 1_000;
        let rotate = |key: &[u8]| {
            let call = RuntimeCall::Devices(pallet_devices::Call::rotate_key {
                device: id(&device_id(0)),
                public_key: key.to_vec().try_into().expect("fits"),
            });
            dispatch(call, RuntimeOrigin::signed(owner.clone())).1
        };
        let rotate_4096 = rotate(KEY_4096);
        let rotate_2048 = rotate(KEY_2048);
        assert!(register.all_lte(max_extrinsic) && rotate_4096.all_lte(max_extrinsic));
        // Weights are benchmarked with the longest key, so every key is charged the same.
        assert_eq!(rotate_2048, rotate_4096, "a rotation is charged its worst case");
        println!("register (2048-bit key): {:.1} µs, {} proof bytes", micros(register), register.proof_size());
        println!("rotate_key 2048 / 4096-bit: {:.1} / {:.1} µs", micros(rotate_2048), micros(rotate_4096));
        println!("storage per device (record + key history of 1 key): {per_device} bytes");
        assert!(per_device < 1_000, "a device takes {per_device} bytes");

        assert!(pallet_groups::Pallet::<Runtime>::add_key_manager(
            RuntimeOrigin::root(),
            key_manager.clone()
        )
        .is_ok());

        for members in [10usize, 100, 1_000] {
            let group = format!("g{members}");
            let call = RuntimeCall::Groups(pallet_groups::Call::create_group {
                group: id(&group),
                admin: owner.clone(),
            });
            dispatch(call, RuntimeOrigin::root());
            let before = member_bytes();
            for i in 0..members {
                let call = RuntimeCall::Groups(pallet_groups::Call::add_member {
                    group: id(&group),
                    device: id(&device_id(i)),
                    role: keymesh_primitives::Role::Both,
                });
                dispatch(call, RuntimeOrigin::signed(owner.clone()));
            }
            let membership_only = (member_bytes() - before) / members;

            // The rekey, in calls of at most MaxWrapsPerCall wraps (256-byte wraps: RSA-2048).
            let ids: Vec<usize> = (0..members).collect();
            let mut charged = Weight::zero();
            let mut calls = 0;
            let started = std::time::Instant::now();
            for chunk in ids.chunks(MaxWrapsPerCall::get() as usize) {
                let wraps: Vec<_> = chunk
                    .iter()
                    .map(|i| {
                        let device = id(&device_id(*i));
                        let key = pallet_devices::Devices::<Runtime>::get(&device)
                            .expect("registered")
                            .fingerprint;
                        (device, key, vec![0x5a; 256].try_into().expect("fits"))
                    })
                    .collect();
                let call = RuntimeCall::Groups(pallet_groups::Call::set_epoch_key {
                    group: id(&group),
                    epoch: 1,
                    members_at: frame_system::Pallet::<Runtime>::block_number(),
                    topic_public_key: KEY_2048.to_vec().try_into().expect("fits"),
                    sealed_private_key: vec![0x11; 1_250].try_into().expect("fits"),
                    wraps: wraps.try_into().expect("within MaxWrapsPerCall"),
                });
                let (up_front, actual) = dispatch(call, RuntimeOrigin::signed(key_manager.clone()));
                assert!(up_front.all_lte(max_extrinsic), "a set_epoch_key call fits a block");
                assert!(actual.all_lte(up_front));
                charged = charged.saturating_add(actual);
                calls += 1;
            }
            let native = started.elapsed();
            let record = pallet_groups::Groups::<Runtime>::get(id(&group)).expect("group exists");
            assert_eq!(record.epoch, 1, "the rekey of {members} members completed");
            let per_member = (member_bytes() - before) / members;
            assert!(per_member < 700, "a member takes {per_member} bytes");
            println!(
                "set_epoch_key, {members} members: {calls} call(s), {:.1} µs and {} proof bytes charged in all; \
                 {:.1} ms native wall time; storage per member {per_member} bytes \
                 ({membership_only} without its wrap)",
                micros(charged),
                charged.proof_size(),
                native.as_secs_f64() * 1e3,
            );
        }
    });
}

/// The runtime charges what the benchmarks measured: each call's declared weight is its
/// pallet's generated `weights.rs` (at this runtime's `DbWeight`), never the `()` weights
/// of the mocks or node authorization's 50 ms placeholders.
#[test]
fn calls_are_charged_their_benchmarked_weights() {
    use pallet_node_authorization::WeightInfo as _;
    use sp_core::OpaquePeerId;
    type DevicesWeights = pallet_devices::weights::SubstrateWeight<Runtime>;
    type GroupsWeights = pallet_groups::weights::SubstrateWeight<Runtime>;
    type LogWeights = pallet_exchange_log::weights::SubstrateWeight<Runtime>;
    type NodeWeights = crate::weights::pallet_node_authorization::WeightInfo<Runtime>;
    let weight = |call: RuntimeCall| call.get_dispatch_info().call_weight;
    let max_groups = <Runtime as pallet_groups::Config>::MaxGroupsPerDevice::get();
    let max_members = <Runtime as pallet_groups::Config>::MaxMembers::get();

    let register = RuntimeCall::Devices(pallet_devices::Call::register {
        device: id("d1"),
        public_key: KEY_2048.to_vec().try_into().expect("fits"),
        owner: AccountId::from([7u8; 32]),
    });
    assert_eq!(
        weight(register),
        <DevicesWeights as pallet_devices::WeightInfo>::register()
    );
    let revoke = RuntimeCall::Devices(pallet_devices::Call::revoke { device: id("d1") });
    assert_eq!(
        weight(revoke),
        <DevicesWeights as pallet_devices::WeightInfo>::revoke().saturating_add(
            <GroupsWeights as pallet_groups::WeightInfo>::leave_groups(max_groups)
        )
    );
    let set_epoch_key = RuntimeCall::Groups(pallet_groups::Call::set_epoch_key {
        group: id("g"),
        epoch: 1,
        members_at: 0,
        topic_public_key: KEY_2048.to_vec().try_into().expect("fits"),
        sealed_private_key: vec![1; 100].try_into().expect("fits"),
        wraps: Default::default(),
    });
    assert_eq!(
        weight(set_epoch_key),
        <GroupsWeights as pallet_groups::WeightInfo>::set_epoch_key(0, max_members)
            .saturating_add(<GroupsWeights as pallet_groups::WeightInfo>::start_attempt())
    );
    let record = RuntimeCall::ExchangeLog(pallet_exchange_log::Call::record {
        batch: Default::default(),
    });
    assert_eq!(
        weight(record),
        <LogWeights as pallet_exchange_log::WeightInfo>::record(0)
    );
    let add_node =
        RuntimeCall::NodeAuthorization(pallet_node_authorization::Call::add_well_known_node {
            node: OpaquePeerId(vec![1; 38]),
            owner: sp_runtime::MultiAddress::Id(AccountId::from([7u8; 32])),
        });
    assert_eq!(weight(add_node), NodeWeights::add_well_known_node());
    assert_ne!(
        NodeWeights::add_well_known_node(),
        <() as pallet_node_authorization::WeightInfo>::add_well_known_node(),
        "node authorization still charges its placeholder weights"
    );
}

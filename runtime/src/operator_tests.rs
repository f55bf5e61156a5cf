//! Who counts as an operator in this runtime: the KeyMesh pallets ask only for an
//! `OperatorOrigin`, so these tests check the wiring they get, through real calls, as the
//! membership set changes.

use crate::{
    configs::EnsureOperator, AccountId, Devices, ExchangeLog, Operators, Runtime,
    RuntimeGenesisConfig, RuntimeOrigin, System,
};
use frame_support::{assert_noop, assert_ok, traits::EnsureOrigin};
use sp_runtime::{BuildStorage, DispatchError};

const KEY_2048: &[u8] = include_bytes!("../dev-keys/1111.der");

fn device(s: &str) -> pallet_devices::DeviceId {
    s.as_bytes().to_vec().try_into().expect("short id")
}

fn register(origin: RuntimeOrigin, id: &str) -> sp_runtime::DispatchResult {
    Devices::register(
        origin,
        device(id),
        KEY_2048.to_vec().try_into().expect("fits"),
        AccountId::from([7u8; 32]),
    )
}

#[test]
fn operators_are_root_or_the_membership_set_and_follow_its_changes() {
    let storage = RuntimeGenesisConfig::default()
        .build_storage()
        .expect("default genesis builds");
    sp_io::TestExternalities::new(storage).execute_with(|| {
        System::set_block_number(1);
        let alice = AccountId::from([1u8; 32]);
        let bob = AccountId::from([2u8; 32]);
        let signed = |who: &AccountId| RuntimeOrigin::signed(who.clone());

        // Nobody but root before anyone is named.
        assert!(EnsureOperator::try_origin(RuntimeOrigin::root()).is_ok());
        assert!(EnsureOperator::try_origin(signed(&alice)).is_err());
        assert!(EnsureOperator::try_origin(RuntimeOrigin::none()).is_err());
        assert_noop!(
            register(signed(&alice), "d1"),
            pallet_devices::Error::<Runtime>::NotOperator
        );
        assert_noop!(
            register(RuntimeOrigin::none(), "d1"),
            DispatchError::BadOrigin
        );
        assert_ok!(register(RuntimeOrigin::root(), "d1"));

        // Root names Alice; she may act in every KeyMesh pallet, Bob still may not.
        assert_ok!(Operators::add_member(
            RuntimeOrigin::root(),
            alice.clone().into()
        ));
        assert_ok!(register(signed(&alice), "d2"));
        assert_ok!(ExchangeLog::add_bridge(signed(&alice), bob.clone()));
        assert_noop!(
            register(signed(&bob), "d3"),
            pallet_devices::Error::<Runtime>::NotOperator
        );
        // An operator cannot name another: that stays with root.
        assert!(Operators::add_member(signed(&alice), bob.clone().into()).is_err());

        // Removing Alice takes her powers away from the next call on.
        assert_ok!(Operators::remove_member(
            RuntimeOrigin::root(),
            alice.clone().into()
        ));
        assert_noop!(
            register(signed(&alice), "d3"),
            pallet_devices::Error::<Runtime>::NotOperator
        );
        assert_noop!(
            ExchangeLog::remove_bridge(signed(&alice), bob),
            pallet_exchange_log::Error::<Runtime>::NotOperator
        );
    });
}

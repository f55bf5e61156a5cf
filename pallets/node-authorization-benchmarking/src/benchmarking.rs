//! The benchmarks, one per call of `pallet-node-authorization`.

use crate::{Config, Pallet};
use alloc::{collections::BTreeSet, vec, vec::Vec};
use frame_benchmarking::v2::*;
use frame_support::traits::{EnsureOrigin, Get};
use frame_system::RawOrigin;
use pallet_node_authorization::{AdditionalConnections, Call, Owners, WellKnownNodes};
use sp_core::OpaquePeerId;
use sp_runtime::traits::StaticLookup;

/// Peer id `n`: `MaxPeerIdLength - 1` bytes (the longest the pallet accepts), distinct per `n`.
fn peer<T: Config>(n: u32) -> OpaquePeerId {
    let len = T::MaxPeerIdLength::get().saturating_sub(1).max(4) as usize;
    let mut id = vec![0x70; len];
    id[..4].copy_from_slice(&n.to_be_bytes());
    OpaquePeerId(id)
}

/// Well-known nodes `1..count`, owned by the whitelisted caller, so `0` is free to add.
fn well_known<T: Config>(count: u32) {
    let owner: T::AccountId = whitelisted_caller();
    let nodes: Vec<_> = (1..=count).map(|n| peer::<T>(n)).collect();
    for node in &nodes {
        Owners::<T>::insert(node, owner.clone());
    }
    WellKnownNodes::<T>::put(nodes.into_iter().collect::<BTreeSet<_>>());
}

/// Room for one more well-known node.
fn one_short<T: Config>() -> u32 {
    T::MaxWellKnownNodes::get().saturating_sub(2)
}

/// The longest connection list the benchmarks assume: `MaxWellKnownNodes` peers.
fn connections<T: Config>() -> Vec<OpaquePeerId> {
    (1000..1000 + T::MaxWellKnownNodes::get())
        .map(|n| peer::<T>(n))
        .collect()
}

/// Gives `node` the longest connection list, so removing it has the most to delete.
fn with_connections<T: Config>(node: u32) {
    AdditionalConnections::<T>::insert(
        peer::<T>(node),
        connections::<T>().into_iter().collect::<BTreeSet<_>>(),
    );
}

fn origin<O: EnsureOrigin<RO>, RO>() -> Result<RO, BenchmarkError> {
    O::try_successful_origin().map_err(|_| BenchmarkError::Weightless)
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn add_well_known_node() -> Result<(), BenchmarkError> {
        well_known::<T>(one_short::<T>());
        let origin = origin::<T::AddOrigin, T::RuntimeOrigin>()?;
        let owner = T::Lookup::unlookup(whitelisted_caller());

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, peer::<T>(0), owner);

        assert!(WellKnownNodes::<T>::get().contains(&peer::<T>(0)));
        Ok(())
    }

    #[benchmark]
    fn remove_well_known_node() -> Result<(), BenchmarkError> {
        well_known::<T>(one_short::<T>());
        with_connections::<T>(1);
        let origin = origin::<T::RemoveOrigin, T::RuntimeOrigin>()?;

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, peer::<T>(1));

        assert!(!WellKnownNodes::<T>::get().contains(&peer::<T>(1)));
        Ok(())
    }

    #[benchmark]
    fn swap_well_known_node() -> Result<(), BenchmarkError> {
        well_known::<T>(one_short::<T>());
        with_connections::<T>(1);
        let origin = origin::<T::SwapOrigin, T::RuntimeOrigin>()?;

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, peer::<T>(1), peer::<T>(0));

        assert!(WellKnownNodes::<T>::get().contains(&peer::<T>(0)));
        Ok(())
    }

    #[benchmark]
    fn reset_well_known_nodes() -> Result<(), BenchmarkError> {
        well_known::<T>(one_short::<T>());
        let owner: T::AccountId = whitelisted_caller();
        let nodes: Vec<_> = (0..T::MaxWellKnownNodes::get().saturating_sub(1))
            .map(|n| (peer::<T>(n + 500), owner.clone()))
            .collect();
        let origin = origin::<T::ResetOrigin, T::RuntimeOrigin>()?;

        #[extrinsic_call]
        _(origin as T::RuntimeOrigin, nodes);

        assert!(WellKnownNodes::<T>::get().contains(&peer::<T>(500)));
        Ok(())
    }

    #[benchmark]
    fn claim_node() {
        let caller: T::AccountId = whitelisted_caller();

        #[extrinsic_call]
        _(RawOrigin::Signed(caller.clone()), peer::<T>(0));

        assert_eq!(Owners::<T>::get(peer::<T>(0)), Some(caller));
    }

    #[benchmark]
    fn remove_claim() {
        let caller: T::AccountId = whitelisted_caller();
        well_known::<T>(one_short::<T>());
        Owners::<T>::insert(peer::<T>(0), caller.clone());
        with_connections::<T>(0);

        #[extrinsic_call]
        _(RawOrigin::Signed(caller), peer::<T>(0));

        assert!(Owners::<T>::get(peer::<T>(0)).is_none());
    }

    #[benchmark]
    fn transfer_node() {
        let caller: T::AccountId = whitelisted_caller();
        Owners::<T>::insert(peer::<T>(0), caller.clone());
        let receiver: T::AccountId = account("receiver", 0, 0);

        #[extrinsic_call]
        _(
            RawOrigin::Signed(caller),
            peer::<T>(0),
            T::Lookup::unlookup(receiver.clone()),
        );

        assert_eq!(Owners::<T>::get(peer::<T>(0)), Some(receiver));
    }

    #[benchmark]
    fn add_connections() {
        let caller: T::AccountId = whitelisted_caller();
        Owners::<T>::insert(peer::<T>(0), caller.clone());

        #[extrinsic_call]
        _(RawOrigin::Signed(caller), peer::<T>(0), connections::<T>());

        assert!(!AdditionalConnections::<T>::get(peer::<T>(0)).is_empty());
    }

    #[benchmark]
    fn remove_connections() {
        let caller: T::AccountId = whitelisted_caller();
        Owners::<T>::insert(peer::<T>(0), caller.clone());
        with_connections::<T>(0);

        #[extrinsic_call]
        _(RawOrigin::Signed(caller), peer::<T>(0), connections::<T>());

        assert!(AdditionalConnections::<T>::get(peer::<T>(0)).is_empty());
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}

//! Who may transact: a permissioned chain takes transactions only from the accounts its
//! pallets give a role. Anyone else is refused at the pool, before any fee or block room is
//! spent on them, with `InvalidTransaction::BadSigner`.
//!
//! The roles: an operator, the owner of a device that is not revoked, a group admin, a
//! registered bridge or key manager, and root's sudo key.

use codec::{Decode, DecodeWithMemTracking, Encode};
use frame_support::{pallet_prelude::TransactionSource, traits::Contains};
use scale_info::TypeInfo;
use sp_runtime::{
    impl_tx_ext_default,
    traits::{DispatchInfoOf, TransactionExtension, ValidateResult},
    transaction_validity::InvalidTransaction,
    Weight,
};

use super::{AccountId, Operators, Runtime, RuntimeCall, RuntimeOrigin};

/// The accounts with a role on chain.
pub struct KnownSigners;

impl Contains<AccountId> for KnownSigners {
    fn contains(who: &AccountId) -> bool {
        <Operators as Contains<AccountId>>::contains(who)
            || pallet_sudo::Key::<Runtime>::get().as_ref() == Some(who)
            || pallet_exchange_log::IsBridge::<Runtime>::contains(who)
            || pallet_groups::IsKeyManager::<Runtime>::contains(who)
            || pallet_devices::Pallet::<Runtime>::owns_a_device(who)
            || pallet_groups::Pallet::<Runtime>::administers_a_group(who)
    }
}

/// Refuses a signed transaction whose signer is not one of [`KnownSigners`]. Carries no
/// data, so clients (subxt among them) encode it without knowing it.
#[derive(Encode, Decode, DecodeWithMemTracking, Clone, Eq, PartialEq, Default, TypeInfo)]
pub struct CheckKnownSigner;

impl core::fmt::Debug for CheckKnownSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "CheckKnownSigner")
    }
}

impl TransactionExtension<RuntimeCall> for CheckKnownSigner {
    const IDENTIFIER: &'static str = "CheckKnownSigner";
    type Implicit = ();
    type Val = ();
    type Pre = ();

    fn weight(&self, _: &RuntimeCall) -> Weight {
        // At most six reads: the operators, the sudo key, the bridges, the key managers,
        // the device owners, the group admins.
        <Runtime as frame_system::Config>::DbWeight::get().reads(6)
    }

    fn validate(
        &self,
        origin: RuntimeOrigin,
        _call: &RuntimeCall,
        _info: &DispatchInfoOf<RuntimeCall>,
        _len: usize,
        _self_implicit: Self::Implicit,
        _inherited_implication: &impl Encode,
        _source: TransactionSource,
    ) -> ValidateResult<Self::Val, RuntimeCall> {
        use frame_support::traits::OriginTrait;
        if let Some(who) = origin.as_signer() {
            if !KnownSigners::contains(who) {
                return Err(InvalidTransaction::BadSigner.into());
            }
        }
        Ok((Default::default(), (), origin))
    }

    impl_tx_ext_default!(RuntimeCall; prepare);
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_support::dispatch::DispatchInfo;
    use sp_keyring::Sr25519Keyring;
    use sp_runtime::{
        traits::{DispatchTransaction, TxBaseImplication},
        transaction_validity::{TransactionSource::External, TransactionValidityError},
    };

    fn remark() -> RuntimeCall {
        RuntimeCall::System(frame_system::Call::remark { remark: vec![1] })
    }

    fn validate(who: Sr25519Keyring) -> Result<(), TransactionValidityError> {
        CheckKnownSigner
            .validate_only(
                RuntimeOrigin::signed(who.to_account_id()),
                &remark(),
                &DispatchInfo::default(),
                0,
                External,
                0,
            )
            .map(|_| ())
    }

    #[test]
    fn strangers_are_refused_and_every_role_is_let_through() {
        crate::genesis_config_presets::dev_ext().execute_with(|| {
            // Eve is funded on the dev chain and holds no role.
            assert_eq!(
                validate(Sr25519Keyring::Eve),
                Err(InvalidTransaction::BadSigner.into())
            );
            // Alice: sudo key and operator; Bob owns 1112; Ferdie is the bridge and key
            // manager.
            for known in [
                Sr25519Keyring::Alice,
                Sr25519Keyring::Bob,
                Sr25519Keyring::Ferdie,
            ] {
                assert_eq!(validate(known), Ok(()), "{known:?}");
            }
        });
    }

    #[test]
    fn a_group_admin_is_known_and_an_owner_whose_devices_are_revoked_is_not() {
        crate::genesis_config_presets::dev_ext().execute_with(|| {
            let alice = RuntimeOrigin::signed(Sr25519Keyring::Alice.to_account_id());
            let eve = Sr25519Keyring::Eve.to_account_id();
            assert!(crate::Groups::create_group(
                alice.clone(),
                b"G".to_vec().try_into().unwrap(),
                eve.clone()
            )
            .is_ok());
            assert_eq!(validate(Sr25519Keyring::Eve), Ok(()));

            // Dave owns only 1114.
            assert_eq!(validate(Sr25519Keyring::Dave), Ok(()));
            assert!(crate::Devices::revoke(alice, b"1114".to_vec().try_into().unwrap()).is_ok());
            assert_eq!(
                validate(Sr25519Keyring::Dave),
                Err(InvalidTransaction::BadSigner.into())
            );
        });
    }

    #[test]
    fn unsigned_origins_pass_through_the_extension() {
        crate::genesis_config_presets::dev_ext().execute_with(|| {
            let checked = CheckKnownSigner.validate(
                RuntimeOrigin::none(),
                &remark(),
                &DispatchInfo::default(),
                0,
                (),
                &TxBaseImplication(()),
                External,
            );
            assert!(checked.is_ok());
        });
    }
}

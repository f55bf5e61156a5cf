//! What the KeyMesh pallets share. Today: the operator check, so "an operator, or the
//! account this call belongs to" means the same in every pallet.
//!
//! An operator is whatever the runtime's `OperatorOrigin` admits: the pallets hold no
//! account list of their own. A signed account that the origin does not admit gets the
//! calling pallet's named error; an origin that is not signed at all (none, or an origin
//! the check does not know) gets `BadOrigin`.
#![cfg_attr(not(feature = "std"), no_std)]

use frame_support::traits::EnsureOrigin;
use sp_runtime::{DispatchError, DispatchResult};

/// Admits what `O` admits; a signed account it does not admit gets `not_operator`.
pub fn ensure_operator<T, O>(
    origin: T::RuntimeOrigin,
    not_operator: impl Into<DispatchError>,
) -> DispatchResult
where
    T: frame_system::Config,
    O: EnsureOrigin<T::RuntimeOrigin>,
{
    ensure_operator_or::<T, O>(origin, None, not_operator)
}

/// Admits what `O` admits, and the signed `account` (a device's owner, a group's admin).
/// Any other signed account gets `refused`.
pub fn ensure_operator_or<T, O>(
    origin: T::RuntimeOrigin,
    account: Option<&T::AccountId>,
    refused: impl Into<DispatchError>,
) -> DispatchResult
where
    T: frame_system::Config,
    O: EnsureOrigin<T::RuntimeOrigin>,
{
    let Err(origin) = O::try_origin(origin) else {
        return Ok(());
    };
    let who = frame_system::ensure_signed(origin)?;
    if account == Some(&who) {
        Ok(())
    } else {
        Err(refused.into())
    }
}

/// The pallets' mocks' operator: one account, admitted as the KeyMesh runtime admits
/// operators (root, or a signed account of the operator set).
#[cfg(any(test, feature = "testing"))]
pub mod mock_operator {
    use frame_support::traits::{EitherOfDiverse, IsInVec};
    use frame_system::{EnsureRoot, EnsureSignedBy};

    /// The mocks' one operator account.
    pub const OPERATOR: u64 = 1;

    frame_support::parameter_types! {
        /// The accounts [`OperatorOrigin`] admits besides root.
        pub Operators: Vec<u64> = vec![OPERATOR];
    }

    /// Root or [`OPERATOR`].
    pub type OperatorOrigin =
        EitherOfDiverse<EnsureRoot<u64>, EnsureSignedBy<IsInVec<Operators>, u64>>;
}

/// Test externalities that check a pallet's invariants after every `execute_with`, so each
/// test also shows that what it did leaves storage consistent.
#[cfg(feature = "testing")]
pub struct CheckedExt {
    ext: sp_io::TestExternalities,
    invariants: fn() -> Result<(), DispatchError>,
}

#[cfg(feature = "testing")]
impl CheckedExt {
    /// `ext`, checked with `invariants` (a pallet's `do_try_state`).
    pub fn new(
        ext: sp_io::TestExternalities,
        invariants: fn() -> Result<(), DispatchError>,
    ) -> Self {
        CheckedExt { ext, invariants }
    }

    /// Runs `test`, then the invariants; a broken one fails the test.
    pub fn execute_with<R>(&mut self, test: impl FnOnce() -> R) -> R {
        let invariants = self.invariants;
        self.ext.execute_with(|| {
            let result = test();
            if let Err(e) = invariants() {
                panic!("invariant broken: {e:?}");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_operator::OperatorOrigin as Operator;
    use frame_support::derive_impl;

    type Block = frame_system::mocking::MockBlock<Test>;

    frame_support::construct_runtime!(
        pub enum Test {
            System: frame_system,
        }
    );

    #[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
    impl frame_system::Config for Test {
        type Block = Block;
    }

    const REFUSED: DispatchError = DispatchError::Other("refused");

    #[test]
    fn root_and_operators_pass_others_get_the_named_error_and_unsigned_a_bad_origin() {
        let check = |origin| ensure_operator::<Test, Operator>(origin, REFUSED);
        assert_eq!(check(RuntimeOrigin::root()), Ok(()));
        assert_eq!(check(RuntimeOrigin::signed(1)), Ok(()));
        assert_eq!(check(RuntimeOrigin::signed(2)), Err(REFUSED));
        assert_eq!(check(RuntimeOrigin::none()), Err(DispatchError::BadOrigin));
    }

    #[test]
    fn the_named_account_passes_too_and_no_other() {
        let check = |origin| ensure_operator_or::<Test, Operator>(origin, Some(&7), REFUSED);
        assert_eq!(check(RuntimeOrigin::signed(7)), Ok(()));
        assert_eq!(check(RuntimeOrigin::signed(1)), Ok(()));
        assert_eq!(check(RuntimeOrigin::signed(8)), Err(REFUSED));
        assert_eq!(check(RuntimeOrigin::none()), Err(DispatchError::BadOrigin));
    }
}

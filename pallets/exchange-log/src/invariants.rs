//! What must hold of this pallet's storage after every block (`try_state`) and after every
//! pallet test: the registries stay within `MaxBridges`, and their counters match them.

use frame_support::{ensure, traits::Get};
use sp_runtime::TryRuntimeError;

use super::*;

impl<T: Config> Pallet<T> {
    /// Checks every invariant; the error names the first one broken.
    pub fn do_try_state() -> Result<(), TryRuntimeError> {
        let bridges = Bridges::<T>::iter_keys().count() as u32;
        ensure!(
            bridges == Bridges::<T>::count(),
            "the Bridges counter does not match its entries"
        );
        let key_managers = KeyManagers::<T>::iter_keys().count() as u32;
        ensure!(
            key_managers == KeyManagers::<T>::count(),
            "the KeyManagers counter does not match its entries"
        );
        ensure!(
            bridges <= T::MaxBridges::get() && key_managers <= T::MaxBridges::get(),
            "more bridges or key managers than MaxBridges"
        );
        Ok(())
    }
}

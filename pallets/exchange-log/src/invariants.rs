//! What must hold of this pallet's storage after every block (`try_state`) and after every
//! pallet test: the bridge registry stays within `MaxBridges`, and its counter matches it.

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
        ensure!(
            bridges <= T::MaxBridges::get(),
            "more bridges than MaxBridges"
        );
        Ok(())
    }
}

//! Offline commands: making keys and printing fingerprints.

use std::path::{Path, PathBuf};

use keymesh_device::keys::{self, KeyBits};

use crate::Result;

/// Writes a new key pair: the private key (0600, never overwritten) and its public key.
pub fn keygen(out: &Path, public: Option<PathBuf>, bits: KeyBits) -> Result<()> {
    let key = keys::generate(bits)?;
    keys::write_private(out, &key)?;
    let public_path = public.unwrap_or_else(|| out.with_extension("spki.pem"));
    keys::write_public(&public_path, &key.to_public_key())?;
    println!("private key: {} (0600)", out.display());
    println!("public key:  {}", public_path.display());
    println!(
        "fingerprint: {}",
        hex::encode(keys::fingerprint(&key.to_public_key()))
    );
    Ok(())
}

/// Prints the fingerprint of a public or private key file.
pub fn fingerprint(file: &Path) -> Result<()> {
    let public = match keys::read_public(file) {
        Ok(k) => k,
        Err(_) => keys::read_private(file)?.to_public_key(),
    };
    println!("{}", hex::encode(keys::fingerprint(&public)));
    Ok(())
}

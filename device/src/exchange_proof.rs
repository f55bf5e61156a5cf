//! Proof that the exchange log holds an envelope.
//!
//! A bridge logs the envelopes it forwarded from one sender to one target under one key as
//! one `KeysExchanged` event: their count and the Merkle root of their envelope hashes, in
//! the order the bridge forwarded them. An [`InclusionProof`] is the path from one
//! envelope's leaf to that root; with the event it shows the envelope was logged, and
//! anyone holding the envelope can check it without trusting the bridge.
//!
//! The tree is `binary-merkle-tree` (polkadot-sdk's) over SHA-256:
//! - a leaf is `SHA-256(envelope_hash)`, where `envelope_hash` is `SHA-256(envelope)`;
//! - an inner node is `SHA-256(left ‖ right)`;
//! - an odd last node moves up a level unchanged.
//!
//! `docs/exchange-proof.md` has the layout and test vectors.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// SHA-256 as the Merkle tree's hasher.
struct Sha256Hasher;

impl hash_db::Hasher for Sha256Hasher {
    type Out = [u8; 32];
    type StdHasher = std::collections::hash_map::DefaultHasher;
    const LENGTH: usize = 32;

    fn hash(x: &[u8]) -> [u8; 32] {
        Sha256::digest(x).into()
    }
}

/// The path from one envelope's leaf to the root of the envelopes logged with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    /// The envelope's place among those logged together, from 0.
    pub leaf_index: u32,
    /// How many were logged together: the event's `count`.
    pub leaves: u32,
    /// Sibling hashes from the leaf up, hex.
    #[serde(with = "hex_hashes")]
    pub path: Vec<[u8; 32]>,
}

/// The Merkle root of `envelope_hashes`, in order; all zeroes for none.
pub fn exchanges_root(envelope_hashes: &[[u8; 32]]) -> [u8; 32] {
    binary_merkle_tree::merkle_root::<Sha256Hasher, _>(envelope_hashes)
}

/// The proof for the envelope at `index` among `envelope_hashes`; `None` past the end.
pub fn prove(envelope_hashes: &[[u8; 32]], index: usize) -> Option<InclusionProof> {
    // The library panics on an index past the end.
    if index >= envelope_hashes.len() {
        return None;
    }
    let leaves = u32::try_from(envelope_hashes.len()).ok()?;
    let leaf_index = u32::try_from(index).ok()?;
    let proof =
        binary_merkle_tree::merkle_proof::<Sha256Hasher, _, _>(envelope_hashes.iter(), leaf_index);
    Some(InclusionProof {
        leaf_index,
        leaves,
        path: proof.proof,
    })
}

/// Whether `proof` leads from `envelope_hash` to `root`.
pub fn verify(root: &[u8; 32], envelope_hash: &[u8; 32], proof: &InclusionProof) -> bool {
    binary_merkle_tree::verify_proof::<Sha256Hasher, _, _>(
        root,
        proof.path.iter().copied(),
        proof.leaves,
        proof.leaf_index,
        envelope_hash,
    )
}

/// Serde for one hash as hex.
pub mod hex_hash {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes = hex::decode(String::deserialize(d)?).map_err(D::Error::custom)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| D::Error::custom("a hash is 32 bytes"))
    }
}

/// Serde for a list of hashes as hex.
pub mod hex_hashes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                let bytes = hex::decode(text).map_err(D::Error::custom)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| D::Error::custom("a hash is 32 bytes"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| crate::envelope_hash(format!("envelope {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_envelope_of_every_tree_size_proves_against_its_root() {
        for n in 1..=70 {
            let all = hashes(n);
            let root = exchanges_root(&all);
            for (i, hash) in all.iter().enumerate() {
                let proof = prove(&all, i).unwrap();
                assert!(verify(&root, hash, &proof), "leaf {i} of {n}");
            }
            assert_eq!(prove(&all, n), None);
        }
    }

    #[test]
    fn a_proof_proves_nothing_else() {
        let all = hashes(13);
        let root = exchanges_root(&all);
        let proof = prove(&all, 5).unwrap();
        let other = crate::envelope_hash(b"never forwarded");
        assert!(!verify(&root, &other, &proof), "another envelope");
        assert!(!verify(&root, &all[6], &proof), "a neighbour at this place");
        let mut moved = proof.clone();
        moved.leaf_index = 4;
        assert!(!verify(&root, &all[5], &moved), "another place");
        // The root does not commit to the count (the event carries it), but a place past
        // the count proves nothing.
        let mut fewer = proof.clone();
        fewer.leaves = 5;
        assert!(!verify(&root, &all[5], &fewer), "a count below the place");
        let mut bent = proof.clone();
        bent.path[1][0] ^= 1;
        assert!(!verify(&root, &all[5], &bent), "a changed sibling");
        assert!(
            !verify(&exchanges_root(&all[..12]), &all[5], &proof),
            "another root"
        );
    }

    /// The vectors in `docs/exchange-proof.md`.
    #[test]
    fn the_documented_vectors_hold() {
        let all: Vec<[u8; 32]> = ["a", "b", "c"]
            .iter()
            .map(|e| crate::envelope_hash(e.as_bytes()))
            .collect();
        let root = exchanges_root(&all);
        assert_eq!(
            hex::encode(root),
            "a33ec00509b36ef0772a85c2bd984999a4b713f96bbb7dabcf6723de95fc93ac",
        );
        let proof = prove(&all, 2).unwrap();
        assert_eq!(
            serde_json::to_string(&proof).unwrap(),
            "{\"leafIndex\":2,\"leaves\":3,\"path\":[\"c949e892e20b934947df6f3a24a49c5cb385e21d652f5ab1358d6ddc33f61d73\"]}",
        );
        assert!(verify(&root, &all[2], &proof));
    }
}

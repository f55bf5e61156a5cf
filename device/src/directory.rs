//! The bridge's key directory as a device reads it (`km/v1/dir/<device>`,
//! `km/v1/dir/grp/<group>`): an entry counts only if a trusted bridge attested it, and never
//! if it is older than one already accepted for the same topic. A broker that replays a
//! stale retained entry, or a bridge that fell behind, cannot roll a device's view back.

use std::collections::HashMap;

use crate::{AttestationError, Delivery};

/// Topics a view tracks at most; the chain bounds devices and groups far below this.
pub const MAX_DIRECTORY_TOPICS: usize = 1 << 20;

/// Why an entry was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    #[error("entry at block #{block} is older than #{newest}, already accepted")]
    Older { block: u32, newest: u32 },
    #[error("{MAX_DIRECTORY_TOPICS} directory topics tracked already")]
    Full,
}

/// An accepted entry: its JSON and the finalized block the bridge read it at.
pub struct DirectoryEntry {
    pub block: u32,
    pub json: Vec<u8>,
}

/// The newest accepted block of each directory topic.
pub struct DirectoryView {
    trusted: Vec<[u8; 32]>,
    newest: HashMap<String, u32>,
}

impl DirectoryView {
    /// A view that trusts the bridges whose sr25519 public keys are `trusted`.
    pub fn new(trusted: Vec<[u8; 32]>) -> Self {
        DirectoryView {
            trusted,
            newest: HashMap::new(),
        }
    }

    /// Checks an entry received on `topic` and, if it is attested and not older than the
    /// newest accepted one, accepts it.
    pub fn accept(&mut self, topic: &str, bytes: &[u8]) -> Result<DirectoryEntry, DirectoryError> {
        let delivery = Delivery::verify(bytes, &self.trusted)?;
        let block = delivery.attestation.block_number;
        match self.newest.get(topic) {
            Some(&newest) if block < newest => {
                return Err(DirectoryError::Older { block, newest });
            }
            None if self.newest.len() >= MAX_DIRECTORY_TOPICS => return Err(DirectoryError::Full),
            _ => {}
        }
        self.newest.insert(topic.to_string(), block);
        Ok(DirectoryEntry {
            block,
            json: delivery.envelope,
        })
    }
}

#[cfg(test)]
mod tests {
    use subxt_signer::sr25519::dev;

    use super::*;
    use crate::Attestation;

    fn entry(block: u32, json: &str, signer: &subxt_signer::sr25519::Keypair) -> Vec<u8> {
        Delivery {
            attestation: Attestation::sign(signer, json.as_bytes(), block, [block as u8; 32]),
            envelope: json.as_bytes().to_vec(),
        }
        .to_bytes()
    }

    #[test]
    fn only_attested_entries_count_and_none_may_roll_the_view_back() {
        let bridge = dev::ferdie();
        let mut view = DirectoryView::new(vec![bridge.public_key().0]);
        let topic = "km/v1/dir/1113";
        assert_eq!(
            view.accept(topic, &entry(9, "{\"v\":9}", &bridge))
                .unwrap()
                .block,
            9
        );
        assert_eq!(
            view.accept(topic, &entry(7, "{\"v\":7}", &bridge)).err(),
            Some(DirectoryError::Older {
                block: 7,
                newest: 9
            })
        );
        // The same block again (a retained copy) and a newer one are fine.
        assert!(view.accept(topic, &entry(9, "{\"v\":9}", &bridge)).is_ok());
        assert_eq!(
            view.accept(topic, &entry(12, "{}", &bridge)).unwrap().json,
            b"{}"
        );
        // Another topic has its own history; an untrusted or empty entry never counts.
        assert!(view
            .accept("km/v1/dir/1111", &entry(1, "{}", &bridge))
            .is_ok());
        assert!(matches!(
            view.accept(topic, &entry(20, "{}", &dev::bob())),
            Err(DirectoryError::Attestation(_))
        ));
        assert!(matches!(
            view.accept(topic, b""),
            Err(DirectoryError::Attestation(_))
        ));
    }
}

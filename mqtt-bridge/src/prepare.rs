//! Work on an ingress envelope done ahead of its turn, on any core: the checks that keep no
//! state ([`gate::authenticate`]: form, ingress, sender, signature) and, for a genuine
//! envelope, the attestation its delivery will carry. Verifying a signature and signing an
//! attestation are most of the gate's CPU; the forward loop, which keeps the gate's state
//! and writes the journals, takes the results in arrival order (so each sender's order is
//! kept) and redoes the work itself if a newer snapshot came in meanwhile.

use std::sync::Arc;

use keymesh_device::Attestation;
use rumqttc::Publish;
use subxt_signer::sr25519::Keypair;
use tokio::task::JoinHandle;

use crate::gate::{self, Genuine, Limits, Refused, Snapshot};

/// Most envelopes being worked on ahead of the forward loop.
pub const AHEAD: usize = 256;

/// The sender an ingress topic names, if it names a valid device id.
pub fn ingress_sender(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("km/v1/in/")
        .filter(|s| keymesh_primitives::validate_id(s.as_bytes()).is_ok())
}

/// What was worked out for one envelope, against the snapshot at `block`.
pub struct Work {
    block: u32,
    block_hash: [u8; 32],
    genuine: Option<Result<Genuine, Refused>>,
    attestation: Option<Attestation>,
}

impl Work {
    /// The stateless checks' outcome against `snapshot`: the one worked out ahead if it
    /// was worked out against that very snapshot, else worked out now.
    pub fn genuine(
        &mut self,
        limits: &Limits,
        sender: &str,
        payload: &[u8],
        snapshot: &Snapshot,
    ) -> Result<Genuine, Refused> {
        if self.is_for(snapshot) {
            if let Some(outcome) = self.genuine.take() {
                return outcome;
            }
        }
        gate::authenticate(limits, sender, payload, snapshot)
    }

    /// The attestation of `payload` at `snapshot`'s block, likewise.
    pub fn attestation(
        &mut self,
        signer: &Keypair,
        payload: &[u8],
        snapshot: &Snapshot,
    ) -> Attestation {
        if self.is_for(snapshot) {
            if let Some(attestation) = self.attestation.take() {
                return attestation;
            }
        }
        Attestation::sign(signer, payload, snapshot.block_number, snapshot.block_hash)
    }

    fn is_for(&self, snapshot: &Snapshot) -> bool {
        self.block == snapshot.block_number && self.block_hash == snapshot.block_hash
    }

    /// Nothing worked out: everything is done at the envelope's turn.
    pub fn none() -> Work {
        Work {
            block: 0,
            block_hash: [0; 32],
            genuine: None,
            attestation: None,
        }
    }
}

/// Starts the work on envelopes, each on the runtime's worker threads.
#[derive(Clone)]
pub struct Preparer {
    limits: Arc<Limits>,
    signer: Arc<Keypair>,
}

impl Preparer {
    pub fn new(limits: Limits, signer: Keypair) -> Self {
        Preparer {
            limits: Arc::new(limits),
            signer: Arc::new(signer),
        }
    }

    /// Works on `publish` against `snapshot` on another task.
    pub fn spawn(&self, publish: &Publish, snapshot: Arc<Snapshot>) -> JoinHandle<Work> {
        let (limits, signer) = (self.limits.clone(), self.signer.clone());
        let (topic, payload) = (publish.topic.clone(), publish.payload.clone());
        tokio::spawn(async move { prepare(&limits, &signer, &topic, &payload, &snapshot) })
    }
}

fn prepare(
    limits: &Limits,
    signer: &Keypair,
    topic: &str,
    payload: &[u8],
    snapshot: &Snapshot,
) -> Work {
    let genuine =
        ingress_sender(topic).map(|sender| gate::authenticate(limits, sender, payload, snapshot));
    let attestation = matches!(genuine, Some(Ok(_)))
        .then(|| Attestation::sign(signer, payload, snapshot.block_number, snapshot.block_hash));
    Work {
        block: snapshot.block_number,
        block_hash: snapshot.block_hash,
        genuine,
        attestation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_device_ids_name_an_ingress_sender() {
        assert_eq!(ingress_sender("km/v1/in/1111"), Some("1111"));
        assert_eq!(ingress_sender("km/v1/in/"), None);
        assert_eq!(ingress_sender("km/v1/in/a b"), None);
        assert_eq!(ingress_sender("km/v1/dev/1111/inbox"), None);
    }

    #[test]
    fn work_for_an_older_snapshot_is_done_again() {
        let old = Snapshot {
            block_number: 7,
            ..Default::default()
        };
        let newer = Snapshot {
            block_number: 8,
            ..Default::default()
        };
        let mut work = prepare(
            &Limits::default(),
            &subxt_signer::sr25519::dev::ferdie(),
            "km/v1/in/1111",
            b"not an envelope",
            &old,
        );
        assert!(work.genuine.is_some());
        // Worked out against #7, asked about at #8: checked again, not taken.
        let outcome = work.genuine(&Limits::default(), "1111", b"not an envelope", &newer);
        assert!(outcome.is_err());
        assert!(work.genuine.is_some(), "the #7 outcome was not used");
        let attestation = work.attestation(
            &subxt_signer::sr25519::dev::ferdie(),
            b"not an envelope",
            &newer,
        );
        assert_eq!(attestation.block_number, 8);
    }
}

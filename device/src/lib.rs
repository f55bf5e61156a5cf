//! The device side of KeyMesh.
//!
//! A device seals every payload end to end into an [`Envelope`]: a fresh AES-256-GCM key
//! encrypts the payload, RSA-OAEP-SHA-256 wraps that key to the recipient's (or the
//! topic's) public key, and the sender signs the whole with RSA-PSS-SHA-256. The bridge can
//! check an envelope (fingerprint, signature, freshness) but never read it.
//!
//! The byte layout is specified in `docs/envelope.md`; this crate is its reference
//! implementation.

pub mod agent;
pub mod attestation;
pub mod config;
pub mod connect_proof;
pub mod directory;
pub mod envelope;
pub mod exchange_proof;
pub mod keys;
pub mod mqtt;
pub mod node_client;
pub mod onboard;
pub mod pss;
pub mod tls;
pub mod topic_key;

pub use attestation::{envelope_hash, Attestation, AttestationError, Delivery};
pub use connect_proof::{ConnectProof, ConnectProofError};
pub use envelope::{
    open, seal_direct, seal_topic, verify_signature, Envelope, EnvelopeError, Header, Kind, Opened,
    ENVELOPE_VERSION, MAX_ENVELOPE_LEN, MAX_PAYLOAD_LEN,
};
pub use keys::{fingerprint, generate, Fingerprint, KeyBits, KeyError};
pub use topic_key::{open_topic_key, seal_topic_key, SealedTopicKey, TopicKeyError};

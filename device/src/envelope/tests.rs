use std::path::Path;

use proptest::prelude::*;
use rsa::{
    pss::BlindedSigningKey,
    signature::{RandomizedSigner, SignatureEncoding},
};

use super::*;
use crate::keys::read_private;

fn key(name: &str) -> RsaPrivateKey {
    let path = format!("{}/testdata/{name}.key.pem", env!("CARGO_MANIFEST_DIR"));
    read_private(Path::new(&path)).unwrap()
}

const SIZES: [usize; 5] = [0, 1, 256, 64 * 1024, 1024 * 1024];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn direct_envelopes_round_trip_at_every_size() {
    let (s, r) = (key("1111"), key("1113"));
    for len in SIZES {
        let data = payload(len);
        let env = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, &data).unwrap();
        let bytes = env.to_bytes();
        let opened = open(&bytes, &r, &s.to_public_key()).unwrap();
        assert_eq!(opened.payload.as_slice(), data.as_slice(), "{len} bytes");
        assert_eq!(opened.header.kind, Kind::Direct);
        assert_eq!(opened.header.sender, b"1111");
        assert_eq!(opened.header.target, b"1113");
    }
}

#[test]
fn topic_envelopes_round_trip_at_every_size() {
    let (s, topic) = (key("1111"), key("topic-B"));
    for len in SIZES {
        let data = payload(len);
        let env = seal_topic("1111", &s, "B", &topic.to_public_key(), 7, &data).unwrap();
        let opened = open(&env.to_bytes(), &topic, &s.to_public_key()).unwrap();
        assert_eq!(opened.payload.as_slice(), data.as_slice(), "{len} bytes");
        assert_eq!(opened.header.kind, Kind::Topic);
        assert_eq!(opened.header.key_epoch, 7);
    }
}

#[test]
fn payload_over_the_limit_is_refused_when_sealing() {
    let (s, r) = (key("1111"), key("1113"));
    let data = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let err = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, &data).unwrap_err();
    assert!(matches!(err, EnvelopeError::PayloadTooLarge { .. }));
}

#[test]
fn devices_that_are_not_the_recipient_cannot_open() {
    // Seed scenario: 1111 sends to 1113; 1112 and 1114 see the message but cannot open it.
    let (s, r) = (key("1111"), key("1113"));
    let bytes = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, b"hello 1113")
        .unwrap()
        .to_bytes();
    for other in ["1112", "1114"] {
        let err = open(&bytes, &key(other), &s.to_public_key()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::NotRecipient { .. }),
            "{other}: {err:?}"
        );
    }
}

#[test]
fn non_members_cannot_open_topic_messages() {
    // Seed scenario: 1111 publishes to group B = {1113, 1114}; 1111 and 1112 hold only their
    // device keys, not B's topic key.
    let (s, topic) = (key("1111"), key("topic-B"));
    let bytes = seal_topic("1111", &s, "B", &topic.to_public_key(), 1, b"to B")
        .unwrap()
        .to_bytes();
    for outsider in ["1111", "1112"] {
        let err = open(&bytes, &key(outsider), &s.to_public_key()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::NotRecipient { .. }),
            "{outsider}: {err:?}"
        );
    }
}

#[test]
fn a_reader_whose_fingerprint_matches_but_key_differs_gets_unwrap_failed() {
    // The header names 1113's key, but the wrapped key was made for 1112's: the sender
    // lied about the fingerprint. Signature holds (the sender signed the lie); opening fails.
    let (s, r, other) = (key("1111"), key("1113"), key("1112"));
    let mut env = seal_direct("1111", &s, "1113", &other.to_public_key(), 0, b"x").unwrap();
    env.header.fingerprint = fingerprint(&r.to_public_key());
    env.signature = BlindedSigningKey::<Sha256>::new(s.clone())
        .sign_with_rng(&mut OsRng, &env.signed_bytes())
        .to_vec();
    let err = open(&env.to_bytes(), &r, &s.to_public_key()).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::UnwrapFailed | EnvelopeError::DecryptFailed
        ),
        "{err:?}"
    );
}

#[test]
fn every_single_byte_flip_fails_closed() {
    let (s, r) = (key("1111"), key("1113"));
    let bytes = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, b"")
        .unwrap()
        .to_bytes();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(
            open(&t, &r, &s.to_public_key()).is_err(),
            "flip at byte {i} was accepted"
        );
        let mut t = bytes.clone();
        t[i] ^= 0xff;
        assert!(
            open(&t, &r, &s.to_public_key()).is_err(),
            "inversion at byte {i} was accepted"
        );
    }
}

#[test]
fn every_truncation_fails_closed() {
    let (s, r) = (key("1111"), key("1113"));
    let bytes = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, b"abc")
        .unwrap()
        .to_bytes();
    for len in 0..bytes.len() {
        assert!(
            open(&bytes[..len], &r, &s.to_public_key()).is_err(),
            "truncation to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        open(&longer, &r, &s.to_public_key()),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn wrong_version_fingerprint_and_signature_have_their_own_errors() {
    let (s, r, other) = (key("1111"), key("1113"), key("1112"));
    let env = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, b"m").unwrap();

    let mut v2 = env.to_bytes();
    v2[0] = 2;
    assert_eq!(
        open(&v2, &r, &s.to_public_key()).unwrap_err(),
        EnvelopeError::UnsupportedVersion(2)
    );

    // A fingerprint the sender signed but that is not the reader's key ("None" in the seeds).
    let mut fp = env.clone();
    fp.header.fingerprint = [0u8; 32];
    fp.signature = BlindedSigningKey::<Sha256>::new(s.clone())
        .sign_with_rng(&mut OsRng, &fp.signed_bytes())
        .to_vec();
    assert!(matches!(
        open(&fp.to_bytes(), &r, &s.to_public_key()),
        Err(EnvelopeError::NotRecipient { .. })
    ));

    // Signed by someone else than the claimed sender.
    let mut spoof = env.clone();
    spoof.signature = BlindedSigningKey::<Sha256>::new(other.clone())
        .sign_with_rng(&mut OsRng, &spoof.signed_bytes())
        .to_vec();
    assert_eq!(
        open(&spoof.to_bytes(), &r, &s.to_public_key()).unwrap_err(),
        EnvelopeError::BadSignature
    );
    assert_eq!(
        verify_signature(&spoof.to_bytes(), &s.to_public_key()).unwrap_err(),
        EnvelopeError::BadSignature
    );
    assert!(verify_signature(&env.to_bytes(), &s.to_public_key()).is_ok());

    assert_eq!(
        open(&[], &r, &s.to_public_key()).unwrap_err(),
        EnvelopeError::Empty
    );
    let huge = vec![1u8; MAX_ENVELOPE_LEN + 1];
    assert!(matches!(
        open(&huge, &r, &s.to_public_key()),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

#[test]
fn signatures_with_another_salt_length_are_refused() {
    // The wire format fixes a 32-byte PSS salt; a signer that picks another length (OpenSSL's
    // default is the maximum) is not speaking this format, even though its key is right.
    let (s, r) = (key("1111"), key("1113"));
    let env = seal_direct("1111", &s, "1113", &r.to_public_key(), 0, b"m").unwrap();
    for (salt_len, expected) in [
        (0usize, Err(EnvelopeError::BadSignature)),
        (20, Err(EnvelopeError::BadSignature)),
        (64, Err(EnvelopeError::BadSignature)),
        (32, Ok(())),
    ] {
        let mut resigned = env.clone();
        resigned.signature = BlindedSigningKey::<Sha256>::new_with_salt_len(s.clone(), salt_len)
            .sign_with_rng(&mut OsRng, &resigned.signed_bytes())
            .to_vec();
        assert_eq!(
            verify_signature(&resigned.to_bytes(), &s.to_public_key()).map(|_| ()),
            expected,
            "salt of {salt_len} bytes"
        );
    }
}

#[test]
fn ids_that_are_not_topic_safe_are_refused() {
    let (s, r) = (key("1111"), key("1113"));
    let err = seal_direct("11/11", &s, "1113", &r.to_public_key(), 0, b"").unwrap_err();
    assert_eq!(err, EnvelopeError::InvalidId { field: "sender" });
    let err = seal_direct("1111", &s, "#", &r.to_public_key(), 0, b"").unwrap_err();
    assert_eq!(err, EnvelopeError::InvalidId { field: "target" });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_open_and_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (s, r) = (key("1111"), key("1113"));
        let bytes = seal_direct("1111", &s, "1113", &r.to_public_key(), 3, b"proptest").unwrap().to_bytes();
        let mut t = bytes.clone();
        for (at, mask) in &flips {
            let i = at.index(t.len());
            t[i] ^= mask;
        }
        if let Some(cut) = cut {
            t.truncate(cut.index(t.len()));
        }
        prop_assume!(t != bytes);
        prop_assert!(open(&t, &r, &s.to_public_key()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (s, r) = (key("1111"), key("1113"));
        let mut with_version = data.clone();
        if let Some(b) = with_version.first_mut() { *b = ENVELOPE_VERSION; }
        prop_assert!(open(&data, &r, &s.to_public_key()).is_err());
        prop_assert!(open(&with_version, &r, &s.to_public_key()).is_err());
    }
}

//! The checked-in test vectors open, every listed intermediate value matches, and OpenSSL
//! agrees on the RSA-OAEP and RSA-PSS primitives in both directions.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use codec::Encode;
use keymesh_device::{envelope, keys, ConnectProof, Envelope};
use rand::rngs::OsRng;
use rsa::{
    pss::{Signature, VerifyingKey},
    signature::Verifier,
    Oaep,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn vector(name: &str) -> (Value, Vec<u8>) {
    let dir = testdata().join("vectors");
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    (
        json,
        std::fs::read(dir.join(format!("{name}.bin"))).unwrap(),
    )
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

const VECTORS: [&str; 3] = ["direct", "topic", "empty"];

#[test]
fn vectors_open_and_every_intermediate_value_matches() {
    let sender = keys::read_private(&testdata().join("1111.key.pem")).unwrap();
    for name in VECTORS {
        let (v, bytes) = vector(name);
        let reader_name = v["recipient_key"].as_str().unwrap();
        let reader =
            keys::read_private(&testdata().join(format!("{reader_name}.key.pem"))).unwrap();
        assert_eq!(hex_field(&v, "envelope_hex"), bytes, "{name}");

        let opened = envelope::open(&bytes, &reader, &sender.to_public_key()).unwrap();
        assert_eq!(
            opened.payload.as_slice(),
            hex_field(&v, "payload_hex").as_slice(),
            "{name}"
        );

        let env = Envelope::decode_bounded(&bytes).unwrap();
        assert_eq!(env.header.encode(), hex_field(&v, "header_hex"), "{name}");
        assert_eq!(env.nonce.to_vec(), hex_field(&v, "nonce_hex"));
        assert_eq!(env.wrapped_key, hex_field(&v, "wrapped_key_hex"));
        assert_eq!(env.ciphertext, hex_field(&v, "ciphertext_hex"));
        assert_eq!(env.signature, hex_field(&v, "signature_hex"));
        assert_eq!(env.signed_bytes(), hex_field(&v, "signed_bytes_hex"));
        // Fingerprint: SHA-256 of the recipient's SPKI DER.
        let der = keys::public_der(&reader.to_public_key());
        assert_eq!(
            Sha256::digest(&der).to_vec(),
            hex_field(&v, "fingerprint_hex")
        );
        assert_eq!(
            env.header.fingerprint.to_vec(),
            hex_field(&v, "fingerprint_hex")
        );
        // The listed AES key is the one inside the wrap.
        let aes = reader
            .decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), &env.wrapped_key)
            .unwrap();
        assert_eq!(aes, hex_field(&v, "aes_key_hex"));
    }
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command-line tool (scripts/test.sh installs it)");
    out
}

/// OpenSSL's verdict on an RSA-PSS signature as KeyMesh fixes it (SHA-256, MGF1-SHA-256,
/// salt 32) over the file `data`.
fn openssl_verify_pss(spki: &Path, signature: &Path, data: &Path) -> std::process::Output {
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sigopt",
        "rsa_mgf1_md:sha256",
        "-verify",
        spki.to_str().unwrap(),
        "-signature",
        signature.to_str().unwrap(),
        data.to_str().unwrap(),
    ])
}

#[test]
fn openssl_unwraps_our_keys_and_verifies_our_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let td = testdata();
    for name in VECTORS {
        let (v, _) = vector(name);
        let reader_name = v["recipient_key"].as_str().unwrap();
        let wrapped = dir.path().join(format!("{name}.wrapped"));
        std::fs::write(&wrapped, hex_field(&v, "wrapped_key_hex")).unwrap();
        let out = openssl(&[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            td.join(format!("{reader_name}.key.pem")).to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
            wrapped.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout,
            hex_field(&v, "aes_key_hex"),
            "{name}: OpenSSL unwrapped another key"
        );

        let signed = dir.path().join(format!("{name}.signed"));
        let sig = dir.path().join(format!("{name}.sig"));
        std::fs::write(&signed, hex_field(&v, "signed_bytes_hex")).unwrap();
        std::fs::write(&sig, hex_field(&v, "signature_hex")).unwrap();
        let verify = |data: &PathBuf| openssl_verify_pss(&td.join("1111.spki.pem"), &sig, data);
        let out = verify(&signed);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And OpenSSL rejects the signature over anything else.
        let mut other = hex_field(&v, "signed_bytes_hex");
        other[0] ^= 1;
        std::fs::write(&signed, other).unwrap();
        assert!(
            !verify(&signed).status.success(),
            "{name}: OpenSSL accepted a tampered message"
        );
    }
}

#[test]
fn we_unwrap_and_verify_what_openssl_makes() {
    let dir = tempfile::tempdir().unwrap();
    let td = testdata();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, [0x42u8; 32]).unwrap();
    let wrapped = dir.path().join("wrapped");
    let out = openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        td.join("1113.spki.pem").to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
        "-in",
        secret.to_str().unwrap(),
        "-out",
        wrapped.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = keys::read_private(&td.join("1113.key.pem")).unwrap();
    let unwrapped = reader
        .decrypt_blinded(
            &mut OsRng,
            Oaep::new::<Sha256>(),
            &std::fs::read(&wrapped).unwrap(),
        )
        .unwrap();
    assert_eq!(unwrapped, vec![0x42u8; 32]);

    let msg = dir.path().join("msg");
    std::fs::write(&msg, b"signed by openssl").unwrap();
    let sig = dir.path().join("sig");
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sign",
        td.join("1111.key.pem").to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        msg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sender = keys::read_public(&td.join("1111.spki.pem")).unwrap();
    let signature = Signature::try_from(std::fs::read(&sig).unwrap().as_slice()).unwrap();
    assert!(VerifyingKey::<Sha256>::new(sender)
        .verify(b"signed by openssl", &signature)
        .is_ok());
}

#[test]
fn the_connect_proof_vector_reads_verifies_and_openssl_agrees() {
    let dir = testdata().join("vectors");
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("connect-proof.json")).unwrap()).unwrap();
    let proof = ConnectProof::from_password(v["password"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(proof.encode(), hex_field(&v, "proof_hex"));
    assert_eq!(proof.claim.encode(), hex_field(&v, "claim_hex"));
    assert_eq!(
        proof.claim.signed_bytes(),
        hex_field(&v, "signed_bytes_hex")
    );
    assert_eq!(proof.signature, hex_field(&v, "signature_hex"));
    assert_eq!(proof.device(), v["device"].as_str().unwrap());
    assert_eq!(proof.audience(), v["audience"].as_str().unwrap());
    assert_eq!(
        proof.claim.timestamp_ms,
        v["timestamp_ms"].as_u64().unwrap()
    );
    assert_eq!(proof.claim.nonce.to_vec(), hex_field(&v, "nonce_hex"));
    // The claim as docs/connect-proof.md lays it out, byte by byte.
    let mut claim = vec![1u8, 4 << 2];
    claim.extend_from_slice(b"1111");
    claim.push(11 << 2);
    claim.extend_from_slice(b"keymesh-dev");
    claim.extend_from_slice(&1_790_000_000_000u64.to_le_bytes());
    claim.extend_from_slice(&[0x5a; 16]);
    assert_eq!(claim, hex_field(&v, "claim_hex"));
    assert_eq!(
        hex_field(&v, "signed_bytes_hex"),
        [b"keymesh/connect-proof/v1".as_slice(), &claim].concat()
    );
    let public = keys::read_public(&testdata().join("1111.spki.pem")).unwrap();
    proof.verify(&public).unwrap();
    let other = keys::read_public(&testdata().join("1112.spki.pem")).unwrap();
    assert!(proof.verify(&other).is_err());

    let tmp = tempfile::tempdir().unwrap();
    let (signed, sig) = (tmp.path().join("signed"), tmp.path().join("sig"));
    std::fs::write(&signed, hex_field(&v, "signed_bytes_hex")).unwrap();
    std::fs::write(&sig, hex_field(&v, "signature_hex")).unwrap();
    let out = openssl_verify_pss(&testdata().join("1111.spki.pem"), &sig, &signed);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

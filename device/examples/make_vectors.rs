//! Writes the envelope test vectors of `docs/envelope.md` and the connect-proof vector of
//! `docs/connect-proof.md` into `testdata/vectors/`.
//! Deterministic: a seeded ChaCha20 generator stands in for the OS's randomness.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use codec::Encode;
use keymesh_device::{
    envelope::{seal_with, Kind, SealRequest},
    keys, ConnectProof,
};
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

/// (name, kind, target id, key sealed to, epoch, payload).
type VectorCase<'a> = (
    &'a str,
    Kind,
    &'a str,
    &'a rsa::RsaPrivateKey,
    u32,
    &'a [u8],
);

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let key = |n: &str| keys::read_private(&root.join(format!("{n}.key.pem"))).unwrap();
    let (sender, recipient, topic) = (key("1111"), key("1113"), key("topic-B"));
    let out = root.join("vectors");
    std::fs::create_dir_all(&out).unwrap();

    let cases: [VectorCase; 3] = [
        (
            "direct",
            Kind::Direct,
            "1113",
            &recipient,
            0,
            b"temperature=21.5C",
        ),
        (
            "topic",
            Kind::Topic,
            "B",
            &topic,
            1,
            b"group B: valve 3 open",
        ),
        ("empty", Kind::Direct, "1113", &recipient, 0, b""),
    ];
    for (i, (name, kind, target, target_key, epoch, payload)) in cases.into_iter().enumerate() {
        let mut rng = ChaCha20Rng::from_seed([i as u8 + 1; 32]);
        let message_id = [0x10 + i as u8; 16];
        let timestamp_ms = 1_790_000_000_000 + i as u64;
        let (env, secrets) = seal_with(
            &mut rng,
            message_id,
            timestamp_ms,
            SealRequest {
                kind,
                sender: "1111",
                sender_key: &sender,
                target,
                target_key: &target_key.to_public_key(),
                key_epoch: epoch,
                payload,
            },
        )
        .unwrap();
        fn h(bytes: impl AsRef<[u8]>) -> String {
            hex::encode(bytes)
        }
        let json = format!(
            "{{\n  \"name\": \"{name}\",\n  \"sender_key\": \"1111\",\n  \"recipient_key\": \"{rk}\",\n  \"payload_hex\": \"{p}\",\n  \"header_hex\": \"{hd}\",\n  \"fingerprint_hex\": \"{fp}\",\n  \"aes_key_hex\": \"{ak}\",\n  \"nonce_hex\": \"{n}\",\n  \"wrapped_key_hex\": \"{wk}\",\n  \"ciphertext_hex\": \"{ct}\",\n  \"signed_bytes_hex\": \"{sb}\",\n  \"signature_hex\": \"{sig}\",\n  \"envelope_hex\": \"{e}\"\n}}\n",
            rk = if kind == Kind::Topic { "topic-B" } else { "1113" },
            p = h(payload),
            hd = h(env.header.encode()),
            fp = h(env.header.fingerprint),
            ak = h(secrets.aes_key.as_ref()),
            n = h(env.nonce),
            wk = h(&env.wrapped_key),
            ct = h(&env.ciphertext),
            sb = h(env.signed_bytes()),
            sig = h(&env.signature),
            e = h(env.to_bytes()),
        );
        std::fs::write(out.join(format!("{name}.json")), json).unwrap();
        std::fs::write(out.join(format!("{name}.bin")), env.to_bytes()).unwrap();
        println!("wrote {name}");
    }
    write_connect_proof(&out, &sender);
}

/// The connect proof of device 1111 for audience `keymesh-dev`.
fn write_connect_proof(out: &Path, key: &rsa::RsaPrivateKey) {
    let mut rng = ChaCha20Rng::from_seed([0x42; 32]);
    let proof = ConnectProof::make_with(
        &mut rng,
        "1111",
        "keymesh-dev",
        1_790_000_000_000,
        [0x5a; 16],
        key,
    )
    .unwrap();
    let json = format!(
        "{{\n  \"name\": \"connect-proof\",\n  \"device\": \"1111\",\n  \"audience\": \"keymesh-dev\",\n  \"timestamp_ms\": 1790000000000,\n  \"nonce_hex\": \"{n}\",\n  \"claim_hex\": \"{c}\",\n  \"signed_bytes_hex\": \"{sb}\",\n  \"signature_hex\": \"{sig}\",\n  \"proof_hex\": \"{p}\",\n  \"password\": \"{pw}\"\n}}\n",
        n = hex::encode(proof.claim.nonce),
        c = hex::encode(proof.claim.encode()),
        sb = hex::encode(proof.claim.signed_bytes()),
        sig = hex::encode(&proof.signature),
        p = hex::encode(proof.encode()),
        pw = proof.to_password(),
    );
    std::fs::write(out.join("connect-proof.json"), json).unwrap();
    println!("wrote connect-proof");
}

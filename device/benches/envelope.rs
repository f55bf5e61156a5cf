//! Seal/open and the RSA primitives, timed. Run: `cargo bench -p keymesh-device`.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keymesh_device::{envelope, keys};
use rand::rngs::OsRng;
use rsa::{
    pss::{BlindedSigningKey, VerifyingKey},
    signature::{RandomizedSigner, Verifier},
    Oaep,
};
use sha2::Sha256;

fn key(name: &str) -> rsa::RsaPrivateKey {
    let path = format!("{}/testdata/{name}.key.pem", env!("CARGO_MANIFEST_DIR"));
    keys::read_private(std::path::Path::new(&path)).unwrap()
}

fn envelopes(c: &mut Criterion) {
    let (sender, recipient) = (key("1111"), key("1113"));
    let (sender_pub, recipient_pub) = (sender.to_public_key(), recipient.to_public_key());
    let mut group = c.benchmark_group("envelope");
    for len in [256usize, 64 * 1024, 1024 * 1024] {
        let payload = vec![0x5au8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("seal", len), &payload, |b, p| {
            b.iter(|| envelope::seal_direct("1111", &sender, "1113", &recipient_pub, 0, p).unwrap())
        });
        let sealed = envelope::seal_direct("1111", &sender, "1113", &recipient_pub, 0, &payload)
            .unwrap()
            .to_bytes();
        group.bench_with_input(BenchmarkId::new("open", len), &sealed, |b, s| {
            b.iter(|| envelope::open(s, &recipient, &sender_pub).unwrap())
        });
        if len == 256 {
            // What the bridge's gate runs per message.
            group.bench_with_input(BenchmarkId::new("verify", len), &sealed, |b, s| {
                b.iter(|| envelope::verify_signature(s, &sender_pub).unwrap())
            });
        }
    }
    group.finish();
}

fn rsa_2048(c: &mut Criterion) {
    let k = key("1113");
    let public = k.to_public_key();
    let aes_key = [7u8; 32];
    let wrapped = public
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
        .unwrap();
    let signer = BlindedSigningKey::<Sha256>::new(k.clone());
    let verifier = VerifyingKey::<Sha256>::new(public.clone());
    let msg = [1u8; 256];
    let sig = signer.sign_with_rng(&mut OsRng, &msg);
    let mut group = c.benchmark_group("rsa2048");
    group.bench_function("wrap (OAEP encrypt)", |b| {
        b.iter(|| {
            public
                .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &aes_key)
                .unwrap()
        })
    });
    group.bench_function("unwrap (OAEP decrypt, blinded)", |b| {
        b.iter(|| {
            k.decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), &wrapped)
                .unwrap()
        })
    });
    group.bench_function("sign (PSS, blinded)", |b| {
        b.iter(|| signer.sign_with_rng(&mut OsRng, &msg))
    });
    group.bench_function("verify (PSS, rsa crate)", |b| {
        b.iter(|| verifier.verify(&msg, &sig).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = envelopes, rsa_2048
}
criterion_main!(benches);

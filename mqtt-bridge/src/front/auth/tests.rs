use std::collections::HashMap;

use keymesh_device::ConnectProof;
use rsa::RsaPrivateKey;

use super::*;
use crate::gate::DeviceKey;

const NOW: u64 = 1_700_000_000_000;
const SKEW: u64 = 60_000;

fn key(id: &str) -> RsaPrivateKey {
    keymesh_device::keys::read_private(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../device/testdata/{id}.key.pem")),
    )
    .unwrap()
}

fn snapshot() -> Snapshot {
    let mut devices = HashMap::new();
    for id in ["1111", "1112", "1113"] {
        devices.insert(id.to_string(), DeviceKey::active(key(id).to_public_key()));
    }
    devices.get_mut("1113").unwrap().status = DeviceStatus::Revoked;
    Snapshot {
        devices,
        ..Snapshot::default()
    }
}

fn proof(device: &str, signer: &str, audience: &str, at: u64, nonce: u8) -> String {
    ConnectProof::make_with(
        &mut rand::rngs::OsRng,
        device,
        audience,
        at,
        [nonce; 16],
        &key(signer),
    )
    .unwrap()
    .to_password()
}

fn connect(
    auth: &mut Authenticator,
    client_id: &str,
    user: Option<&str>,
    pass: Option<&str>,
) -> Result<String, ConnectRefusal> {
    auth.authenticate(
        &ConnectRequest {
            client_id,
            username: user,
            password: pass.map(str::as_bytes),
            has_last_will: false,
        },
        &snapshot(),
        NOW,
    )
}

fn authenticator() -> Authenticator {
    Authenticator::new("keymesh-test".into(), SKEW)
}

#[test]
fn a_fresh_proof_from_an_active_device_connects_once() {
    let mut auth = authenticator();
    let password = proof("1111", "1111", "keymesh-test", NOW, 1);
    assert_eq!(
        connect(&mut auth, "1111", Some("1111"), Some(&password)),
        Ok("1111".into())
    );
    assert_eq!(
        connect(&mut auth, "1111", Some("1111"), Some(&password)),
        Err(ConnectRefusal::Replayed)
    );
    // A tagged client id of the same device is the same device.
    let password = proof("1111", "1111", "keymesh-test", NOW, 2);
    assert_eq!(
        connect(&mut auth, "1111:listen", Some("1111"), Some(&password)),
        Ok("1111".into())
    );
}

#[test]
fn every_bad_connect_is_refused_with_its_reason() {
    let mut auth = authenticator();
    let good = proof("1111", "1111", "keymesh-test", NOW, 1);
    assert_eq!(
        connect(&mut auth, "x", None, None),
        Err(ConnectRefusal::Anonymous)
    );
    assert_eq!(
        connect(&mut auth, "1111", Some("1111"), None),
        Err(ConnectRefusal::Anonymous)
    );
    for client_id in [
        "1112",
        "keymesh-bridge-1cbd2d43530a4470",
        "1111:",
        "1111:a/b",
        "",
    ] {
        assert!(
            matches!(
                connect(&mut auth, client_id, Some("1111"), Some(&good)),
                Err(ConnectRefusal::ClientId { .. })
            ),
            "{client_id}"
        );
    }
    assert!(matches!(
        connect(&mut auth, "1111", Some("1111"), Some("password")),
        Err(ConnectRefusal::Proof(_))
    ));
    let other = proof("1112", "1112", "keymesh-test", NOW, 1);
    assert!(matches!(
        connect(&mut auth, "1111", Some("1111"), Some(&other)),
        Err(ConnectRefusal::DeviceMismatch { .. })
    ));
    let elsewhere = proof("1111", "1111", "elsewhere", NOW, 1);
    assert!(matches!(
        connect(&mut auth, "1111", Some("1111"), Some(&elsewhere)),
        Err(ConnectRefusal::Audience(_))
    ));
    for at in [NOW - SKEW - 1, NOW + SKEW + 1] {
        let stale = proof("1111", "1111", "keymesh-test", at, 1);
        assert!(matches!(
            connect(&mut auth, "1111", Some("1111"), Some(&stale)),
            Err(ConnectRefusal::Stale { .. })
        ));
    }
    let forged = proof("1111", "1112", "keymesh-test", NOW, 1);
    assert!(matches!(
        connect(&mut auth, "1111", Some("1111"), Some(&forged)),
        Err(ConnectRefusal::BadSignature(_))
    ));
    let unknown = proof("9999", "1111", "keymesh-test", NOW, 1);
    assert!(matches!(
        connect(&mut auth, "9999", Some("9999"), Some(&unknown)),
        Err(ConnectRefusal::UnknownDevice(_))
    ));
    let revoked = proof("1113", "1113", "keymesh-test", NOW, 1);
    assert!(matches!(
        connect(&mut auth, "1113", Some("1113"), Some(&revoked)),
        Err(ConnectRefusal::NotActive { .. })
    ));
    // None of the refusals took the good proof's nonce, and none left state behind.
    assert_eq!(auth.remembered(), 0);
    assert_eq!(
        connect(&mut auth, "1111", Some("1111"), Some(&good)),
        Ok("1111".into())
    );
}

#[test]
fn a_last_will_is_refused() {
    let mut auth = authenticator();
    let password = proof("1111", "1111", "keymesh-test", NOW, 1);
    let request = ConnectRequest {
        client_id: "1111",
        username: Some("1111"),
        password: Some(password.as_bytes()),
        has_last_will: true,
    };
    assert_eq!(
        auth.authenticate(&request, &snapshot(), NOW),
        Err(ConnectRefusal::LastWill)
    );
}

#[test]
fn nonces_are_bounded_per_device_and_expire_with_their_proof() {
    let mut auth = authenticator();
    for n in 0..NONCES_PER_DEVICE {
        let password = proof("1111", "1111", "keymesh-test", NOW, n as u8);
        assert!(connect(&mut auth, "1111", Some("1111"), Some(&password)).is_ok());
    }
    let one_more = proof("1111", "1111", "keymesh-test", NOW, 200);
    assert_eq!(
        connect(&mut auth, "1111", Some("1111"), Some(&one_more)),
        Err(ConnectRefusal::TooManyProofs("1111".into()))
    );
    // Another device is not held back by 1111's churn.
    let other = proof("1112", "1112", "keymesh-test", NOW, 1);
    assert!(connect(&mut auth, "1112", Some("1112"), Some(&other)).is_ok());
    // Once the proofs are stale they are forgotten, and a replay of one is stale anyway.
    let later = NOW + SKEW + 1;
    let fresh = proof("1111", "1111", "keymesh-test", later, 201);
    let request = ConnectRequest {
        client_id: "1111",
        username: Some("1111"),
        password: Some(fresh.as_bytes()),
        has_last_will: false,
    };
    assert!(auth.authenticate(&request, &snapshot(), later).is_ok());
    assert_eq!(auth.remembered(), 1);
}

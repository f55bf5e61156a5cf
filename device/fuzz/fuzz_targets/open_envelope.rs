//! Decoding and opening arbitrary bytes must fail closed: never panic, never open.
//! Corpus: `corpus/open_envelope/` is seeded from the test vectors.
#![no_main]

use std::sync::OnceLock;

use keymesh_device::{envelope, keys, Envelope};
use libfuzzer_sys::fuzz_target;

struct Keys {
    reader: rsa::RsaPrivateKey,
    sender: rsa::RsaPublicKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let td = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
        Keys {
            reader: keys::read_private(&td.join("1113.key.pem")).expect("test key"),
            sender: keys::read_public(&td.join("1111.spki.pem")).expect("test key"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let _ = Envelope::decode_bounded(data);
    let _ = envelope::verify_signature(data, &k.sender);
    if let Ok(opened) = envelope::open(data, &k.reader, &k.sender) {
        // Only an untouched, validly signed envelope may open; the seeds are such, so an
        // opened input must re-encode to itself.
        let env = Envelope::decode_bounded(data).expect("opened implies decodable");
        assert_eq!(env.to_bytes(), data);
        assert_eq!(opened.header, env.header);
    }
});

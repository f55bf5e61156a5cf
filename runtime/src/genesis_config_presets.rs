//! Genesis presets: `development` (one validator) and `local_testnet` (four).
//!
//! Every key here is a well-known development key (`//Alice` …, node keys `0x…01` …):
//! anyone can sign with them. They exist for local work and tests only.

use crate::{
    AccountId, BalancesConfig, DevicesConfig, ExchangeLogConfig, GroupsConfig,
    NodeAuthorizationConfig, OperatorsConfig, RuntimeGenesisConfig, SudoConfig, UNIT,
};
use alloc::{string::String, vec, vec::Vec};
use frame_support::build_struct_json_patch;
use serde_json::Value;
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_consensus_grandpa::AuthorityId as GrandpaId;
use sp_core::OpaquePeerId;
use sp_genesis_builder::PresetId;
use sp_keyring::{Ed25519Keyring, Sr25519Keyring};

/// The dev bridge's account: `keymesh-bridge --signer //Ferdie`.
pub const DEV_BRIDGE: Sr25519Keyring = Sr25519Keyring::Ferdie;

/// libp2p PeerIds of the dev node keys `0x00…01` to `0x00…04` (Ed25519, identity multihash).
///
/// `scripts/local-testnet.sh` starts validator *n* with node key `0x00…0n`, so these are
/// the validators' PeerIds. `keymesh-node key inspect-node-key` recomputes them.
pub const DEV_NODE_PEER_IDS: [[u8; 38]; 4] = [
    peer_id(hex32(
        "4cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29",
    )),
    peer_id(hex32(
        "7422b9887598068e32c4448a949adb290d0f4e35b9e01b0ee5f1a1e600fe2674",
    )),
    peer_id(hex32(
        "f381626e41e7027ea431bfe3009e94bdd25a746beec468948d6c3c7c5dc9a54b",
    )),
    peer_id(hex32(
        "fd50b8e3b144ea244fbf7737f550bc8dd0c2650bbc1aada833ca17ff8dbf329b",
    )),
];

/// The PeerId bytes of an Ed25519 libp2p key: identity multihash (0x00, len 0x24) of the
/// protobuf `PublicKey { type: Ed25519, data }`.
const fn peer_id(ed25519_public: [u8; 32]) -> [u8; 38] {
    let mut out = [0u8; 38];
    let prefix = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    let mut i = 0;
    while i < 6 {
        out[i] = prefix[i];
        i += 1;
    }
    while i < 38 {
        out[i] = ed25519_public[i - 6];
        i += 1;
    }
    out
}

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("lower-case hex only"),
        }
    }
    let bytes = s.as_bytes();
    assert!(bytes.len() == 64, "32 bytes of hex");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// The demo devices of the seed papers (N1..N4), with published, dev-only keys
/// (`runtime/dev-keys/README.md`). Each is owned by the matching dev account.
const DEV_DEVICES: [(&[u8], &[u8], Sr25519Keyring); 4] = [
    (
        b"1111",
        include_bytes!("../dev-keys/1111.der"),
        Sr25519Keyring::Alice,
    ),
    (
        b"1112",
        include_bytes!("../dev-keys/1112.der"),
        Sr25519Keyring::Bob,
    ),
    (
        b"1113",
        include_bytes!("../dev-keys/1113.der"),
        Sr25519Keyring::Charlie,
    ),
    (
        b"1114",
        include_bytes!("../dev-keys/1114.der"),
        Sr25519Keyring::Dave,
    ),
];

/// The validators of a preset, in node-key order: (account and Aura key, GRANDPA key).
fn validators(count: usize) -> Vec<(Sr25519Keyring, Ed25519Keyring)> {
    [
        (Sr25519Keyring::Alice, Ed25519Keyring::Alice),
        (Sr25519Keyring::Bob, Ed25519Keyring::Bob),
        (Sr25519Keyring::Charlie, Ed25519Keyring::Charlie),
        (Sr25519Keyring::Dave, Ed25519Keyring::Dave),
    ]
    .into_iter()
    .take(count)
    .collect()
}

fn genesis(validator_count: usize) -> Value {
    let validators = validators(validator_count);
    let endowed: Vec<AccountId> = [
        Sr25519Keyring::Alice,
        Sr25519Keyring::Bob,
        Sr25519Keyring::Charlie,
        Sr25519Keyring::Dave,
        Sr25519Keyring::Eve,
        Sr25519Keyring::Ferdie,
    ]
    .iter()
    .map(|k| k.to_account_id())
    .collect();
    let aura: Vec<AuraId> = validators
        .iter()
        .map(|(sr, _)| sr.public().into())
        .collect();
    let grandpa: Vec<(GrandpaId, u64)> = validators
        .iter()
        .map(|(_, ed)| (ed.public().into(), 1))
        .collect();
    let well_known_nodes: Vec<(OpaquePeerId, AccountId)> = validators
        .iter()
        .zip(DEV_NODE_PEER_IDS.iter())
        .map(|((sr, _), peer)| (OpaquePeerId(peer.to_vec()), sr.to_account_id()))
        .collect();
    let root = Sr25519Keyring::Alice.to_account_id();
    let dev_devices: Vec<(Vec<u8>, Vec<u8>, AccountId)> = DEV_DEVICES
        .iter()
        .map(|(id, key, owner)| (id.to_vec(), key.to_vec(), owner.to_account_id()))
        .collect();

    build_struct_json_patch!(RuntimeGenesisConfig {
        balances: BalancesConfig {
            balances: endowed.into_iter().map(|a| (a, 1_000_000 * UNIT)).collect(),
        },
        aura: pallet_aura::GenesisConfig { authorities: aura },
        grandpa: pallet_grandpa::GenesisConfig {
            authorities: grandpa
        },
        sudo: SudoConfig {
            key: Some(root.clone())
        },
        operators: OperatorsConfig {
            members: vec![root].try_into().expect("one operator fits; qed")
        },
        node_authorization: NodeAuthorizationConfig {
            nodes: well_known_nodes
        },
        devices: DevicesConfig {
            devices: dev_devices
        },
        // The dev bridge signs as //Ferdie (as insecure as //Alice): it writes the exchange
        // log and rekeys groups.
        exchange_log: ExchangeLogConfig {
            bridges: vec![DEV_BRIDGE.to_account_id()],
        },
        groups: GroupsConfig {
            key_managers: vec![DEV_BRIDGE.to_account_id()],
        },
    })
}

/// JSON of the preset `id`, if it is one of ours.
pub fn get_preset(id: &PresetId) -> Option<Vec<u8>> {
    let patch = match id.as_ref() {
        sp_genesis_builder::DEV_RUNTIME_PRESET => genesis(1),
        sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET => genesis(4),
        _ => return None,
    };
    serde_json::to_string(&patch).ok().map(String::into_bytes)
}

/// The presets this runtime offers.
pub fn preset_names() -> Vec<PresetId> {
    vec![
        PresetId::from(sp_genesis_builder::DEV_RUNTIME_PRESET),
        PresetId::from(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET),
    ]
}

/// The typed genesis config of preset `id`: the default merged with the preset's patch.
#[cfg(test)]
pub(crate) fn preset_config(id: &PresetId) -> RuntimeGenesisConfig {
    let json = get_preset(id).expect("preset exists");
    let patch: Value = serde_json::from_slice(&json).expect("valid json");
    let mut config = serde_json::to_value(RuntimeGenesisConfig::default()).expect("json");
    json_merge(&mut config, patch);
    serde_json::from_value(config).expect("typed")
}

/// The dev chain's genesis state at block 1, for the runtime's tests.
#[cfg(test)]
pub(crate) fn dev_ext() -> sp_io::TestExternalities {
    let config = preset_config(&PresetId::from(sp_genesis_builder::DEV_RUNTIME_PRESET));
    let storage = sp_runtime::BuildStorage::build_storage(&config).expect("dev genesis builds");
    let mut ext = sp_io::TestExternalities::new(storage);
    ext.execute_with(|| crate::System::set_block_number(1));
    ext
}

/// Merges like the genesis builder: objects key by key, anything else replaced.
#[cfg(test)]
fn json_merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                json_merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, patch) => *base = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_build_a_genesis_state() {
        for name in preset_names() {
            let config = preset_config(&name);
            let storage = sp_runtime::BuildStorage::build_storage(&config);
            assert!(storage.is_ok(), "{name:?}: {:?}", storage.err());
        }
    }

    #[test]
    fn local_testnet_has_four_validators_and_their_peers() {
        let json = get_preset(&PresetId::from(
            sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET,
        ))
        .expect("preset exists");
        let v: Value = serde_json::from_slice(&json).expect("valid json");
        assert_eq!(v["aura"]["authorities"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            v["grandpa"]["authorities"].as_array().map(Vec::len),
            Some(4)
        );
        assert_eq!(
            v["nodeAuthorization"]["nodes"].as_array().map(Vec::len),
            Some(4)
        );
        assert_eq!(v["balances"]["balances"].as_array().map(Vec::len), Some(6));
        assert_eq!(v["devices"]["devices"].as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn dev_peer_id_matches_libp2p_text_form() {
        // 12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp is the PeerId that every
        // Substrate tool prints for node key 0x00…01.
        assert_eq!(
            &DEV_NODE_PEER_IDS[0][..6],
            &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]
        );
        assert_eq!(DEV_NODE_PEER_IDS[0][6], 0x4c);
    }
}

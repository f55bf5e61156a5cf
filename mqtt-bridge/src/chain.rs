//! Follow: the bridge's view of finalized state, read with subxt's metadata-driven API (no
//! runtime types compiled in).
//!
//! At start the whole key cache is read from finalized storage. Then, for each finalized
//! block, the KeyMesh events name the devices and groups that changed, and only those are
//! read again, at that block. `RekeyRequired` events go to the key manager.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use keymesh_device::keys::parse_public;
use keymesh_primitives::{DeviceStatus, Role};
use scale_decode::DecodeAsType;
use subxt::{
    client::OnlineClientAtBlock, config::RpcConfigFor, dynamic::Value, rpcs::LegacyRpcMethods,
    utils::AccountId32, OnlineClient, PolkadotConfig,
};

use crate::gate::{DeviceKey, GroupKey, MemberKeys, Snapshot};

pub type Api = OnlineClient<PolkadotConfig>;
pub type AtBlock = OnlineClientAtBlock<PolkadotConfig>;
/// The node's JSON-RPC methods that subxt's typed API does not cover (nonces, storage of
/// many keys in one call).
pub type Rpc = LegacyRpcMethods<RpcConfigFor<PolkadotConfig>>;

/// Most storage keys asked for in one `state_queryStorageAt` call.
const KEYS_PER_QUERY: usize = 512;

/// One connection to a node, seen through subxt's typed API and its raw RPC methods.
#[derive(Clone)]
pub struct Node {
    pub api: Api,
    pub rpc: Rpc,
}

/// Why reading the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot reach the node at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("chain query failed: {0}")]
    Query(String),
}

pub(crate) fn query(e: impl std::fmt::Display) -> ChainError {
    ChainError::Query(e.to_string())
}

#[derive(DecodeAsType)]
struct DeviceRecord {
    public_key: Vec<u8>,
    fingerprint: [u8; 32],
    epoch: u32,
    status: Status,
}

#[derive(DecodeAsType)]
enum Status {
    Active,
    Suspended,
    Revoked,
}

#[derive(DecodeAsType)]
struct GroupRecord {
    epoch: u32,
    topic_key: Option<TopicKey>,
    open_to_publishers: bool,
    rekey_requested_at: Option<u32>,
    departed_at: Option<u32>,
}

#[derive(DecodeAsType)]
struct TopicKey {
    epoch: u32,
    public_key: Vec<u8>,
    fingerprint: [u8; 32],
    sealed_private_key: Vec<u8>,
    from_block: u32,
    members_at: u32,
}

#[derive(DecodeAsType)]
struct EpochWrap {
    wrap: Vec<u8>,
}

#[derive(DecodeAsType)]
struct MemberRecord {
    role: MemberRole,
}

#[derive(DecodeAsType)]
enum MemberRole {
    Publisher,
    Subscriber,
    Both,
}

/// Connects to a node's JSON-RPC (ws:// or http://, loopback allowed).
pub async fn connect(url: &str) -> Result<Node, ChainError> {
    let refused = |reason: String| ChainError::Connect {
        url: url.to_string(),
        reason,
    };
    let (api, rpc) = keymesh_device::node_client::connect(url)
        .await
        .map_err(|e| refused(e.to_string()))?;
    Ok(Node {
        api,
        rpc: LegacyRpcMethods::new(rpc),
    })
}

fn device_key(record: DeviceRecord) -> Option<DeviceKey> {
    // The runtime validated the key; a parse failure would mean a runtime bug. Such a device
    // is left out of the cache, so nothing is forwarded to or from it.
    let public_key = parse_public(&record.public_key).ok()?;
    Some(DeviceKey {
        public_key,
        fingerprint: record.fingerprint,
        epoch: record.epoch,
        status: match record.status {
            Status::Active => DeviceStatus::Active,
            Status::Suspended => DeviceStatus::Suspended,
            Status::Revoked => DeviceStatus::Revoked,
        },
    })
}

/// One device, read at `at`.
pub async fn read_device(at: &AtBlock, id: &str) -> Result<Option<DeviceKey>, ChainError> {
    let address = subxt::dynamic::storage::<(Vec<u8>,), DeviceRecord>("Devices", "Devices");
    let value = at
        .storage()
        .try_fetch(address, (id.as_bytes().to_vec(),))
        .await
        .map_err(query)?;
    match value {
        None => Ok(None),
        Some(v) => Ok(device_key(v.decode().map_err(query)?)),
    }
}

/// The devices `ids`, read at `at` in one storage query per [`KEYS_PER_QUERY`] ids; a
/// device with no record maps to `None`.
pub async fn read_devices(
    at: &AtBlock,
    rpc: &Rpc,
    ids: &BTreeSet<String>,
) -> Result<HashMap<String, Option<DeviceKey>>, ChainError> {
    let address = subxt::dynamic::storage::<(Vec<u8>,), DeviceRecord>("Devices", "Devices");
    let entry = at.storage().entry(address).map_err(query)?;
    let value_type = at
        .metadata_ref()
        .pallet_by_name("Devices")
        .and_then(|p| p.storage())
        .and_then(|s| s.entry_by_name("Devices"))
        .map(|e| e.value_ty())
        .ok_or_else(|| ChainError::Query("no Devices.Devices in the metadata".into()))?;
    let mut devices: HashMap<String, Option<DeviceKey>> =
        ids.iter().map(|id| (id.clone(), None)).collect();
    let mut id_of_key = HashMap::with_capacity(ids.len());
    for id in ids {
        let key = entry.fetch_key((id.as_bytes().to_vec(),)).map_err(query)?;
        id_of_key.insert(key, id.clone());
    }
    let keys: Vec<&Vec<u8>> = id_of_key.keys().collect();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let change_sets = rpc
            .state_query_storage_at(chunk.iter().map(|k| k.as_slice()), Some(at.block_hash()))
            .await
            .map_err(query)?;
        for (key, value) in change_sets.into_iter().flat_map(|set| set.changes) {
            let (Some(id), Some(value)) = (id_of_key.get(&key.0), value) else {
                continue;
            };
            let record = DeviceRecord::decode_as_type(
                &mut value.0.as_slice(),
                value_type,
                at.metadata_ref().types(),
            )
            .map_err(query)?;
            devices.insert(id.clone(), device_key(record));
        }
    }
    Ok(devices)
}

/// One group with its members, read at `at`.
pub async fn read_group(at: &AtBlock, id: &str) -> Result<Option<GroupKey>, ChainError> {
    let address = subxt::dynamic::storage::<(Vec<u8>,), GroupRecord>("Groups", "Groups");
    let Some(value) = at
        .storage()
        .try_fetch(address, (id.as_bytes().to_vec(),))
        .await
        .map_err(query)?
    else {
        return Ok(None);
    };
    let record: GroupRecord = value.decode().map_err(query)?;
    let members_address =
        subxt::dynamic::storage::<(Vec<u8>, Vec<u8>), MemberRecord>("Groups", "Members");
    let mut entries = at
        .storage()
        .iter(members_address, (id.as_bytes().to_vec(),))
        .await
        .map_err(query)?;
    let mut members = HashMap::new();
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(query)?;
        let device = key_id(&entry.key().map_err(query)?, 1, "Groups.Members")?;
        let role = match entry.value().decode().map_err(query)?.role {
            MemberRole::Publisher => Role::Publisher,
            MemberRole::Subscriber => Role::Subscriber,
            MemberRole::Both => Role::Both,
        };
        members.insert(device, role);
    }
    // A request at or after the current key's block may not be answered yet; rekeying
    // once too often is harmless, missing one is not.
    let rekey_outstanding = match (record.rekey_requested_at, &record.topic_key) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(requested), Some(key)) => requested >= key.from_block,
    };
    let needs_rekey = !members.is_empty() && rekey_outstanding;
    // The runtime's own rule: a reader left after the view the current key was made for.
    let departed_may_read = match (record.departed_at, &record.topic_key) {
        (Some(departed), Some(key)) => departed > key.members_at,
        _ => false,
    };
    let member_keys = match &record.topic_key {
        Some(key) => Some(Arc::new(MemberKeys {
            wraps: read_wraps(at, id, key.epoch).await?,
            sealed_private_key: key.sealed_private_key.clone(),
        })),
        None => None,
    };
    let topic_key = record.topic_key.and_then(|k| {
        let public = parse_public(&k.public_key).ok()?;
        Some((public, k.fingerprint))
    });
    Ok(Some(GroupKey {
        epoch: record.epoch,
        topic_key,
        members,
        open_to_publishers: record.open_to_publishers,
        needs_rekey,
        removal_pending: departed_may_read,
        member_keys,
    }))
}

/// Every member's wrap of `group`'s epoch key for `epoch`, in one prefix iteration.
async fn read_wraps(
    at: &AtBlock,
    group: &str,
    epoch: u32,
) -> Result<HashMap<String, Vec<u8>>, ChainError> {
    let address =
        subxt::dynamic::storage::<(Vec<u8>, u32, Vec<u8>), EpochWrap>("Groups", "EpochWraps");
    let mut entries = at
        .storage()
        .iter(address, (group.as_bytes().to_vec(), epoch))
        .await
        .map_err(query)?;
    let mut wraps = HashMap::new();
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(query)?;
        let device = key_id(&entry.key().map_err(query)?, 2, "Groups.EpochWraps")?;
        wraps.insert(device, entry.value().decode().map_err(query)?.wrap);
    }
    Ok(wraps)
}

/// The id in part `index` of a storage key (maps hashed with a transparent hasher).
fn key_id<K: subxt::ext::frame_decode::storage::IntoDecodableValues>(
    key: &subxt::storage::StorageKey<'_, K>,
    index: usize,
    item: &str,
) -> Result<String, ChainError> {
    key.part(index)
        .and_then(|p| p.decode_as::<Vec<u8>>().ok().flatten())
        .map(|id: Vec<u8>| String::from_utf8_lossy(&id).into_owned())
        .ok_or_else(|| ChainError::Query(format!("{item}: key part {index} is not an id")))
}

/// Every id stored under a map whose first key is an id.
async fn ids(at: &AtBlock, pallet: &str, item: &str) -> Result<Vec<String>, ChainError> {
    let address = subxt::dynamic::storage::<(Vec<u8>,), Value>(pallet, item);
    let mut entries = at.storage().iter(address, ()).await.map_err(query)?;
    let mut ids = Vec::new();
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(query)?;
        ids.push(key_id(&entry.key().map_err(query)?, 0, item)?);
    }
    Ok(ids)
}

/// The block's timestamp, in milliseconds.
async fn timestamp_ms(at: &AtBlock) -> Result<u64, ChainError> {
    let address = subxt::dynamic::storage::<(), u64>("Timestamp", "Now");
    match at.storage().try_fetch(address, ()).await.map_err(query)? {
        Some(value) => value.decode().map_err(query),
        None => Ok(0),
    }
}

/// Whether the exchange log lists `bridge` as a bridge at `at`.
pub async fn bridge_listed(at: &AtBlock, bridge: &AccountId32) -> Result<bool, ChainError> {
    let address = subxt::dynamic::storage::<(AccountId32,), Value>("ExchangeLog", "Bridges");
    let value = at
        .storage()
        .try_fetch(address, (*bridge,))
        .await
        .map_err(query)?;
    Ok(value.is_some())
}

/// The whole key cache, read at `at`, for the bridge `bridge`.
pub async fn snapshot(at: &AtBlock, bridge: &AccountId32) -> Result<Snapshot, ChainError> {
    let mut snapshot = Snapshot {
        block_number: at.block_number() as u32,
        block_hash: at.block_hash().0,
        timestamp_ms: timestamp_ms(at).await?,
        bridge_listed: bridge_listed(at, bridge).await?,
        ..Default::default()
    };
    let address = subxt::dynamic::storage::<(Vec<u8>,), DeviceRecord>("Devices", "Devices");
    let mut entries = at.storage().iter(address, ()).await.map_err(query)?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(query)?;
        let id = key_id(&entry.key().map_err(query)?, 0, "Devices.Devices")?;
        if let Some(device) = device_key(entry.value().decode().map_err(query)?) {
            snapshot.devices.insert(id, device);
        }
    }
    for id in ids(at, "Groups", "Groups").await? {
        if let Some(group) = read_group(at, &id).await? {
            snapshot.groups.insert(id, group);
        }
    }
    Ok(snapshot)
}

/// What one finalized block changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub devices: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// (group, next epoch) of every `RekeyRequired`.
    pub rekeys: Vec<(String, u32)>,
}

/// The bytes of a byte-string field. SCALE types such as `BoundedVec<u8>` decode as a
/// composite wrapping the byte composite, so nesting is flattened.
fn field_bytes(fields: &Value, name: &str) -> Option<Vec<u8>> {
    use subxt::dynamic::At;
    fn collect(value: &Value, out: &mut Vec<u8>) -> Option<()> {
        if let Some(n) = value.as_u128() {
            out.push(u8::try_from(n).ok()?);
            return Some(());
        }
        let mut i = 0;
        while let Some(inner) = value.at(i) {
            collect(inner, out)?;
            i += 1;
        }
        Some(())
    }
    let mut out = Vec::new();
    collect(fields.at(name)?, &mut out)?;
    Some(out)
}

/// The devices and groups the KeyMesh events of block `at` touched.
pub async fn changes(at: &AtBlock) -> Result<Changes, ChainError> {
    let events = at.events().fetch().await.map_err(query)?;
    let mut changes = Changes::default();
    for event in events.iter() {
        let event = event.map_err(query)?;
        let pallet = event.pallet_name();
        if pallet != "Devices" && pallet != "Groups" {
            continue;
        }
        let fields = event.decode_fields_unchecked_as::<Value>().map_err(query)?;
        let text = |name| field_bytes(&fields, name).map(|b| String::from_utf8_lossy(&b).into());
        if pallet == "Devices" {
            changes.devices.extend(text("device"));
            continue;
        }
        changes.groups.extend(text("group"));
        if event.event_name() == "RekeyRequired" {
            use subxt::dynamic::At;
            let epoch = fields.at("next_epoch").and_then(|v| v.as_u128());
            if let (Some(group), Some(epoch)) = (text("group"), epoch) {
                changes
                    .rekeys
                    .push((group, u32::try_from(epoch).unwrap_or(u32::MAX)));
            }
        }
    }
    Ok(changes)
}

/// Applies `changes`, read at `at` (the changed devices in bulk), to a copy of `snapshot`
/// (the bridge `bridge`'s view).
pub async fn apply(
    snapshot: &Snapshot,
    at: &AtBlock,
    rpc: &Rpc,
    changes: &Changes,
    bridge: &AccountId32,
) -> Result<Snapshot, ChainError> {
    let mut next = snapshot.clone();
    next.block_number = at.block_number() as u32;
    next.block_hash = at.block_hash().0;
    next.timestamp_ms = timestamp_ms(at).await?;
    next.bridge_listed = bridge_listed(at, bridge).await?;
    for (id, device) in read_devices(at, rpc, &changes.devices).await? {
        match device {
            Some(device) => next.devices.insert(id, device),
            None => next.devices.remove(&id),
        };
    }
    for id in &changes.groups {
        match read_group(at, id).await? {
            Some(group) => next.groups.insert(id.clone(), group),
            None => next.groups.remove(id),
        };
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fields_decode_however_deeply_they_are_wrapped() {
        let id = Value::unnamed_composite([Value::from_bytes(b"1113")]);
        let fields = Value::named_composite([
            ("device", id),
            ("fingerprint", Value::from_bytes([7u8; 32])),
            ("epoch", Value::u128(3)),
        ]);
        assert_eq!(field_bytes(&fields, "device"), Some(b"1113".to_vec()));
        assert_eq!(field_bytes(&fields, "fingerprint"), Some(vec![7; 32]));
        assert_eq!(field_bytes(&fields, "epoch"), Some(vec![3]));
        assert_eq!(field_bytes(&fields, "group"), None);
        let too_big = Value::named_composite([("device", Value::u128(300))]);
        assert_eq!(field_bytes(&too_big, "device"), None);
    }
}

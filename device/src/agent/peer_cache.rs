//! The device's local copy of the keys it sends to: `<state>/peers/<device>.json`. The
//! agent checks a copy against finalized state before every seal; this file is only where
//! the copy lives between runs.

use std::path::{Path, PathBuf};

use base64::Engine;
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};

use crate::keys::{parse_public, public_der};

/// One peer's cached key.
#[derive(Clone, Debug)]
pub struct CachedKey {
    pub public_key: RsaPublicKey,
    /// The key epoch (rotation count) the copy was taken at.
    pub epoch: u32,
    /// The finalized block the copy was read at.
    pub block: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CachedJson {
    device: String,
    public_key: String,
    epoch: u32,
    block: u32,
}

/// Why the cache cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PeerCacheError {
    #[error("key cache {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("key cache {path} is not a cached key of {device}: {reason} (delete it to fetch the key again)")]
    Corrupt {
        path: String,
        device: String,
        reason: String,
    },
}

/// The folder of cached peer keys.
pub struct PeerCache {
    dir: PathBuf,
}

impl PeerCache {
    /// The cache in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Self, PeerCacheError> {
        std::fs::create_dir_all(dir).map_err(|e| PeerCacheError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(PeerCache {
            dir: dir.to_path_buf(),
        })
    }

    /// Where `device`'s copy lives (ids are `[A-Za-z0-9._-]`, checked by the caller).
    pub fn path(&self, device: &str) -> PathBuf {
        self.dir.join(format!("{device}.json"))
    }

    /// `device`'s cached key, if any.
    pub fn load(&self, device: &str) -> Result<Option<CachedKey>, PeerCacheError> {
        let path = self.path(device);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PeerCacheError::Io {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let corrupt = |reason: String| PeerCacheError::Corrupt {
            path: path.display().to_string(),
            device: device.to_string(),
            reason,
        };
        let json: CachedJson = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        // The file's device field is not trusted: the check compares the key itself.
        let der = base64::engine::general_purpose::STANDARD
            .decode(&json.public_key)
            .map_err(|e| corrupt(e.to_string()))?;
        let public_key = parse_public(&der).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(CachedKey {
            public_key,
            epoch: json.epoch,
            block: json.block,
        }))
    }

    /// Replaces `device`'s copy (written to a temporary file, then renamed).
    pub fn store(&self, device: &str, key: &CachedKey) -> Result<(), PeerCacheError> {
        let path = self.path(device);
        let json = CachedJson {
            device: device.to_string(),
            public_key: base64::engine::general_purpose::STANDARD
                .encode(public_der(&key.public_key)),
            epoch: key.epoch,
            block: key.block,
        };
        let io = |e: std::io::Error| PeerCacheError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&json).map_err(|e| PeerCacheError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let temp = path.with_extension("json.new");
        std::fs::write(&temp, bytes).map_err(io)?;
        std::fs::rename(&temp, &path).map_err(io)
    }
}

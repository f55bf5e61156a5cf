//! TLS on the front (rustls on `ring`): a listener for devices beyond loopback, and TLS to a
//! broker that asks for it.

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};

/// Why the front's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FrontTlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A server configuration presenting the certificate chain in `cert_file` with the key in
/// `key_file` (both PEM); no client certificates, since devices prove themselves with
/// connect proofs.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, FrontTlsError> {
    let file_error = |what, path: &Path, reason: String| FrontTlsError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error("certificate", cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("certificate", cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "certificate",
            cert_file,
            "no certificate in it".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error("key", key_file, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FrontTlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| FrontTlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

//! TLS for MQTT connections (rustls on `ring`), trusting the CA certificates of one PEM file:
//! a fleet's brokers carry certificates of the fleet's own CA, not of the web's.

use std::{path::Path, sync::Arc};

use rustls::{pki_types::pem::PemObject, pki_types::CertificateDer, ClientConfig, RootCertStore};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A client configuration that trusts exactly the certificates in `ca_file` (PEM).
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let ca_error = |reason: String| TlsError::Ca {
        path: ca_file.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| ca_error(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sets `options` to connect over TLS with `config`.
pub fn use_tls(options: &mut rumqttc::MqttOptions, config: Arc<ClientConfig>) {
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(config),
    ));
}

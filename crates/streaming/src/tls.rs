//! TLS for the streaming server: the certificate chain and key from PEM files, served with
//! rustls (ring provider, TLS 1.2 and 1.3).

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crimux_core::{Error, Result};

use crate::server::TlsFiles;

fn bad(what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("streaming TLS: {what}"))
}

/// Loads the files and builds the acceptor; errors name the file at fault.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let pem = std::fs::read(&files.cert)
        .map_err(|e| bad(format!("cannot read {}: {e}", files.cert.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "{} holds no certificate",
            files.cert.display()
        )));
    }
    let key_pem = std::fs::read(&files.key)
        .map_err(|e| bad(format!("cannot read {}: {e}", files.key.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(format!("{}: {e}", files.key.display())))?;
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(format!(
                "{} and {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

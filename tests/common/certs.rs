//! Mutual-TLS material for a containerd that serves TCP: a CA, a server certificate for
//! 127.0.0.1/localhost and a client certificate, all made with rcgen and written as PEM files.
//! Each test makes its own, so a certificate from "another CA" is just another `Certs`.
//! [`Certs::server_config`] is the server side, for the TCP front of a test containerd.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};

/// PEM files under one directory: `ca.pem`, `server.pem`/`server-key.pem`,
/// `client.pem`/`client-key.pem`.
#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Makes a fresh CA (common name `cn`) and a server and a client certificate it signed,
    /// under `dir` (created).
    pub fn generate(dir: &Path, cn: &str) -> Certs {
        std::fs::create_dir_all(dir).expect("create certs dir");
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, cn);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let leaf = |sans: Vec<String>, name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("generate leaf key");
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{cn} {name}"));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .expect("sign leaf certificate");
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem())
                .expect("write key");
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf(
            vec!["crimux".into()],
            "client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// A rustls server config presenting the server certificate and requiring a client
    /// certificate signed by this CA (what containerd's `tcp_tls_ca` would ask).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca()).expect("read CA") {
            roots.add(cert.expect("parse CA")).expect("add CA");
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("client verifier");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(self.server_cert())
            .expect("read server cert")
            .collect::<Result<_, _>>()
            .expect("parse server cert");
        let key = PrivateKeyDer::from_pem_file(self.server_key()).expect("read server key");
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client-key.pem")
    }
}

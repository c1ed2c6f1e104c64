//! The streaming server over TLS: an https base URL, and an exec session through it.

mod common;

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{crypto, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use common::{server_with, SpdyClient};
use crimux_streaming::{ServerOptions, Streams, TlsFiles};

#[tokio::test]
async fn exec_over_tls() {
    let dir = std::env::temp_dir().join(format!("crimux-streaming-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let bad = ServerOptions {
        tls: Some(TlsFiles {
            cert: dir.join("missing.pem"),
            key: key.clone(),
        }),
        ..Default::default()
    };
    let err = crimux_streaming::Server::bind(
        bad,
        Arc::new(common::Fake {
            counters: Default::default(),
        }),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let options = ServerOptions {
        tls: Some(TlsFiles { cert, key }),
        ..Default::default()
    };
    let (server, _) = server_with(options).await;
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let streams = Streams {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let url = server
        .exec_url(&"c1".into(), vec!["echo".into()], streams)
        .unwrap();
    assert!(url.starts_with("https://"));

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (head, mut c) = SpdyClient::connect_on(Box::new(tls), &url, &["v4.channel.k8s.io"]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c.open(1, &[("streamtype", "stdin")]).await;
    c.open(3, &[("streamtype", "stdout")]).await;
    c.open(5, &[("streamtype", "error")]).await;
    c.data(1, b"secret", true).await;
    c.until(|c| c.fin.contains(&5)).await;
    assert_eq!(c.text(3), "secret");
    assert_eq!(c.text(5), r#"{"metadata":{},"status":"Success"}"#);
    let _ = std::fs::remove_dir_all(&dir);
}

//! A TCP backend at startup: plain TCP is refused unless loopback and `insecure = true`;
//! insecure loopback works; mutual TLS with a client certificate from another CA fails with
//! a message that names the backend, its address and the TLS problem.

use crate::common::certs::Certs;
use crate::common::crimux::{BackendConfig, BackendTls, CrimuxConfig};
use crate::common::{Containerd, Crimux, TestEnv};
use crate::env::{delegate_backend, DELEGATE};

/// A crimux config in a fresh directory whose only backend is `backend`.
fn config_with(dir: &std::path::Path, backend: BackendConfig) -> CrimuxConfig {
    let mut config = CrimuxConfig::new(&dir.join("crimux"), "unix:///unused");
    config.backends = vec![backend];
    config
}

#[test]
fn plain_tcp_is_refused_at_startup_unless_loopback_and_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "tcp://127.0.0.1:1",
            false,
            "tcp:// needs [backend.tls] (or insecure = true on a loopback address)",
        ),
        (
            "tcp://10.1.2.3:1",
            true,
            "insecure = true is allowed only for a loopback address",
        ),
    ];
    for (address, insecure, want) in cases {
        let mut b = BackendConfig::new("tcp", address);
        b.insecure = insecure;
        let (code, out) = Crimux::run_to_exit(&config_with(dir.path(), b));
        assert_eq!(code, 2, "{address} insecure={insecure}: exit {code}: {out}");
        assert!(
            out.contains(want) && out.contains(address) && out.contains("backend \"tcp\""),
            "{address} insecure={insecure}: message {out:?} lacks {want:?}"
        );
    }
}

#[tokio::test]
async fn insecure_loopback_tcp_backend_works() {
    let containerd = Containerd::start_tcp_plain().await;
    let address = containerd.tcp_address().expect("tcp address");
    let env = TestEnv::start_with(|c| {
        c.backends[0].address = address.clone();
        c.backends[0].insecure = true;
    })
    .await;
    // The harness's own containerd is unused: everything goes to the TCP one.
    let busybox = env.registry.image("busybox:latest");
    let image_ref = env.pull_ok(&busybox).await;
    let names = containerd
        .client()
        .await
        .image_names(crate::common::NS)
        .await;
    assert!(names.contains(&busybox), "{busybox} not in {names:?}");
    assert!(
        env.ctrd()
            .await
            .image_names(crate::common::NS)
            .await
            .is_empty(),
        "the unix-socket containerd got the image"
    );
    let listed = env
        .images()
        .await
        .list_images(k8s_cri::v1::ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    assert!(listed.iter().any(|i| i.id == image_ref), "{listed:?}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::generate(&dir.path().join("good"), "crimux test CA");
    let other = Certs::generate(&dir.path().join("other"), "some other CA");
    let delegate = Containerd::start_tcp_tls(&certs).await;

    // The server is trusted (right CA) but the client certificate is not containerd's CA's.
    let mut b = delegate_backend(&delegate, &certs);
    b.role = Some("primary".into());
    b.tls = Some(BackendTls {
        ca: certs.ca(),
        cert: other.client_cert(),
        key: other.client_key(),
        server_name: None,
    });
    let address = b.address.clone();
    let (code, out) = Crimux::run_to_exit(&config_with(&dir.path().join("c1"), b));
    assert_eq!(code, 2, "exit {code}: {out}");
    assert!(
        out.contains(&format!("backend \"{DELEGATE}\"")) && out.contains(&address),
        "message names neither backend nor address: {out}"
    );
    assert!(
        out.contains("refused crimux's client certificate"),
        "message does not say the client certificate was refused: {out}"
    );

    // The other way round: the server's certificate is not signed by the CA crimux trusts.
    let mut b = delegate_backend(&delegate, &certs);
    b.role = Some("primary".into());
    b.tls = Some(BackendTls {
        ca: other.ca(),
        cert: certs.client_cert(),
        key: certs.client_key(),
        server_name: None,
    });
    let (code, out) = Crimux::run_to_exit(&config_with(&dir.path().join("c2"), b));
    assert_eq!(code, 2, "exit {code}: {out}");
    assert!(
        out.contains("server's certificate does not check against tls.ca"),
        "message does not name the server certificate problem: {out}"
    );
}

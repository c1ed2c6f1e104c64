//! A private containerd 1.6 per test (its CRI plugin disabled: crimux is the CRI), and a small
//! client over containerd's own API to check what crimux really left in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{self, ListSnapshotsRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    Image, InfoRequest, Lease, ListContainersRequest, ListContentRequest, ListImagesRequest,
    ListNamespacesRequest, ListRequest, ListStatusesRequest, ListTasksRequest,
};
use std::sync::Arc;

use tempfile::TempDir;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::Channel;
use tonic::{Code, Request};

pub use self::relay::Relay;
use super::certs::Certs;
use super::process::{free_port, Daemon};

/// The snapshotter crimux unpacks into.
pub const SNAPSHOTTER: &str = "overlayfs";

pub struct Containerd {
    daemon: Option<Daemon>,
    dir: TempDir,
    /// How it is also served on TCP 127.0.0.1, if it is.
    tcp: Option<TcpServe>,
}

/// containerd's native API on TCP: a port, TLS or not, and the relay while it runs.
struct TcpServe {
    port: u16,
    tls: Option<Arc<ServerConfig>>,
    relay: Option<Relay>,
}

impl Containerd {
    /// Starts containerd on `<tempdir>/containerd.sock` and waits until it answers Version.
    pub async fn start() -> Containerd {
        Containerd::start_with(None).await
    }

    /// Like [`Containerd::start`], its API also served in plain text on TCP
    /// 127.0.0.1:<free port>: what crimux accepts only with `insecure = true`.
    pub async fn start_tcp_plain() -> Containerd {
        Containerd::start_with(Some(None)).await
    }

    /// Like [`Containerd::start`], its API also served on TCP 127.0.0.1:<free port> with
    /// mutual TLS (a client certificate signed by `certs`' CA is required), as a WSL2
    /// containerd is reached from Windows.
    ///
    /// containerd's own `[grpc] tcp_address` (with `tcp_tls_cert`, `tcp_tls_key`,
    /// `tcp_tls_ca`) cannot be used for this: in containerd 1.6 (and 2.0) that listener
    /// carries only the services that register for TCP, which is the CRI plugin alone; the
    /// native API (Version, Containers, Tasks, ...) answers "unknown service" there. So, as
    /// a deployment would (see the report), a TLS relay in front of the unix socket serves it.
    pub async fn start_tcp_tls(certs: &Certs) -> Containerd {
        Containerd::start_with(Some(Some(certs.server_config()))).await
    }

    async fn start_with(tcp: Option<Option<Arc<ServerConfig>>>) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ctrd-")
            .tempdir()
            .expect("create containerd dir");
        let p = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "info"
"#,
            root = p.join("root").display(),
            state = p.join("state").display(),
            sock = p.join("containerd.sock").display(),
        );
        std::fs::write(p.join("config.toml"), config).expect("write containerd config");
        let mut containerd = Containerd {
            daemon: None,
            dir,
            tcp: tcp.map(|tls| TcpServe {
                port: free_port(),
                tls,
                relay: None,
            }),
        };
        containerd.spawn().await;
        containerd
    }

    async fn spawn(&mut self) {
        let config = self.dir.path().join("config.toml");
        let daemon = Daemon::start(
            "containerd",
            "containerd",
            &["--config", &config.to_string_lossy()],
            &self.dir.path().join("containerd.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            daemon.assert_running();
            if self.socket().exists() {
                if let Ok(channel) = containerd_client::connect(self.socket()).await {
                    let version = VersionClient::new(channel).version(()).await;
                    if version.is_ok() {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                daemon.dump_log();
                panic!("containerd did not answer Version within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.daemon = Some(daemon);
        let socket = self.socket();
        if let Some(tcp) = &mut self.tcp {
            tcp.relay = Some(Relay::start(tcp.port, socket, tcp.tls.clone()));
        }
    }

    fn stop_relay(&mut self) {
        if let Some(tcp) = &mut self.tcp {
            tcp.relay = None;
        }
    }

    /// Stops containerd (SIGTERM) and starts it again on the same root and socket.
    pub async fn restart(&mut self) {
        self.stop_relay();
        if let Some(daemon) = self.daemon.take() {
            daemon.stop();
        }
        let _ = std::fs::remove_file(self.socket());
        self.spawn().await;
    }

    /// Stops containerd (SIGTERM; its shims, and so the containers, keep running) and its
    /// TCP listener (open connections are cut), leaving its root, state and port for
    /// [`Containerd::start_again`].
    pub fn stop(&mut self) {
        self.stop_relay();
        if let Some(daemon) = self.daemon.take() {
            daemon.stop();
        }
    }

    /// Starts a stopped containerd again on the same root, socket and TCP port.
    pub async fn start_again(&mut self) {
        assert!(self.daemon.is_none(), "containerd is still running");
        let _ = std::fs::remove_file(self.socket());
        self.spawn().await;
    }

    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// `tcp://127.0.0.1:<port>` when its API is also served on TCP.
    pub fn tcp_address(&self) -> Option<String> {
        self.tcp_port()
            .map(|port| format!("tcp://127.0.0.1:{port}"))
    }

    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp.as_ref().map(|t| t.port)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// "unix:///tmp/.../containerd.sock", as crimux's backend `address`.
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().map(Daemon::pid).unwrap_or(0)
    }

    pub fn dump_log(&self) {
        if let Some(daemon) = &self.daemon {
            daemon.dump_log();
        }
    }

    /// A client over containerd's own API.
    pub async fn client(&self) -> ContainerdClient {
        let channel = containerd_client::connect(self.socket())
            .await
            .expect("connect to containerd");
        ContainerdClient { channel }
    }
}

/// Reads containerd's state: image records, content, snapshots, leases, by namespace.
#[derive(Clone)]
pub struct ContainerdClient {
    channel: Channel,
}

fn in_ns<T>(ns: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "containerd-namespace",
        ns.parse().expect("namespace is valid metadata"),
    );
    req
}

impl ContainerdClient {
    /// Ids of the containerd containers (pod sandboxes and containers alike) in `ns`.
    pub async fn container_ids(&self, ns: &str) -> BTreeSet<String> {
        ContainersClient::new(self.channel.clone())
            .list(in_ns(ns, ListContainersRequest::default()))
            .await
            .expect("list containers")
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Every task in `ns` with its status (1 created, 2 running, 3 stopped, 4 paused).
    pub async fn tasks(&self, ns: &str) -> BTreeMap<String, i32> {
        TasksClient::new(self.channel.clone())
            .list(in_ns(ns, ListTasksRequest::default()))
            .await
            .expect("list tasks")
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| (t.id, t.status))
            .collect()
    }

    pub async fn namespaces(&self) -> Vec<String> {
        let resp = NamespacesClient::new(self.channel.clone())
            .list(ListNamespacesRequest::default())
            .await
            .expect("list namespaces");
        resp.into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect()
    }

    pub async fn images(&self, ns: &str) -> Vec<Image> {
        ImagesClient::new(self.channel.clone())
            .list(in_ns(ns, ListImagesRequest::default()))
            .await
            .expect("list images")
            .into_inner()
            .images
    }

    pub async fn image_names(&self, ns: &str) -> BTreeSet<String> {
        self.images(ns).await.into_iter().map(|i| i.name).collect()
    }

    pub async fn image(&self, ns: &str, name: &str) -> Option<Image> {
        self.images(ns).await.into_iter().find(|i| i.name == name)
    }

    pub async fn content_exists(&self, ns: &str, digest: &str) -> bool {
        let resp = ContentClient::new(self.channel.clone())
            .info(in_ns(
                ns,
                InfoRequest {
                    digest: digest.to_string(),
                },
            ))
            .await;
        match resp {
            Ok(_) => true,
            Err(status) if status.code() == Code::NotFound => false,
            Err(status) => panic!("content info {digest}: {status:?}"),
        }
    }

    /// Digests of all committed content in `ns`.
    pub async fn content(&self, ns: &str) -> BTreeSet<String> {
        let mut stream = ContentClient::new(self.channel.clone())
            .list(in_ns(ns, ListContentRequest::default()))
            .await
            .expect("list content")
            .into_inner();
        let mut digests = BTreeSet::new();
        while let Some(resp) = stream.message().await.expect("list content stream") {
            digests.extend(resp.info.into_iter().map(|i| i.digest));
        }
        digests
    }

    /// Refs of content ingests still in progress (partial downloads).
    pub async fn ingests(&self, ns: &str) -> Vec<String> {
        ContentClient::new(self.channel.clone())
            .list_statuses(in_ns(ns, ListStatusesRequest::default()))
            .await
            .expect("list content statuses")
            .into_inner()
            .statuses
            .into_iter()
            .map(|s| s.r#ref)
            .collect()
    }

    pub async fn snapshots(&self, ns: &str) -> Vec<snapshots::Info> {
        let mut stream = SnapshotsClient::new(self.channel.clone())
            .list(in_ns(
                ns,
                ListSnapshotsRequest {
                    snapshotter: SNAPSHOTTER.to_string(),
                    filters: vec![],
                },
            ))
            .await
            .expect("list snapshots")
            .into_inner();
        let mut all = Vec::new();
        while let Some(resp) = stream.message().await.expect("list snapshots stream") {
            all.extend(resp.info);
        }
        all
    }

    pub async fn snapshot_names(&self, ns: &str) -> BTreeSet<String> {
        self.snapshots(ns)
            .await
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    pub async fn leases(&self, ns: &str) -> Vec<Lease> {
        LeasesClient::new(self.channel.clone())
            .list(in_ns(ns, ListRequest::default()))
            .await
            .expect("list leases")
            .into_inner()
            .leases
    }

    /// Everything in `ns` that a failed pull must not leave behind, as one printable list
    /// (empty = clean): image records, leases, snapshots, committed content, ingests.
    pub async fn leftovers(&self, ns: &str) -> Vec<String> {
        let mut left: Vec<String> = Vec::new();
        left.extend(
            self.image_names(ns)
                .await
                .into_iter()
                .map(|n| format!("image {n}")),
        );
        left.extend(
            self.leases(ns)
                .await
                .into_iter()
                .map(|l| format!("lease {}", l.id)),
        );
        left.extend(
            self.snapshot_names(ns)
                .await
                .into_iter()
                .map(|s| format!("snapshot {s}")),
        );
        left.extend(
            self.content(ns)
                .await
                .into_iter()
                .map(|d| format!("content {d}")),
        );
        left.extend(
            self.ingests(ns)
                .await
                .into_iter()
                .map(|r| format!("ingest {r}")),
        );
        left
    }
}

/// A TCP front for containerd's unix socket on 127.0.0.1, plain or with mutual TLS: what
/// serves a WSL2 containerd's native API to the Windows host (containerd's own TCP
/// listener only carries the CRI plugin). Each connection is accepted (TLS handshake
/// first, so a bad client certificate fails there), then copied both ways to a fresh unix
/// connection. It runs on a thread and runtime of its own, so it keeps serving while a test
/// thread blocks, and dropping it cuts every open connection, as a stopped daemon would.
mod relay {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use tokio::net::{TcpListener, TcpStream, UnixStream};
    use tokio::sync::oneshot;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::TlsAcceptor;

    pub struct Relay {
        shutdown: Option<oneshot::Sender<()>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Relay {
        /// Listens on 127.0.0.1:`port` (panics if it cannot) and relays to `socket`.
        pub fn start(port: u16, socket: PathBuf, tls: Option<Arc<ServerConfig>>) -> Relay {
            let (shutdown, stop) = oneshot::channel::<()>();
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("relay-{port}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        let acceptor = tls.map(TlsAcceptor::from);
                        let serve = async {
                            loop {
                                if let Ok((tcp, _)) = listener.accept().await {
                                    tokio::spawn(relay_one(tcp, socket.clone(), acceptor.clone()));
                                }
                            }
                        };
                        tokio::select! {
                            _ = stop => {}
                            _ = serve => {}
                        }
                    });
                    // Dropping the runtime cancels every connection task: sockets close.
                })
                .expect("spawn relay thread");
            ready
                .recv()
                .expect("relay thread answers")
                .unwrap_or_else(|e| panic!("relay on 127.0.0.1:{port}: {e}"));
            Relay {
                shutdown: Some(shutdown),
                thread: Some(thread),
            }
        }
    }

    async fn relay_one(tcp: TcpStream, socket: PathBuf, tls: Option<TlsAcceptor>) {
        let _ = tcp.set_nodelay(true);
        match tls {
            Some(acceptor) => {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut unix) = UnixStream::connect(&socket).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
            }
            None => {
                let mut tcp = tcp;
                let Ok(mut unix) = UnixStream::connect(&socket).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            }
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            if let Some(tx) = self.shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

//! A private containerd 1.6 per test (its CRI plugin disabled: crimux is the CRI), and a small
//! client over containerd's own API to check what crimux really left in it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{self, ListSnapshotsRequest};
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    Image, InfoRequest, Lease, ListContentRequest, ListImagesRequest, ListNamespacesRequest,
    ListRequest, ListStatusesRequest,
};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::process::Daemon;

/// The snapshotter crimux unpacks into.
pub const SNAPSHOTTER: &str = "overlayfs";

pub struct Containerd {
    daemon: Option<Daemon>,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd on `<tempdir>/containerd.sock` and waits until it answers Version.
    pub async fn start() -> Containerd {
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
        let mut containerd = Containerd { daemon: None, dir };
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
    }

    /// Stops containerd (SIGTERM) and starts it again on the same root and socket.
    pub async fn restart(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop();
        }
        let _ = std::fs::remove_file(self.socket());
        self.spawn().await;
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

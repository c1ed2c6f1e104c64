//! A node whose delegate is another crimux: the harness's [`PodEnv`] (containerd A behind
//! the OUTER crimux, the primary) plus containerd B behind an INNER crimux with its own
//! root, socket and streaming server, reached by the outer as a `kind = "cri"` backend at
//! `tcp://127.0.0.1:<port>` through a mutual-TLS relay in front of the inner's unix socket,
//! as a Windows crimux reaches the Linux crimux in its WSL2 distro.
//!
//! Host paths: the outer maps `<dir>/host-logs/` to `<dir>/distro-logs/`, and a
//! Windows-looking `C:\crimux-<tag>\` to `<dir>/distro-win/`, so a pod's log directory named
//! on the "host" is written by the inner crimux under the mapped directory.
//!
//! Dropped in field order: the pods go first, through the outer crimux (which forwards the
//! delegate's to the inner), then [`Inner`] removes what the inner crimux still has, kills
//! what still runs in containerd B and unmounts what is left under the inner's root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::PodSandboxConfig;
use tempfile::TempDir;

use crate::common::certs::Certs;
use crate::common::containerd::{ContainerdClient, Relay};
use crate::common::leaks;
use crate::common::process::free_port;
use crate::common::runtime::{listed_container_ids, listed_pod_ids, random_u64, PodEnv};
use crate::common::{Containerd, Crimux};

/// The delegate's backend name on the outer crimux, and the RuntimeClass handler it serves
/// (forwarded as the inner crimux's default handler).
pub const DELEGATE: &str = "wsl";
pub const HANDLER: &str = "wsl2";
/// The inner crimux's own backend name (containerd B).
pub const INNER_BACKEND: &str = "distro";

pub struct Delegated {
    pub p: PodEnv,
    pub inner: Inner,
    #[allow(dead_code)]
    pub certs: Certs,
    /// `host-logs/`, `distro-logs/`, `distro-win/`.
    pub dir: TempDir,
    /// The Windows-looking host prefix mapped to `<dir>/distro-win/` (`C:\crimux-<tag>\`).
    pub win_prefix: String,
}

/// The inner crimux, its relay and its containerd.
pub struct Inner {
    /// Cut first: the outer then finds the inner unreachable.
    pub relay: Option<Relay>,
    pub port: u16,
    pub crimux: Crimux,
    pub containerd: Containerd,
    /// The TLS config the relay serves (to start it again).
    tls: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
}

impl Delegated {
    pub async fn start() -> Delegated {
        let mut p = PodEnv::start().await;
        let dir = tempfile::Builder::new()
            .prefix("crimux-cri-delegate-")
            .tempdir()
            .expect("create test dir");
        let certs = Certs::generate(&dir.path().join("certs"), "crimux test CA");

        // containerd B and the inner crimux: the same pause image, registries and CNI
        // network as the outer's pods (one bridge, one IPAM directory).
        let containerd = Containerd::start().await;
        let inner_config = p.sibling_config(
            &dir.path().join("inner"),
            &containerd.address(),
            INNER_BACKEND,
        );
        let crimux = Crimux::start(inner_config).await;
        let port = free_port();
        let tls = certs.server_config();
        let relay = Relay::start(port, crimux.socket(), Some(tls.clone()));

        let win_prefix = format!("C:\\crimux-{:08x}\\", random_u64() as u32);
        let mut outer = p.env.crimux.config().clone();
        outer.backends[0].role = Some("primary".into());
        outer.extra_toml = cri_backend_toml(port, &certs, dir.path(), &win_prefix);
        p.env.crimux.stop();
        p.env.crimux = Crimux::start(outer).await;
        Delegated {
            p,
            inner: Inner {
                relay: Some(relay),
                port,
                crimux,
                containerd,
                tls,
            },
            certs,
            dir,
            win_prefix,
        }
    }

    pub fn outer(&self) -> &Crimux {
        &self.p.env.crimux
    }

    /// Both crimux logs, for a failure message.
    pub fn dump_logs(&self) {
        eprintln!("===== OUTER crimux =====");
        self.outer().dump_log();
        eprintln!("===== INNER crimux =====");
        self.inner.crimux.dump_log();
    }

    /// The host directory (as the outer and kubelet name it) for pod `name`'s logs.
    pub fn host_log_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("host-logs").join(name)
    }

    /// Where the inner crimux writes what is under [`Delegated::host_log_dir`].
    pub fn distro_log_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("distro-logs").join(name)
    }

    /// A pod config whose log directory is on the mapped host prefix.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let mut config = self.p.pod_config(name);
        config.log_directory = self.host_log_dir(name).display().to_string();
        config
    }

    /// PullImage through the outer crimux, for `pod` (as kubelet does).
    pub async fn pull_for(&self, image: &str, pod: &PodSandboxConfig) {
        if let Err(status) = self.p.env.pull_for(image, Some(pod)).await {
            self.dump_logs();
            panic!("PullImage {image} for pod: {status:?}");
        }
    }

    /// RunPodSandbox through the outer crimux with `handler`; both crimux logs on failure.
    pub async fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> String {
        match self.p.try_run_pod_on(config, handler).await {
            Ok(id) => id,
            Err(status) => {
                self.dump_logs();
                panic!("RunPodSandbox (handler {handler:?}): {status:?}");
            }
        }
    }

    /// Pod ids the outer crimux lists, sorted.
    pub async fn outer_pods(&self) -> Vec<String> {
        listed_pod_ids(self.p.rt().await, None).await
    }

    pub async fn outer_containers(&self) -> Vec<String> {
        listed_container_ids(self.p.rt().await, None).await
    }

    pub async fn inner_pods(&self) -> Vec<String> {
        listed_pod_ids(self.inner.crimux.runtime().await, None).await
    }

    pub async fn inner_containers(&self) -> Vec<String> {
        listed_container_ids(self.inner.crimux.runtime().await, None).await
    }

    pub async fn ctrd_a(&self) -> ContainerdClient {
        self.p.env.containerd.client().await
    }

    pub async fn ctrd_b(&self) -> ContainerdClient {
        self.inner.containerd.client().await
    }

    /// What the delegate side must not hold once its pods are removed: containerd B's
    /// containers, tasks, leases and snapshots that are not image layers, mounts under the
    /// inner crimux's root (its netns pin directory aside), and the inner crimux's lists.
    pub async fn inner_leftovers(&self) -> Vec<String> {
        let inner = &self.inner.crimux;
        let mut left = leaks::containerd_leftovers(&self.ctrd_b().await, "").await;
        left.extend(leaks::mounts_left(
            inner,
            &[leaks::netns_pin_dir(inner, INNER_BACKEND)],
        ));
        left.extend(leaks::listed_left(inner, "inner crimux ").await);
        left
    }

    pub async fn assert_inner_clean(&self) {
        leaks::assert_nothing_left(
            "nothing left on the delegate side",
            Duration::from_secs(20),
            || self.inner_leftovers(),
        )
        .await;
    }
}

impl Inner {
    /// Cuts the relay (open connections too), as when the distro's crimux or its relay
    /// goes away.
    pub fn cut(&mut self) {
        self.relay = None;
    }

    /// The relay again, on the same port.
    pub fn reconnect(&mut self) {
        if self.relay.is_none() {
            self.relay = Some(Relay::start(
                self.port,
                self.crimux.socket(),
                Some(self.tls.clone()),
            ));
        }
    }
}

/// The outer crimux's `[[backend]]` for the inner one: kind = "cri" over mutual TLS, handler
/// `wsl2` forwarded to the inner's default handler, and the two path mappings.
fn cri_backend_toml(port: u16, certs: &Certs, dir: &Path, win_prefix: &str) -> String {
    let path = |p: PathBuf| p.display().to_string();
    let slash = |p: PathBuf| format!("{}/", p.display());
    format!(
        "[[backend]]\nname = {DELEGATE:?}\nkind = \"cri\"\naddress = \"tcp://127.0.0.1:{port}\"\n\
         role = \"delegate\"\n\
         [backend.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
         [[backend.path_map]]\nhost = {:?}\nbackend = {:?}\n\
         [[backend.path_map]]\nhost = '{win_prefix}'\nbackend = {:?}\n\
         [[backend.runtime_handlers]]\nname = {HANDLER:?}\nremote = \"\"\n",
        path(certs.ca()),
        path(certs.client_cert()),
        path(certs.client_key()),
        slash(dir.join("host-logs")),
        slash(dir.join("distro-logs")),
        slash(dir.join("distro-win")),
    )
}

impl Drop for Inner {
    fn drop(&mut self) {
        // What the outer did not remove, through the inner crimux (CNI DEL, netns, files).
        leaks::remove_pods_through(self.crimux.socket());
        leaks::kill_tasks(&self.containerd.socket());
        leaks::unmount_under(&self.crimux);
    }
}

/// Whether CRI annotations still carry a requested-id annotation (they never should: the
/// inner crimux strips them, the outer never adds them to what it reports).
pub fn has_requested_id(annotations: &HashMap<String, String>) -> bool {
    annotations.contains_key(crimux_core::REQUESTED_SANDBOX_ID)
        || annotations.contains_key(crimux_core::REQUESTED_CONTAINER_ID)
}

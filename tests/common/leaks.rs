//! What a removed pod must not leave, and the drop-time clean-up that keeps a failed test
//! from leaking onto the host: one place for every harness that runs pods on a containerd
//! behind a crimux ([`super::runtime::PodEnv`], the composite and `kind = "cri"` nodes).
//!
//! The leftover listers return printable lines, empty when clean; [`assert_nothing_left`]
//! waits for them to be empty (containerd's GC and shim exits settle asynchronously).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};

use super::containerd::ContainerdClient;
use super::crimux::Crimux;
use super::runtime::{listed_container_ids, listed_pod_ids, mount_points};
use super::{eventually, test_images, NS};

/// containerd objects in [`NS`] that no removed pod may leave: containers, tasks, leases and
/// snapshots other than the test images' committed layers. Each line starts with `prefix`
/// (to tell two containerds apart).
pub async fn containerd_leftovers(ctrd: &ContainerdClient, prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = ctrd
        .container_ids(NS)
        .await
        .into_iter()
        .map(|id| format!("{prefix}container {id}"))
        .collect();
    left.extend(
        ctrd.tasks(NS)
            .await
            .into_iter()
            .map(|(id, status)| format!("{prefix}task {id} (status {status})")),
    );
    let images = test_images();
    let layers: Vec<String> = ["busybox:latest", "pause:latest"]
        .iter()
        .flat_map(|n| images.get(n).chain_ids.clone())
        .collect();
    for s in ctrd.snapshots(NS).await {
        if s.kind != 3 || !layers.contains(&s.name) {
            left.push(format!("{prefix}snapshot {} (kind {})", s.name, s.kind));
        }
    }
    left.extend(
        ctrd.leases(NS)
            .await
            .into_iter()
            .map(|l| format!("{prefix}lease {}", l.id)),
    );
    left
}

/// The netns pin directory of `crimux`'s backend `backend`: bind-mounted onto itself once,
/// shared (as `ip netns` does), for crimux's lifetime, so not a pod's leftover.
pub fn netns_pin_dir(crimux: &Crimux, backend: &str) -> String {
    crimux
        .config()
        .root()
        .join("backends")
        .join(backend)
        .join("netns")
        .display()
        .to_string()
}

/// Mount points under `crimux`'s root other than `pins` (see [`netns_pin_dir`]).
pub fn mounts_left(crimux: &Crimux, pins: &[String]) -> Vec<String> {
    let root = crimux.config().root().display().to_string();
    mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&root) && !pins.contains(m))
        .map(|m| format!("mount {m}"))
        .collect()
}

/// iptables rules (nat and filter) naming one of the pod ids `ids`.
pub fn iptables_left(ids: &[String]) -> Vec<String> {
    super::runtime::iptables_lines()
        .into_iter()
        .filter(|line| ids.iter().any(|id| line.contains(id.as_str())))
        .map(|line| format!("iptables {line}"))
        .collect()
}

/// Pods and containers `crimux` still lists, each line starting with `prefix`.
pub async fn listed_left(crimux: &Crimux, prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = listed_pod_ids(crimux.runtime().await, None)
        .await
        .into_iter()
        .map(|id| format!("{prefix}pod {id}"))
        .collect();
    left.extend(
        listed_container_ids(crimux.runtime().await, None)
            .await
            .into_iter()
            .map(|id| format!("{prefix}container {id}")),
    );
    left
}

/// Waits up to `timeout` for `leftovers` to answer an empty list; panics with the last one.
pub async fn assert_nothing_left<F, Fut>(what: &str, timeout: Duration, mut leftovers: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    eventually(what, timeout, || {
        let left = leftovers();
        async move {
            let left = left.await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("left over: {left:#?}"))
            }
        }
    })
    .await;
}

/// For a `Drop`: stops and removes every pod the crimux on `socket` lists (so CNI DEL
/// removes iptables rules and IPAM entries), on a thread and runtime of its own, within 60 s.
pub fn remove_pods_through(socket: PathBuf) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let cleanup = async {
                let channel = super::crimux::try_connect(&socket).await.ok()?;
                let mut client = RuntimeServiceClient::new(channel);
                let pods = client
                    .list_pod_sandbox(ListPodSandboxRequest::default())
                    .await
                    .ok()?
                    .into_inner()
                    .items;
                for pod in pods {
                    let id = pod.id;
                    let _ = client
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = client
                        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                }
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), cleanup).await;
        });
    })
    .join();
}

/// For a `Drop`: SIGKILLs and deletes every task of the containerd on `socket` (a shim
/// would outlive the test's containerd).
pub fn kill_tasks(socket: &Path) {
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", NS])
            .args(args)
            .output()
    };
    if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
            std::thread::sleep(Duration::from_millis(100));
            let _ = ctr(&["tasks", "delete", "-f", id]);
        }
    }
}

/// For a `Drop`: lazily unmounts everything under `crimux`'s root, innermost first.
pub fn unmount_under(crimux: &Crimux) {
    let root = crimux.config().root().display().to_string();
    let mut mounts: Vec<String> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&root))
        .collect();
    mounts.reverse();
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).output();
    }
}

//! `floor`: the container cycle straight through containerd's API, no CRI layer, no CNI, no
//! logging — the latency any CRI runtime on this containerd adds to. Per cycle: prepare the
//! writable snapshot, create the container object, create + start the task, SIGKILL it,
//! wait for its exit, delete the task, delete the container, remove the snapshot.
//!
//! The image must already be in the namespace, unpacked into the snapshotter (PullImage
//! through crimux does both); its record is looked up by name.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetImageRequest, KillRequest, ReadContentRequest, StartRequest, WaitRequest,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::Request;

use crate::cli::{socket_path, Cli, FloorArgs};
use crate::stats::{Samples, CYCLE};

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC: &str = "io.containerd.runc.v2";

#[derive(Clone)]
struct Floor {
    channel: Channel,
    namespace: String,
    snapshotter: String,
    image: String,
    /// The chain id of the image's top layer: the parent of every writable snapshot.
    parent: String,
    spec: Vec<u8>,
    run: String,
}

fn req<T>(ns: &str, message: T) -> Result<Request<T>> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "containerd-namespace",
        ns.parse()
            .map_err(|_| anyhow!("namespace {ns:?} is not valid gRPC metadata"))?,
    );
    Ok(r)
}

async fn timed<T, F>(s: &mut Samples, op: &str, call: F) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    let out = call.await;
    s.record(op, start.elapsed());
    out.map(tonic::Response::into_inner)
        .map_err(|st| anyhow!("{op}: {} ({:?})", st.message(), st.code()))
}

/// The OCI identity of a layer stack: chain(n) = sha256(chain(n-1) + " " + diff_id(n)).
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut chain: Option<String> = None;
    for d in diff_ids {
        chain = Some(match chain {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{:x}",
                Sha256::digest(format!("{parent} {d}").as_bytes())
            ),
        });
    }
    chain
}

async fn read_json(channel: &Channel, ns: &str, digest: &str) -> Result<Value> {
    let mut stream = ContentClient::new(channel.clone())
        .read(req(
            ns,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        )?)
        .await
        .with_context(|| format!("read content {digest}"))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend(chunk.data);
    }
    serde_json::from_slice(&bytes).with_context(|| format!("content {digest} is not JSON"))
}

/// The image's top chain id and its config (entrypoint/env are not used: the floor always
/// runs `sleep 3600`, like the CRI scenarios).
async fn image_parent(channel: &Channel, ns: &str, name: &str) -> Result<String> {
    let image = ImagesClient::new(channel.clone())
        .get(req(
            ns,
            GetImageRequest {
                name: name.to_string(),
            },
        )?)
        .await
        .with_context(|| format!("image {name} in namespace {ns} (pull it first)"))?
        .into_inner()
        .image
        .ok_or_else(|| anyhow!("image {name}: empty record"))?;
    let target = image
        .target
        .ok_or_else(|| anyhow!("image {name}: no target"))?;
    let mut manifest = read_json(channel, ns, &target.digest).await?;
    if let Some(children) = manifest.get("manifests").and_then(Value::as_array) {
        let child = children
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| anyhow!("image {name}: no linux/amd64 manifest"))?
            .to_string();
        manifest = read_json(channel, ns, &child).await?;
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("image {name}: manifest has no config"))?;
    let config = read_json(channel, ns, config_digest).await?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    chain_id(&diff_ids).ok_or_else(|| anyhow!("image {name}: no layers"))
}

/// A minimal runc spec: `sleep 3600` as root in fresh namespaces with the usual mounts.
fn spec() -> Value {
    let caps = json!([
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_NET_BIND_SERVICE"
    ]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "3600"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "hostname": "floor",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    })
}

impl Floor {
    async fn cycle(&self, s: &mut Samples, i: usize) -> Result<()> {
        let id = format!("crimux-bench-{}-{i}", self.run);
        let ns = self.namespace.as_str();
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let prepare = PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: id.clone(),
            parent: self.parent.clone(),
            // A gc root until the container references it.
            labels: HashMap::from([("containerd.io/gc.root".to_string(), now.to_string())]),
        };
        let mounts = timed(s, "Snapshots.Prepare", snapshots.prepare(req(ns, prepare)?))
            .await?
            .mounts;
        let result = self.container_and_task(s, &id, mounts).await;
        let remove = RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: id,
        };
        let removed = timed(s, "Snapshots.Remove", snapshots.remove(req(ns, remove)?)).await;
        result.and(removed.map(|_| ()))
    }

    async fn container_and_task(
        &self,
        s: &mut Samples,
        id: &str,
        mounts: Vec<containerd_client::types::Mount>,
    ) -> Result<()> {
        let ns = self.namespace.as_str();
        let mut containers = ContainersClient::new(self.channel.clone());
        let container = Container {
            id: id.to_string(),
            image: self.image.clone(),
            runtime: Some(Runtime {
                name: RUNC.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: self.spec.clone(),
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        let create = CreateContainerRequest {
            container: Some(container),
        };
        timed(s, "Containers.Create", containers.create(req(ns, create)?)).await?;
        let result = self.task(s, id, mounts).await;
        let delete = DeleteContainerRequest { id: id.to_string() };
        let deleted = timed(s, "Containers.Delete", containers.delete(req(ns, delete)?)).await;
        result.and(deleted.map(|_| ()))
    }

    async fn task(
        &self,
        s: &mut Samples,
        id: &str,
        rootfs: Vec<containerd_client::types::Mount>,
    ) -> Result<()> {
        let ns = self.namespace.as_str();
        let mut tasks = TasksClient::new(self.channel.clone());
        let create = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            ..Default::default()
        };
        timed(s, "Tasks.Create", tasks.create(req(ns, create)?)).await?;
        let started = async {
            let start = StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            };
            timed(s, "Tasks.Start", tasks.clone().start(req(ns, start)?)).await?;
            // Subscribe to the exit before killing, so it cannot be missed.
            let wait = WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            };
            let mut waiter = tasks.clone();
            let wait_req = req(ns, wait)?;
            let waiting = tokio::spawn(async move { waiter.wait(wait_req).await });
            let kill = KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal: 9,
                all: true,
            };
            let kill_start = Instant::now();
            timed(s, "Tasks.Kill", tasks.clone().kill(req(ns, kill)?)).await?;
            waiting
                .await
                .map_err(|e| anyhow!("Tasks.Wait: {e}"))?
                .map_err(|st| anyhow!("Tasks.Wait: {}", st.message()))?;
            s.record("Tasks.Kill+Wait", kill_start.elapsed());
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let delete = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        let deleted = timed(s, "Tasks.Delete", tasks.delete(req(ns, delete)?)).await;
        started.and(deleted.map(|_| ()))
    }
}

/// Runs the floor cycle `cli.n` times on `cli.concurrency` workers.
pub async fn run(cli: &Cli, args: &FloorArgs) -> Result<Samples> {
    let path = socket_path(&args.containerd)?;
    let channel = containerd_client::connect(&path)
        .await
        .with_context(|| format!("cannot connect to containerd at {}", path.display()))?;
    let parent = image_parent(&channel, &args.namespace, &cli.image).await?;
    if cli.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let floor = Floor {
        channel,
        namespace: args.namespace.clone(),
        snapshotter: args.snapshotter.clone(),
        image: cli.image.clone(),
        parent,
        spec: serde_json::to_vec(&spec())?,
        run: format!("{:08x}", rand::random::<u32>()),
    };
    let n = cli.n;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cli.concurrency.min(n) {
        let floor = floor.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut s = Samples::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let start = Instant::now();
                floor.cycle(&mut s, i).await?;
                s.record(CYCLE, start.elapsed());
            }
            Ok::<Samples, anyhow::Error>(s)
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.merge(done.map_err(|e| anyhow!("worker: {e}"))??);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let want = format!("sha256:{:x}", Sha256::digest(b"sha256:aaaa sha256:bbbb"));
        assert_eq!(chain_id(&[a, b]), Some(want));
    }

    #[test]
    fn spec_runs_sleep_in_fresh_namespaces() {
        let s = spec();
        assert_eq!(s["process"]["args"], json!(["sleep", "3600"]));
        assert_eq!(s["linux"]["namespaces"].as_array().map(Vec::len), Some(5));
    }
}

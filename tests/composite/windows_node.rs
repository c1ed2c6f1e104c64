//! A simulated Windows node: the primary is the harness's (Linux) containerd declared
//! `os = "windows"`, the delegate a Linux containerd over TCP with mutual TLS. A pod with no
//! handler and no annotation whose image is Linux must end up on the delegate: at once when
//! its image OS is already known, or after one NOTREADY round trip when it is not.
//!
//! The primary needs a pause image it accepts as Windows: `pause-dual:latest`, an index whose
//! linux/amd64 entry is the test pause and whose windows/amd64 entry is the same layer with
//! a config saying `os: windows`. Built here from the test layout, pushed once per process.

use std::process::Command;
use std::sync::OnceLock;

use k8s_cri::v1::PodSandboxState;
use tonic::Code;

use crate::common::process::run;
use crate::common::registry::PREFIX;
use crate::common::{test_images, Registry, NS};
use crate::env::{Composite, Primary};

/// Builds `pause-dual` as an OCI layout next to the test layout and pushes it to the shared
/// registry; returns its reference.
fn dual_pause() -> String {
    static PUSHED: OnceLock<String> = OnceLock::new();
    PUSHED
        .get_or_init(|| {
            let registry = Registry::shared();
            let src = test_images().layout();
            let dir = tempfile::Builder::new()
                .prefix("crimux-pause-dual-")
                .tempdir()
                .expect("tempdir");
            let out = dir.path().join("oci");
            run(Command::new("python3")
                .arg("-c")
                .arg(DUAL_PAUSE_PY)
                .arg(&src)
                .arg(&out));
            let dest = format!("docker://{}/{PREFIX}/pause-dual:latest", registry.host());
            run(Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--all", "--quiet"])
                .args(["--dest-tls-verify=false", "--retry-times", "3"])
                .arg(format!("oci:{}:pause-dual", out.display()))
                .arg(dest));
            registry.image("pause-dual:latest")
        })
        .clone()
}

/// SRC OUT: copies the pause image's blobs from layout SRC into a new layout OUT, adds a
/// windows flavour of its config and manifest, and an index over both tagged `pause-dual`.
const DUAL_PAUSE_PY: &str = r#"
import hashlib, json, os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "blobs", "sha256"))
def path(root, digest):
    return os.path.join(root, "blobs", *digest.split(":", 1))
def put(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    open(path(out, digest), "wb").write(data)
    return {"digest": digest, "size": len(data)}
def copy(digest):
    shutil.copyfile(path(src, digest), path(out, digest))
top = json.load(open(os.path.join(src, "index.json")))
desc = next(d for d in top["manifests"]
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == "pause-latest")
manifest = json.load(open(path(src, desc["digest"])))
config = json.load(open(path(src, manifest["config"]["digest"])))
copy(desc["digest"]); copy(manifest["config"]["digest"])
for layer in manifest["layers"]:
    copy(layer["digest"])
config["os"] = "windows"
win_config = put(json.dumps(config).encode())
manifest["config"] = dict(manifest["config"], **win_config)
win_manifest = put(json.dumps(manifest).encode())
mt = "application/vnd.oci.image.manifest.v1+json"
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [
    {"mediaType": mt, "digest": desc["digest"], "size": desc["size"],
     "platform": {"os": "linux", "architecture": "amd64"}},
    dict(win_manifest, mediaType=mt, platform={"os": "windows", "architecture": "amd64"})]}
top_desc = put(json.dumps(index).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(top_desc,
    mediaType="application/vnd.oci.image.index.v1+json",
    annotations={"org.opencontainers.image.ref.name": "pause-dual"})]},
    open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
"#;

async fn windows_node() -> Composite {
    let pause = dual_pause();
    Composite::start_with(Primary::DeclaredWindows, move |c| c.sandbox_image = pause).await
}

#[tokio::test]
async fn linux_pod_goes_to_the_delegate_at_once_when_its_image_os_is_known() {
    let c = windows_node().await;
    let busybox = c.p.busybox.clone();
    let pod = c.p.pod_config("linux-known");

    // kubelet on a retry pulls with the pod's sandbox config before RunPodSandbox: the
    // "windows" primary refuses the Linux image, the delegate takes it, and the pod uid is
    // hinted to Linux.
    let image_ref = c.pull_ok(&busybox, Some(&pod)).await;
    assert!(c
        .delegate_ctrd()
        .await
        .image_names(NS)
        .await
        .contains(&busybox));
    assert!(
        !c.primary_ctrd()
            .await
            .image_names(NS)
            .await
            .contains(&busybox),
        "the Windows primary took a Linux image"
    );

    let id = c.run_pod(&pod, "").await;
    let delegate = c.delegate_ctrd().await;
    assert!(
        delegate.container_ids(NS).await.contains(&id),
        "pod not on the delegate"
    );
    assert!(!c.primary_ctrd().await.container_ids(NS).await.contains(&id));

    let mut config = c.p.container_config("app", "exec sleep 3600");
    config.image = Some(crate::common::spec(&image_ref));
    let cid = c.p.create_start(&id, &pod, &config).await;
    assert!(delegate.container_ids(NS).await.contains(&cid));
    assert_eq!(c.p.sh(&cid, "hostname").await, "linux-known-host\n");
}

/// Path (b), as far as it goes on a Linux machine. On a real Windows node the pod's first
/// sandbox runs on the primary, kubelet pulls the Linux image for it, CreateContainer is
/// refused, the sandbox goes NOTREADY and the retry lands on the delegate. Here the
/// simulated Windows primary cannot run a sandbox at all (a Windows backend's pod network is
/// an HCN namespace, which needs Windows), so this checks the first placement (primary,
/// refused cleanly, nothing left behind) and the retry after kubelet's pull for the pod
/// (delegate, container runs). The CreateContainer refusal that stops a misplaced sandbox
/// is covered with fake backends in crates/dispatch (`image_os_mismatch_round_trip`) and
/// end to end, with a running sandbox on a forwarded "windows" primary, in
/// os_round_trip.rs.
#[tokio::test]
async fn linux_pod_with_unknown_image_os_is_placed_on_the_primary_then_on_the_delegate() {
    let c = windows_node().await;
    let busybox = c.p.busybox.clone();
    let pod = c.p.pod_config("linux-unknown");

    // Nothing is known of the pod: its first sandbox goes to the (simulated Windows)
    // primary, which cannot run it on this machine.
    let err =
        c.p.try_run_pod_on(&pod, "")
            .await
            .expect_err("a sandbox ran on the simulated Windows primary");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("HCN"),
        "the first sandbox was not placed on the Windows primary: {err:?}"
    );
    assert!(c.pod_ids().await.is_empty(), "a failed sandbox is listed");
    assert!(c.primary_ctrd().await.container_ids(NS).await.is_empty());
    assert!(c.delegate_ctrd().await.container_ids(NS).await.is_empty());
    let root = c.crimux().config().root();
    for backend in ["default", crate::env::DELEGATE] {
        let pins: Vec<_> = std::fs::read_dir(root.join("backends").join(backend).join("netns"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(pins.is_empty(), "netns pins left on {backend}: {pins:?}");
    }

    // kubelet pulls the container's image for the pod: only the Linux delegate takes it,
    // which hints the pod uid to Linux; the next attempt lands on the delegate.
    let image_ref = c.pull_ok(&busybox, Some(&pod)).await;
    let mut retry = pod.clone();
    if let Some(m) = retry.metadata.as_mut() {
        m.attempt = 1;
    }
    let id = c.run_pod(&retry, "").await;
    let delegate = c.delegate_ctrd().await;
    assert!(
        delegate.container_ids(NS).await.contains(&id),
        "retry not on the delegate"
    );
    let mut config = c.p.container_config("app", "exec sleep 3600");
    config.image = Some(crate::common::spec(&image_ref));
    let cid = c.p.create_start(&id, &retry, &config).await;
    assert_eq!(c.p.sh(&cid, "hostname").await, "linux-unknown-host\n");
    assert_eq!(
        c.pod_state(&id).await.expect("PodSandboxStatus"),
        PodSandboxState::SandboxReady as i32
    );
    assert!(c.primary_ctrd().await.container_ids(NS).await.is_empty());
}

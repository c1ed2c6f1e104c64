//! A backend that says its OS is windows, on this Linux machine: the real containerd 1.6
//! of the sandbox harness, with `os = "windows"` forced in the backend's config (as a
//! Windows primary would report itself), and a pause image whose config says windows.
//!
//! Such a backend builds Windows specs, so on Linux it must fail RunPodSandbox cleanly at
//! the first step only Windows can do — never run a Linux pause with a Windows spec — and
//! leave nothing behind: no containerd container, task or snapshot, no namespace file, no
//! CNI attachment, no mounts. Needs root and the daemons, like `sandbox.rs`.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::sandbox::{new_id, pod_config, PodWorld, PLUGIN_DIR};
use crimux_containerd::{ContainerdBackend, RuntimeHandler, RuntimeOptions};
use crimux_core::sandbox::{NamespaceMode, SandboxConfig, WindowsSandboxConfig};
use crimux_core::{Backend, PodSandboxId, SandboxBackend};
use tonic::Code;

/// Tags the harness's pause image as a Windows image and pushes it as
/// `test/pause:windows`; returns its reference.
fn push_windows_pause(world: &PodWorld) -> String {
    let layout = world.tmp.path().join("layout");
    let out = Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:pause", layout.display()))
        .args(["--tag", "windows", "--os", "windows"])
        .output()
        .expect("umoci: install umoci");
    assert!(
        out.status.success(),
        "umoci config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    world
        .registry
        .push(&layout, "windows", "test/pause:windows");
    format!("{}/test/pause:windows", world.registry.host)
}

/// A backend on the world's containerd and state, whose platform OS is windows.
async fn windows_backend(world: &PodWorld) -> Arc<ContainerdBackend> {
    let pause = push_windows_pause(world);
    let mut config = world.containerd.config();
    config.os = Some("windows".into());
    config.runtime_handlers = vec![String::new(), "runhcs-wcow-process".into()];
    config.runtime = RuntimeOptions {
        state_dir: world.state_dir.clone(),
        sandbox_image: pause,
        cni_conf_dir: world.conf_dir.clone(),
        cni_bin_dirs: vec![PLUGIN_DIR.into()],
        handlers: vec![
            RuntimeHandler::default(),
            RuntimeHandler {
                name: "runhcs-wcow-process".into(),
                runtime_type: "io.containerd.runhcs.v1".into(),
                options_json: String::new(),
            },
        ],
        ..RuntimeOptions::default()
    };
    let backend = ContainerdBackend::connect(config, world.registry.client())
        .await
        .expect("connect the windows backend");
    assert_eq!(backend.info().platform.os, "windows");
    backend
}

fn windows_pod(name: &str, host_process: bool) -> SandboxConfig {
    let mut config = pod_config(name);
    config.linux = None;
    config.log_directory = format!(r"C:\var\log\pods\default_{name}_uid-{name}");
    config.runtime_handler = "runhcs-wcow-process".into();
    config.windows = Some(WindowsSandboxConfig {
        host_process,
        network: if host_process {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        },
        ..Default::default()
    });
    config
}

async fn assert_gone(world: &PodWorld, backend: &ContainerdBackend, id: &PodSandboxId) {
    let left = world.leftovers(id).await;
    assert!(left.is_empty(), "sandbox {id} left behind: {left:#?}");
    let listed = backend.list_pod_sandboxes().await.expect("list");
    assert!(
        listed.iter().all(|s| s.id != *id),
        "the failed sandbox is listed: {listed:?}"
    );
    let err = backend
        .pod_sandbox_status(id, false)
        .await
        .expect_err("no status for a sandbox that failed");
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

#[tokio::test]
async fn windows_pod_network_needs_windows_and_leaves_nothing() {
    let world = PodWorld::new().await;
    let backend = windows_backend(&world).await;
    let id = new_id();
    let err = backend
        .run_pod_sandbox(&id, &windows_pod("iis", false))
        .await
        .expect_err("an HCN namespace cannot be made on Linux");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.to_string().contains("HCN namespaces need Windows"),
        "{err}"
    );
    assert_gone(&world, &backend, &id).await;
    assert!(
        !world.cni_cache(&id).exists(),
        "no CNI plugin may have run for a namespace that was never made"
    );

    // The name is free again: a retry fails the same way, not with AlreadyExists.
    let again = backend
        .run_pod_sandbox(&new_id(), &windows_pod("iis", false))
        .await
        .expect_err("still no HCN");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again}");
}

#[tokio::test]
async fn windows_host_process_pod_is_refused_at_the_layers_and_rolled_back() {
    let world = PodWorld::new().await;
    let backend = windows_backend(&world).await;
    let id = new_id();
    // A HostProcess pod needs no HCN namespace, so it gets as far as the pause's snapshot:
    // overlayfs gives overlay mounts, not the windows-layer hcsshim needs.
    let err = backend
        .run_pod_sandbox(&id, &windows_pod("agent", true))
        .await
        .expect_err("overlayfs cannot run a Windows pause");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("windows-layer"), "{err}");
    assert_gone(&world, &backend, &id).await;
}

#[tokio::test]
async fn linux_backend_on_the_same_daemon_still_runs_pods() {
    // The Windows branch is chosen per backend: the harness's own (Linux) backend on the
    // same containerd and state directory is unaffected.
    let world = PodWorld::new().await;
    let _windows = windows_backend(&world).await;
    let id = new_id();
    world
        .backend
        .run_pod_sandbox(&id, &pod_config("web"))
        .await
        .expect("RunPodSandbox on the Linux backend");
    world.backend.stop_pod_sandbox(&id).await.expect("stop");
    world.backend.remove_pod_sandbox(&id).await.expect("remove");
    let left = world.leftovers(&id).await;
    assert!(left.is_empty(), "{left:#?}");
}

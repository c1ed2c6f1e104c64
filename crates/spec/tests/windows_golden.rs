//! Golden Windows specs, one per case of the Windows spec rules. `UPDATE_GOLDEN=1 cargo
//! test -p crimux-spec --test windows_golden` rewrites the files under
//! `tests/golden/windows/`; review the diff like code.

mod common;

use std::path::PathBuf;

use common::canonical;
use crimux_core::container::*;
use crimux_core::sandbox::*;
use crimux_spec::windows::{self, Isolation, WindowsContainerSpecInput, WindowsSandboxSpecInput};
use crimux_spec::ImageConfig;

const NS: &str = "5f0a6b3e-29c1-4b8e-9b7a-2d5c3e4f6a10";
const LOG_DIR: &str = r"C:\var\log\pods\default_iis_uid-w1";

fn check(name: &str, spec: &oci_spec::runtime::Spec) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/windows")
        .join(format!("{name}.json"));
    // What containerd stores: `spec_to_json`, which writes a credential spec as a string.
    let mut value = canonical(spec);
    let wire: serde_json::Value =
        serde_json::from_slice(&windows::spec_to_json(spec).unwrap()).unwrap();
    if let (Some(cs), Some(slot)) = (
        wire.pointer("/windows/credentialSpec"),
        value.pointer_mut("/windows/credentialSpec"),
    ) {
        *slot = cs.clone();
    }
    let got = serde_json::to_string_pretty(&value).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        got == want,
        "{name} differs from {}; run with UPDATE_GOLDEN=1 and review the diff\n{got}",
        path.display()
    );
}

fn layers(id: &str) -> Vec<String> {
    vec![
        r"C:\ProgramData\containerd\root\io.containerd.snapshotter.v1.windows\snapshots\12"
            .to_string(),
        r"C:\ProgramData\containerd\root\io.containerd.snapshotter.v1.windows\snapshots\11"
            .to_string(),
        format!(
            r"C:\ProgramData\containerd\root\io.containerd.snapshotter.v1.windows\snapshots\{id}"
        ),
    ]
}

fn sandbox_config(handler: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: "iis".into(),
            uid: "uid-w1".into(),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: "iis-pod".into(),
        log_directory: LOG_DIR.into(),
        annotations: [
            (
                "io.microsoft.virtualmachine.computetopology.processor.count",
                "2",
            ),
            (
                "io.microsoft.virtualmachine.computetopology.memory.sizeinmb",
                "2048",
            ),
            ("example.com/unrelated", "dropped"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        windows: Some(WindowsSandboxConfig::default()),
        runtime_handler: handler.into(),
        ..Default::default()
    }
}

fn host_process_sandbox() -> SandboxConfig {
    let mut sb = sandbox_config(windows::HANDLER_PROCESS);
    sb.windows = Some(WindowsSandboxConfig {
        run_as_username: r"NT AUTHORITY\SYSTEM".into(),
        host_process: true,
        network: NamespaceMode::Node,
        ..Default::default()
    });
    sb.annotations.insert(
        windows::annotations::HOST_PROCESS_INHERIT_USER.into(),
        "true".into(),
    );
    sb
}

fn pause_image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec![r"C:\pause.exe".into()],
        user: "ContainerUser".into(),
        ..Default::default()
    }
}

fn app_image() -> ImageConfig {
    ImageConfig {
        env: vec![
            r"PATH=C:\Windows\system32;C:\Windows".into(),
            "MODE=dev".into(),
        ],
        entrypoint: vec!["C:\\ServiceMonitor.exe".into()],
        cmd: vec!["w3svc".into()],
        working_dir: r"C:\inetpub".into(),
        user: "ContainerAdministrator".into(),
        ..Default::default()
    }
}

fn container_config() -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: "iis".into(),
            attempt: 0,
        },
        image: "mcr.microsoft.com/windows/servercore/iis:ltsc2022".into(),
        envs: vec![("MODE".into(), "prod".into())],
        mounts: vec![
            Mount {
                container_path: r"C:\inetpub\wwwroot\config".into(),
                host_path: r"C:\var\lib\kubelet\pods\uid-w1\volumes\kubernetes.io~configmap\cfg"
                    .into(),
                readonly: true,
                ..Default::default()
            },
            Mount {
                container_path: "/inetpub/logs".into(),
                host_path: "C:/var/lib/kubelet/pods/uid-w1/volumes/kubernetes.io~empty-dir/logs"
                    .into(),
                ..Default::default()
            },
            Mount {
                container_path: r"\\.\pipe\docker_engine".into(),
                host_path: r"\\.\pipe\docker_engine".into(),
                ..Default::default()
            },
        ],
        log_path: r"iis\0.log".into(),
        windows: Some(WindowsContainerConfig {
            resources: Some(WindowsResources {
                cpu_shares: 0,
                cpu_count: 2,
                cpu_maximum: 5000,
                memory_limit_in_bytes: 512 << 20,
                rootfs_size_in_bytes: 0,
            }),
            run_as_username: "ContainerUser".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox_input<'a>(
    cfg: &'a SandboxConfig,
    image: &'a ImageConfig,
    layers: &'a [String],
    ns: Option<&'a str>,
) -> WindowsSandboxSpecInput<'a> {
    WindowsSandboxSpecInput {
        id: "ws1",
        config: cfg,
        image,
        image_name: "registry.k8s.io/pause:3.10",
        network_namespace: ns,
        layer_folders: layers,
        isolation: Isolation::for_handler(&cfg.runtime_handler),
    }
}

fn container_input<'a>(
    cfg: &'a ContainerConfig,
    sb: &'a SandboxConfig,
    image: &'a ImageConfig,
    layers: &'a [String],
    ns: Option<&'a str>,
) -> WindowsContainerSpecInput<'a> {
    WindowsContainerSpecInput {
        id: "wc1",
        sandbox_id: "ws1",
        config: cfg,
        sandbox: sb,
        image,
        image_name: "mcr.microsoft.com/windows/servercore/iis@sha256:abc",
        network_namespace: ns,
        layer_folders: layers,
        isolation: Isolation::for_handler(&sb.runtime_handler),
    }
}

#[test]
fn golden_windows_sandbox_process() {
    let (cfg, image, l) = (
        sandbox_config(windows::HANDLER_PROCESS),
        pause_image(),
        layers("ws1"),
    );
    check(
        "sandbox_process",
        &windows::sandbox_spec(&sandbox_input(&cfg, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn golden_windows_sandbox_hypervisor() {
    let (cfg, image, l) = (
        sandbox_config(windows::HANDLER_HYPERVISOR),
        pause_image(),
        layers("ws1"),
    );
    check(
        "sandbox_hypervisor",
        &windows::sandbox_spec(&sandbox_input(&cfg, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn golden_windows_sandbox_host_process() {
    let (cfg, image, l) = (host_process_sandbox(), pause_image(), layers("ws1"));
    // A namespace passed by mistake is still not used: HostProcess pods have the host's.
    check(
        "sandbox_host_process",
        &windows::sandbox_spec(&sandbox_input(&cfg, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn golden_windows_container_process() {
    let (cfg, sb, image, l) = (
        container_config(),
        sandbox_config(windows::HANDLER_PROCESS),
        app_image(),
        layers("wc1"),
    );
    check(
        "container_process",
        &windows::container_spec(&container_input(&cfg, &sb, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn golden_windows_container_hypervisor() {
    let mut cfg = container_config();
    cfg.tty = true;
    cfg.command = vec!["cmd.exe".into()];
    cfg.args = vec!["/c".into(), "ping -t localhost".into()];
    cfg.windows.as_mut().unwrap().run_as_username.clear();
    let (sb, image, l) = (
        sandbox_config(windows::HANDLER_HYPERVISOR),
        app_image(),
        layers("wc1"),
    );
    check(
        "container_hypervisor",
        &windows::container_spec(&container_input(&cfg, &sb, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn golden_windows_container_host_process() {
    let mut cfg = container_config();
    let w = cfg.windows.as_mut().unwrap();
    w.host_process = true;
    w.run_as_username = r"NT AUTHORITY\Local service".into();
    w.resources = None;
    cfg.mounts.truncate(1);
    let image = ImageConfig {
        entrypoint: vec!["powershell.exe".into()],
        cmd: vec!["-File".into(), "install.ps1".into()],
        ..Default::default()
    };
    let (sb, l) = (host_process_sandbox(), layers("wc1"));
    check(
        "container_host_process",
        &windows::container_spec(&container_input(&cfg, &sb, &image, &l, None)).unwrap(),
    );
}

#[test]
fn golden_windows_container_without_layers_or_resources() {
    // Layer folders left to the shim (taken from the task's rootfs), nothing limited.
    let mut cfg = container_config();
    cfg.windows = None;
    cfg.mounts.clear();
    let (sb, image) = (sandbox_config(windows::HANDLER_PROCESS), app_image());
    check(
        "container_minimal",
        &windows::container_spec(&container_input(&cfg, &sb, &image, &[], Some(NS))).unwrap(),
    );
}

#[test]
fn host_process_must_match_the_pod() {
    let sb = host_process_sandbox();
    let cfg = container_config();
    let image = app_image();
    let err = windows::container_spec(&container_input(&cfg, &sb, &image, &[], None))
        .expect_err("a normal container in a HostProcess pod");
    assert!(err.to_string().contains("HostProcess"), "{err}");

    let sb = sandbox_config(windows::HANDLER_PROCESS);
    let mut cfg = container_config();
    cfg.windows.as_mut().unwrap().host_process = true;
    assert!(windows::container_spec(&container_input(&cfg, &sb, &image, &[], Some(NS))).is_err());
}

/// A gMSA credential spec as kubelet's webhook inlines it.
const GMSA: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"Sid":"S-1-5-21-702590844-1001920913-2680819671","MachineAccountName":"webapp01","Guid":"56d9b35c-e5b4-4c42-a9a1-d4fbb1a4d5e3","DnsTreeName":"contoso.com","DnsName":"contoso.com","NetBiosName":"CONTOSO"},"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"webapp01","Scope":"contoso.com"},{"Name":"webapp01","Scope":"CONTOSO"}]}}"#;

#[test]
fn golden_windows_container_gmsa() {
    let mut cfg = container_config();
    cfg.windows.as_mut().unwrap().credential_spec = GMSA.into();
    cfg.mounts.clear();
    let (sb, image, l) = (
        sandbox_config(windows::HANDLER_PROCESS),
        app_image(),
        layers("wc1"),
    );
    let spec = windows::container_spec(&container_input(&cfg, &sb, &image, &l, Some(NS))).unwrap();
    check("container_gmsa", &spec);
    // What containerd stores reads back as the same spec.
    let bytes = windows::spec_to_json(&spec).unwrap();
    assert_eq!(windows::spec_from_json(&bytes).unwrap(), spec);
}

#[test]
fn golden_windows_sandbox_gmsa() {
    let mut sb = sandbox_config(windows::HANDLER_PROCESS);
    sb.windows.as_mut().unwrap().credential_spec = GMSA.into();
    let (image, l) = (pause_image(), layers("ws1"));
    check(
        "sandbox_gmsa",
        &windows::sandbox_spec(&sandbox_input(&sb, &image, &l, Some(NS))).unwrap(),
    );
}

#[test]
fn invalid_credential_specs_are_refused() {
    let image = pause_image();
    for bad in ["{not json", r#"["ActiveDirectory"]"#, "gmsa-webapp01"] {
        let mut sb = sandbox_config(windows::HANDLER_PROCESS);
        sb.windows.as_mut().unwrap().credential_spec = bad.into();
        let err = windows::sandbox_spec(&sandbox_input(&sb, &image, &[], Some(NS))).unwrap_err();
        assert!(
            matches!(err, crimux_core::Error::InvalidArgument(_)),
            "{bad}: {err}"
        );

        let sb = sandbox_config(windows::HANDLER_PROCESS);
        let mut cfg = container_config();
        cfg.windows.as_mut().unwrap().credential_spec = bad.into();
        let app = app_image();
        let err =
            windows::container_spec(&container_input(&cfg, &sb, &app, &[], Some(NS))).unwrap_err();
        assert!(
            matches!(err, crimux_core::Error::InvalidArgument(_)),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_container_log_path_is_a_windows_path() {
    let cfg = container_config();
    assert_eq!(
        windows::join_log_path(LOG_DIR, &cfg.log_path)
            .unwrap()
            .as_deref(),
        Some(r"C:\var\log\pods\default_iis_uid-w1\iis\0.log")
    );
}

#[test]
fn pause_without_argv_is_refused() {
    let sb = sandbox_config(windows::HANDLER_PROCESS);
    let image = ImageConfig::default();
    assert!(windows::sandbox_spec(&sandbox_input(&sb, &image, &[], Some(NS))).is_err());
}

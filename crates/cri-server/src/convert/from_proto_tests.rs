//! Round trips domain → `*_to_proto` → `*_from_proto` for fully populated values, and the
//! edge cases of the response direction (missing messages, unknown enums, image users).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::Code;

use crimux_core::container::{
    ContainerMetadata, HugepageLimit, Mount, Propagation, Resources, WindowsResources,
};
use crimux_core::sandbox::{IdMapping, NamespaceMode, NamespaceOptions, UserNamespace};
use crimux_core::status::{ContainerEventKind, ContainerState, ResolvedUser, SandboxState};
use crimux_core::{Backend, BackendRole, Credentials, ImageId};
use crimux_dispatch::testing::FakeBackend;
use crimux_dispatch::{merge_status, BackendReport, Dispatcher};

use super::*;
use crate::convert::{
    backend_statuses_json, container_stats_to_proto, container_status_to_proto, container_to_proto,
    event_to_proto, fs_usage, hash, image_to_proto, pull_request, runtime_conditions,
    sandbox_stats_to_proto, sandbox_status_to_proto, sandbox_to_proto, verbose_image_info,
};
use crate::CriRuntimeService;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_internal<T: std::fmt::Debug>(got: Result<T>, field: &str) {
    let err = got.expect_err(field);
    assert_eq!(err.code(), Code::Internal, "{field}: {err}");
    assert!(err.to_string().contains(field), "{field} not in {err}");
}

// ---- images ---------------------------------------------------------------------------

fn full_pull() -> PullImage {
    PullImage {
        reference: "registry.local/app:1".into(),
        credentials: Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            auth: "dTpw".into(),
            server_address: "registry.local".into(),
            identity_token: "refresh".into(),
            registry_token: "bearer".into(),
        }),
        pod_uid: Some("uid-1".into()),
        pod_name: Some("default/web".into()),
    }
}

#[test]
fn pull_requests_round_trip() {
    let cases = [
        ("full", full_pull()),
        (
            "no pod, no credentials",
            PullImage {
                reference: "busybox".into(),
                ..Default::default()
            },
        ),
        (
            "uid only",
            PullImage {
                pod_name: None,
                ..full_pull()
            },
        ),
        (
            "name without namespace",
            PullImage {
                pod_uid: None,
                pod_name: Some("web".into()),
                ..full_pull()
            },
        ),
    ];
    for (name, pull) in cases {
        let proto = pull_request_to_proto(&pull);
        let back = pull_request(proto).expect(name);
        assert_eq!(back.reference, pull.reference, "{name}");
        assert_eq!(back.credentials, pull.credentials, "{name}");
        assert_eq!(back.pod_uid, pull.pod_uid, "{name}");
        assert_eq!(back.pod_name, pull.pod_name, "{name}");
    }
    let auth = pull_request_to_proto(&full_pull()).auth.expect("auth");
    assert_eq!(
        (auth.identity_token.as_str(), auth.registry_token.as_str()),
        ("refresh", "bearer")
    );
    assert!(pull_request_to_proto(&PullImage::default())
        .sandbox_config
        .is_none());
}

fn full_image(user: &str) -> Image {
    Image {
        id: ImageId("sha256:abc".into()),
        repo_tags: vec!["docker.io/library/app:1".into(), "docker.io/x/app:2".into()],
        repo_digests: vec!["docker.io/library/app@sha256:def".into()],
        size: 123_456,
        user: user.into(),
        platform: Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        },
        config: Some(serde_json::json!({
            "architecture": "arm",
            "os": "linux",
            "config": {"User": user, "Cmd": ["sh"]},
        })),
        pinned: true,
    }
}

#[test]
fn images_round_trip_verbose() {
    let fallback = Platform::new("windows", "amd64");
    for user in ["", "1000", "nobody", "nobody:nogroup", "1000:1000"] {
        let image = full_image(user);
        let back = image_from_proto(
            image_to_proto(&image),
            &verbose_image_info(&image),
            &fallback,
        )
        .expect(user);
        assert_eq!(back, image, "{user:?}");
    }
}

#[test]
fn images_without_verbose_info() {
    let fallback = Platform::new("linux", "amd64");
    // (config User, User read back from uid/username)
    let cases = [
        ("", ""),
        ("1000", "1000"),
        ("nobody:nogroup", "nobody"),
        ("1000:1000", "1000"),
    ];
    for (user, want) in cases {
        let image = full_image(user);
        let back =
            image_from_proto(image_to_proto(&image), &HashMap::new(), &fallback).expect(user);
        assert_eq!(back.user, want, "{user:?}");
        assert_eq!(back.platform, fallback);
        assert_eq!(back.config, None);
        assert_eq!(
            (
                back.id,
                back.repo_tags,
                back.repo_digests,
                back.size,
                back.pinned
            ),
            (
                image.id,
                image.repo_tags,
                image.repo_digests,
                image.size,
                true
            )
        );
    }
}

#[test]
fn image_verbose_info_edge_cases() {
    let fallback = Platform::new("linux", "amd64");
    // A config whose User disagrees with uid/username: uid/username win.
    let mut image = full_image("1000:1000");
    image.config = Some(serde_json::json!({"config": {"User": "root"}}));
    let back = image_from_proto(
        image_to_proto(&image),
        &verbose_image_info(&image),
        &fallback,
    )
    .expect("valid");
    assert_eq!(back.user, "1000");
    // No config in the info; no platform in the info.
    let info = HashMap::from([("info".to_string(), r#"{"imageSpec":null}"#.to_string())]);
    let back = image_from_proto(image_to_proto(&image), &info, &fallback).expect("valid");
    assert_eq!((back.config, back.platform), (None, fallback.clone()));
    for bad in [
        "not json",
        r#"{"platform":"linux"}"#,
        r#"{"platform":"a//b"}"#,
    ] {
        let info = HashMap::from([("info".to_string(), bad.to_string())]);
        assert_internal(
            image_from_proto(image_to_proto(&image), &info, &fallback),
            "image info",
        );
    }
}

#[test]
fn platforms_parse() {
    let cases = [
        ("linux/amd64", Some(Platform::new("linux", "amd64"))),
        (
            "linux/arm/v7",
            Some(Platform {
                variant: Some("v7".into()),
                ..Platform::new("linux", "arm")
            }),
        ),
        ("linux", None),
        ("", None),
        ("linux/", None),
        ("a/b/c/d", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_platform(s), want, "{s:?}");
        if let Some(p) = want {
            assert_eq!(parse_platform(&p.to_string()), Some(p));
        }
    }
}

#[test]
fn fs_usage_round_trips() {
    let usage = FsUsage {
        timestamp_ns: 1_700_000_000_000_000_001,
        mountpoint: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs".into(),
        used_bytes: 1 << 40,
        inodes_used: 77,
    };
    assert_eq!(fs_usage_from_proto(fs_usage(&usage)), usage);
    assert_eq!(
        fs_usage_from_proto(v1::FilesystemUsage::default()),
        FsUsage::default()
    );
}

// ---- sandboxes ------------------------------------------------------------------------

fn full_summary() -> SandboxSummary {
    SandboxSummary {
        id: PodSandboxId::from("aa11"),
        metadata: SandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 3,
        },
        state: SandboxState::NotReady,
        created_at: 1_700_000_000_123_456_789,
        labels: map(&[("app", "web"), ("io.kubernetes.pod.name", "web")]),
        annotations: map(&[("crimux.io/os", "linux")]),
        runtime_handler: "runc".into(),
    }
}

fn full_sandbox_status() -> SandboxStatus {
    SandboxStatus {
        summary: full_summary(),
        ips: vec!["10.88.0.5".into(), "fd00::5".into(), "10.89.0.5".into()],
        namespace_options: NamespaceOptions {
            network: NamespaceMode::Node,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
            target_id: "c0".into(),
            userns: Some(UserNamespace {
                mode: NamespaceMode::Pod,
                uids: vec![IdMapping {
                    host_id: 100_000,
                    container_id: 0,
                    length: 65_536,
                }],
                gids: vec![IdMapping {
                    host_id: 200_000,
                    container_id: 0,
                    length: 65_536,
                }],
            }),
        },
        info: map(&[("info", r#"{"pid":42,"netns":"/var/run/netns/cni-1"}"#)]),
    }
}

#[test]
fn sandboxes_round_trip() {
    for state in [SandboxState::Ready, SandboxState::NotReady] {
        let s = SandboxSummary {
            state,
            ..full_summary()
        };
        assert_eq!(sandbox_from_proto(sandbox_to_proto(&s)).expect("valid"), s);
    }
    let mut bad = sandbox_to_proto(&full_summary());
    bad.state = 9;
    assert_internal(sandbox_from_proto(bad), "PodSandbox.state");
    // No metadata: zero metadata, not a panic.
    let mut bare = sandbox_to_proto(&full_summary());
    bare.metadata = None;
    assert_eq!(
        sandbox_from_proto(bare).expect("valid").metadata,
        SandboxMetadata::default()
    );
}

fn status_response(s: &SandboxStatus) -> v1::PodSandboxStatusResponse {
    v1::PodSandboxStatusResponse {
        status: Some(sandbox_status_to_proto(s)),
        info: hash(&s.info),
        containers_statuses: vec![container_status_to_proto(&full_container_status())],
        timestamp: 5,
    }
}

#[test]
fn sandbox_statuses_round_trip() {
    let cases = [
        ("full", full_sandbox_status()),
        (
            "host network, not verbose",
            SandboxStatus {
                ips: Vec::new(),
                namespace_options: NamespaceOptions::default(),
                info: BTreeMap::new(),
                ..full_sandbox_status()
            },
        ),
        (
            "one ip",
            SandboxStatus {
                ips: vec!["10.88.0.5".into()],
                ..full_sandbox_status()
            },
        ),
    ];
    for (name, status) in cases {
        let back = sandbox_status_from_proto(status_response(&status)).expect(name);
        assert_eq!(back, status, "{name}");
    }
}

#[test]
fn sandbox_status_edge_cases() {
    let mut bare = status_response(&full_sandbox_status());
    if let Some(s) = bare.status.as_mut() {
        s.network = None;
        s.linux = None;
    }
    let back = sandbox_status_from_proto(bare).expect("valid");
    assert!(back.ips.is_empty());
    assert_eq!(back.namespace_options, NamespaceOptions::default());

    assert_internal(
        sandbox_status_from_proto(v1::PodSandboxStatusResponse::default()),
        "PodSandboxStatus",
    );
    let mut bad = status_response(&full_sandbox_status());
    if let Some(s) = bad.status.as_mut() {
        s.state = 7;
    }
    assert_internal(sandbox_status_from_proto(bad), "PodSandboxStatus.state");
    let mut bad = status_response(&full_sandbox_status());
    if let Some(o) = bad
        .status
        .as_mut()
        .and_then(|s| s.linux.as_mut())
        .and_then(|l| l.namespaces.as_mut())
        .and_then(|n| n.options.as_mut())
    {
        o.pid = 42;
    }
    assert_internal(
        sandbox_status_from_proto(bad),
        "PodSandboxStatus.linux.namespaces",
    );
}

// ---- containers -----------------------------------------------------------------------

fn full_container_summary() -> ContainerSummary {
    ContainerSummary {
        id: ContainerId::from("cc22"),
        sandbox_id: PodSandboxId::from("aa11"),
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 2,
        },
        image: "docker.io/library/busybox:1.36".into(),
        image_ref: "sha256:abc".into(),
        state: ContainerState::Exited,
        created_at: 1_700_000_000_000_000_007,
        labels: map(&[("io.kubernetes.container.name", "app")]),
        annotations: map(&[("io.kubernetes.container.restartCount", "2")]),
    }
}

fn full_resources() -> Resources {
    Resources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 1 << 30,
        memory_swap_limit_in_bytes: 2 << 30,
        oom_score_adj: 900,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 4096,
        }],
        unified: map(&[("memory.high", "1000")]),
    }
}

fn full_container_status() -> ContainerStatus {
    let info =
        serde_json::json!({"sandboxID": "aa11", "pid": 99, "runtimeType": "io.containerd.runc.v2"});
    ContainerStatus {
        summary: full_container_summary(),
        started_at: 1_700_000_000_000_000_008,
        finished_at: 1_700_000_000_000_000_009,
        exit_code: 137,
        reason: "OOMKilled".into(),
        message: "out of memory".into(),
        mounts: vec![
            Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                readonly: true,
                recursive_readonly: true,
                selinux_relabel: true,
                propagation: Propagation::Bidirectional,
            },
            Mount {
                container_path: "/etc/hosts".into(),
                host_path: "/var/lib/kubelet/pods/uid-1/etc-hosts".into(),
                propagation: Propagation::HostToContainer,
                ..Default::default()
            },
        ],
        log_path: "/var/log/pods/default_web_uid-1/app/2.log".into(),
        resources: Some(full_resources()),
        windows_resources: Some(WindowsResources {
            cpu_shares: 1,
            cpu_count: 2,
            cpu_maximum: 3,
            memory_limit_in_bytes: 4,
            rootfs_size_in_bytes: 5,
        }),
        user: Some(ResolvedUser {
            uid: 1000,
            gid: 3000,
            supplemental_groups: vec![4000, 5000],
        }),
        info: BTreeMap::from([("info".to_string(), info.to_string())]),
    }
}

fn container_response(s: &ContainerStatus) -> v1::ContainerStatusResponse {
    v1::ContainerStatusResponse {
        status: Some(container_status_to_proto(s)),
        info: hash(&s.info),
    }
}

#[test]
fn containers_round_trip() {
    for state in [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Unknown,
    ] {
        let c = ContainerSummary {
            state,
            ..full_container_summary()
        };
        assert_eq!(
            container_from_proto(container_to_proto(&c)).expect("valid"),
            c
        );
    }
    let mut bad = container_to_proto(&full_container_summary());
    bad.state = 11;
    assert_internal(container_from_proto(bad), "Container.state");
    // Only the newer image_id set: it is the image ref.
    let mut newer = container_to_proto(&full_container_summary());
    newer.image_ref = String::new();
    assert_eq!(
        container_from_proto(newer).expect("valid").image_ref,
        "sha256:abc"
    );
}

#[test]
fn container_statuses_round_trip() {
    let cases = [
        ("full", full_container_status()),
        (
            "running, linux only, no user",
            ContainerStatus {
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                windows_resources: None,
                user: None,
                mounts: Vec::new(),
                ..full_container_status()
            },
        ),
        (
            "windows resources only",
            ContainerStatus {
                resources: None,
                ..full_container_status()
            },
        ),
        (
            "no resources",
            ContainerStatus {
                resources: None,
                windows_resources: None,
                ..full_container_status()
            },
        ),
    ];
    for (name, status) in cases {
        let back = container_status_from_proto(container_response(&status)).expect(name);
        assert_eq!(back, status, "{name}");
    }
}

/// Breaks one field of a status message.
type Spoil = fn(&mut v1::ContainerStatus);

#[test]
fn container_status_edge_cases() {
    // Not verbose: no info, so the pod is the caller's to fill.
    let quiet = ContainerStatus {
        info: BTreeMap::new(),
        ..full_container_status()
    };
    let back = container_status_from_proto(container_response(&quiet)).expect("valid");
    assert_eq!(back.summary.sandbox_id, PodSandboxId::default());
    assert_eq!(
        ContainerStatus {
            summary: ContainerSummary {
                sandbox_id: quiet.summary.sandbox_id.clone(),
                ..back.summary.clone()
            },
            ..back
        },
        quiet
    );

    assert_internal(
        container_status_from_proto(v1::ContainerStatusResponse::default()),
        "ContainerStatus",
    );
    let cases: Vec<(&str, Spoil)> = vec![
        ("ContainerStatus.state", |s| s.state = 8),
        ("ContainerStatus.mounts", |s| s.mounts[0].propagation = 5),
        ("ContainerStatus.resources.windows", |s| {
            if let Some(w) = s.resources.as_mut().and_then(|r| r.windows.as_mut()) {
                w.affinity_cpus.push(v1::WindowsCpuGroupAffinity::default());
            }
        }),
    ];
    for (field, spoil) in cases {
        let mut r = container_response(&full_container_status());
        if let Some(s) = r.status.as_mut() {
            spoil(s);
        }
        assert_internal(container_status_from_proto(r), field);
    }
    // A user message without its Linux part is no user.
    let mut r = container_response(&full_container_status());
    if let Some(s) = r.status.as_mut() {
        s.user = Some(v1::ContainerUser { linux: None });
    }
    assert_eq!(container_status_from_proto(r).expect("valid").user, None);
}

// ---- stats ----------------------------------------------------------------------------

fn full_container_stats(id: &str, sandbox: &str) -> ContainerStats {
    ContainerStats {
        id: ContainerId::from(id),
        sandbox_id: PodSandboxId::from(sandbox),
        metadata: ContainerMetadata {
            name: format!("{id}-name"),
            attempt: 1,
        },
        labels: map(&[("l", "v")]),
        annotations: map(&[("a", "b")]),
        timestamp: 1_700_000_000_000_000_100,
        cpu_usage_core_nanos: 11,
        memory_working_set_bytes: 22,
        memory_usage_bytes: 33,
        writable_layer_bytes: 44,
        writable_layer_inodes: 55,
        writable_layer_mountpoint: "/var/lib/containerd/snapshots".into(),
    }
}

#[test]
fn stats_round_trip() {
    // Container stats carry no pod: the caller fills it.
    let c = full_container_stats("c1", "");
    assert_eq!(
        container_stats_from_proto(container_stats_to_proto(&c)).expect("valid"),
        c
    );
    let s = SandboxStats {
        id: PodSandboxId::from("aa11"),
        metadata: full_summary().metadata,
        labels: map(&[("app", "web")]),
        annotations: map(&[("k", "v")]),
        timestamp: 1_700_000_000_000_000_200,
        cpu_usage_core_nanos: 1000,
        memory_working_set_bytes: 2000,
        containers: vec![
            full_container_stats("c1", "aa11"),
            full_container_stats("c2", "aa11"),
        ],
    };
    assert_eq!(
        sandbox_stats_from_proto(sandbox_stats_to_proto(&s)).expect("valid"),
        s
    );
}

#[test]
fn stats_edge_cases() {
    let bare = v1::ContainerStats {
        attributes: Some(v1::ContainerAttributes {
            id: "c".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        container_stats_from_proto(bare).expect("valid"),
        ContainerStats {
            id: ContainerId::from("c"),
            ..Default::default()
        }
    );
    assert_internal(
        container_stats_from_proto(v1::ContainerStats::default()),
        "ContainerStats",
    );
    assert_internal(
        sandbox_stats_from_proto(v1::PodSandboxStats::default()),
        "PodSandboxStats",
    );
    let bare = v1::PodSandboxStats {
        attributes: Some(v1::PodSandboxAttributes {
            id: "p".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        sandbox_stats_from_proto(bare).expect("valid"),
        SandboxStats {
            id: PodSandboxId::from("p"),
            ..Default::default()
        }
    );
    // A container without attributes inside pod stats fails the pod's.
    let mut s = sandbox_stats_to_proto(&SandboxStats {
        containers: vec![full_container_stats("c", "p")],
        ..Default::default()
    });
    if let Some(l) = s.linux.as_mut() {
        l.containers[0].attributes = None;
    }
    assert_internal(sandbox_stats_from_proto(s), "ContainerStats");
}

#[test]
fn exec_sync_round_trips() {
    let out = ExecSyncOutput {
        stdout: b"hello\n".to_vec(),
        stderr: vec![0, 255, 10],
        exit_code: 3,
    };
    let proto = v1::ExecSyncResponse {
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
        exit_code: out.exit_code,
    };
    assert_eq!(exec_sync_from_proto(proto), out);
}

// ---- status ---------------------------------------------------------------------------

fn status_of(report: BackendReport) -> v1::StatusResponse {
    let node = merge_status(vec![report]);
    v1::StatusResponse {
        status: Some(v1::RuntimeStatus {
            conditions: runtime_conditions(&node),
        }),
        ..Default::default()
    }
}

#[test]
fn backend_statuses_round_trip() {
    let ready = BackendStatus {
        runtime_ready: true,
        runtime_reason: String::new(),
        network_ready: true,
        network_reason: String::new(),
        network_message: String::new(),
    };
    let not_ready = BackendStatus {
        runtime_ready: false,
        runtime_reason: "ShimGone".into(),
        network_ready: false,
        network_reason: "NetworkPluginNotReady".into(),
        network_message: "no CNI config".into(),
    };
    for status in [ready, not_ready] {
        let report = BackendReport {
            name: "main".into(),
            role: BackendRole::Primary,
            platform: Platform::host(),
            status: Ok(status.clone()),
        };
        let back = backend_status_from_proto(status_of(report));
        assert_eq!(
            (back.runtime_ready, back.runtime_reason.as_str()),
            (status.runtime_ready, status.runtime_reason.as_str())
        );
        assert_eq!(
            (back.network_ready, back.network_reason.as_str()),
            (status.network_ready, status.network_reason.as_str())
        );
        // The merge names the backend in front of its message.
        assert!(back.network_message.ends_with(&status.network_message));
    }
    let none = backend_status_from_proto(v1::StatusResponse::default());
    assert!(!none.runtime_ready && !none.network_ready);
    assert_eq!(none.runtime_reason, CONDITION_MISSING_REASON);
    assert_eq!(none.network_reason, CONDITION_MISSING_REASON);
}

#[test]
fn status_json_platforms() {
    let arm = Platform {
        variant: Some("v7".into()),
        ..Platform::new("linux", "arm")
    };
    let node = merge_status(vec![
        BackendReport {
            name: "wsl".into(),
            role: BackendRole::Delegate,
            platform: Platform::new("windows", "amd64"),
            status: Err("down".into()),
        },
        BackendReport {
            name: "main".into(),
            role: BackendRole::Primary,
            platform: arm.clone(),
            status: Ok(backend_status_from_proto(v1::StatusResponse::default())),
        },
    ]);
    let json = backend_statuses_json(&node);
    assert_eq!(json[0]["platform"], "windows/amd64");
    assert_eq!(json[1]["platform"], "linux/arm/v7");
    // The shape the runtime service writes (entry platform), and the status's alone.
    let nested: Vec<serde_json::Value> = json
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| serde_json::json!({"name": s["name"], "role": s["role"], "status": s}))
        .collect();
    for backends in [json.clone(), serde_json::Value::from(nested)] {
        let info = HashMap::from([("backends".to_string(), backends.to_string())]);
        assert_eq!(platform_from_status_info(&info), Some(arm.clone()));
    }
    // No primary: the first.
    let first = serde_json::json!([{"role": "delegate", "platform": "linux/amd64"}]);
    let info = HashMap::from([("backends".to_string(), first.to_string())]);
    assert_eq!(
        platform_from_status_info(&info),
        Some(Platform::new("linux", "amd64"))
    );
    for bad in [
        "",
        "[]",
        "nope",
        r#"[{"role":"primary","platform":"linux"}]"#,
    ] {
        let info = HashMap::from([("backends".to_string(), bad.to_string())]);
        assert_eq!(platform_from_status_info(&info), None, "{bad:?}");
    }
    assert_eq!(platform_from_status_info(&HashMap::new()), None);
}

/// What a real crimux's Status answers (the runtime service over a dispatcher of fakes)
/// reads back as the primary's platform and readiness.
#[tokio::test]
async fn status_from_a_runtime_service() {
    let delegate = FakeBackend::delegate("wsl", "linux").into_arc();
    let primary = FakeBackend::primary("main", "windows").into_arc();
    primary.set_status(BackendStatus {
        runtime_ready: false,
        runtime_reason: "HcsDown".into(),
        network_ready: true,
        network_reason: String::new(),
        network_message: String::new(),
    });
    let backends = vec![
        primary.clone() as Arc<dyn Backend>,
        delegate as Arc<dyn Backend>,
    ];
    let dispatcher = Dispatcher::new(backends, None).expect("dispatcher");
    let service = CriRuntimeService::new(Arc::new(dispatcher));
    let response = service
        .status(tonic::Request::new(v1::StatusRequest { verbose: true }))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        platform_from_status_info(&response.info),
        Some(Platform::new("windows", "amd64"))
    );
    let status = backend_status_from_proto(response);
    assert_eq!(
        (status.runtime_ready, status.runtime_reason.as_str()),
        (false, "HcsDown")
    );
    assert!(status.network_ready);
}

// ---- events ---------------------------------------------------------------------------

#[test]
fn events_round_trip() {
    let sandbox = SandboxStatus {
        info: BTreeMap::new(),
        ..full_sandbox_status()
    };
    let container = ContainerStatus {
        info: BTreeMap::new(),
        ..full_container_status()
    };
    for kind in [
        ContainerEventKind::Created,
        ContainerEventKind::Started,
        ContainerEventKind::Stopped,
        ContainerEventKind::Deleted,
    ] {
        // Events carry no verbose info; the containers' pod is the event's sandbox.
        let event = ContainerEvent {
            container_id: ContainerId::from("cc22"),
            kind,
            created_at: 1_700_000_000_000_000_300,
            sandbox: Some(sandbox.clone()),
            containers: vec![container.clone(), container.clone()],
        };
        let back = event_from_proto(event_to_proto(&event)).expect("valid");
        assert_eq!(back, Some(event), "{kind:?}");
    }
    let deleted = ContainerEvent {
        container_id: ContainerId::from("cc22"),
        kind: ContainerEventKind::Deleted,
        created_at: 1,
        sandbox: None,
        containers: Vec::new(),
    };
    assert_eq!(
        event_from_proto(event_to_proto(&deleted)).expect("valid"),
        Some(deleted.clone())
    );
    let mut unknown = event_to_proto(&deleted);
    unknown.container_event_type = 99;
    assert_eq!(event_from_proto(unknown).expect("skipped"), None);
    let mut bad = event_to_proto(&ContainerEvent {
        sandbox: Some(sandbox),
        ..deleted
    });
    if let Some(s) = bad.pod_sandbox_status.as_mut() {
        s.state = 5;
    }
    assert_internal(event_from_proto(bad), "PodSandboxStatus.state");
}

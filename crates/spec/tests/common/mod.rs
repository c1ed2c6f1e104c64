//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use crimux_core::container::*;
use crimux_core::sandbox::*;
use crimux_spec::linux::PodFiles;
use crimux_spec::{ContainerSpecInput, HostInfo, ImageConfig, SandboxSpecInput};

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";

pub fn host() -> HostInfo {
    HostInfo {
        arch: "amd64".into(),
        hostname: "node-1".into(),
        has_apparmor: false,
        has_seccomp: true,
        cgroup_v2: false,
        has_swap_controller: true,
        min_oom_score_adj: -999,
        hugepage_sizes: vec!["2MB".into()],
        capability_bounding: None,
    }
}

pub fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: "web-pod".into(),
        log_directory: "/var/log/pods/default_web_uid-1".into(),
        linux: Some(LinuxSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
            security: SandboxSecurity {
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            },
            sysctls: BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pause_image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/pause".into()],
        ..Default::default()
    }
}

pub fn app_image() -> ImageConfig {
    ImageConfig {
        env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into()],
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into()],
        working_dir: "/srv".into(),
        user: "app".into(),
        ..Default::default()
    }
}

pub fn container_config() -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        },
        image: "example.com/app:1".into(),
        args: vec!["--port=80".into()],
        envs: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("MODE".into(), "prod".into()),
        ],
        mounts: vec![Mount {
            container_path: "/data".into(),
            host_path: "/var/lib/kubelet/pods/uid-1/volumes/data".into(),
            ..Default::default()
        }],
        linux: Some(LinuxContainerConfig {
            resources: Some(Resources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 256 << 20,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security: Some(ContainerSecurity {
                capabilities: Some(Capabilities {
                    add: vec!["NET_ADMIN".into()],
                    drop: vec!["MKNOD".into()],
                    add_ambient: vec![],
                }),
                supplemental_groups: vec![3000],
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

pub const FILES: PodFiles<'static> = PodFiles {
    hostname: Some("/run/crimux/pods/s1/hostname"),
    hosts: Some("/run/crimux/pods/s1/hosts"),
    resolv_conf: Some("/run/crimux/pods/s1/resolv.conf"),
    shm: Some("/run/crimux/pods/s1/shm"),
};

pub fn sandbox_input<'a>(
    cfg: &'a SandboxConfig,
    image: &'a ImageConfig,
    host: &'a HostInfo,
) -> SandboxSpecInput<'a> {
    SandboxSpecInput {
        id: "s1",
        config: cfg,
        image,
        image_name: "registry.k8s.io/pause:3.10",
        netns_path: Some("/run/netns/cni-1"),
        files: FILES,
        host,
        passwd: None,
        group: None,
        seccomp_localhost: None,
    }
}

pub fn container_input<'a>(
    cfg: &'a ContainerConfig,
    sandbox: &'a SandboxConfig,
    image: &'a ImageConfig,
    host: &'a HostInfo,
) -> ContainerSpecInput<'a> {
    ContainerSpecInput {
        id: "c1",
        sandbox_id: "s1",
        config: cfg,
        sandbox,
        sandbox_pid: 4242,
        target_pid: None,
        image,
        image_name: "example.com/app@sha256:abc",
        netns_path: Some("/run/netns/cni-1"),
        files: FILES,
        devices: &[],
        host_devices: &[],
        host,
        passwd: Some(PASSWD),
        group: Some(GROUP),
        seccomp_localhost: None,
    }
}

/// A spec as JSON with its unordered parts (capability sets, maps) sorted, so that the
/// same spec always prints the same.
pub fn canonical(spec: &oci_spec::runtime::Spec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).expect("spec serializes");
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    sort_keys(v)
}

fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

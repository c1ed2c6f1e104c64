//! `ContainerConfig` ⇄ the domain's, resources, mounts and security; container lists and
//! statuses out.

use k8s_cri::v1;

use crimux_core::container::{
    Capabilities, ContainerConfig, ContainerMetadata, ContainerSecurity, Device, HugepageLimit,
    LinuxContainerConfig, Mount, Propagation, Resources, WindowsContainerConfig, WindowsResources,
};
use crimux_core::status::{ContainerState, ContainerStatus, ContainerSummary};
use crimux_core::{Error, Result};

use super::sandbox::{
    namespace_options, namespace_options_to_proto, profile, profile_to_proto, selinux,
    selinux_to_proto, DeprecatedProfile,
};
use super::{btree, hash};

fn bad_enum(what: &str, value: i32) -> Error {
    Error::InvalidArgument(format!("unknown {what} value {value}"))
}

pub fn resources(r: v1::LinuxContainerResources) -> Resources {
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| HugepageLimit {
                page_size: h.page_size,
                limit: h.limit,
            })
            .collect(),
        unified: btree(r.unified),
    }
}

pub fn resources_to_proto(r: &Resources) -> v1::LinuxContainerResources {
    v1::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| v1::HugepageLimit {
                page_size: h.page_size.clone(),
                limit: h.limit,
            })
            .collect(),
        unified: hash(&r.unified),
    }
}

/// Windows resources; CPU group affinity is not modelled and must be empty.
pub fn windows_resources(r: v1::WindowsContainerResources) -> Result<WindowsResources> {
    if !r.affinity_cpus.is_empty() {
        return Err(Error::Unimplemented(
            "Windows CPU group affinity is not supported by crimux".into(),
        ));
    }
    Ok(WindowsResources {
        cpu_shares: r.cpu_shares,
        cpu_count: r.cpu_count,
        cpu_maximum: r.cpu_maximum,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        rootfs_size_in_bytes: r.rootfs_size_in_bytes,
    })
}

pub fn windows_resources_to_proto(r: &WindowsResources) -> v1::WindowsContainerResources {
    v1::WindowsContainerResources {
        cpu_shares: r.cpu_shares,
        cpu_count: r.cpu_count,
        cpu_maximum: r.cpu_maximum,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        rootfs_size_in_bytes: r.rootfs_size_in_bytes,
        affinity_cpus: Vec::new(),
    }
}

/// A mount; image volumes and id-mapped mounts are refused (not supported yet).
pub fn mount(m: v1::Mount) -> Result<Mount> {
    if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
        return Err(Error::Unimplemented(format!(
            "mount {}: image volumes are not supported by crimux",
            m.container_path
        )));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(Error::Unimplemented(format!(
            "mount {}: id-mapped mounts are not supported by crimux",
            m.container_path
        )));
    }
    let propagation = match v1::MountPropagation::try_from(m.propagation) {
        Ok(v1::MountPropagation::PropagationPrivate) => Propagation::Private,
        Ok(v1::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
        Ok(v1::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
        Err(_) => return Err(bad_enum("mount propagation", m.propagation)),
    };
    Ok(Mount {
        container_path: m.container_path,
        host_path: m.host_path,
        readonly: m.readonly,
        recursive_readonly: m.recursive_read_only,
        selinux_relabel: m.selinux_relabel,
        propagation,
    })
}

pub fn mount_to_proto(m: &Mount) -> v1::Mount {
    let propagation = match m.propagation {
        Propagation::Private => v1::MountPropagation::PropagationPrivate,
        Propagation::HostToContainer => v1::MountPropagation::PropagationHostToContainer,
        Propagation::Bidirectional => v1::MountPropagation::PropagationBidirectional,
    };
    v1::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: propagation as i32,
        recursive_read_only: m.recursive_readonly,
        ..Default::default()
    }
}

#[allow(deprecated)]
fn security(s: v1::LinuxContainerSecurityContext) -> Result<ContainerSecurity> {
    let seccomp = profile(
        s.seccomp,
        DeprecatedProfile::Seccomp(&s.seccomp_profile_path),
    )?;
    let apparmor = profile(s.apparmor, DeprecatedProfile::Apparmor(&s.apparmor_profile))?;
    Ok(ContainerSecurity {
        capabilities: s.capabilities.map(|c| Capabilities {
            add: c.add_capabilities,
            drop: c.drop_capabilities,
            add_ambient: c.add_ambient_capabilities,
        }),
        privileged: s.privileged,
        namespace_options: namespace_options(s.namespace_options)?,
        selinux: s.selinux_options.map(selinux),
        run_as_user: s.run_as_user.map(|v| v.value),
        run_as_group: s.run_as_group.map(|v| v.value),
        run_as_username: s.run_as_username,
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups,
        no_new_privs: s.no_new_privs,
        masked_paths: s.masked_paths,
        readonly_paths: s.readonly_paths,
        seccomp,
        apparmor,
    })
}

fn security_to_proto(s: &ContainerSecurity) -> v1::LinuxContainerSecurityContext {
    v1::LinuxContainerSecurityContext {
        capabilities: s.capabilities.as_ref().map(|c| v1::Capability {
            add_capabilities: c.add.clone(),
            drop_capabilities: c.drop.clone(),
            add_ambient_capabilities: c.add_ambient.clone(),
        }),
        privileged: s.privileged,
        namespace_options: Some(namespace_options_to_proto(&s.namespace_options)),
        selinux_options: s.selinux.as_ref().map(selinux_to_proto),
        run_as_user: s.run_as_user.map(|value| v1::Int64Value { value }),
        run_as_group: s.run_as_group.map(|value| v1::Int64Value { value }),
        run_as_username: s.run_as_username.clone(),
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups.clone(),
        no_new_privs: s.no_new_privs,
        masked_paths: s.masked_paths.clone(),
        readonly_paths: s.readonly_paths.clone(),
        seccomp: s.seccomp.as_ref().map(profile_to_proto),
        apparmor: s.apparmor.as_ref().map(profile_to_proto),
        ..Default::default()
    }
}

/// A CreateContainer config. Metadata with a name and an image are required.
pub fn container_config(c: v1::ContainerConfig) -> Result<ContainerConfig> {
    let metadata = c.metadata.filter(|m| !m.name.is_empty()).ok_or_else(|| {
        Error::InvalidArgument("container config must include metadata with a name".into())
    })?;
    let image = super::image_name(c.image.as_ref(), "CreateContainer")?;
    if !c.cdi_devices.is_empty() {
        return Err(Error::Unimplemented(
            "CDI devices are not supported by crimux".into(),
        ));
    }
    let linux = match c.linux {
        Some(l) => Some(LinuxContainerConfig {
            resources: l.resources.map(resources),
            security: l.security_context.map(security).transpose()?,
        }),
        None => None,
    };
    let windows = match c.windows {
        Some(w) => {
            let sc = w.security_context.unwrap_or_default();
            Some(WindowsContainerConfig {
                resources: w.resources.map(windows_resources).transpose()?,
                run_as_username: sc.run_as_username,
                credential_spec: sc.credential_spec,
                host_process: sc.host_process,
            })
        }
        None => None,
    };
    Ok(ContainerConfig {
        metadata: ContainerMetadata {
            name: metadata.name,
            attempt: metadata.attempt,
        },
        image,
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs: c.envs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
        mounts: c.mounts.into_iter().map(mount).collect::<Result<_>>()?,
        devices: c
            .devices
            .into_iter()
            .map(|d| Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        labels: btree(c.labels),
        annotations: btree(c.annotations),
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        linux,
        windows,
    })
}

/// The inverse of [`container_config`] (round-trip tests, diagnostics).
pub fn container_config_to_proto(c: &ContainerConfig) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: c.metadata.name.clone(),
            attempt: c.metadata.attempt,
        }),
        image: Some(image_spec(&c.image)),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c
            .envs
            .iter()
            .map(|(key, value)| v1::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: c.mounts.iter().map(mount_to_proto).collect(),
        devices: c
            .devices
            .iter()
            .map(|d| v1::Device {
                container_path: d.container_path.clone(),
                host_path: d.host_path.clone(),
                permissions: d.permissions.clone(),
            })
            .collect(),
        labels: hash(&c.labels),
        annotations: hash(&c.annotations),
        log_path: c.log_path.clone(),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        linux: c.linux.as_ref().map(|l| v1::LinuxContainerConfig {
            resources: l.resources.as_ref().map(resources_to_proto),
            security_context: l.security.as_ref().map(security_to_proto),
        }),
        windows: c.windows.as_ref().map(|w| v1::WindowsContainerConfig {
            resources: w.resources.as_ref().map(windows_resources_to_proto),
            security_context: Some(v1::WindowsContainerSecurityContext {
                run_as_username: w.run_as_username.clone(),
                credential_spec: w.credential_spec.clone(),
                host_process: w.host_process,
            }),
        }),
        cdi_devices: Vec::new(),
    }
}

fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

pub fn container_state_to_proto(s: ContainerState) -> v1::ContainerState {
    match s {
        ContainerState::Created => v1::ContainerState::ContainerCreated,
        ContainerState::Running => v1::ContainerState::ContainerRunning,
        ContainerState::Exited => v1::ContainerState::ContainerExited,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
    }
}

pub fn container_state(value: i32) -> Result<ContainerState> {
    match v1::ContainerState::try_from(value) {
        Ok(v1::ContainerState::ContainerCreated) => Ok(ContainerState::Created),
        Ok(v1::ContainerState::ContainerRunning) => Ok(ContainerState::Running),
        Ok(v1::ContainerState::ContainerExited) => Ok(ContainerState::Exited),
        Ok(v1::ContainerState::ContainerUnknown) => Ok(ContainerState::Unknown),
        Err(_) => Err(bad_enum("container state", value)),
    }
}

fn metadata_to_proto(m: &ContainerMetadata) -> v1::ContainerMetadata {
    v1::ContainerMetadata {
        name: m.name.clone(),
        attempt: m.attempt,
    }
}

pub fn container_to_proto(c: &ContainerSummary) -> v1::Container {
    v1::Container {
        id: c.id.0.clone(),
        pod_sandbox_id: c.sandbox_id.0.clone(),
        metadata: Some(metadata_to_proto(&c.metadata)),
        image: Some(image_spec(&c.image)),
        image_ref: c.image_ref.clone(),
        state: container_state_to_proto(c.state) as i32,
        created_at: c.created_at,
        labels: hash(&c.labels),
        annotations: hash(&c.annotations),
        image_id: c.image_ref.clone(),
    }
}

pub fn container_status_to_proto(s: &ContainerStatus) -> v1::ContainerStatus {
    let c = &s.summary;
    let resources =
        (s.resources.is_some() || s.windows_resources.is_some()).then(|| v1::ContainerResources {
            linux: s.resources.as_ref().map(resources_to_proto),
            windows: s.windows_resources.as_ref().map(windows_resources_to_proto),
        });
    v1::ContainerStatus {
        id: c.id.0.clone(),
        metadata: Some(metadata_to_proto(&c.metadata)),
        state: container_state_to_proto(c.state) as i32,
        created_at: c.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        image: Some(image_spec(&c.image)),
        image_ref: c.image_ref.clone(),
        reason: s.reason.clone(),
        message: s.message.clone(),
        labels: hash(&c.labels),
        annotations: hash(&c.annotations),
        mounts: s.mounts.iter().map(mount_to_proto).collect(),
        log_path: s.log_path.clone(),
        resources,
        image_id: c.image_ref.clone(),
        user: s.user.as_ref().map(|u| v1::ContainerUser {
            linux: Some(v1::LinuxContainerUser {
                uid: u.uid,
                gid: u.gid,
                supplemental_groups: u.supplemental_groups.clone(),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crimux_core::container::{ProfileType, SecurityProfile, SelinuxOption};
    use crimux_core::sandbox::{NamespaceMode, NamespaceOptions};
    use crimux_core::status::ResolvedUser;
    use crimux_core::{ContainerId, PodSandboxId};

    use super::*;

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
            unified: BTreeMap::from([("memory.high".into(), "1000".into())]),
        }
    }

    pub(crate) fn full_config() -> ContainerConfig {
        ContainerConfig {
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 3,
            },
            image: "sha256:abc".into(),
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec!["echo hi".into()],
            working_dir: "/work".into(),
            envs: vec![
                ("B".into(), "2".into()),
                ("A".into(), "1".into()),
                ("B".into(), "3".into()),
            ],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                readonly: true,
                recursive_readonly: true,
                selinux_relabel: true,
                propagation: Propagation::HostToContainer,
            }],
            devices: vec![Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }],
            labels: BTreeMap::from([("io.kubernetes.container.name".into(), "app".into())]),
            annotations: BTreeMap::from([("a".into(), "b".into())]),
            log_path: "app/3.log".into(),
            stdin: true,
            stdin_once: true,
            tty: true,
            linux: Some(LinuxContainerConfig {
                resources: Some(full_resources()),
                security: Some(ContainerSecurity {
                    capabilities: Some(Capabilities {
                        add: vec!["NET_ADMIN".into()],
                        drop: vec!["ALL".into()],
                        add_ambient: vec!["NET_BIND_SERVICE".into()],
                    }),
                    privileged: true,
                    namespace_options: NamespaceOptions {
                        network: NamespaceMode::Node,
                        pid: NamespaceMode::Target,
                        ipc: NamespaceMode::Pod,
                        target_id: "c0".into(),
                        userns: None,
                    },
                    selinux: Some(SelinuxOption {
                        user: "u".into(),
                        role: "r".into(),
                        r#type: "t".into(),
                        level: "s0".into(),
                    }),
                    run_as_user: Some(0),
                    run_as_group: Some(1000),
                    run_as_username: "nobody".into(),
                    readonly_rootfs: true,
                    supplemental_groups: vec![5, 6],
                    no_new_privs: true,
                    masked_paths: vec!["/proc/kcore".into()],
                    readonly_paths: vec!["/proc/sys".into()],
                    seccomp: Some(SecurityProfile {
                        profile_type: ProfileType::Localhost,
                        localhost_ref: "/p.json".into(),
                    }),
                    apparmor: Some(SecurityProfile {
                        profile_type: ProfileType::Unconfined,
                        localhost_ref: String::new(),
                    }),
                }),
            }),
            windows: Some(WindowsContainerConfig {
                resources: Some(WindowsResources {
                    cpu_shares: 1,
                    cpu_count: 2,
                    cpu_maximum: 3,
                    memory_limit_in_bytes: 4,
                    rootfs_size_in_bytes: 5,
                }),
                run_as_username: "ContainerUser".into(),
                credential_spec: "spec".into(),
                host_process: true,
            }),
        }
    }

    #[test]
    fn container_config_round_trips() {
        let cases = [
            ("full", full_config()),
            (
                "minimal",
                ContainerConfig {
                    metadata: ContainerMetadata {
                        name: "x".into(),
                        attempt: 0,
                    },
                    image: "busybox".into(),
                    ..Default::default()
                },
            ),
        ];
        for (name, config) in cases {
            let proto = container_config_to_proto(&config);
            let back = container_config(proto.clone()).expect(name);
            assert_eq!(back, config, "{name}");
            let keys: Vec<&str> = proto.envs.iter().map(|e| e.key.as_str()).collect();
            if name == "full" {
                assert_eq!(keys, ["B", "A", "B"], "envs keep their order");
                let sc = proto.linux.and_then(|l| l.security_context).expect("sc");
                assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 0 }));
            }
        }
    }

    #[test]
    fn container_config_refusals() {
        let ok = container_config_to_proto(&full_config());
        let with = |f: fn(&mut v1::ContainerConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c
        };
        // (case, config, code)
        let cases: Vec<(&str, v1::ContainerConfig, tonic::Code)> = vec![
            (
                "no metadata",
                with(|c| c.metadata = None),
                tonic::Code::InvalidArgument,
            ),
            (
                "no image",
                with(|c| c.image = None),
                tonic::Code::InvalidArgument,
            ),
            (
                "bad propagation",
                with(|c| c.mounts[0].propagation = 9),
                tonic::Code::InvalidArgument,
            ),
            (
                "image volume",
                with(|c| {
                    c.mounts[0].image = Some(v1::ImageSpec {
                        image: "vol".into(),
                        ..Default::default()
                    })
                }),
                tonic::Code::Unimplemented,
            ),
            (
                "cdi",
                with(|c| c.cdi_devices = vec![v1::CdiDevice { name: "x".into() }]),
                tonic::Code::Unimplemented,
            ),
            (
                "bad namespace mode",
                with(|c| {
                    if let Some(ns) = c
                        .linux
                        .as_mut()
                        .and_then(|l| l.security_context.as_mut())
                        .and_then(|s| s.namespace_options.as_mut())
                    {
                        ns.pid = 42;
                    }
                }),
                tonic::Code::InvalidArgument,
            ),
        ];
        for (name, config, code) in cases {
            let err = container_config(config).expect_err(name);
            assert_eq!(err.code(), code, "{name}: {err}");
        }
    }

    #[test]
    fn states_round_trip() {
        for s in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Exited,
            ContainerState::Unknown,
        ] {
            assert_eq!(
                container_state(container_state_to_proto(s) as i32).expect("valid"),
                s
            );
        }
        assert!(container_state(7).is_err());
    }

    #[test]
    fn status_to_proto() {
        let summary = ContainerSummary {
            id: ContainerId::from("c1"),
            sandbox_id: PodSandboxId::from("s1"),
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            },
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            state: ContainerState::Exited,
            created_at: 1_700_000_000_000_000_001,
            labels: BTreeMap::from([("l".into(), "v".into())]),
            annotations: BTreeMap::new(),
        };
        let status = ContainerStatus {
            summary: summary.clone(),
            started_at: 1_700_000_000_000_000_002,
            finished_at: 1_700_000_000_000_000_003,
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: "m".into(),
            mounts: full_config().mounts,
            log_path: "/var/log/pods/x/app/1.log".into(),
            resources: Some(full_resources()),
            windows_resources: None,
            user: Some(ResolvedUser {
                uid: 1000,
                gid: 100,
                supplemental_groups: vec![5],
            }),
            info: BTreeMap::new(),
        };
        let p = container_status_to_proto(&status);
        assert_eq!(p.id, "c1");
        assert_eq!(p.state, v1::ContainerState::ContainerExited as i32);
        assert_eq!(
            (p.created_at, p.started_at, p.finished_at),
            (
                1_700_000_000_000_000_001,
                1_700_000_000_000_000_002,
                1_700_000_000_000_000_003
            )
        );
        assert_eq!((p.exit_code, p.reason.as_str()), (137, "OOMKilled"));
        assert_eq!(p.image.map(|i| i.image).as_deref(), Some("busybox"));
        assert_eq!(
            (p.image_ref.as_str(), p.image_id.as_str()),
            ("sha256:abc", "sha256:abc")
        );
        assert_eq!(
            p.mounts[0].propagation,
            v1::MountPropagation::PropagationHostToContainer as i32
        );
        assert_eq!(p.log_path, "/var/log/pods/x/app/1.log");
        let linux = p.resources.and_then(|r| r.linux).expect("resources");
        assert_eq!(resources(linux), full_resources());
        let user = p.user.and_then(|u| u.linux).expect("user");
        assert_eq!(
            (user.uid, user.gid, user.supplemental_groups),
            (1000, 100, vec![5])
        );
        let c = container_to_proto(&summary);
        assert_eq!((c.id.as_str(), c.pod_sandbox_id.as_str()), ("c1", "s1"));
        assert_eq!(c.labels["l"], "v");
    }
}

//! `PodSandboxConfig` ⇄ the domain's `SandboxConfig`, namespaces, security profiles;
//! sandbox lists and statuses out.

use k8s_cri::v1;

use crimux_core::container::{ProfileType, SecurityProfile, SelinuxOption};
use crimux_core::sandbox::{
    DnsConfig, IdMapping, LinuxSandboxConfig, NamespaceMode, NamespaceOptions, PortMapping,
    Protocol, SandboxConfig, SandboxMetadata, SandboxSecurity, UserNamespace, WindowsSandboxConfig,
};
use crimux_core::status::{SandboxState, SandboxStatus, SandboxSummary};
use crimux_core::{Error, Result};

use super::container::{resources, resources_to_proto};
use super::{btree, hash};

fn bad_enum(what: &str, value: i32) -> Error {
    Error::InvalidArgument(format!("unknown {what} value {value}"))
}

pub fn namespace_mode(value: i32) -> Result<NamespaceMode> {
    match v1::NamespaceMode::try_from(value) {
        Ok(v1::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(v1::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(v1::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(v1::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(bad_enum("namespace mode", value)),
    }
}

pub fn namespace_mode_to_proto(m: NamespaceMode) -> i32 {
    (match m {
        NamespaceMode::Pod => v1::NamespaceMode::Pod,
        NamespaceMode::Container => v1::NamespaceMode::Container,
        NamespaceMode::Node => v1::NamespaceMode::Node,
        NamespaceMode::Target => v1::NamespaceMode::Target,
    }) as i32
}

fn id_mappings(m: Vec<v1::IdMapping>) -> Vec<IdMapping> {
    m.into_iter()
        .map(|m| IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        })
        .collect()
}

fn id_mappings_to_proto(m: &[IdMapping]) -> Vec<v1::IdMapping> {
    m.iter()
        .map(|m| v1::IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        })
        .collect()
}

/// Namespace options; absent means every namespace is the pod's.
pub fn namespace_options(o: Option<v1::NamespaceOption>) -> Result<NamespaceOptions> {
    let Some(o) = o else {
        return Ok(NamespaceOptions::default());
    };
    Ok(NamespaceOptions {
        network: namespace_mode(o.network)?,
        pid: namespace_mode(o.pid)?,
        ipc: namespace_mode(o.ipc)?,
        target_id: o.target_id,
        userns: match o.userns_options {
            Some(u) => Some(UserNamespace {
                mode: namespace_mode(u.mode)?,
                uids: id_mappings(u.uids),
                gids: id_mappings(u.gids),
            }),
            None => None,
        },
    })
}

pub fn namespace_options_to_proto(o: &NamespaceOptions) -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: namespace_mode_to_proto(o.network),
        pid: namespace_mode_to_proto(o.pid),
        ipc: namespace_mode_to_proto(o.ipc),
        target_id: o.target_id.clone(),
        userns_options: o.userns.as_ref().map(|u| v1::UserNamespace {
            mode: namespace_mode_to_proto(u.mode),
            uids: id_mappings_to_proto(&u.uids),
            gids: id_mappings_to_proto(&u.gids),
        }),
    }
}

pub fn selinux(s: v1::SeLinuxOption) -> SelinuxOption {
    SelinuxOption {
        user: s.user,
        role: s.role,
        r#type: s.r#type,
        level: s.level,
    }
}

pub fn selinux_to_proto(s: &SelinuxOption) -> v1::SeLinuxOption {
    v1::SeLinuxOption {
        user: s.user.clone(),
        role: s.role.clone(),
        r#type: s.r#type.clone(),
        level: s.level.clone(),
    }
}

/// The deprecated string form of a profile, read when the structured one is absent.
pub(crate) enum DeprecatedProfile<'a> {
    Seccomp(&'a str),
    Apparmor(&'a str),
}

/// A security profile: the structured field, else the deprecated string
/// (`runtime/default`, `docker/default` for seccomp, `unconfined`, `localhost/<ref>`).
pub(crate) fn profile(
    p: Option<v1::SecurityProfile>,
    deprecated: DeprecatedProfile<'_>,
) -> Result<Option<SecurityProfile>> {
    if let Some(p) = p {
        let profile_type = match v1::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(v1::security_profile::ProfileType::RuntimeDefault) => ProfileType::RuntimeDefault,
            Ok(v1::security_profile::ProfileType::Unconfined) => ProfileType::Unconfined,
            Ok(v1::security_profile::ProfileType::Localhost) => ProfileType::Localhost,
            Err(_) => return Err(bad_enum("security profile type", p.profile_type)),
        };
        return Ok(Some(SecurityProfile {
            profile_type,
            localhost_ref: p.localhost_ref,
        }));
    }
    let (what, value) = match deprecated {
        DeprecatedProfile::Seccomp(v) => ("seccomp", v),
        DeprecatedProfile::Apparmor(v) => ("apparmor", v),
    };
    let of = |profile_type, localhost_ref: &str| {
        Ok(Some(SecurityProfile {
            profile_type,
            localhost_ref: localhost_ref.to_string(),
        }))
    };
    match value {
        "" => Ok(None),
        "runtime/default" => of(ProfileType::RuntimeDefault, ""),
        "docker/default" if what == "seccomp" => of(ProfileType::RuntimeDefault, ""),
        "unconfined" => of(ProfileType::Unconfined, ""),
        other => match other.strip_prefix("localhost/") {
            Some(r) if !r.is_empty() => of(ProfileType::Localhost, r),
            _ => Err(Error::InvalidArgument(format!(
                "invalid {what} profile {other:?}"
            ))),
        },
    }
}

pub(crate) fn profile_to_proto(p: &SecurityProfile) -> v1::SecurityProfile {
    let profile_type = match p.profile_type {
        ProfileType::RuntimeDefault => v1::security_profile::ProfileType::RuntimeDefault,
        ProfileType::Unconfined => v1::security_profile::ProfileType::Unconfined,
        ProfileType::Localhost => v1::security_profile::ProfileType::Localhost,
    };
    v1::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: p.localhost_ref.clone(),
    }
}

fn protocol(value: i32) -> Result<Protocol> {
    match v1::Protocol::try_from(value) {
        Ok(v1::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(v1::Protocol::Udp) => Ok(Protocol::Udp),
        Ok(v1::Protocol::Sctp) => Ok(Protocol::Sctp),
        Err(_) => Err(bad_enum("protocol", value)),
    }
}

fn protocol_to_proto(p: Protocol) -> i32 {
    (match p {
        Protocol::Tcp => v1::Protocol::Tcp,
        Protocol::Udp => v1::Protocol::Udp,
        Protocol::Sctp => v1::Protocol::Sctp,
    }) as i32
}

#[allow(deprecated)]
fn sandbox_security(s: v1::LinuxSandboxSecurityContext) -> Result<SandboxSecurity> {
    Ok(SandboxSecurity {
        namespace_options: namespace_options(s.namespace_options)?,
        selinux: s.selinux_options.map(selinux),
        run_as_user: s.run_as_user.map(|v| v.value),
        run_as_group: s.run_as_group.map(|v| v.value),
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups,
        privileged: s.privileged,
        seccomp: profile(
            s.seccomp,
            DeprecatedProfile::Seccomp(&s.seccomp_profile_path),
        )?,
        apparmor: profile(s.apparmor, DeprecatedProfile::Apparmor(""))?,
    })
}

fn sandbox_security_to_proto(s: &SandboxSecurity) -> v1::LinuxSandboxSecurityContext {
    v1::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options_to_proto(&s.namespace_options)),
        selinux_options: s.selinux.as_ref().map(selinux_to_proto),
        run_as_user: s.run_as_user.map(|value| v1::Int64Value { value }),
        run_as_group: s.run_as_group.map(|value| v1::Int64Value { value }),
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups.clone(),
        privileged: s.privileged,
        seccomp: s.seccomp.as_ref().map(profile_to_proto),
        apparmor: s.apparmor.as_ref().map(profile_to_proto),
        ..Default::default()
    }
}

/// A RunPodSandbox config with the request's handler. Metadata with a name is required.
pub fn sandbox_config(c: v1::PodSandboxConfig, runtime_handler: String) -> Result<SandboxConfig> {
    let m = c.metadata.filter(|m| !m.name.is_empty()).ok_or_else(|| {
        Error::InvalidArgument("sandbox config must include metadata with a name".into())
    })?;
    let linux = match c.linux {
        Some(l) => Some(LinuxSandboxConfig {
            cgroup_parent: l.cgroup_parent,
            security: l
                .security_context
                .map(sandbox_security)
                .transpose()?
                .unwrap_or_default(),
            sysctls: btree(l.sysctls),
            overhead: l.overhead.map(resources),
            resources: l.resources.map(resources),
        }),
        None => None,
    };
    let windows = match c.windows {
        Some(w) => {
            let sc = w.security_context.unwrap_or_default();
            Some(WindowsSandboxConfig {
                run_as_username: sc.run_as_username,
                credential_spec: sc.credential_spec,
                host_process: sc.host_process,
                network: match sc.namespace_options {
                    Some(n) => namespace_mode(n.network)?,
                    None => NamespaceMode::Pod,
                },
            })
        }
        None => None,
    };
    Ok(SandboxConfig {
        metadata: SandboxMetadata {
            name: m.name,
            uid: m.uid,
            namespace: m.namespace,
            attempt: m.attempt,
        },
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns: c.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: c
            .port_mappings
            .into_iter()
            .map(|p| {
                Ok(PortMapping {
                    protocol: protocol(p.protocol)?,
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip,
                })
            })
            .collect::<Result<_>>()?,
        labels: btree(c.labels),
        annotations: btree(c.annotations),
        linux,
        windows,
        runtime_handler,
    })
}

pub fn sandbox_metadata_to_proto(m: &SandboxMetadata) -> v1::PodSandboxMetadata {
    v1::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

/// The inverse of [`sandbox_config`] (the handler travels beside it in the request).
pub fn sandbox_config_to_proto(c: &SandboxConfig) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(sandbox_metadata_to_proto(&c.metadata)),
        hostname: c.hostname.clone(),
        log_directory: c.log_directory.clone(),
        dns_config: c.dns.as_ref().map(|d| v1::DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| v1::PortMapping {
                protocol: protocol_to_proto(p.protocol),
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: hash(&c.labels),
        annotations: hash(&c.annotations),
        linux: c.linux.as_ref().map(|l| v1::LinuxPodSandboxConfig {
            cgroup_parent: l.cgroup_parent.clone(),
            security_context: Some(sandbox_security_to_proto(&l.security)),
            sysctls: hash(&l.sysctls),
            overhead: l.overhead.as_ref().map(resources_to_proto),
            resources: l.resources.as_ref().map(resources_to_proto),
        }),
        windows: c.windows.as_ref().map(|w| v1::WindowsPodSandboxConfig {
            security_context: Some(v1::WindowsSandboxSecurityContext {
                run_as_username: w.run_as_username.clone(),
                credential_spec: w.credential_spec.clone(),
                host_process: w.host_process,
                namespace_options: Some(v1::WindowsNamespaceOption {
                    network: namespace_mode_to_proto(w.network),
                }),
            }),
        }),
    }
}

pub fn sandbox_state_to_proto(s: SandboxState) -> v1::PodSandboxState {
    match s {
        SandboxState::Ready => v1::PodSandboxState::SandboxReady,
        SandboxState::NotReady => v1::PodSandboxState::SandboxNotready,
    }
}

pub fn sandbox_state(value: i32) -> Result<SandboxState> {
    match v1::PodSandboxState::try_from(value) {
        Ok(v1::PodSandboxState::SandboxReady) => Ok(SandboxState::Ready),
        Ok(v1::PodSandboxState::SandboxNotready) => Ok(SandboxState::NotReady),
        Err(_) => Err(bad_enum("pod sandbox state", value)),
    }
}

pub fn sandbox_to_proto(s: &SandboxSummary) -> v1::PodSandbox {
    v1::PodSandbox {
        id: s.id.0.clone(),
        metadata: Some(sandbox_metadata_to_proto(&s.metadata)),
        state: sandbox_state_to_proto(s.state) as i32,
        created_at: s.created_at,
        labels: hash(&s.labels),
        annotations: hash(&s.annotations),
        runtime_handler: s.runtime_handler.clone(),
    }
}

/// A sandbox status; the first IP is the pod's primary one.
pub fn sandbox_status_to_proto(s: &SandboxStatus) -> v1::PodSandboxStatus {
    let summary = sandbox_to_proto(&s.summary);
    let mut ips = s.ips.iter();
    v1::PodSandboxStatus {
        id: summary.id,
        metadata: summary.metadata,
        state: summary.state,
        created_at: summary.created_at,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| v1::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(namespace_options_to_proto(&s.namespace_options)),
            }),
        }),
        labels: summary.labels,
        annotations: summary.annotations,
        runtime_handler: summary.runtime_handler,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crimux_core::container::Resources;
    use crimux_core::PodSandboxId;

    use super::*;

    pub(crate) fn full_config() -> SandboxConfig {
        SandboxConfig {
            metadata: SandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 2,
            },
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/default_web_uid-1".into(),
            dns: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![
                PortMapping {
                    protocol: Protocol::Udp,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
                PortMapping {
                    protocol: Protocol::Sctp,
                    container_port: 1,
                    host_port: 2,
                    host_ip: String::new(),
                },
            ],
            labels: BTreeMap::from([("app".into(), "web".into())]),
            annotations: BTreeMap::from([("crimux.io/os".into(), "linux".into())]),
            linux: Some(LinuxSandboxConfig {
                cgroup_parent: "/kubepods/burstable/poduid-1".into(),
                security: SandboxSecurity {
                    namespace_options: NamespaceOptions {
                        network: NamespaceMode::Node,
                        pid: NamespaceMode::Container,
                        ipc: NamespaceMode::Pod,
                        target_id: String::new(),
                        userns: Some(UserNamespace {
                            mode: NamespaceMode::Pod,
                            uids: vec![IdMapping {
                                host_id: 100000,
                                container_id: 0,
                                length: 65536,
                            }],
                            gids: vec![IdMapping {
                                host_id: 200000,
                                container_id: 0,
                                length: 65536,
                            }],
                        }),
                    },
                    selinux: Some(SelinuxOption {
                        user: "system_u".into(),
                        role: "system_r".into(),
                        r#type: "container_t".into(),
                        level: "s0:c1,c2".into(),
                    }),
                    run_as_user: Some(65534),
                    run_as_group: Some(0),
                    readonly_rootfs: true,
                    supplemental_groups: vec![1, 2],
                    privileged: true,
                    seccomp: Some(SecurityProfile {
                        profile_type: ProfileType::RuntimeDefault,
                        localhost_ref: String::new(),
                    }),
                    apparmor: Some(SecurityProfile {
                        profile_type: ProfileType::Localhost,
                        localhost_ref: "k8s-apparmor".into(),
                    }),
                },
                sysctls: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
                overhead: Some(Resources {
                    cpu_shares: 10,
                    ..Default::default()
                }),
                resources: Some(Resources {
                    memory_limit_in_bytes: 1 << 20,
                    ..Default::default()
                }),
            }),
            windows: Some(WindowsSandboxConfig {
                run_as_username: "ContainerAdministrator".into(),
                credential_spec: "gmsa".into(),
                host_process: true,
                network: NamespaceMode::Node,
            }),
            runtime_handler: "runc".into(),
        }
    }

    #[test]
    fn sandbox_config_round_trips() {
        let minimal = SandboxConfig {
            metadata: SandboxMetadata {
                name: "p".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        for (name, config) in [("full", full_config()), ("minimal", minimal)] {
            let proto = sandbox_config_to_proto(&config);
            let back = sandbox_config(proto, config.runtime_handler.clone()).expect(name);
            assert_eq!(back, config, "{name}");
        }
    }

    #[test]
    fn sandbox_config_refusals() {
        let ok = sandbox_config_to_proto(&full_config());
        let cases: Vec<(&str, v1::PodSandboxConfig)> = vec![
            (
                "no metadata",
                v1::PodSandboxConfig {
                    metadata: None,
                    ..ok.clone()
                },
            ),
            (
                "empty name",
                v1::PodSandboxConfig {
                    metadata: Some(v1::PodSandboxMetadata::default()),
                    ..ok.clone()
                },
            ),
            ("bad protocol", {
                let mut c = ok.clone();
                c.port_mappings[0].protocol = 7;
                c
            }),
        ];
        for (name, proto) in cases {
            let err = sandbox_config(proto, String::new()).expect_err(name);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}");
        }
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_profiles() {
        let rd = |t| {
            Some(SecurityProfile {
                profile_type: t,
                localhost_ref: String::new(),
            })
        };
        // (seccomp_profile_path, want)
        let cases = [
            ("", Ok(None)),
            ("runtime/default", Ok(rd(ProfileType::RuntimeDefault))),
            ("docker/default", Ok(rd(ProfileType::RuntimeDefault))),
            ("unconfined", Ok(rd(ProfileType::Unconfined))),
            (
                "localhost/profiles/a.json",
                Ok(Some(SecurityProfile {
                    profile_type: ProfileType::Localhost,
                    localhost_ref: "profiles/a.json".into(),
                })),
            ),
            ("localhost/", Err(())),
            ("weird", Err(())),
        ];
        for (path, want) in cases {
            let got = profile(None, DeprecatedProfile::Seccomp(path)).map_err(|_| ());
            assert_eq!(got, want, "{path:?}");
        }
        // The structured field wins over the deprecated one.
        let got = profile(
            Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            }),
            DeprecatedProfile::Apparmor("runtime/default"),
        );
        assert_eq!(got.expect("valid"), rd(ProfileType::Unconfined));
    }

    #[test]
    fn status_to_proto() {
        let status = SandboxStatus {
            summary: SandboxSummary {
                id: PodSandboxId::from("s1"),
                metadata: full_config().metadata,
                state: SandboxState::NotReady,
                created_at: 1_700_000_000_123_456_789,
                labels: BTreeMap::from([("app".into(), "web".into())]),
                annotations: BTreeMap::new(),
                runtime_handler: "runc".into(),
            },
            ips: vec!["10.0.0.5".into(), "fd00::5".into()],
            namespace_options: NamespaceOptions {
                network: NamespaceMode::Node,
                ..Default::default()
            },
            info: BTreeMap::new(),
        };
        let p = sandbox_status_to_proto(&status);
        assert_eq!(p.id, "s1");
        assert_eq!(p.state, v1::PodSandboxState::SandboxNotready as i32);
        assert_eq!(p.created_at, 1_700_000_000_123_456_789);
        let net = p.network.expect("network");
        assert_eq!(net.ip, "10.0.0.5");
        assert_eq!(
            net.additional_ips,
            [v1::PodIp {
                ip: "fd00::5".into()
            }]
        );
        let ns = p
            .linux
            .and_then(|l| l.namespaces)
            .and_then(|n| n.options)
            .expect("ns");
        assert_eq!(ns.network, v1::NamespaceMode::Node as i32);
        assert_eq!(p.metadata.map(|m| m.attempt), Some(2));
        assert_eq!(p.runtime_handler, "runc");
        for s in [SandboxState::Ready, SandboxState::NotReady] {
            assert_eq!(
                sandbox_state(sandbox_state_to_proto(s) as i32).expect("valid"),
                s
            );
        }
        assert!(sandbox_state(5).is_err());
    }
}

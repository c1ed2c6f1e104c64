//! Which namespaces a sandbox creates and its containers join, and which sysctls those
//! namespaces let a pod set.

use std::collections::{BTreeMap, HashMap};

use crimux_core::sandbox::{NamespaceMode, NamespaceOptions};
use crimux_core::{Error, Result};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

fn ns(typ: LinuxNamespaceType, path: Option<String>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(Into::into));
    n
}

fn no_userns(opts: &NamespaceOptions) -> Result<()> {
    match &opts.userns {
        Some(u) if u.mode != NamespaceMode::Node => Err(Error::Unimplemented(
            "user namespaces are not supported yet".into(),
        )),
        _ => Ok(()),
    }
}

/// The pause's namespaces: new ones, except those shared with the node. Host network
/// also means the host's UTS namespace.
pub(crate) fn sandbox(
    opts: &NamespaceOptions,
    netns_path: Option<&str>,
) -> Result<Vec<LinuxNamespace>> {
    no_userns(opts)?;
    let host_net = opts.network == NamespaceMode::Node;
    let mut v = Vec::new();
    if opts.pid != NamespaceMode::Node {
        v.push(ns(LinuxNamespaceType::Pid, None));
    }
    if opts.ipc != NamespaceMode::Node {
        v.push(ns(LinuxNamespaceType::Ipc, None));
    }
    if !host_net {
        v.push(ns(LinuxNamespaceType::Uts, None));
    }
    v.push(ns(LinuxNamespaceType::Mount, None));
    if !host_net {
        v.push(ns(
            LinuxNamespaceType::Network,
            netns_path.map(String::from),
        ));
    }
    Ok(v)
}

fn proc_ns(pid: u32, what: &str) -> Option<String> {
    Some(format!("/proc/{pid}/ns/{what}"))
}

/// A container's namespaces: the pod's network, IPC and UTS namespaces joined through the
/// pause, its pid namespace as the options say, and a new mount namespace (plus a cgroup
/// namespace on cgroup v2 unless privileged, as containerd does).
pub(crate) fn container(
    opts: &NamespaceOptions,
    sandbox_pid: u32,
    target_pid: Option<u32>,
    netns_path: Option<&str>,
    cgroup_ns: bool,
) -> Result<Vec<LinuxNamespace>> {
    no_userns(opts)?;
    let host_net = opts.network == NamespaceMode::Node;
    let mut v = Vec::new();
    match opts.pid {
        NamespaceMode::Node => {}
        NamespaceMode::Container => v.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Pod => v.push(ns(LinuxNamespaceType::Pid, proc_ns(sandbox_pid, "pid"))),
        NamespaceMode::Target => {
            let pid = target_pid.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "pid namespace target {:?} has no running process",
                    opts.target_id
                ))
            })?;
            v.push(ns(LinuxNamespaceType::Pid, proc_ns(pid, "pid")));
        }
    }
    if opts.ipc != NamespaceMode::Node {
        v.push(ns(LinuxNamespaceType::Ipc, proc_ns(sandbox_pid, "ipc")));
    }
    if !host_net {
        v.push(ns(LinuxNamespaceType::Uts, proc_ns(sandbox_pid, "uts")));
    }
    v.push(ns(LinuxNamespaceType::Mount, None));
    if !host_net {
        let path = netns_path
            .map(String::from)
            .or_else(|| proc_ns(sandbox_pid, "net"));
        v.push(ns(LinuxNamespaceType::Network, path));
    }
    if cgroup_ns {
        v.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(v)
}

/// Which namespace a sysctl belongs to, if any.
enum SysctlNs {
    Net,
    Ipc,
    Uts,
}

fn sysctl_ns(name: &str) -> Option<SysctlNs> {
    if name.starts_with("net.") {
        Some(SysctlNs::Net)
    } else if name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
    {
        Some(SysctlNs::Ipc)
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        Some(SysctlNs::Uts)
    } else {
        None
    }
}

/// Checks a pod's sysctls: only namespaced ones, and only in namespaces the pod does not
/// share with the node. Names may use `/` separators (`net/ipv4/ip_forward`), which are
/// turned into dots.
pub fn validate_sysctls(
    sysctls: &BTreeMap<String, String>,
    opts: &NamespaceOptions,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (name, value) in sysctls {
        let name = if name.contains('/') {
            // Kubernetes' slash form swaps the two separators.
            name.chars()
                .map(|c| match c {
                    '/' => '.',
                    '.' => '/',
                    c => c,
                })
                .collect()
        } else {
            name.clone()
        };
        let shared = match sysctl_ns(&name) {
            None => {
                return Err(Error::InvalidArgument(format!(
                    "sysctl {name:?} is not namespaced and cannot be set for a pod"
                )))
            }
            Some(SysctlNs::Net | SysctlNs::Uts) => opts.network == NamespaceMode::Node,
            Some(SysctlNs::Ipc) => opts.ipc == NamespaceMode::Node,
        };
        if shared {
            return Err(Error::InvalidArgument(format!(
                "sysctl {name:?} cannot be set: the pod shares that namespace with the node"
            )));
        }
        out.insert(name, value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> NamespaceOptions {
        NamespaceOptions {
            network,
            pid,
            ipc,
            ..Default::default()
        }
    }

    fn render(v: &[LinuxNamespace]) -> Vec<String> {
        v.iter()
            .map(|n| match n.path() {
                Some(p) => format!("{}={}", n.typ(), p.display()),
                None => n.typ().to_string(),
            })
            .collect()
    }

    #[test]
    fn container_namespace_table() {
        use NamespaceMode::*;
        let cases = vec![
            (
                opts(Pod, Pod, Pod),
                None,
                vec![
                    "pid=/proc/7/ns/pid",
                    "ipc=/proc/7/ns/ipc",
                    "uts=/proc/7/ns/uts",
                    "mnt",
                    "net=/proc/7/ns/net",
                ],
            ),
            (
                opts(Pod, Container, Pod),
                Some("/run/netns/x"),
                vec![
                    "pid",
                    "ipc=/proc/7/ns/ipc",
                    "uts=/proc/7/ns/uts",
                    "mnt",
                    "net=/run/netns/x",
                ],
            ),
            (opts(Node, Node, Node), None, vec!["mnt"]),
            (
                NamespaceOptions {
                    pid: Target,
                    target_id: "c1".into(),
                    ..Default::default()
                },
                None,
                vec![
                    "pid=/proc/9/ns/pid",
                    "ipc=/proc/7/ns/ipc",
                    "uts=/proc/7/ns/uts",
                    "mnt",
                    "net=/proc/7/ns/net",
                ],
            ),
        ];
        for (o, netns, want) in cases {
            let got = container(&o, 7, Some(9), netns, false).unwrap();
            assert_eq!(render(&got), want, "{o:?}");
        }
        let target = NamespaceOptions {
            pid: Target,
            ..Default::default()
        };
        assert!(matches!(
            container(&target, 7, None, None, false),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(
            render(&container(&opts(Node, Node, Node), 7, None, None, true).unwrap()),
            ["mnt", "cgroup"]
        );
    }

    #[test]
    fn sandbox_namespace_table() {
        use NamespaceMode::*;
        assert_eq!(
            render(&sandbox(&opts(Pod, Pod, Pod), Some("/run/netns/p")).unwrap()),
            ["pid", "ipc", "uts", "mnt", "net=/run/netns/p"]
        );
        assert_eq!(
            render(&sandbox(&opts(Pod, Pod, Pod), None).unwrap()),
            ["pid", "ipc", "uts", "mnt", "net"]
        );
        assert_eq!(
            render(&sandbox(&opts(Node, Node, Node), Some("/x")).unwrap()),
            ["mnt"]
        );
        let userns = NamespaceOptions {
            userns: Some(crimux_core::sandbox::UserNamespace {
                mode: Pod,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            sandbox(&userns, None),
            Err(Error::Unimplemented(_))
        ));
    }

    #[test]
    fn sysctl_table() {
        use NamespaceMode::*;
        let cases: Vec<(&str, NamespaceOptions, Option<&str>)> = vec![
            (
                "net.ipv4.ip_forward",
                opts(Pod, Pod, Pod),
                Some("net.ipv4.ip_forward"),
            ),
            (
                "net/ipv4/conf/eth0.100/forwarding",
                opts(Pod, Pod, Pod),
                Some("net.ipv4.conf.eth0/100.forwarding"),
            ),
            (
                "kernel.shm_rmid_forced",
                opts(Pod, Pod, Pod),
                Some("kernel.shm_rmid_forced"),
            ),
            ("kernel.msgmax", opts(Pod, Pod, Pod), Some("kernel.msgmax")),
            ("kernel.sem", opts(Pod, Pod, Pod), Some("kernel.sem")),
            (
                "fs.mqueue.msg_max",
                opts(Pod, Pod, Pod),
                Some("fs.mqueue.msg_max"),
            ),
            ("net.core.somaxconn", opts(Node, Pod, Pod), None),
            ("kernel.shmmax", opts(Pod, Pod, Node), None),
            ("kernel.pid_max", opts(Pod, Pod, Pod), None),
            ("vm.swappiness", opts(Pod, Pod, Pod), None),
        ];
        for (name, o, want) in cases {
            let m = BTreeMap::from([(name.to_string(), "1".to_string())]);
            match (validate_sysctls(&m, &o), want) {
                (Ok(got), Some(key)) => assert!(got.contains_key(key), "{name}: {got:?}"),
                (Err(Error::InvalidArgument(_)), None) => {}
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
    }
}

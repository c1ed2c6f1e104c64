//! A spec's mounts: the runtime's defaults, the pod's files, and the CRI's bind mounts in
//! an order where parents mount before children.

use crimux_core::container::{Mount as CriMount, Propagation};
use crimux_core::{Error, Result};
use oci_spec::runtime::Mount;

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

pub(crate) const DEV_SHM: &str = "/dev/shm";

/// The mounts every container and sandbox starts with (containerd's, without `/run`).
/// `sys_rw` makes `/sys` writable (privileged); `cgroup` adds `/sys/fs/cgroup`
/// (containers only), writable when `sys_rw`.
pub(crate) fn defaults(sys_rw: bool, cgroup: bool) -> Vec<Mount> {
    let sys_mode = if sys_rw { "rw" } else { "ro" };
    let mut v = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            DEV_SHM,
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
    ];
    if cgroup {
        v.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ));
    }
    v
}

/// A read-only bind of a pod file into the pause.
pub(crate) fn sandbox_bind(dest: &str, source: &str) -> Mount {
    mount(
        dest,
        "bind",
        source,
        &["rbind", "ro", "nosuid", "nodev", "noexec"],
    )
}

/// Lexically cleans an absolute container path (`/a//b/../c/` → `/a/c`).
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn depth(path: &str) -> usize {
    clean(path).split('/').filter(|p| !p.is_empty()).count()
}

/// Replaces `rootfs_propagation` as a mount's propagation requires: `rshared` wins over
/// `rslave`, which wins over unset.
fn raise_propagation(current: &mut Option<String>, wanted: &str) {
    let rank = |p: Option<&str>| match p {
        Some("rshared") => 2,
        Some("rslave") => 1,
        _ => 0,
    };
    if rank(Some(wanted)) > rank(current.as_deref()) {
        *current = Some(wanted.to_string());
    }
}

/// A container's mounts: the defaults minus those the CRI or pod mounts replace (a CRI
/// `/dev` replaces everything under it), then the CRI and pod mounts sorted by depth so
/// parents mount first. Returns the mounts and the rootfs propagation they need.
pub(crate) fn container(
    defaults: Vec<Mount>,
    cri: &[CriMount],
    extra: Vec<CriMount>,
) -> Result<(Vec<Mount>, Option<String>)> {
    for m in cri {
        if m.container_path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "mount of {:?} has an empty container_path",
                m.host_path
            )));
        }
        if m.host_path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "mount at {:?} has an empty host_path",
                m.container_path
            )));
        }
    }
    let mut binds: Vec<CriMount> = cri.to_vec();
    for e in extra {
        if !cri
            .iter()
            .any(|c| clean(&c.container_path) == clean(&e.container_path))
        {
            binds.push(e);
        }
    }
    binds.sort_by_key(|m| depth(&m.container_path));
    let replaced: Vec<String> = binds.iter().map(|m| clean(&m.container_path)).collect();
    let dev_replaced = replaced.iter().any(|p| p == "/dev");
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| {
            let dest = clean(&m.destination().to_string_lossy());
            let under_dev = dev_replaced && dest.starts_with("/dev/");
            !(replaced.contains(&dest) || under_dev)
        })
        .collect();
    let mut propagation = None;
    for m in &binds {
        let mut options = vec!["rbind".to_string()];
        match m.propagation {
            Propagation::Private => options.push("rprivate".into()),
            Propagation::Bidirectional => {
                options.push("rshared".into());
                raise_propagation(&mut propagation, "rshared");
            }
            Propagation::HostToContainer => {
                options.push("rslave".into());
                raise_propagation(&mut propagation, "rslave");
            }
        }
        match (m.readonly, m.recursive_readonly) {
            (true, true) if m.propagation != Propagation::Private => {
                return Err(Error::InvalidArgument(format!(
                    "recursive read-only mount at {:?} needs private propagation",
                    m.container_path
                )))
            }
            (true, true) => options.push("rro".into()),
            (true, false) => options.push("ro".into()),
            (false, true) => {
                return Err(Error::InvalidArgument(format!(
                    "recursive read-only mount at {:?} must also be read-only",
                    m.container_path
                )))
            }
            (false, false) => options.push("rw".into()),
        }
        if m.selinux_relabel {
            tracing::debug!(path = %m.host_path, "SELinux relabel requested; crimux has no SELinux support, ignoring");
        }
        let mut b = Mount::default();
        b.set_destination(m.container_path.clone().into());
        b.set_typ(Some("bind".into()));
        b.set_source(Some(m.host_path.clone().into()));
        b.set_options(Some(options));
        out.push(b);
    }
    Ok((out, propagation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(c: &str, h: &str) -> CriMount {
        CriMount {
            container_path: c.into(),
            host_path: h.into(),
            ..Default::default()
        }
    }

    fn dests(v: &[Mount]) -> Vec<String> {
        v.iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn order_and_overrides() {
        let cri = vec![
            bind("/data/sub", "/h/sub"),
            bind("/data", "/h/data"),
            bind("/dev/shm", "/h/shm"),
        ];
        let extra = vec![bind("/etc/hosts", "/p/hosts"), bind("/dev/shm", "/p/shm")];
        let (m, prop) = container(defaults(false, true), &cri, extra).unwrap();
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/data",
                "/data/sub",
                "/dev/shm",
                "/etc/hosts"
            ]
        );
        // The CRI's /dev/shm wins over the pod's.
        assert_eq!(m[8].source().as_ref().unwrap().to_string_lossy(), "/h/shm");
        assert_eq!(prop, None);
        let (m, _) = container(defaults(false, true), &[bind("/dev", "/hostdev")], vec![]).unwrap();
        assert_eq!(dests(&m), ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    }

    #[test]
    fn options_table() {
        let cases: Vec<(CriMount, &[&str], Option<&str>)> = vec![
            (bind("/a", "/h"), &["rbind", "rprivate", "rw"], None),
            (
                CriMount {
                    readonly: true,
                    ..bind("/a", "/h")
                },
                &["rbind", "rprivate", "ro"],
                None,
            ),
            (
                CriMount {
                    readonly: true,
                    recursive_readonly: true,
                    ..bind("/a", "/h")
                },
                &["rbind", "rprivate", "rro"],
                None,
            ),
            (
                CriMount {
                    propagation: Propagation::HostToContainer,
                    ..bind("/a", "/h")
                },
                &["rbind", "rslave", "rw"],
                Some("rslave"),
            ),
            (
                CriMount {
                    propagation: Propagation::Bidirectional,
                    ..bind("/a", "/h")
                },
                &["rbind", "rshared", "rw"],
                Some("rshared"),
            ),
            (
                CriMount {
                    selinux_relabel: true,
                    ..bind("/a", "/h")
                },
                &["rbind", "rprivate", "rw"],
                None,
            ),
        ];
        for (m, opts, prop) in cases {
            let (out, p) = container(vec![], std::slice::from_ref(&m), vec![]).unwrap();
            assert_eq!(
                out[0].options().as_ref().unwrap(),
                &opts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{m:?}"
            );
            assert_eq!(out[0].typ().as_deref(), Some("bind"));
            assert_eq!(p.as_deref(), prop);
        }
        // rshared wins whatever the order.
        let both = [
            CriMount {
                propagation: Propagation::Bidirectional,
                ..bind("/a", "/h")
            },
            CriMount {
                propagation: Propagation::HostToContainer,
                ..bind("/b", "/h")
            },
        ];
        assert_eq!(
            container(vec![], &both, vec![]).unwrap().1.as_deref(),
            Some("rshared")
        );
    }

    #[test]
    fn bad_mounts() {
        let cases = [
            bind("", "/h"),
            bind("/a", ""),
            CriMount {
                recursive_readonly: true,
                ..bind("/a", "/h")
            },
            CriMount {
                readonly: true,
                recursive_readonly: true,
                propagation: Propagation::Bidirectional,
                ..bind("/a", "/h")
            },
        ];
        for m in cases {
            assert!(
                matches!(
                    container(vec![], std::slice::from_ref(&m), vec![]),
                    Err(Error::InvalidArgument(_))
                ),
                "{m:?}"
            );
        }
        assert_eq!(clean("/a//b/../c/"), "/a/c");
    }
}

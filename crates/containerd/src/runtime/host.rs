//! What the backend's host offers (seccomp, AppArmor, cgroup version, the lowest
//! `oom_score_adj` we may set, hugepage sizes), probed once. For a remote backend (TCP) the
//! host is not ours to probe, and conservative defaults apply.

use std::path::Path;
use std::sync::OnceLock;

use crimux_core::container::{ProfileType, SecurityProfile};
use crimux_core::{Error, Result};
use crimux_spec::HostInfo;

use crate::backend::Inner;

/// The host facts specs are built against.
pub(crate) fn host_info(inner: &Inner) -> HostInfo {
    let mut info = if is_local(inner) {
        static PROBED: OnceLock<HostInfo> = OnceLock::new();
        PROBED.get_or_init(|| probe(Path::new("/"))).clone()
    } else {
        remote_defaults()
    };
    info.arch = inner.platform.architecture.clone();
    info
}

/// The contents of a `Localhost` seccomp profile, which the CRI names by its path on the
/// node; `None` for another kind of profile or none.
pub(crate) async fn localhost_seccomp(profile: Option<&SecurityProfile>) -> Result<Option<String>> {
    let Some(profile) = profile.filter(|p| p.profile_type == ProfileType::Localhost) else {
        return Ok(None);
    };
    tokio::fs::read_to_string(&profile.localhost_ref)
        .await
        .map(Some)
        .map_err(|e| {
            Error::InvalidArgument(format!("seccomp profile {:?}: {e}", profile.localhost_ref))
        })
}

/// Whether the backend's daemon runs on this very host, so its files are ours to read.
///
/// A daemon reached over a unix socket (or a named pipe) is on this host; one reached over
/// TCP (a WSL2 delegate) is not, and its host's files are not ours to read.
pub(crate) fn is_local(inner: &Inner) -> bool {
    inner.local && cfg!(target_os = "linux") && inner.platform.os == "linux"
}

/// A remote host: seccomp is assumed (every supported kernel has it), nothing else is.
fn remote_defaults() -> HostInfo {
    HostInfo {
        has_seccomp: true,
        ..HostInfo::default()
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).ok()
}

/// Probes the host whose root filesystem is `root` (`/` in production; a fake tree in
/// tests).
fn probe(root: &Path) -> HostInfo {
    let exists = |p: &str| root.join(p.trim_start_matches('/')).exists();
    let status = read(root, "/proc/self/status").unwrap_or_default();
    let hostname = read(root, "/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let cgroup_v2 = exists("/sys/fs/cgroup/cgroup.controllers");
    let has_swap_controller = if cgroup_v2 {
        // The root cgroup has no memory.swap.max; a child of it shows whether swap is on.
        exists("/sys/fs/cgroup/init.scope/memory.swap.max")
            || exists("/sys/fs/cgroup/system.slice/memory.swap.max")
    } else {
        exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    };
    let info = HostInfo {
        arch: String::new(),
        hostname,
        has_apparmor: read(root, "/sys/module/apparmor/parameters/enabled")
            .is_some_and(|v| v.trim().starts_with('Y')),
        has_seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
        cgroup_v2,
        has_swap_controller,
        min_oom_score_adj: read(root, "/proc/self/oom_score_adj")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        hugepage_sizes: hugepage_sizes(&root.join("sys/kernel/mm/hugepages")),
        capability_bounding: status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok()),
    };
    tracing::debug!(?info, "probed the host");
    info
}

/// `hugepages-2048kB` → `2MB`, `hugepages-1048576kB` → `1GB`, smallest first.
fn hugepage_sizes(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut kbs: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    kbs.sort_unstable();
    kbs.into_iter().map(size_name).collect()
}

fn size_name(kb: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    let (mut n, mut unit) = (kb, 0);
    while n >= 1024 && n % 1024 == 0 && unit + 1 < UNITS.len() {
        n /= 1024;
        unit += 1;
    }
    format!("{n}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hugepage_sizes_as_the_cri_does() {
        assert_eq!(size_name(2048), "2MB");
        assert_eq!(size_name(1_048_576), "1GB");
        assert_eq!(size_name(64), "64KB");
    }

    #[test]
    fn probes_a_fake_host() {
        let root = tempfile::tempdir().expect("tempdir");
        let put = |p: &str, text: &str| {
            let path = root.path().join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        put(
            "proc/self/status",
            "Name:\tx\nCapBnd:\t000001fffeffffff\nSeccomp:\t0\n",
        );
        put("proc/self/oom_score_adj", "-500\n");
        put("proc/sys/kernel/hostname", "node1\n");
        put("sys/module/apparmor/parameters/enabled", "Y\n");
        put("sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "0");
        std::fs::create_dir_all(
            root.path()
                .join("sys/kernel/mm/hugepages/hugepages-1048576kB"),
        )
        .expect("mkdir");
        std::fs::create_dir_all(root.path().join("sys/kernel/mm/hugepages/hugepages-2048kB"))
            .expect("mkdir");
        let info = probe(root.path());
        assert_eq!(info.hostname, "node1");
        assert!(info.has_apparmor && info.has_seccomp && info.has_swap_controller);
        assert!(!info.cgroup_v2);
        assert_eq!(info.min_oom_score_adj, -500);
        assert_eq!(info.hugepage_sizes, ["2MB", "1GB"]);
        assert_eq!(info.capability_bounding, Some(0x1fffeffffff));

        let empty = tempfile::tempdir().expect("tempdir");
        let info = probe(empty.path());
        assert!(!info.has_seccomp && !info.has_apparmor && !info.cgroup_v2);
        assert!(info.hugepage_sizes.is_empty());
        assert_eq!(info.capability_bounding, None);
    }
}

//! PodSandboxStats: the pod's CPU and memory from its cgroup, and each container's stats.
//!
//! containerd 1.6 reports task metrics as cgroup protobufs this crate has no types for, so
//! the cgroup files are read directly (the backend's host is this host, see
//! `runtime::host::is_local`). With a `cgroup_parent` the pod cgroup (the pause's parent,
//! holding every container of the pod) is read; without one only the pause's own cgroup
//! exists and the containers' usage is added to it.

use std::path::{Path, PathBuf};

use crimux_core::status::{ContainerStats, SandboxStats};
use crimux_core::{ContainerId, PodSandboxId, Result};

use super::record::{load_sandbox, pod_containers, sandbox_pid};
use crate::backend::Inner;
use crate::container::stats::container_stats;
use crate::runtime::host;
use crate::runtime::now_nanos;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// CPU and memory of one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub cpu_nanos: u64,
    pub memory_usage: u64,
    pub working_set: u64,
}

pub(crate) async fn stats(inner: &Inner, id: &PodSandboxId) -> Result<SandboxStats> {
    let record = load_sandbox(inner, id).await?;
    let mut containers: Vec<ContainerStats> = Vec::new();
    for cid in pod_containers(inner, id).await? {
        match container_stats(inner, &ContainerId(cid)).await {
            Ok(s) => containers.push(s),
            // Removed meanwhile.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    let pid = sandbox_pid(inner, id).await?;
    let pod_level = record
        .config
        .linux
        .as_ref()
        .is_some_and(|l| !l.cgroup_parent.is_empty());
    let mut usage = match pid.filter(|_| host::is_local(inner)) {
        Some(pid) => read_usage(pid, pod_level).await.unwrap_or_else(|e| {
            tracing::debug!(sandbox = %id, %e, "pod cgroup not readable");
            Usage::default()
        }),
        None => Usage::default(),
    };
    if !pod_level {
        for c in &containers {
            usage.cpu_nanos += c.cpu_usage_core_nanos;
            usage.working_set += c.memory_working_set_bytes;
        }
    }
    Ok(SandboxStats {
        id: id.clone(),
        metadata: record.config.metadata.clone(),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        timestamp: now_nanos(),
        cpu_usage_core_nanos: usage.cpu_nanos,
        memory_working_set_bytes: usage.working_set,
        containers,
    })
}

/// Usage of the pause's cgroup, or of its parent (the pod cgroup) when `pod_level`.
async fn read_usage(pid: u32, pod_level: bool) -> std::io::Result<Usage> {
    let cgroups = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await?;
    let dirs = CgroupDirs::parse(&cgroups);
    let pick = |p: Option<PathBuf>| {
        p.map(|p| {
            if pod_level {
                p.parent().map(Path::to_path_buf).unwrap_or(p)
            } else {
                p
            }
        })
    };
    if let Some(unified) = pick(dirs.unified.clone()).filter(|_| dirs.cpuacct.is_none()) {
        let dir = Path::new(CGROUP_ROOT).join(unified.strip_prefix("/").unwrap_or(&unified));
        let cpu = read(&dir.join("cpu.stat")).await?;
        let memory = read(&dir.join("memory.current")).await?;
        let stat = read(&dir.join("memory.stat")).await?;
        let usage = memory.trim().parse().unwrap_or(0);
        return Ok(Usage {
            cpu_nanos: stat_value(&cpu, "usage_usec").saturating_mul(1000),
            memory_usage: usage,
            working_set: usage.saturating_sub(stat_value(&stat, "inactive_file")),
        });
    }
    let under = |controller: &str, p: Option<PathBuf>| {
        p.map(|p| {
            Path::new(CGROUP_ROOT)
                .join(controller)
                .join(p.strip_prefix("/").unwrap_or(&p))
        })
    };
    let mut usage = Usage::default();
    if let Some(dir) = under("cpuacct", pick(dirs.cpuacct)) {
        usage.cpu_nanos = read(&dir.join("cpuacct.usage"))
            .await?
            .trim()
            .parse()
            .unwrap_or(0);
    }
    if let Some(dir) = under("memory", pick(dirs.memory)) {
        let used: u64 = read(&dir.join("memory.usage_in_bytes"))
            .await?
            .trim()
            .parse()
            .unwrap_or(0);
        let stat = read(&dir.join("memory.stat")).await?;
        usage.memory_usage = used;
        usage.working_set = used.saturating_sub(stat_value(&stat, "total_inactive_file"));
    }
    Ok(usage)
}

async fn read(path: &Path) -> std::io::Result<String> {
    tokio::fs::read_to_string(path).await
}

/// A `key value` line's value in a cgroup stat file.
fn stat_value(stat: &str, key: &str) -> u64 {
    stat.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A process's cgroup paths from `/proc/<pid>/cgroup` (v1 controllers and the v2 path).
#[derive(Debug, Default, PartialEq)]
struct CgroupDirs {
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    unified: Option<PathBuf>,
}

impl CgroupDirs {
    fn parse(text: &str) -> CgroupDirs {
        let mut dirs = CgroupDirs::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = PathBuf::from(path);
            if controllers.is_empty() {
                dirs.unified = Some(path);
                continue;
            }
            for c in controllers.split(',') {
                match c {
                    "cpuacct" => dirs.cpuacct = Some(path.clone()),
                    "memory" => dirs.memory = Some(path.clone()),
                    _ => {}
                }
            }
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_cgroup_lines() {
        let v1 =
            "12:memory:/kubepods/pod1/abc\n4:cpu,cpuacct:/kubepods/pod1/abc\n0::/system.slice\n";
        let d = CgroupDirs::parse(v1);
        assert_eq!(d.memory.as_deref(), Some(Path::new("/kubepods/pod1/abc")));
        assert_eq!(d.cpuacct.as_deref(), Some(Path::new("/kubepods/pod1/abc")));
        assert_eq!(d.unified.as_deref(), Some(Path::new("/system.slice")));
        let v2 = CgroupDirs::parse("0::/kubepods.slice/x.scope\n");
        assert_eq!(v2.cpuacct, None);
        assert_eq!(
            v2.unified.as_deref(),
            Some(Path::new("/kubepods.slice/x.scope"))
        );
    }

    #[test]
    fn stat_values() {
        let stat = "cache 10\ntotal_inactive_file 4096\nusage_usec 77\n";
        assert_eq!(stat_value(stat, "total_inactive_file"), 4096);
        assert_eq!(stat_value(stat, "usage_usec"), 77);
        assert_eq!(stat_value(stat, "missing"), 0);
    }
}

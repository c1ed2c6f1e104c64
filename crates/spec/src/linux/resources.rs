//! cgroup resources, device access and the OOM score of a process.

use crimux_core::container::Resources;
use crimux_core::{Error, Result};
use oci_spec::runtime::{
    LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxResources,
};

use super::{DeviceKind, HostDevice};
use crate::HostInfo;

/// `oom_score_adj` raised to the host's floor (see [`HostInfo::min_oom_score_adj`]); never
/// an error, since the kernel would refuse a lower value anyway.
pub(crate) fn oom_score_adj(requested: i64, host: &HostInfo) -> Result<i32> {
    if !(-1000..=1000).contains(&requested) {
        return Err(Error::InvalidArgument(format!(
            "oom_score_adj {requested} is outside -1000..=1000"
        )));
    }
    let adj = requested.max(host.min_oom_score_adj).min(1000);
    if adj != requested {
        tracing::debug!(requested, adj, "oom_score_adj raised to this process's own");
    }
    Ok(adj as i32)
}

/// cgroup access rules: everything denied, then each device allowed as asked; a
/// privileged container may use every device.
pub(crate) fn device_rules(
    devices: &[HostDevice],
    privileged: bool,
) -> Result<Vec<LinuxDeviceCgroup>> {
    let rule = |allow: bool, d: Option<&HostDevice>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_access(Some(access.to_string()));
        if let Some(d) = d {
            r.set_typ(Some(kind(d.kind)));
            r.set_major(Some(d.major));
            r.set_minor(Some(d.minor));
        }
        r
    };
    if privileged {
        return Ok(vec![rule(true, None, "rwm")]);
    }
    let mut rules = vec![rule(false, None, "rwm")];
    for d in devices {
        rules.push(rule(true, Some(d), &permissions(d)?));
    }
    Ok(rules)
}

fn kind(k: DeviceKind) -> LinuxDeviceType {
    match k {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

fn permissions(d: &HostDevice) -> Result<String> {
    if d.permissions.is_empty() {
        return Ok("rwm".into());
    }
    if d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(d.permissions.clone())
    } else {
        Err(Error::InvalidArgument(format!(
            "device {:?}: permissions {:?} are not a combination of r, w and m",
            d.container_path, d.permissions
        )))
    }
}

/// The device nodes to create: the CRI's, then (privileged) the host's not already there.
pub(crate) fn device_nodes(
    devices: &[HostDevice],
    host_devices: &[HostDevice],
    privileged: bool,
) -> Vec<LinuxDevice> {
    let mut out: Vec<LinuxDevice> = Vec::new();
    let extra: &[HostDevice] = if privileged { host_devices } else { &[] };
    for d in devices.iter().chain(extra) {
        if out
            .iter()
            .any(|o| o.path().to_string_lossy() == d.container_path)
        {
            continue;
        }
        let mut n = LinuxDevice::default();
        n.set_path(d.container_path.clone().into());
        n.set_typ(kind(d.kind));
        n.set_major(d.major);
        n.set_minor(d.minor);
        n.set_file_mode(d.file_mode);
        n.set_uid(d.uid);
        n.set_gid(d.gid);
        out.push(n);
    }
    out
}

/// A container's cgroup limits, zero meaning unset as in the CRI. The memory limit also
/// caps swap (no swapping by default) where the host can limit swap; hugepage limits for
/// sizes the host lacks and `unified` on cgroup v1 are dropped with a warning.
pub(crate) fn container(
    r: &Resources,
    host: &HostInfo,
    devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources> {
    let mut cpu = LinuxCpu::default();
    if r.cpu_period != 0 {
        cpu.set_period(Some(non_negative(r.cpu_period, "cpu_period")?));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(non_negative(r.cpu_shares, "cpu_shares")?));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    let mut mem = LinuxMemory::default();
    if r.memory_limit_in_bytes != 0 {
        mem.set_limit(Some(r.memory_limit_in_bytes));
        if r.memory_swap_limit_in_bytes == 0 && host.has_swap_controller {
            mem.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 && host.has_swap_controller {
        mem.set_swap(Some(r.memory_swap_limit_in_bytes));
    }
    let mut hugepages = Vec::new();
    for h in &r.hugepage_limits {
        if !host.hugepage_sizes.iter().any(|s| s == &h.page_size) {
            tracing::warn!(page_size = %h.page_size, "host has no hugepages of this size; limit dropped");
            continue;
        }
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(h.page_size.clone());
        l.set_limit(i64::try_from(h.limit).unwrap_or(i64::MAX));
        hugepages.push(l);
    }
    let mut res = LinuxResources::default();
    res.set_devices(Some(devices));
    res.set_cpu((cpu != LinuxCpu::default()).then_some(cpu));
    res.set_memory((mem != LinuxMemory::default()).then_some(mem));
    res.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));
    if !r.unified.is_empty() {
        if host.cgroup_v2 {
            res.set_unified(Some(r.unified.clone().into_iter().collect()));
        } else {
            tracing::warn!(keys = ?r.unified.keys().collect::<Vec<_>>(), "unified cgroup settings need cgroup v2; dropped");
        }
    }
    Ok(res)
}

fn non_negative(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crimux_core::container::HugepageLimit;
    use std::collections::BTreeMap;

    #[test]
    fn oom_clamp() {
        let host = HostInfo {
            min_oom_score_adj: -500,
            ..Default::default()
        };
        assert_eq!(oom_score_adj(-998, &host).unwrap(), -500);
        assert_eq!(oom_score_adj(-100, &host).unwrap(), -100);
        assert_eq!(oom_score_adj(1000, &host).unwrap(), 1000);
        assert!(oom_score_adj(1001, &host).is_err());
    }

    #[test]
    fn resources_table() {
        let v1 = HostInfo {
            hugepage_sizes: vec!["2MB".into()],
            ..Default::default()
        };
        let v2 = HostInfo {
            cgroup_v2: true,
            has_swap_controller: true,
            ..v1.clone()
        };
        let r = Resources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 1 << 30,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![
                HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4 << 20,
                },
                HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 1 << 30,
                },
            ],
            unified: BTreeMap::from([("memory.high".to_string(), "1000".to_string())]),
            ..Default::default()
        };
        let got = serde_json::to_value(container(&r, &v1, vec![]).unwrap()).unwrap();
        assert_eq!(
            got["cpu"],
            serde_json::json!({"period": 100000, "quota": 50000, "shares": 512, "cpus": "0-1", "mems": "0"})
        );
        assert_eq!(got["memory"], serde_json::json!({"limit": 1073741824}));
        assert_eq!(
            got["hugepageLimits"],
            serde_json::json!([{"pageSize": "2MB", "limit": 4194304}])
        );
        assert!(got.get("unified").is_none());
        let got = serde_json::to_value(container(&r, &v2, vec![]).unwrap()).unwrap();
        assert_eq!(
            got["memory"],
            serde_json::json!({"limit": 1073741824, "swap": 1073741824})
        );
        assert_eq!(got["unified"]["memory.high"], "1000");
        let swap = Resources {
            memory_limit_in_bytes: 100,
            memory_swap_limit_in_bytes: 300,
            ..Default::default()
        };
        let got = serde_json::to_value(container(&swap, &v2, vec![]).unwrap()).unwrap();
        assert_eq!(
            got["memory"],
            serde_json::json!({"limit": 100, "swap": 300})
        );
        let empty =
            serde_json::to_value(container(&Resources::default(), &v2, vec![]).unwrap()).unwrap();
        assert_eq!(empty, serde_json::json!({"devices": []}));
        assert!(container(
            &Resources {
                cpu_shares: -1,
                ..Default::default()
            },
            &v1,
            vec![]
        )
        .is_err());
    }

    #[test]
    fn devices_table() {
        let fuse = HostDevice {
            container_path: "/dev/fuse".into(),
            major: 10,
            minor: 229,
            permissions: "rw".into(),
            ..Default::default()
        };
        let sda = HostDevice {
            container_path: "/dev/sda".into(),
            kind: DeviceKind::Block,
            major: 8,
            ..Default::default()
        };
        let rules =
            serde_json::to_value(device_rules(&[fuse.clone(), sda.clone()], false).unwrap())
                .unwrap();
        assert_eq!(
            rules,
            serde_json::json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"}
            ])
        );
        let all =
            serde_json::to_value(device_rules(std::slice::from_ref(&fuse), true).unwrap()).unwrap();
        assert_eq!(all, serde_json::json!([{"allow": true, "access": "rwm"}]));
        let bad = HostDevice {
            permissions: "rwx".into(),
            ..fuse.clone()
        };
        assert!(matches!(
            device_rules(&[bad], false),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(
            device_nodes(
                std::slice::from_ref(&fuse),
                &[sda.clone(), fuse.clone()],
                true
            )
            .len(),
            2
        );
        assert_eq!(device_nodes(&[fuse], &[sda], false).len(), 1);
    }
}

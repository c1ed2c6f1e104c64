//! Container and pod stats out. The domain measures cumulative CPU time, memory and the
//! writable layer; kubelet derives CPU rates itself when `usage_nano_cores` is absent.
//! Pod stats are reported as Linux stats (the Windows shape is not built yet).

use k8s_cri::v1;

use crimux_core::status::{ContainerStats, SandboxStats};

use super::hash;
use super::sandbox::sandbox_metadata_to_proto;

fn u64v(value: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value })
}

pub fn container_stats_to_proto(s: &ContainerStats) -> v1::ContainerStats {
    v1::ContainerStats {
        attributes: Some(v1::ContainerAttributes {
            id: s.id.0.clone(),
            metadata: Some(v1::ContainerMetadata {
                name: s.metadata.name.clone(),
                attempt: s.metadata.attempt,
            }),
            labels: hash(&s.labels),
            annotations: hash(&s.annotations),
        }),
        cpu: Some(v1::CpuUsage {
            timestamp: s.timestamp,
            usage_core_nano_seconds: u64v(s.cpu_usage_core_nanos),
            usage_nano_cores: None,
        }),
        memory: Some(v1::MemoryUsage {
            timestamp: s.timestamp,
            working_set_bytes: u64v(s.memory_working_set_bytes),
            usage_bytes: u64v(s.memory_usage_bytes),
            ..Default::default()
        }),
        writable_layer: Some(v1::FilesystemUsage {
            timestamp: s.timestamp,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: s.writable_layer_mountpoint.clone(),
            }),
            used_bytes: u64v(s.writable_layer_bytes),
            inodes_used: u64v(s.writable_layer_inodes),
        }),
        swap: None,
    }
}

pub fn sandbox_stats_to_proto(s: &SandboxStats) -> v1::PodSandboxStats {
    v1::PodSandboxStats {
        attributes: Some(v1::PodSandboxAttributes {
            id: s.id.0.clone(),
            metadata: Some(sandbox_metadata_to_proto(&s.metadata)),
            labels: hash(&s.labels),
            annotations: hash(&s.annotations),
        }),
        linux: Some(v1::LinuxPodSandboxStats {
            cpu: Some(v1::CpuUsage {
                timestamp: s.timestamp,
                usage_core_nano_seconds: u64v(s.cpu_usage_core_nanos),
                usage_nano_cores: None,
            }),
            memory: Some(v1::MemoryUsage {
                timestamp: s.timestamp,
                working_set_bytes: u64v(s.memory_working_set_bytes),
                ..Default::default()
            }),
            network: None,
            process: None,
            containers: s.containers.iter().map(container_stats_to_proto).collect(),
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crimux_core::container::ContainerMetadata;
    use crimux_core::sandbox::SandboxMetadata;
    use crimux_core::{ContainerId, PodSandboxId};

    use super::*;

    #[test]
    fn stats_to_proto() {
        let c = ContainerStats {
            id: ContainerId::from("c"),
            sandbox_id: PodSandboxId::from("s"),
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            },
            labels: BTreeMap::from([("l".into(), "v".into())]),
            annotations: BTreeMap::new(),
            timestamp: 99,
            cpu_usage_core_nanos: 1,
            memory_working_set_bytes: 2,
            memory_usage_bytes: 3,
            writable_layer_bytes: 4,
            writable_layer_inodes: 5,
            writable_layer_mountpoint: "/snap".into(),
        };
        let p = container_stats_to_proto(&c);
        let a = p.attributes.expect("attributes");
        assert_eq!((a.id.as_str(), a.labels["l"].as_str()), ("c", "v"));
        let cpu = p.cpu.expect("cpu");
        assert_eq!(
            (cpu.timestamp, cpu.usage_core_nano_seconds.map(|v| v.value)),
            (99, Some(1))
        );
        let mem = p.memory.expect("memory");
        assert_eq!(mem.working_set_bytes.map(|v| v.value), Some(2));
        assert_eq!(mem.usage_bytes.map(|v| v.value), Some(3));
        let fs = p.writable_layer.expect("fs");
        assert_eq!(fs.used_bytes.map(|v| v.value), Some(4));
        assert_eq!(fs.inodes_used.map(|v| v.value), Some(5));
        assert_eq!(fs.fs_id.map(|f| f.mountpoint).as_deref(), Some("/snap"));

        let s = SandboxStats {
            id: PodSandboxId::from("s"),
            metadata: SandboxMetadata {
                name: "web".into(),
                uid: "u".into(),
                namespace: "ns".into(),
                attempt: 0,
            },
            timestamp: 7,
            cpu_usage_core_nanos: 10,
            memory_working_set_bytes: 20,
            containers: vec![c],
            ..Default::default()
        };
        let p = sandbox_stats_to_proto(&s);
        assert_eq!(
            p.attributes
                .and_then(|a| a.metadata)
                .map(|m| m.uid)
                .as_deref(),
            Some("u")
        );
        let linux = p.linux.expect("linux");
        assert_eq!(
            linux
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value),
            Some(10)
        );
        assert_eq!(
            linux
                .memory
                .and_then(|m| m.working_set_bytes)
                .map(|v| v.value),
            Some(20)
        );
        assert_eq!(linux.containers.len(), 1);
    }
}

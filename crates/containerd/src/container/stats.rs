//! Container stats: CPU, memory working set and writable-layer usage.
//!
//! CPU and memory come from containerd's task metrics, an `Any` holding the cgroups
//! library's `Metrics` message (v1 or v2 depending on the host). containerd-client does not
//! ship those protos, so the few fields we read are declared here, with the tags of
//! containerd/cgroups' `metrics.proto`. The writable layer is the snapshot's usage.

use containerd_client::services::v1::snapshots::UsageRequest;
use containerd_client::services::v1::MetricsRequest;
use crimux_core::status::ContainerStats;
use crimux_core::{ContainerId, Error, Result};
use prost::Message;

use crate::backend::Inner;
use crate::client::is_not_found;
use crate::runtime::now_nanos;
use crate::runtime::task::{self, nanos, TaskStatus};

/// `type_url` suffixes of the metrics containerd's runc shim reports.
const CGROUPS_V1: &str = "io.containerd.cgroups.v1.Metrics";
const CGROUPS_V2: &str = "io.containerd.cgroups.v2.Metrics";

pub(crate) async fn container_stats(inner: &Inner, id: &ContainerId) -> Result<ContainerStats> {
    let record = super::record::record(inner, id).await?;
    let mut stats = ContainerStats {
        id: id.clone(),
        sandbox_id: record.sandbox_id,
        metadata: record.config.metadata,
        labels: record.config.labels,
        annotations: record.config.annotations,
        timestamp: now_nanos(),
        writable_layer_mountpoint: inner.snapshotter_root.clone(),
        ..Default::default()
    };
    let running = matches!(
        task::state(inner, id.as_str()).await?,
        Some(s) if matches!(s.status, TaskStatus::Running | TaskStatus::Paused)
    );
    if running {
        if let Some((at, usage)) = task_usage(inner, id.as_str()).await? {
            stats.timestamp = at.unwrap_or(stats.timestamp);
            stats.cpu_usage_core_nanos = usage.cpu_nanos;
            stats.memory_usage_bytes = usage.memory_usage;
            stats.memory_working_set_bytes = usage.working_set;
        }
    }
    let (bytes, inodes) = snapshot_usage(inner, id.as_str()).await?;
    stats.writable_layer_bytes = bytes;
    stats.writable_layer_inodes = inodes;
    Ok(stats)
}

/// What one metrics sample says, in the units CRI wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_nanos: u64,
    pub memory_usage: u64,
    /// Usage minus inactive file pages, as kubelet and cAdvisor count it.
    pub working_set: u64,
}

/// The task's CPU and memory use, with the sample's time. `Ok(None)` when containerd has
/// no metrics for it (the task just went away) or reports a kind we do not know.
pub(crate) async fn task_usage(inner: &Inner, id: &str) -> Result<Option<(Option<i64>, Usage)>> {
    let request = MetricsRequest {
        filters: vec![format!("id==\"{id}\"")],
    };
    let metrics = match inner
        .daemon
        .tasks()
        .metrics(inner.daemon.request(request, None))
        .await
    {
        Ok(r) => r.into_inner().metrics,
        Err(s) if is_not_found(&s) => return Ok(None),
        Err(s) => return Err(Error::backend(format!("metrics of task {id}"), s)),
    };
    let Some(metric) = metrics.into_iter().find(|m| m.id == id) else {
        return Ok(None);
    };
    let at = metric.timestamp.as_ref().map(|t| nanos(Some(t)));
    let Some(data) = metric.data else {
        return Ok(None);
    };
    Ok(decode(&data)?.map(|u| (at, u)))
}

/// Decodes a metrics `Any` (cgroups v1 or v2). Unknown kinds: `Ok(None)`.
pub(crate) fn decode(data: &prost_types::Any) -> Result<Option<Usage>> {
    let bad = |e: prost::DecodeError| {
        Error::Internal(format!("decoding task metrics {}: {e}", data.type_url))
    };
    if data.type_url.ends_with(CGROUPS_V1) {
        let m = v1::Metrics::decode(data.value.as_slice()).map_err(bad)?;
        let memory = m.memory.unwrap_or_default();
        let usage = memory.usage.map(|u| u.usage).unwrap_or_default();
        Ok(Some(Usage {
            cpu_nanos: m
                .cpu
                .and_then(|c| c.usage)
                .map(|u| u.total)
                .unwrap_or_default(),
            memory_usage: usage,
            working_set: usage.saturating_sub(memory.total_inactive_file),
        }))
    } else if data.type_url.ends_with(CGROUPS_V2) {
        let m = v2::Metrics::decode(data.value.as_slice()).map_err(bad)?;
        let memory = m.memory.unwrap_or_default();
        Ok(Some(Usage {
            cpu_nanos: m
                .cpu
                .map(|c| c.usage_usec.saturating_mul(1000))
                .unwrap_or_default(),
            memory_usage: memory.usage,
            working_set: memory.usage.saturating_sub(memory.inactive_file),
        }))
    } else {
        tracing::debug!(type_url = %data.type_url, "unknown task metrics kind");
        Ok(None)
    }
}

/// Bytes and inodes of the container's writable snapshot; zeros when it has none.
async fn snapshot_usage(inner: &Inner, id: &str) -> Result<(u64, u64)> {
    let request = UsageRequest {
        snapshotter: inner.snapshotter.clone(),
        key: id.to_string(),
    };
    match inner
        .daemon
        .snapshots()
        .usage(inner.daemon.request(request, None))
        .await
    {
        Ok(r) => {
            let u = r.into_inner();
            Ok((
                u64::try_from(u.size).unwrap_or(0),
                u64::try_from(u.inodes).unwrap_or(0),
            ))
        }
        Err(s) if is_not_found(&s) => Ok((0, 0)),
        Err(s) => Err(Error::backend(format!("usage of snapshot {id}"), s)),
    }
}

/// The fields we read of `io.containerd.cgroups.v1.Metrics` (containerd/cgroups
/// `stats/v1/metrics.proto`).
pub(crate) mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        /// Nanoseconds.
        #[prost(uint64, tag = "1")]
        pub total: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "30")]
        pub total_inactive_file: u64,
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "1")]
        pub limit: u64,
        #[prost(uint64, tag = "2")]
        pub usage: u64,
    }
}

/// The fields we read of `io.containerd.cgroups.v2.Metrics` (containerd/cgroups
/// `cgroup2/stats/metrics.proto`).
pub(crate) mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "32")]
        pub usage: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-encodes protobuf: (tag, wire type 0 varint) and (tag, wire type 2 bytes).
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field_u64(tag: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(tag) << 3, &mut out);
        varint(v, &mut out);
        out
    }
    fn field_msg(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint((u64::from(tag) << 3) | 2, &mut out);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn decodes_cgroups_v1_metrics_with_fields_we_skip() {
        // cpu { usage { total: 1500, kernel: 7, per_cpu: [1,2] } throttling {...} }
        let usage = [field_u64(1, 1500), field_u64(2, 7), field_msg(4, &[1, 2])].concat();
        let cpu = [field_msg(1, &usage), field_msg(2, &field_u64(1, 3))].concat();
        // memory { cache: 9, total_inactive_file: 300, usage { limit: 1<<30, usage: 1000 } }
        let entry = [
            field_u64(1, 1 << 30),
            field_u64(2, 1000),
            field_u64(3, 5000),
        ]
        .concat();
        let memory = [
            field_u64(1, 9),
            field_u64(30, 300),
            field_msg(33, &entry),
            field_msg(34, &field_u64(2, 1)),
        ]
        .concat();
        let pids = [field_u64(1, 4), field_u64(2, 100)].concat();
        let metrics = [
            field_msg(1, &field_u64(1, 77)),
            field_msg(2, &pids),
            field_msg(3, &cpu),
            field_msg(4, &memory),
        ]
        .concat();
        let any = prost_types::Any {
            type_url: CGROUPS_V1.into(),
            value: metrics,
        };
        let usage = decode(&any).expect("decode").expect("known kind");
        assert_eq!(
            usage,
            Usage {
                cpu_nanos: 1500,
                memory_usage: 1000,
                working_set: 700,
            }
        );
    }

    #[test]
    fn decodes_cgroups_v2_metrics_in_nanoseconds() {
        let cpu = [field_u64(1, 25), field_u64(2, 20)].concat();
        let memory = [field_u64(1, 5), field_u64(13, 4096), field_u64(32, 10_000)].concat();
        let metrics = [
            field_msg(1, &field_u64(1, 3)),
            field_msg(2, &cpu),
            field_msg(4, &memory),
        ]
        .concat();
        let any = prost_types::Any {
            type_url: format!("types.googleapis.com/{CGROUPS_V2}"),
            value: metrics,
        };
        let usage = decode(&any).expect("decode").expect("known kind");
        assert_eq!(
            usage,
            Usage {
                cpu_nanos: 25_000,
                memory_usage: 10_000,
                working_set: 10_000 - 4096,
            }
        );
    }

    #[test]
    fn working_set_never_goes_below_zero_and_unknown_kinds_are_none() {
        let memory = [field_u64(13, 9000), field_u64(32, 100)].concat();
        let any = prost_types::Any {
            type_url: CGROUPS_V2.into(),
            value: field_msg(4, &memory),
        };
        let usage = decode(&any).expect("decode").expect("known kind");
        assert_eq!((usage.memory_usage, usage.working_set), (100, 0));

        let other = prost_types::Any {
            type_url: "io.containerd.windows.Stats".into(),
            value: vec![1, 2, 3],
        };
        assert_eq!(decode(&other).expect("decode"), None);
        let broken = prost_types::Any {
            type_url: CGROUPS_V1.into(),
            value: vec![0x1a, 0x05, 0x01],
        };
        assert!(decode(&broken).is_err());
    }
}

//! UpdateContainerResources and ReopenContainerLog.

use std::path::Path;
use std::time::Duration;

use crimux_core::container::{
    ContainerConfig, ContainerMetadata, LinuxContainerConfig, Resources, WindowsResources,
};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::{ContainerId, Error, Result};
use crimux_spec::linux::{container_spec, ContainerSpecInput};
use oci_spec::runtime::LinuxResources;

use super::record::{log_pidfile, record, ContainerRecord};
use crate::backend::Inner;
use crate::platform::process;
use crate::runtime::lock::lock_container;
use crate::runtime::{host, object, task};

/// The OCI resources `r` stands for on this host, built by the same spec builder as at
/// create time (so limits, swap and hugepage rules agree), with the device rules of
/// `current` kept.
fn oci_resources(
    r: &Resources,
    host_info: &crimux_spec::HostInfo,
    current: Option<&LinuxResources>,
) -> Result<LinuxResources> {
    let config = ContainerConfig {
        metadata: ContainerMetadata {
            name: "update".into(),
            attempt: 0,
        },
        command: vec!["/update".into()],
        linux: Some(LinuxContainerConfig {
            resources: Some(r.clone()),
            security: None,
        }),
        ..ContainerConfig::default()
    };
    let sandbox = SandboxConfig::default();
    let image = crimux_spec::ImageConfig::default();
    let spec = container_spec(&ContainerSpecInput {
        id: "update",
        sandbox_id: "update",
        config: &config,
        sandbox: &sandbox,
        sandbox_pid: 1,
        target_pid: None,
        image: &image,
        image_name: "",
        netns_path: None,
        files: Default::default(),
        devices: &[],
        host_devices: &[],
        host: host_info,
        passwd: None,
        group: None,
        seccomp_localhost: None,
    })?;
    let mut res = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    res.set_devices(current.and_then(|c| c.devices().clone()));
    Ok(res)
}

pub(crate) async fn update_resources(
    inner: &Inner,
    id: &ContainerId,
    linux: Option<&Resources>,
    windows: Option<&WindowsResources>,
) -> Result<()> {
    let _me = lock_container(&inner.runtime.state_dir, id.as_str()).await;
    let mut rec: ContainerRecord = record(inner, id).await?;
    let object = object::get(inner, id.as_str()).await?;
    let mut spec = object::spec_of(&object)?;
    let state = task::state(inner, id.as_str()).await?;
    if state.is_some_and(|t| t.status == task::TaskStatus::Stopped)
        || (state.is_none() && (rec.started_at != 0 || rec.start_failure.is_some()))
    {
        return Err(Error::FailedPrecondition(format!(
            "container {id} has exited; its resources cannot change"
        )));
    }
    if let Some(w) = windows {
        rec.windows_resources = Some(w.clone());
    }
    let mut new_oci = None;
    if let Some(r) = linux {
        let mut l = spec.linux().clone().unwrap_or_default();
        let res = oci_resources(r, &host::host_info(inner), l.resources().as_ref())?;
        l.set_resources(Some(res.clone()));
        spec.set_linux(Some(l));
        rec.resources = Some(r.clone());
        new_oci = Some(res);
    }
    let running = state.is_some_and(|t| t.status != task::TaskStatus::Stopped);
    if let (true, Some(res)) = (running, &new_oci) {
        task::update(inner, id.as_str(), res).await?;
    }
    object::update(inner, id.as_str(), rec.extension()?, Some(&spec)).await?;
    tracing::info!(backend = %inner.name, container = %id, running, "container resources updated");
    Ok(())
}

async fn wait_exists(path: &Path, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if tokio::fs::metadata(path).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks the log plugin to reopen the log file (kubelet rotated it away).
pub(crate) async fn reopen_log(inner: &Inner, id: &ContainerId) -> Result<()> {
    let rec = record(inner, id).await?;
    let running = task::state(inner, id.as_str())
        .await?
        .is_some_and(|t| t.status == task::TaskStatus::Running);
    if !running {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        )));
    }
    if rec.log_path.is_empty() {
        return Ok(());
    }
    let pidfile = log_pidfile(&inner.runtime.state_dir, id.as_str());
    let text = tokio::fs::read_to_string(&pidfile).await.map_err(|e| {
        Error::FailedPrecondition(format!("log plugin pidfile {}: {e}", pidfile.display()))
    })?;
    let pid: i32 = text.trim().parse().map_err(|_| {
        Error::Internal(format!(
            "log plugin pidfile {} holds {text:?}",
            pidfile.display()
        ))
    })?;
    if pid <= 1 {
        return Err(Error::Internal(format!(
            "log plugin pid {pid} is not valid"
        )));
    }
    if let Err(e) = process::ask_to_reopen(pid) {
        let message = format!("signalling log plugin {pid} of container {id}: {e}");
        return Err(if e.kind() == std::io::ErrorKind::Unsupported {
            Error::Unimplemented(message)
        } else {
            Error::FailedPrecondition(message)
        });
    }
    if !wait_exists(Path::new(&rec.log_path), Duration::from_secs(2)).await {
        return Err(Error::Internal(format!(
            "log file {} was not reopened",
            rec.log_path
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_follow_the_spec_builder_and_keep_devices() {
        let host_info = crimux_spec::HostInfo {
            has_swap_controller: true,
            ..Default::default()
        };
        let mut current = LinuxResources::default();
        let rule = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        current.set_devices(Some(vec![rule.clone()]));
        let r = Resources {
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        };
        let res = oci_resources(&r, &host_info, Some(&current)).expect("resources");
        assert_eq!(res.cpu().as_ref().and_then(|c| c.shares()), Some(512));
        assert_eq!(
            res.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
        assert_eq!(res.devices().as_deref(), Some(&[rule][..]));
    }
}

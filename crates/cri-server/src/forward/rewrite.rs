//! What changes between the outer crimux's view and the inner one's: host paths
//! ([`PathMap`]) and RuntimeClass handler names ([`ForwardedHandler`]). Requests are
//! rewritten on the way in, statuses and events back on the way out, so the dispatcher and
//! kubelet only ever see host paths and their own handler names.

use k8s_cri::v1;

use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{ContainerEvent, ContainerStatus, SandboxStatus, SandboxSummary};
use crimux_core::{OsKind, Platform};

use super::paths::PathMap;
use super::ForwardedHandler;
use crate::convert;

#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    paths: PathMap,
    handlers: Vec<ForwardedHandler>,
    /// The inner side's OS: a Linux crimux cannot use `\` in a relative log path.
    backend_os: Option<OsKind>,
}

impl Rewrite {
    pub(crate) fn new(
        paths: PathMap,
        handlers: Vec<ForwardedHandler>,
        platform: &Platform,
    ) -> Rewrite {
        Rewrite {
            paths,
            handlers,
            backend_os: platform.os_kind(),
        }
    }

    /// The inner crimux's name for the outer handler `name`; an unconfigured name
    /// (including the default `""`) passes unchanged.
    pub(crate) fn remote_handler(&self, name: &str) -> String {
        self.handlers
            .iter()
            .find(|h| h.name == name)
            .map_or_else(|| name.to_string(), |h| h.remote.clone())
    }

    /// The outer handler name for the inner crimux's `remote`.
    pub(crate) fn local_handler(&self, remote: &str) -> String {
        self.handlers
            .iter()
            .find(|h| h.remote == remote)
            .map_or_else(|| remote.to_string(), |h| h.name.clone())
    }

    /// A sandbox config as the inner crimux receives it, and whether its log directory
    /// was mapped.
    pub(crate) fn sandbox_config_in(&self, config: &SandboxConfig) -> (v1::PodSandboxConfig, bool) {
        let mut proto = convert::sandbox_config_to_proto(config);
        let mapped = self.paths.mapped_to_backend(&config.log_directory);
        let was_mapped = mapped.is_some();
        if let Some(dir) = mapped {
            proto.log_directory = dir;
        }
        (proto, was_mapped)
    }

    /// A container config as the inner crimux receives it. `log_path` is relative to the
    /// sandbox's log directory: only its separators change, when that directory was
    /// mapped or the inner side is Linux (an absolute host path is mapped like any other).
    pub(crate) fn container_config_in(
        &self,
        config: &ContainerConfig,
        log_dir_mapped: bool,
    ) -> v1::ContainerConfig {
        let mut proto = convert::container_config_to_proto(config);
        proto.log_path = match self.paths.mapped_to_backend(&config.log_path) {
            Some(path) => path,
            None if log_dir_mapped
                || (self.backend_os == Some(OsKind::Linux) && !is_unc(&config.log_path)) =>
            {
                config.log_path.replace('\\', "/")
            }
            None => config.log_path.clone(),
        };
        for mount in &mut proto.mounts {
            mount.host_path = self.paths.to_backend(&mount.host_path);
        }
        proto
    }

    pub(crate) fn container_status_out(&self, mut status: ContainerStatus) -> ContainerStatus {
        status.log_path = self.paths.to_host(&status.log_path);
        for mount in &mut status.mounts {
            mount.host_path = self.paths.to_host(&mount.host_path);
        }
        status
    }

    pub(crate) fn sandbox_summary_out(&self, mut summary: SandboxSummary) -> SandboxSummary {
        summary.runtime_handler = self.local_handler(&summary.runtime_handler);
        summary
    }

    pub(crate) fn sandbox_status_out(&self, mut status: SandboxStatus) -> SandboxStatus {
        status.summary = self.sandbox_summary_out(status.summary);
        status
    }

    pub(crate) fn event_out(&self, mut event: ContainerEvent) -> ContainerEvent {
        event.sandbox = event.sandbox.map(|s| self.sandbox_status_out(s));
        event.containers = event
            .containers
            .into_iter()
            .map(|c| self.container_status_out(c))
            .collect();
        event
    }
}

/// A UNC or device path keeps its backslashes: they are not separators to translate.
fn is_unc(path: &str) -> bool {
    path.starts_with("\\\\")
}

#[cfg(test)]
mod tests {
    use crimux_core::container::Mount;

    use super::super::PathMapping;
    use super::*;

    fn rewrite(os: &str) -> Rewrite {
        Rewrite::new(
            PathMap::new(&[PathMapping {
                host: "C:\\".into(),
                backend: "/mnt/c/".into(),
            }]),
            vec![
                ForwardedHandler {
                    name: "wsl".into(),
                    remote: "".into(),
                },
                ForwardedHandler {
                    name: "wsl-kata".into(),
                    remote: "kata".into(),
                },
            ],
            &Platform::new(os, "amd64"),
        )
    }

    #[test]
    fn handlers_map_both_ways() {
        let r = rewrite("linux");
        for (outer, inner) in [("wsl", ""), ("wsl-kata", "kata"), ("other", "other")] {
            assert_eq!(r.remote_handler(outer), inner);
            assert_eq!(r.local_handler(inner), outer);
        }
    }

    #[test]
    fn log_paths_and_mounts_are_rewritten() {
        let sandbox = SandboxConfig {
            log_directory: "C:\\var\\log\\pods\\ns_web_uid".into(),
            ..Default::default()
        };
        let container = ContainerConfig {
            log_path: "web\\0.log".into(),
            mounts: vec![
                Mount {
                    host_path: "c:\\data".into(),
                    container_path: "/data".into(),
                    ..Default::default()
                },
                Mount {
                    host_path: "/var/lib/x".into(),
                    container_path: "/x".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let r = rewrite("linux");
        let (proto, mapped) = r.sandbox_config_in(&sandbox);
        assert!(mapped);
        assert_eq!(proto.log_directory, "/mnt/c/var/log/pods/ns_web_uid");
        let proto = r.container_config_in(&container, mapped);
        assert_eq!(proto.log_path, "web/0.log");
        let hosts: Vec<&str> = proto.mounts.iter().map(|m| m.host_path.as_str()).collect();
        assert_eq!(hosts, ["/mnt/c/data", "/var/lib/x"]);

        // A Windows inner side with no mapped directory keeps the path as it is.
        let r = rewrite("windows");
        assert_eq!(
            r.container_config_in(&container, false).log_path,
            "web\\0.log"
        );
    }
}

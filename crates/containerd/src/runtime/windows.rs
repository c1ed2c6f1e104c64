//! What a backend whose OS is windows (containerd with hcsshim) does differently from a
//! Linux one, in platform-neutral code: the runtime type, the layer folders hcsshim wants,
//! and the pod's HCN namespace and Windows CNI attachment.
//!
//! The decision follows the backend's platform (`inner.platform.os`), not the OS crimux
//! was built for: a crimux on Linux talking to a backend that says it is windows builds
//! Windows specs, and fails cleanly at the first step only Windows can do (creating the
//! HCN namespace) rather than running a Linux pause with a Windows spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::types::Mount;
use crimux_cni::{AttachRequest, NetnsKind};
use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::SandboxConfig;
use crimux_core::{Error, PodSandboxId, Result};
use crimux_spec::windows::Isolation;

use crate::backend::Inner;
use crate::{RuntimeHandler, DEFAULT_RUNTIME_TYPE};

/// The mount type containerd's Windows snapshotter returns.
pub(crate) const WINDOWS_LAYER_MOUNT: &str = "windows-layer";
/// The option of a `windows-layer` mount listing the parent layers, as JSON.
const PARENT_LAYER_PATHS: &str = "parentLayerPaths=";
/// The label on a container's writable snapshot that sizes its scratch disk, in bytes
/// (containerd's Windows snapshotter reads it on Prepare; the CRI's
/// `rootfs_size_in_bytes`).
pub(crate) const ROOTFS_SIZE_LABEL: &str = "containerd.io/snapshot/windows/rootfs.sizebytes";

/// Whether this backend runs Windows containers.
pub(crate) fn is_windows(inner: &Inner) -> bool {
    inner.platform.os.eq_ignore_ascii_case("windows")
}

/// The containerd runtime type of a handler on a Windows backend: what the operator
/// configured, except that the Linux default (runc, which every handler gets unless told
/// otherwise) means hcsshim's `io.containerd.runhcs.v1` here.
pub(crate) fn runtime_type(handler: &RuntimeHandler) -> String {
    if handler.runtime_type.is_empty() || handler.runtime_type == DEFAULT_RUNTIME_TYPE {
        crimux_spec::windows::RUNTIME_TYPE.to_string()
    } else {
        handler.runtime_type.clone()
    }
}

/// The isolation of a Windows pod and its containers: Hyper-V when the RuntimeClass
/// handler's name says so (`runhcs-wcow-hypervisor`) or when the handler's runhcs options
/// say `SandboxIsolation = HYPERVISOR`, process isolation otherwise. hcsshim refuses a
/// Hyper-V spec when the options are set but say PROCESS, so that combination is refused
/// here with a clearer message (InvalidArgument naming the handler), as are bad options.
pub(crate) fn isolation(handler: &str, options_json: &str) -> Result<Isolation> {
    let by_name = Isolation::for_handler(handler);
    let Some(options) = super::runhcs::parse_optional(options_json)? else {
        return Ok(by_name);
    };
    if options.hypervisor() {
        return Ok(Isolation::HyperV);
    }
    if by_name == Isolation::HyperV && !options.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "runtime handler {handler:?} asks for Hyper-V isolation by its name, but its \
             options say SandboxIsolation = PROCESS, which hcsshim refuses; set \
             SandboxIsolation = \"HYPERVISOR\" in its options"
        )));
    }
    Ok(by_name)
}

/// The labels of a Windows container's writable snapshot: the scratch size when the CRI
/// asks for one (`rootfs_size_in_bytes`, as containerd's CRI does), none otherwise.
/// Negative sizes are InvalidArgument.
pub(crate) fn snapshot_labels(config: &ContainerConfig) -> Result<HashMap<String, String>> {
    let size = config
        .windows
        .as_ref()
        .and_then(|w| w.resources.as_ref())
        .map_or(0, |r| r.rootfs_size_in_bytes);
    match size {
        0 => Ok(HashMap::new()),
        n if n < 0 => Err(Error::InvalidArgument(format!(
            "windows resources: rootfs_size_in_bytes {n} must not be negative"
        ))),
        n => Ok(HashMap::from([(
            ROOTFS_SIZE_LABEL.to_string(),
            n.to_string(),
        )])),
    }
}

/// The spec's `windows.layerFolders` from a snapshot's mounts: the parent layers as the
/// snapshotter lists them (top-most first), then the snapshot's own scratch layer.
/// Anything but one `windows-layer` mount means the backend's snapshotter cannot run
/// Windows containers: FailedPrecondition.
pub(crate) fn layer_folders(mounts: &[Mount]) -> Result<Vec<String>> {
    let [m] = mounts else {
        return Err(Error::FailedPrecondition(format!(
            "a Windows container needs one {WINDOWS_LAYER_MOUNT} mount, the snapshotter gave {}",
            mounts.len()
        )));
    };
    if m.r#type != WINDOWS_LAYER_MOUNT {
        return Err(Error::FailedPrecondition(format!(
            "the snapshotter gave a {:?} mount; Windows containers need the windows \
             snapshotter ({WINDOWS_LAYER_MOUNT} mounts)",
            m.r#type
        )));
    }
    if m.source.is_empty() {
        return Err(Error::FailedPrecondition(
            "the windows-layer mount names no scratch layer".into(),
        ));
    }
    let mut folders = Vec::new();
    for o in &m.options {
        if let Some(json) = o.strip_prefix(PARENT_LAYER_PATHS) {
            let parents: Vec<String> = serde_json::from_str(json).map_err(|e| {
                Error::FailedPrecondition(format!("unreadable {PARENT_LAYER_PATHS} option: {e}"))
            })?;
            folders.extend(parents);
        }
    }
    folders.push(m.source.clone());
    Ok(folders)
}

/// Creates the pod's HCN namespace and returns its id (as the `NetNs` "path"). On a crimux
/// not built for Windows this is FailedPrecondition, before anything was created.
pub(crate) async fn create_namespace(inner: &Inner, id: &str) -> Result<PathBuf> {
    let dir = inner.runtime.state_dir.join("netns");
    let name = id.to_string();
    tokio::task::spawn_blocking(move || crimux_cni::create_pod_netns(NetnsKind::Hcn, &dir, &name))
        .await
        .map_err(|e| Error::Internal(format!("HCN namespace worker: {e}")))?
        .map(|ns| ns.path().to_path_buf())
}

/// CNI ADD through the Windows plugins, as containerd's CRI runs them: `CNI_NETNS` is the
/// namespace GUID, `CNI_CONTAINERID` the sandbox id, with the pod's port mappings and DNS
/// as capabilities. Returns the pod's IPs, primary first.
pub(crate) async fn attach(
    inner: &Inner,
    id: &PodSandboxId,
    namespace: &Path,
    config: &SandboxConfig,
) -> Result<Vec<String>> {
    let mut req = AttachRequest::new(id.clone(), namespace.to_path_buf(), config.metadata.clone());
    req.port_mappings = config.port_mappings.clone();
    req.dns = config.dns.clone();
    let result = inner
        .cni
        .setup(&req)
        .await
        .map_err(|e| e.context(format!("setting up the network of pod sandbox {id}")))?;
    Ok(result.pod_ips().iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(ty: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: ty.into(),
            source: source.into(),
            target: String::new(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn layer_folders_are_parents_then_scratch() {
        let m = mount(
            WINDOWS_LAYER_MOUNT,
            r"C:\ProgramData\containerd\snapshots\9",
            &[
                "rw",
                r#"parentLayerPaths=["C:\\ProgramData\\containerd\\snapshots\\8","C:\\ProgramData\\containerd\\snapshots\\3"]"#,
            ],
        );
        assert_eq!(
            layer_folders(&[m]).expect("folders"),
            [
                r"C:\ProgramData\containerd\snapshots\8",
                r"C:\ProgramData\containerd\snapshots\3",
                r"C:\ProgramData\containerd\snapshots\9",
            ]
        );
        let base = mount(WINDOWS_LAYER_MOUNT, r"C:\s\1", &["rw"]);
        assert_eq!(layer_folders(&[base]).expect("folders"), [r"C:\s\1"]);
    }

    #[test]
    fn other_snapshotters_are_refused() {
        let overlay = mount("overlay", "overlay", &["lowerdir=/a", "upperdir=/b"]);
        for mounts in [
            vec![],
            vec![overlay.clone()],
            vec![overlay.clone(), overlay],
            vec![mount(WINDOWS_LAYER_MOUNT, "", &[])],
            vec![mount(
                WINDOWS_LAYER_MOUNT,
                r"C:\s",
                &["parentLayerPaths=nope"],
            )],
        ] {
            let err = layer_folders(&mounts).expect_err("must fail");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        }
    }

    #[test]
    fn isolation_follows_the_name_or_the_options() {
        let hyperv = r#"{"SandboxIsolation":"HYPERVISOR"}"#;
        for (handler, options, want) in [
            ("runhcs-wcow-process", "", Isolation::Process),
            ("runhcs-wcow-hypervisor", "", Isolation::HyperV),
            ("runhcs-wcow-hypervisor", "{}", Isolation::HyperV),
            ("windows-vm", hyperv, Isolation::HyperV),
            (
                "windows-vm",
                r#"{"SandboxIsolation":1,"VmMemorySizeInMb":2048}"#,
                Isolation::HyperV,
            ),
            ("runhcs-wcow-hypervisor", hyperv, Isolation::HyperV),
            (
                "runhcs-wcow-process",
                r#"{"Debug":true}"#,
                Isolation::Process,
            ),
            // PROCESS alone encodes to empty options, which the shim ignores.
            (
                "runhcs-wcow-hypervisor",
                r#"{"SandboxIsolation":"PROCESS"}"#,
                Isolation::HyperV,
            ),
        ] {
            assert_eq!(
                isolation(handler, options).expect(options),
                want,
                "{handler} {options}"
            );
        }
        for (handler, options) in [
            ("runhcs-wcow-hypervisor", r#"{"Debug":true}"#),
            ("runhcs-wcow-process", r#"{"SandboxIsolation":"VM"}"#),
            ("runhcs-wcow-process", r#"{"Nope":true}"#),
        ] {
            let err = isolation(handler, options).expect_err(options);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{options}: {err}");
        }
    }

    #[test]
    fn the_rootfs_size_becomes_a_snapshot_label() {
        use crimux_core::container::{WindowsContainerConfig, WindowsResources};
        let with_size = |n: i64| ContainerConfig {
            windows: Some(WindowsContainerConfig {
                resources: Some(WindowsResources {
                    rootfs_size_in_bytes: n,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            snapshot_labels(&with_size(50 << 30)).expect("labels"),
            HashMap::from([(
                "containerd.io/snapshot/windows/rootfs.sizebytes".to_string(),
                "53687091200".to_string()
            )])
        );
        assert!(snapshot_labels(&with_size(0)).expect("labels").is_empty());
        assert!(snapshot_labels(&ContainerConfig::default())
            .expect("labels")
            .is_empty());
        let err = snapshot_labels(&with_size(-1)).expect_err("negative");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn runc_means_runhcs_on_windows() {
        let h = |t: &str| RuntimeHandler {
            name: "x".into(),
            runtime_type: t.into(),
            options_json: String::new(),
        };
        assert_eq!(
            runtime_type(&h(DEFAULT_RUNTIME_TYPE)),
            "io.containerd.runhcs.v1"
        );
        assert_eq!(runtime_type(&h("")), "io.containerd.runhcs.v1");
        assert_eq!(
            runtime_type(&h("io.containerd.runhcs.v2")),
            "io.containerd.runhcs.v2"
        );
    }
}

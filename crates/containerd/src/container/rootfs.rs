//! Files a container's spec needs from the host and from its image's root filesystem:
//! `/etc/passwd` and `/etc/group` (user names and group memberships) and the device nodes
//! the CRI asks for.
//!
//! The passwd files are read from the prepared snapshot's layer directories without
//! mounting anything: overlayfs mounts name them (`upperdir`, then `lowerdir` top to
//! bottom), a one-layer snapshot is a bind mount of one directory. The first layer that
//! has the file wins; a whiteout or an opaque `/etc` hides the layers below. Symlinks are
//! not followed (they would point into the host).

use std::path::{Path, PathBuf};

use containerd_client::types::Mount;
use crimux_core::container::Device;
use crimux_core::{Error, Result};
use crimux_spec::linux::HostDevice;

use crate::platform::fs as host_fs;

/// `/etc/passwd` and `/etc/group` of a prepared snapshot, when present.
pub(crate) struct UserFiles {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// Reads the user files of a snapshot from its mounts. Mount types other than overlay and
/// bind give none (numeric users still resolve).
pub(crate) async fn user_files_from(mounts: &[Mount]) -> Result<UserFiles> {
    let layers = layer_dirs(mounts);
    if layers.is_empty() {
        tracing::debug!(?mounts, "snapshot layers unknown; no /etc/passwd");
    }
    tokio::task::spawn_blocking(move || UserFiles {
        passwd: read_layered(&layers, "etc/passwd"),
        group: read_layered(&layers, "etc/group"),
    })
    .await
    .map_err(|e| Error::Internal(format!("reading user files: {e}")))
}

/// The directories of a snapshot's layers, top first.
fn layer_dirs(mounts: &[Mount]) -> Vec<PathBuf> {
    let [m] = mounts else {
        return Vec::new();
    };
    match m.r#type.as_str() {
        "bind" | "rbind" => vec![PathBuf::from(&m.source)],
        "overlay" => {
            let mut upper = None;
            let mut lower = Vec::new();
            for o in &m.options {
                if let Some(u) = o.strip_prefix("upperdir=") {
                    upper = Some(PathBuf::from(u));
                } else if let Some(l) = o.strip_prefix("lowerdir=") {
                    lower = l.split(':').map(PathBuf::from).collect();
                }
            }
            upper.into_iter().chain(lower).collect()
        }
        _ => Vec::new(),
    }
}

/// `rel` (like `etc/passwd`) as the stacked layers show it.
fn read_layered(layers: &[PathBuf], rel: &str) -> Option<String> {
    let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
    for layer in layers {
        let path = layer.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {
                return std::fs::read_to_string(&path).ok();
            }
            // A whiteout (0:0 char device), a symlink or anything else: not readable here.
            Ok(_) => return None,
            Err(_) => {}
        }
        let dir = layer.join(parent);
        if let Ok(meta) = std::fs::symlink_metadata(&dir) {
            if !meta.is_dir() || host_fs::is_opaque_dir(&dir) {
                return None;
            }
        }
    }
    None
}

fn host_device(path: &Path, container_path: &str, permissions: &str) -> Result<HostDevice> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::InvalidArgument(format!("device {}: {e}", path.display())))?;
    let node = host_fs::device_node(path, &meta)?;
    Ok(HostDevice {
        container_path: container_path.to_string(),
        kind: node.kind,
        major: node.major,
        minor: node.minor,
        file_mode: Some(node.file_mode),
        uid: Some(node.uid),
        gid: Some(node.gid),
        permissions: permissions.to_string(),
    })
}

/// Resolves the CRI's devices. A directory brings every device under it, at the same
/// place below `container_path` (as containerd does).
pub(crate) fn devices(requested: &[Device]) -> Result<Vec<HostDevice>> {
    let mut out = Vec::new();
    for d in requested {
        let host = Path::new(&d.host_path);
        let is_dir = std::fs::metadata(host).is_ok_and(|m| m.is_dir());
        if !is_dir {
            out.push(host_device(host, &d.container_path, &d.permissions)?);
            continue;
        }
        for found in walk_devices(host) {
            let rel = found.strip_prefix(host).unwrap_or(&found);
            let dest = Path::new(&d.container_path).join(rel);
            out.push(host_device(
                &found,
                &dest.to_string_lossy(),
                &d.permissions,
            )?);
        }
    }
    Ok(out)
}

/// Device nodes under `root`, recursively, skipping pseudo-terminals and shm/mqueue.
fn walk_devices(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let name = e.file_name();
                if !matches!(name.to_str(), Some("pts" | "shm" | "mqueue" | "fd")) {
                    dirs.push(path);
                }
            } else if host_fs::is_device(&ft) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every device of the host, for privileged containers.
pub(crate) fn all_host_devices() -> Vec<HostDevice> {
    walk_devices(Path::new("/dev"))
        .into_iter()
        .filter_map(|p| host_device(&p, &p.to_string_lossy(), "rwm").ok())
        // /dev/console belongs to the container's own terminal.
        .filter(|d| d.container_path != "/dev/console")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crimux_spec::linux::DeviceKind;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            target: String::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn layers_of_overlay_and_bind_mounts() {
        let m = mount(
            "overlay",
            "overlay",
            &["workdir=/w", "upperdir=/u", "lowerdir=/l2:/l1", "index=off"],
        );
        assert_eq!(layer_dirs(&[m]), ["/u", "/l2", "/l1"].map(PathBuf::from));
        let m = mount("bind", "/only", &["ro", "rbind"]);
        assert_eq!(layer_dirs(&[m]), [PathBuf::from("/only")]);
        assert!(layer_dirs(&[mount("tmpfs", "x", &[])]).is_empty());
    }

    #[test]
    fn upper_layers_win_and_symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (top, low) = (t.path().join("top"), t.path().join("low"));
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::write(low.join("etc/passwd"), "low").unwrap();
        std::fs::write(low.join("etc/group"), "lowgroup").unwrap();
        std::fs::write(top.join("etc/passwd"), "top").unwrap();
        host_fs::symlink_file(Path::new("/etc/shadow"), &top.join("etc/group")).unwrap();
        let layers = [top.clone(), low.clone()];
        assert_eq!(read_layered(&layers, "etc/passwd").as_deref(), Some("top"));
        assert_eq!(read_layered(&layers, "etc/group"), None);
        assert_eq!(
            read_layered(&[low], "etc/group").as_deref(),
            Some("lowgroup")
        );
        assert_eq!(read_layered(&layers, "etc/nothing"), None);
    }

    #[test]
    fn resolves_device_nodes_and_refuses_files() {
        let d = devices(&[Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }])
        .expect("/dev/null");
        assert_eq!(
            (d[0].kind, d[0].major, d[0].minor),
            (DeviceKind::Char, 1, 3)
        );
        assert_eq!(d[0].container_path, "/dev/mynull");
        let err = devices(&[Device {
            container_path: "/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: String::new(),
        }])
        .expect_err("not a device");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}

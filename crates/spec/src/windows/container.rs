//! A Windows container's spec, joining its pod's network namespace.

use crimux_core::container::{ContainerConfig, Device, Mount as CriMount};
use crimux_core::{Error, Result};
use oci_spec::runtime::{Mount, Spec, WindowsDevice};

use super::assemble::{self, ProcessParts, WindowsParts};
use super::credential;
use super::paths::{self, depth};
use super::{WindowsContainerSpecInput, DEFAULT_CWD, HOST_PROCESS_CWD};
use crate::annotations::cri_annotations;
use crate::linux::merge_env;
use crate::ImageConfig;

/// The argv as containerd computes it (Docker's rules): the CRI command replaces the
/// image's entrypoint, the CRI args replace the image's cmd.
fn args(config: &ContainerConfig, image: &ImageConfig) -> Result<Vec<String>> {
    let argv: Vec<String> = if config.command.is_empty() {
        let cmd = if config.args.is_empty() {
            &image.cmd
        } else {
            &config.args
        };
        image.entrypoint.iter().chain(cmd).cloned().collect()
    } else {
        config.command.iter().chain(&config.args).cloned().collect()
    };
    if argv.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    Ok(argv)
}

/// One CRI mount as a Windows bind: cleaned paths (named pipes untouched), `ro` or `rw`.
/// Read-only rootfs has no meaning on Windows, so mounts keep their own mode.
fn mount(m: &CriMount) -> Result<Mount> {
    let mut out = Mount::default();
    out.set_destination(paths::mount_destination(&m.container_path)?.into());
    out.set_typ(None);
    out.set_source(Some(paths::mount_source(&m.host_path)?.into()));
    let mode = if m.readonly { "ro" } else { "rw" };
    out.set_options(Some(vec![mode.to_string()]));
    Ok(out)
}

/// The CRI mounts, shortest destination first so that no mount hides a deeper one.
fn mounts(config: &ContainerConfig) -> Result<Vec<Mount>> {
    let mut ordered: Vec<&CriMount> = config.mounts.iter().collect();
    ordered.sort_by_key(|m| depth(&m.container_path));
    ordered.into_iter().map(mount).collect()
}

/// A CRI device on Windows names a device interface class or instance on the host:
/// `class/<GUID>` or `<IDType>://<ID>` in `host_path`, with no `container_path` and no
/// permissions (containerd's `WithWindowsDevices`).
fn device(d: &Device) -> Result<WindowsDevice> {
    if !d.container_path.is_empty() || !d.permissions.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "Windows device {:?}: container_path and permissions must be empty",
            d.host_path
        )));
    }
    let host = match d.host_path.strip_prefix("class/") {
        Some(rest) => format!("class://{rest}"),
        None => d.host_path.clone(),
    };
    let Some((id_type, id)) = host
        .split_once("://")
        .filter(|(t, i)| !t.is_empty() && !i.is_empty())
    else {
        return Err(Error::InvalidArgument(format!(
            "Windows device host_path {:?} must look like IDType://ID",
            d.host_path
        )));
    };
    let mut out = WindowsDevice::default();
    out.set_id_type(id_type.to_string());
    out.set_id(id.to_string());
    Ok(out)
}

/// Builds a container's spec as containerd's CRI plugin does on Windows. A HostProcess
/// pod must have only HostProcess containers and the reverse; HostProcess containers get
/// no network namespace (they use the host's) and start in `C:\hpc` by default.
pub fn container_spec(input: &WindowsContainerSpecInput) -> Result<Spec> {
    let cfg = input.config;
    let win = cfg.windows.clone().unwrap_or_default();
    let sandbox_hpc = super::host_process(input.sandbox);
    if win.host_process != sandbox_hpc {
        return Err(Error::InvalidArgument(
            "a HostProcess pod must have only HostProcess containers, and other pods none".into(),
        ));
    }
    let credential_spec = credential::parse(&win.credential_spec)?;

    let cwd = [cfg.working_dir.as_str(), input.image.working_dir.as_str()]
        .into_iter()
        .find(|w| !w.is_empty())
        .map(String::from)
        .unwrap_or_else(|| {
            if sandbox_hpc {
                HOST_PROCESS_CWD.to_string()
            } else {
                DEFAULT_CWD.to_string()
            }
        });
    let mut env = Vec::new();
    merge_env(&mut env, &input.image.env);
    let overrides: Vec<String> = cfg.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    merge_env(&mut env, &overrides);
    let username = if win.run_as_username.is_empty() {
        input.image.user.clone()
    } else {
        win.run_as_username.clone()
    };
    let process = assemble::process(ProcessParts {
        terminal: cfg.tty,
        args: args(cfg, input.image)?,
        env,
        cwd,
        username,
    });

    let resources = match &win.resources {
        Some(r) => assemble::resources(r)?,
        None => None,
    };
    let devices = cfg.devices.iter().map(device).collect::<Result<Vec<_>>>()?;
    let network_namespace = if super::host_network(input.sandbox) {
        None
    } else {
        input.network_namespace
    };
    let windows = assemble::windows(WindowsParts {
        layer_folders: input.layer_folders,
        resources,
        devices,
        network_namespace,
        isolation: input.isolation,
        credential_spec,
    });
    let mut ann = cri_annotations(
        input.sandbox_id,
        input.sandbox,
        Some(&cfg.metadata.name),
        input.image_name,
    );
    assemble::windows_annotations(&mut ann, input.sandbox, input.isolation);
    Ok(assemble::spec(
        process,
        windows,
        mounts(cfg)?,
        Some(input.sandbox.hostname.clone()),
        ann,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_name_a_class_or_an_instance() {
        let d = |host: &str, cp: &str| Device {
            container_path: cp.into(),
            host_path: host.into(),
            permissions: String::new(),
        };
        let got = device(&d("class/5B45201D-F2F2-4F3B-85BB-30FF1F953599", "")).unwrap();
        assert_eq!(got.id_type(), "class");
        assert_eq!(got.id(), "5B45201D-F2F2-4F3B-85BB-30FF1F953599");
        let got = device(&d("vpci-location-path://PCIROOT(0)#PCI(0100)", "")).unwrap();
        assert_eq!(got.id_type(), "vpci-location-path");
        for bad in [d("nothing", ""), d("class/x", r"C:\dev"), d("://x", "")] {
            assert!(device(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn args_follow_dockers_rules() {
        let image = ImageConfig {
            entrypoint: vec!["ep.exe".into()],
            cmd: vec!["/c".into()],
            ..Default::default()
        };
        let mut c = ContainerConfig::default();
        assert_eq!(args(&c, &image).unwrap(), ["ep.exe", "/c"]);
        c.args = vec!["x".into()];
        assert_eq!(args(&c, &image).unwrap(), ["ep.exe", "x"]);
        c.command = vec!["cmd.exe".into()];
        assert_eq!(args(&c, &image).unwrap(), ["cmd.exe", "x"]);
        assert!(args(&ContainerConfig::default(), &ImageConfig::default()).is_err());
    }
}

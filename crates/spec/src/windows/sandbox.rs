//! The Windows pod sandbox's spec: the pause process that holds the pod's network
//! namespace (and, with Hyper-V isolation, the pod's utility VM).

use crimux_core::{Error, Result};
use oci_spec::runtime::Spec;

use super::assemble::{self, ProcessParts, WindowsParts};
use super::credential;
use super::{WindowsSandboxSpecInput, DEFAULT_CWD};
use crate::annotations::cri_annotations;
use crate::linux::merge_env;

/// Builds the pause's spec as containerd's CRI plugin does on Windows: the image's argv,
/// env and working directory, the pod's hostname, `run_as_username` (or the image's
/// user), 2 CPU shares, the pod's HCN namespace, no root, and the HostProcess annotation.
/// A HostProcess pod gets no network namespace: it uses the host's.
pub fn sandbox_spec(input: &WindowsSandboxSpecInput) -> Result<Spec> {
    let cfg = input.config;
    let win = cfg.windows.clone().unwrap_or_default();
    let credential_spec = credential::parse(&win.credential_spec)?;

    let args: Vec<String> = input
        .image
        .entrypoint
        .iter()
        .chain(&input.image.cmd)
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "sandbox image {:?} has no entrypoint or cmd",
            input.image_name
        )));
    }
    let mut env = Vec::new();
    merge_env(&mut env, &input.image.env);
    let cwd = match input.image.working_dir.as_str() {
        "" => DEFAULT_CWD.to_string(),
        w => w.to_string(),
    };
    let username = if win.run_as_username.is_empty() {
        input.image.user.clone()
    } else {
        win.run_as_username.clone()
    };
    let process = assemble::process(ProcessParts {
        terminal: false,
        args,
        env,
        cwd,
        username,
    });
    let network_namespace = if super::host_network(cfg) {
        None
    } else {
        input.network_namespace
    };
    let windows = assemble::windows(WindowsParts {
        layer_folders: input.layer_folders,
        resources: Some(assemble::sandbox_resources()),
        devices: vec![],
        network_namespace,
        isolation: input.isolation,
        credential_spec,
    });
    let mut ann = cri_annotations(input.id, cfg, None, input.image_name);
    assemble::windows_annotations(&mut ann, cfg, input.isolation);
    Ok(assemble::spec(
        process,
        windows,
        vec![],
        Some(cfg.hostname.clone()),
        ann,
    ))
}

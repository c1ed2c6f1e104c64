//! A process's command line, environment and AppArmor profile, and the /proc paths it
//! may not see.

use crimux_core::container::{ContainerConfig, ProfileType, SecurityProfile};
use crimux_core::{Error, Result};

use crate::{HostInfo, ImageConfig};

/// `PATH` when neither the image nor the CRI sets one.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths under /proc and /sys hidden from unprivileged containers (containerd's defaults).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths under /proc made read-only for unprivileged containers.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// kubelet's rule for a container's argv: `command` replaces the image's Entrypoint (and
/// then drops its Cmd); `args` replace the image's Cmd.
pub(crate) fn container_args(config: &ContainerConfig, image: &ImageConfig) -> Result<Vec<String>> {
    let mut argv = if config.command.is_empty() {
        let args = if config.args.is_empty() {
            &image.cmd
        } else {
            &config.args
        };
        // An Entrypoint of [""] means "none" (Dockerfile `ENTRYPOINT []` quirks).
        let entry: &[String] = if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
            &[]
        } else {
            &image.entrypoint
        };
        entry.iter().chain(args).cloned().collect::<Vec<_>>()
    } else {
        config.command.iter().chain(&config.args).cloned().collect()
    };
    if argv.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    argv.shrink_to_fit();
    Ok(argv)
}

/// Merges `overrides` into `env` as containerd does: an entry replaces the one with the
/// same key in place, or is appended; an entry without `=` unsets its key.
pub fn merge_env(env: &mut Vec<String>, overrides: &[String]) {
    for o in overrides {
        let (key, set) = match o.split_once('=') {
            Some((k, _)) => (k, true),
            None => (o.as_str(), false),
        };
        let pos = env
            .iter()
            .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match (pos, set) {
            (Some(i), true) => env[i] = o.clone(),
            (None, true) => env.push(o.clone()),
            (Some(i), false) => {
                env.remove(i);
            }
            (None, false) => {}
        }
    }
}

/// A container's environment: the default `PATH`, `HOSTNAME`, then the image's, then the
/// CRI's, later ones winning.
pub(crate) fn container_env(
    config: &ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    merge_env(&mut env, &[format!("HOSTNAME={hostname}")]);
    merge_env(&mut env, &image.env);
    let cri: Vec<String> = config
        .envs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    merge_env(&mut env, &cri);
    env
}

/// The AppArmor profile for a container. Without AppArmor on the host a Localhost profile
/// is refused and RuntimeDefault means none (the node's default is no confinement); with
/// it, unset or RuntimeDefault is crimux's default profile unless privileged.
pub(crate) fn apparmor(
    profile: Option<&SecurityProfile>,
    privileged: bool,
    host: &HostInfo,
) -> Result<Option<String>> {
    if let Some(p) = profile {
        if p.profile_type != ProfileType::Localhost && !p.localhost_ref.is_empty() {
            return Err(Error::InvalidArgument(
                "apparmor localhost_ref may only be set for a Localhost profile".into(),
            ));
        }
    }
    let ty = profile.map_or(ProfileType::RuntimeDefault, |p| p.profile_type.clone());
    if !host.has_apparmor {
        if ty == ProfileType::Localhost {
            return Err(Error::InvalidArgument(
                "apparmor is not supported on this host".into(),
            ));
        }
        if profile.is_some() && ty == ProfileType::RuntimeDefault {
            tracing::debug!("no AppArmor on this host; RuntimeDefault means unconfined");
        }
        return Ok(None);
    }
    Ok(match ty {
        ProfileType::Unconfined => None,
        ProfileType::RuntimeDefault if privileged => None,
        ProfileType::RuntimeDefault => Some(super::APPARMOR_DEFAULT_PROFILE.to_string()),
        ProfileType::Localhost => {
            let r = profile.map_or("", |p| p.localhost_ref.as_str());
            let name = r.strip_prefix("localhost/").unwrap_or(r);
            if name.is_empty() {
                return Err(Error::InvalidArgument(
                    "apparmor Localhost profile without a name".into(),
                ));
            }
            Some(name.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_table() {
        let image = ImageConfig {
            entrypoint: s(&["/ep", "-x"]),
            cmd: s(&["c1", "c2"]),
            ..Default::default()
        };
        let cases: Vec<(&[&str], &[&str], &[&str])> = vec![
            (&[], &[], &["/ep", "-x", "c1", "c2"]),
            (&[], &["a1"], &["/ep", "-x", "a1"]),
            (&["/cmd"], &[], &["/cmd"]),
            (&["/cmd"], &["a1", "a2"], &["/cmd", "a1", "a2"]),
        ];
        for (command, args, want) in cases {
            let c = ContainerConfig {
                command: s(command),
                args: s(args),
                ..Default::default()
            };
            assert_eq!(
                container_args(&c, &image).unwrap(),
                s(want),
                "{command:?} {args:?}"
            );
        }
        let empty_ep = ImageConfig {
            entrypoint: s(&[""]),
            cmd: s(&["sh"]),
            ..Default::default()
        };
        assert_eq!(
            container_args(&ContainerConfig::default(), &empty_ep).unwrap(),
            ["sh"]
        );
        let none = container_args(&ContainerConfig::default(), &ImageConfig::default());
        assert!(matches!(none, Err(Error::InvalidArgument(m)) if m == "no command specified"));
    }

    #[test]
    fn env_table() {
        let image = ImageConfig {
            env: s(&["PATH=/img", "A=img", "B=img"]),
            ..Default::default()
        };
        let c = ContainerConfig {
            envs: vec![
                ("B".into(), "cri".into()),
                ("C".into(), "x=y".into()),
                ("B".into(), "last".into()),
            ],
            ..Default::default()
        };
        assert_eq!(
            container_env(&c, &image, "pod"),
            s(&["PATH=/img", "HOSTNAME=pod", "A=img", "B=last", "C=x=y"])
        );
        let bare = container_env(&ContainerConfig::default(), &ImageConfig::default(), "h");
        assert_eq!(bare, s(&[DEFAULT_PATH_ENV, "HOSTNAME=h"]));
        let mut env = s(&["A=1", "B=2"]);
        merge_env(&mut env, &s(&["A", "C=3"]));
        assert_eq!(env, s(&["B=2", "C=3"]));
    }

    #[test]
    fn apparmor_table() {
        let with = HostInfo {
            has_apparmor: true,
            ..Default::default()
        };
        let without = HostInfo::default();
        let p = |t: ProfileType, r: &str| SecurityProfile {
            profile_type: t,
            localhost_ref: r.into(),
        };
        assert_eq!(
            apparmor(None, false, &with).unwrap().as_deref(),
            Some("crimux-default")
        );
        assert_eq!(apparmor(None, true, &with).unwrap(), None);
        assert_eq!(
            apparmor(Some(&p(ProfileType::Unconfined, "")), false, &with).unwrap(),
            None
        );
        assert_eq!(
            apparmor(
                Some(&p(ProfileType::Localhost, "localhost/k8s-x")),
                true,
                &with
            )
            .unwrap()
            .as_deref(),
            Some("k8s-x")
        );
        assert_eq!(
            apparmor(Some(&p(ProfileType::RuntimeDefault, "")), false, &without).unwrap(),
            None
        );
        assert!(apparmor(Some(&p(ProfileType::Localhost, "x")), false, &without).is_err());
        assert!(apparmor(Some(&p(ProfileType::RuntimeDefault, "x")), false, &with).is_err());
    }
}

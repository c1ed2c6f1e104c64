//! Where things are by default on each OS. Both tables are compiled everywhere so tests on
//! Linux can check that the Windows defaults form a valid config; `platform::DEFAULTS`
//! picks the one for this build.

/// The default locations of one OS.
#[derive(Debug)]
pub struct Defaults {
    pub config_path: &'static str,
    pub listen: &'static str,
    pub root: &'static str,
    pub registry_config_path: &'static str,
    pub containerd_address: &'static str,
    pub cni_conf_dir: &'static str,
    pub cni_bin_dir: &'static str,
}

#[cfg_attr(not(unix), allow(dead_code))]
pub const UNIX: Defaults = Defaults {
    config_path: "/etc/crimux/config.toml",
    listen: "/run/crimux/crimux.sock",
    root: "/var/lib/crimux",
    registry_config_path: "/etc/crimux/certs.d",
    containerd_address: "unix:///run/containerd/containerd.sock",
    cni_conf_dir: "/etc/cni/net.d",
    cni_bin_dir: "/opt/cni/bin",
};

/// containerd for Windows' own defaults for its pipe and CNI directories; crimux keeps its
/// files under `C:\ProgramData\crimux`, as containerd does under `C:\ProgramData\containerd`.
#[cfg_attr(not(windows), allow(dead_code))]
pub const WINDOWS: Defaults = Defaults {
    config_path: r"C:\ProgramData\crimux\config.toml",
    listen: "npipe:////./pipe/crimux",
    root: r"C:\ProgramData\crimux\root",
    registry_config_path: r"C:\ProgramData\crimux\certs.d",
    containerd_address: "npipe:////./pipe/containerd-containerd",
    cni_conf_dir: r"C:\Program Files\containerd\cni\conf",
    cni_bin_dir: r"C:\Program Files\containerd\cni\bin",
};

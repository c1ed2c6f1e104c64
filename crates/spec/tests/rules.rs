//! Spec-level rules that cut across modules.

mod common;

use common::*;
use crimux_core::container::Mount;
use crimux_core::sandbox::NamespaceMode;
use crimux_core::Error;

#[test]
fn container_rules() {
    let (sb, image, host) = (sandbox_config(), app_image(), host());
    // Privileged containers need a privileged sandbox.
    let mut cfg = container_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .security
        .as_mut()
        .unwrap()
        .privileged = true;
    let err = crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // No command anywhere.
    let mut cfg = container_config();
    cfg.args.clear();
    let bare = crimux_spec::ImageConfig {
        user: "app".into(),
        ..Default::default()
    };
    let err = crimux_spec::container_spec(&container_input(&cfg, &sb, &bare, &host)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m == "no command specified"),
        "{err}"
    );
    // A mount without a container path.
    let mut cfg = container_config();
    cfg.mounts.push(Mount {
        host_path: "/h".into(),
        ..Default::default()
    });
    assert!(matches!(
        crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)),
        Err(Error::InvalidArgument(_))
    ));
    // An unknown run_as_username names the user.
    let mut cfg = container_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .security
        .as_mut()
        .unwrap()
        .run_as_username = "ghost".into();
    let err = crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    // oom_score_adj is raised to the host's floor, never refused.
    let mut cfg = container_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .oom_score_adj = -1000;
    let spec = crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(-999));
    // Host IPC: the host's /dev/shm.
    let mut cfg = container_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .security
        .as_mut()
        .unwrap()
        .namespace_options
        .ipc = NamespaceMode::Node;
    let spec = crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap();
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination().to_str() == Some("/dev/shm"))
        .unwrap();
    assert_eq!(shm.source().as_ref().unwrap().to_str(), Some("/dev/shm"));
}

#[test]
fn sandbox_rules() {
    let (image, host) = (pause_image(), host());
    let mut cfg = sandbox_config();
    cfg.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.pid_max".into(), "1".into());
    assert!(matches!(
        crimux_spec::sandbox_spec(&sandbox_input(&cfg, &image, &host)),
        Err(Error::InvalidArgument(_))
    ));
    let cfg = sandbox_config();
    let empty = crimux_spec::ImageConfig::default();
    assert!(crimux_spec::sandbox_spec(&sandbox_input(&cfg, &empty, &host)).is_err());
    let spec = crimux_spec::sandbox_spec(&sandbox_input(&cfg, &image, &host)).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.oom_score_adj(), Some(-998));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(spec.hostname().as_deref(), Some("web-pod"));
    let ann = spec.annotations().as_ref().unwrap();
    assert_eq!(ann["io.kubernetes.cri.container-type"], "sandbox");
    assert_eq!(ann["io.kubernetes.cri.sandbox-namespace"], "default");
}

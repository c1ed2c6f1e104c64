//! Golden specs for representative pods. `UPDATE_GOLDEN=1 cargo test -p crimux-spec
//! --test golden` rewrites the files; review the diff like code.

mod common;

use std::path::PathBuf;

use common::*;
use crimux_core::sandbox::NamespaceMode;

fn check(name: &str, spec: &oci_spec::runtime::Spec) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let got = serde_json::to_string_pretty(&canonical(spec)).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        got == want,
        "{name} differs from {}; run with UPDATE_GOLDEN=1 and review the diff\n{got}",
        path.display()
    );
}

#[test]
fn golden_sandbox() {
    let (cfg, image, host) = (sandbox_config(), pause_image(), host());
    check(
        "sandbox",
        &crimux_spec::sandbox_spec(&sandbox_input(&cfg, &image, &host)).unwrap(),
    );
}

#[test]
fn golden_sandbox_host_namespaces() {
    let mut cfg = sandbox_config();
    let lx = cfg.linux.as_mut().unwrap();
    lx.sysctls.clear();
    lx.security.namespace_options.network = NamespaceMode::Node;
    lx.security.namespace_options.pid = NamespaceMode::Node;
    lx.security.namespace_options.ipc = NamespaceMode::Node;
    lx.security.seccomp = None;
    let (image, host) = (pause_image(), host());
    check(
        "sandbox_host_namespaces",
        &crimux_spec::sandbox_spec(&sandbox_input(&cfg, &image, &host)).unwrap(),
    );
}

#[test]
fn golden_container() {
    let (cfg, sb, image, host) = (container_config(), sandbox_config(), app_image(), host());
    check(
        "container",
        &crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap(),
    );
}

#[test]
fn golden_container_privileged() {
    let mut sb = sandbox_config();
    sb.linux.as_mut().unwrap().security.privileged = true;
    let mut cfg = container_config();
    let sec = cfg.linux.as_mut().unwrap().security.as_mut().unwrap();
    sec.privileged = true;
    sec.readonly_rootfs = false;
    sec.no_new_privs = false;
    let (image, host) = (app_image(), host());
    check(
        "container_privileged",
        &crimux_spec::container_spec(&container_input(&cfg, &sb, &image, &host)).unwrap(),
    );
}

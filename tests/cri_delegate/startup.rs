//! A `kind = "cri"` backend at start: when the crimux it forwards to cannot be reached, or
//! the address is not a CRI server at all, crimux exits with code 2 and one line naming the
//! backend and its address, as for a containerd backend.

use crate::common::certs::Certs;
use crate::common::crimux::CrimuxConfig;
use crate::common::process::free_port;
use crate::common::{Containerd, Crimux};
use crate::env::DELEGATE;

/// A config whose first backend is the `cri` one at `address` (so it is the one connected
/// first), then a primary that is never reached.
fn config(dir: &std::path::Path, address: &str, tls: Option<&Certs>) -> CrimuxConfig {
    let mut config = CrimuxConfig::new(dir, "unix:///unused");
    config.backends.clear();
    let mut toml = format!(
        "[[backend]]\nname = {DELEGATE:?}\nkind = \"cri\"\naddress = {address:?}\nrole = \"delegate\"\n"
    );
    if let Some(certs) = tls {
        toml.push_str(&format!(
            "[backend.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            certs.ca().display().to_string(),
            certs.client_cert().display().to_string(),
            certs.client_key().display().to_string()
        ));
    }
    toml.push_str(
        "[[backend]]\nname = \"primary\"\naddress = \"unix:///unused\"\nrole = \"primary\"\n",
    );
    config.extra_toml = toml;
    config
}

#[tokio::test]
async fn unreachable_or_wrong_inner_endpoint_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::generate(&dir.path().join("certs"), "crimux test CA");
    let containerd = Containerd::start().await;
    let missing = format!("unix://{}", dir.path().join("no-such.sock").display());
    let refused = format!("tcp://127.0.0.1:{}", free_port());
    let cases = [
        (
            "no socket",
            missing.as_str(),
            None,
            "cannot reach crimux at",
        ),
        (
            "nothing on the port",
            refused.as_str(),
            Some(&certs),
            "cannot reach crimux at",
        ),
        (
            "a containerd, not a crimux",
            &containerd.address(),
            None,
            "does not serve the CRI v1 RuntimeService",
        ),
    ];
    for (i, (name, address, tls, want)) in cases.into_iter().enumerate() {
        let config = config(&dir.path().join(format!("c{i}")), address, tls);
        let (code, out) = Crimux::run_to_exit(&config);
        assert_eq!(code, 2, "{name}: exit {code}: {out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("crimux: "))
            .unwrap_or_else(|| panic!("{name}: no error line: {out}"));
        assert!(
            line.contains(&format!("backend \"{DELEGATE}\""))
                && line.contains(address)
                && line.contains(want),
            "{name}: {line:?} lacks the backend, {address} or {want:?}"
        );
    }
}

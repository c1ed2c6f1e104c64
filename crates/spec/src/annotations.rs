//! The annotations crimux puts on runtime specs. The names are containerd's CRI plugin's,
//! so shims and runtimes that key on them (kata, runwasi, NRI plugins) work unchanged.

use std::collections::HashMap;

use crimux_core::sandbox::SandboxConfig;

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// The sandbox's own image (the pause image) on its spec.
pub const SANDBOX_IMAGE_NAME: &str = "io.kubernetes.cri.podsandbox.image-name";

/// The annotations every spec of a pod carries. `container_name` is `None` for the sandbox.
pub(crate) fn cri_annotations(
    sandbox_id: &str,
    sandbox: &SandboxConfig,
    container_name: Option<&str>,
    image_name: &str,
) -> HashMap<String, String> {
    let mut a = HashMap::new();
    let mut put = |k: &str, v: &str| {
        a.insert(k.to_string(), v.to_string());
    };
    put(SANDBOX_ID, sandbox_id);
    put(SANDBOX_NAME, &sandbox.metadata.name);
    put(SANDBOX_NAMESPACE, &sandbox.metadata.namespace);
    put(SANDBOX_UID, &sandbox.metadata.uid);
    match container_name {
        Some(name) => {
            put(CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER);
            put(CONTAINER_NAME, name);
            put(IMAGE_NAME, image_name);
        }
        None => {
            put(CONTAINER_TYPE, CONTAINER_TYPE_SANDBOX);
            put(SANDBOX_LOG_DIR, &sandbox.log_directory);
            put(SANDBOX_IMAGE_NAME, image_name);
        }
    }
    a
}

//! One Linux backend and Windows workloads: `FailedPrecondition` with a
//! `google.rpc.ErrorInfo` whose metadata names what tooling needs, and nothing left behind.
//! tests/images.rs (`pull_windows_image_is_failed_precondition_with_error_info`) and
//! tests/runtime.rs (`bad_requests_get_the_right_codes`) check the code and reason; these
//! check the whole detail, the message, and the route table and netns pins.

use std::collections::HashMap;

use tonic::Code;
use tonic_types::{ErrorInfo, StatusExt};

use crate::common::runtime::PodEnv;
use crate::common::NS;

/// The ErrorInfo of an OS refusal, asserting code, reason and domain.
pub fn os_refusal(status: &tonic::Status) -> ErrorInfo {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no google.rpc.ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "OS_NOT_SUPPORTED", "{info:?}");
    assert_eq!(info.domain, "crimux.io", "{info:?}");
    info
}

fn meta(info: &ErrorInfo) -> HashMap<String, String> {
    info.metadata.clone()
}

/// The message names both remediations: a delegate here, or a node with that OS label.
fn assert_remediations(status: &tonic::Status, os: &str) {
    let m = status.message();
    assert!(m.contains("delegate"), "no delegate remediation: {m}");
    assert!(
        m.contains(&format!("crimux.io/os.{os}=true")),
        "no node label remediation: {m}"
    );
}

#[tokio::test]
async fn one_linux_backend_refuses_windows_image_and_pod_with_error_info() {
    let p = PodEnv::start().await;
    let windows = p.env.registry.image("windows:latest");

    // A plain pull: the image is named, no pod.
    let status = p
        .env
        .pull(&windows)
        .await
        .expect_err("windows image pulled");
    let info = os_refusal(&status);
    let m = meta(&info);
    assert_eq!(m.get("required_os").map(String::as_str), Some("windows"));
    assert_eq!(m.get("node_os").map(String::as_str), Some("linux"));
    assert_eq!(m.get("image"), Some(&windows), "{m:?}");
    assert_eq!(m.get("pod").map(String::as_str), Some(""), "{m:?}");
    assert_remediations(&status, "windows");

    // A pull for a pod (kubelet sends the sandbox config): the pod is named too.
    let pod = p.pod_config("winpull");
    let status = p
        .env
        .images()
        .await
        .pull_image(k8s_cri::v1::PullImageRequest {
            image: Some(crate::common::spec(&windows)),
            auth: None,
            sandbox_config: Some(pod.clone()),
        })
        .await
        .expect_err("windows image pulled for a pod");
    let m = meta(&os_refusal(&status));
    assert_eq!(
        m.get("pod").map(String::as_str),
        Some("crimux-test/winpull"),
        "{m:?}"
    );
    assert_eq!(m.get("image"), Some(&windows), "{m:?}");
    p.env.assert_clean(NS).await;

    // A pod annotated crimux.io/os: windows: refused before anything is made.
    let mut pod = p.pod_config("winpod");
    pod.annotations
        .insert("crimux.io/os".into(), "windows".into());
    let status = p.try_run_pod(&pod).await.expect_err("windows pod ran");
    let m = meta(&os_refusal(&status));
    assert_eq!(m.get("required_os").map(String::as_str), Some("windows"));
    assert_eq!(m.get("node_os").map(String::as_str), Some("linux"));
    assert_eq!(
        m.get("pod").map(String::as_str),
        Some("crimux-test/winpod"),
        "{m:?}"
    );
    assert_remediations(&status, "windows");

    p.assert_no_leaks().await;
    let root = p.env.crimux.config().root();
    let pins: Vec<_> = std::fs::read_dir(root.join("backends/default/netns"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "netns pins left: {pins:?}");
    let routes = std::fs::read_to_string(root.join("routes.json")).unwrap_or_default();
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap_or_default();
    let sandboxes = routes
        .get("sandboxes")
        .and_then(|s| s.as_object())
        .map(|s| s.len())
        .unwrap_or(0);
    assert_eq!(sandboxes, 0, "routes left: {routes}");
}

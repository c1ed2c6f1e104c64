//! The image-OS round trip (issue 4) with pods really running on both sides: the OUTER
//! crimux's primary is a `kind = "cri"` backend declared `os = "windows"` that forwards to
//! an INNER Linux crimux on containerd A (so the outer dispatcher treats it as a Windows
//! backend while its pods really run), and the delegate is a plain Linux containerd B.
//!
//! The path driven is kubelet's for an image already on the node (`IfNotPresent`): the
//! image was pulled for the Linux backend before, kubelet's ImageStatus finds it and
//! CreateContainer names it by id. The pull-for-the-pod path cannot be simulated here: the
//! pull goes to the pod's backend, and the inner crimux, really Linux, accepts a Linux
//! image that a real Windows containerd would refuse.
//!
//! Dropped in field order: the outer removes what pods are left (through the inner for the
//! primary's), B's tasks are killed, then the inner crimux stops and its mounts go.

use std::time::Duration;

use k8s_cri::v1::{
    ImageSpec, ImageStatusRequest, PodSandboxConfig, PodSandboxState, PullImageRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::containerd::ContainerdClient;
use crate::common::crimux::BackendConfig;
use crate::common::leaks;
use crate::common::runtime::PodEnv;
use crate::common::{Containerd, Crimux, NS};
use crate::env::Delegate;

/// The outer's backends: the forwarding primary (declared Windows) and the Linux delegate,
/// which serves RuntimeClass handler `LINUX_HANDLER` besides the default one.
const PRIMARY: &str = "win";
const LINUX: &str = "linux";
const LINUX_HANDLER: &str = "runc-linux";
/// The labels of a pinned image record: crimux's and containerd CRI's.
pub const PINNED: [(&str, &str); 2] = [
    ("crimux.io/image.pinned", "true"),
    ("io.cri-containerd.pinned", "pinned"),
];
/// The inner crimux's own backend (containerd A).
const INNER_BACKEND: &str = "inner-a";

struct Node {
    /// containerd A (the harness's) and the OUTER crimux.
    p: PodEnv,
    /// containerd B, the outer's Linux delegate.
    b: Delegate,
    inner: Inner,
}

/// The inner crimux on containerd A; on drop, stopped, then what is mounted under its root
/// is unmounted (the netns pin directory, and pins a failed test left).
struct Inner {
    crimux: Crimux,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.crimux.stop();
        leaks::unmount_under(&self.crimux);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

impl Node {
    async fn start() -> Node {
        let mut p = PodEnv::start().await;
        let inner_dir = p.net.dir.path().join("inner");
        let inner = p.sibling_config(&inner_dir, &p.env.containerd.address(), INNER_BACKEND);
        let inner = Inner {
            crimux: Crimux::start(inner).await,
        };

        let b = Delegate {
            containerd: Containerd::start().await,
        };
        let mut outer = p.env.crimux.config().clone();
        let mut linux = BackendConfig::new(LINUX, &b.containerd.address());
        linux.role = Some("delegate".into());
        linux.runtime_handlers = vec![LINUX_HANDLER.into()];
        outer.backends = vec![linux];
        outer.extra_toml = format!(
            "[[backend]]\nname = {PRIMARY:?}\nkind = \"cri\"\naddress = \"unix://{}\"\n\
             role = \"primary\"\nos = \"windows\"\n",
            inner.crimux.socket().display()
        );
        p.env.crimux.stop();
        p.env.crimux = Crimux::start(outer).await;
        Node { p, b, inner }
    }

    fn dump_logs(&self) {
        eprintln!("===== OUTER crimux =====");
        self.p.env.crimux.dump_log();
        eprintln!("===== INNER crimux =====");
        self.inner.crimux.dump_log();
    }

    async fn ctrd_a(&self) -> ContainerdClient {
        self.p.env.containerd.client().await
    }

    async fn ctrd_b(&self) -> ContainerdClient {
        self.b.containerd.client().await
    }

    /// PodSandboxStatus's state through `crimux`.
    async fn state(crimux: &Crimux, id: &str) -> i32 {
        crimux
            .pod_status(id)
            .await
            .unwrap_or_else(|s| panic!("PodSandboxStatus {id}: {s:?}"))
            .map_or(-1, |s| s.state)
    }

    /// kubelet's `IfNotPresent` check: ImageStatus through the outer; the image id.
    async fn image_present(&self, image: &str) -> String {
        self.p
            .env
            .images()
            .await
            .image_status(ImageStatusRequest {
                image: Some(crate::common::spec(image)),
                verbose: false,
            })
            .await
            .expect("ImageStatus")
            .into_inner()
            .image
            .unwrap_or_else(|| panic!("{image} not present on the node"))
            .id
    }

    /// What must be gone once every pod is removed: containerd objects on A and B that
    /// are not image layers, mounts under both crimux roots (their netns pin directories
    /// aside), iptables rules naming the test's pods, and pods or containers either crimux
    /// lists.
    async fn leftovers(&self) -> Vec<String> {
        let mut left = leaks::containerd_leftovers(&self.ctrd_a().await, "A: ").await;
        left.extend(leaks::containerd_leftovers(&self.ctrd_b().await, "B: ").await);
        let pins = [
            leaks::netns_pin_dir(&self.inner.crimux, INNER_BACKEND),
            leaks::netns_pin_dir(&self.p.env.crimux, LINUX),
        ];
        for crimux in [&self.inner.crimux, &self.p.env.crimux] {
            left.extend(leaks::mounts_left(crimux, &pins));
            left.extend(leaks::listed_left(crimux, "listed ").await);
        }
        left.extend(leaks::iptables_left(&self.p.created_pods()));
        left
    }
}

fn attempt(pod: &PodSandboxConfig, n: u32) -> PodSandboxConfig {
    let mut next = pod.clone();
    if let Some(m) = next.metadata.as_mut() {
        m.attempt = n;
    }
    next
}

#[tokio::test]
async fn linux_image_in_a_pod_on_the_windows_primary_goes_round_to_the_linux_delegate() {
    let node = Node::start().await;
    let p = &node.p;
    let busybox = p.busybox.clone();

    // The image is on the node already, pulled for the Linux backend (by another pod, or
    // a pre-pull naming its RuntimeClass): the node knows it is a Linux image.
    p.env
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: busybox.clone(),
                runtime_handler: LINUX_HANDLER.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .expect("PullImage for the Linux backend");

    // A pod with no handler, no annotation and no hint: the "windows" primary takes its
    // sandbox, which really runs on the inner crimux (containerd A).
    let pod = p.pod_config("round-trip");
    let first = p.run_pod(&pod).await;
    let (a, b) = (node.ctrd_a().await, node.ctrd_b().await);
    assert!(a.container_ids(NS).await.contains(&first), "not on A");
    assert!(!b.container_ids(NS).await.contains(&first));
    assert_eq!(
        a.tasks(NS).await.get(&first),
        Some(&2),
        "pause not running on A"
    );
    assert_eq!(
        Node::state(&node.inner.crimux, &first).await,
        PodSandboxState::SandboxReady as i32
    );

    // kubelet: the image is present (no pull), CreateContainer names it by id. The
    // Windows backend cannot run it, the Linux delegate can: refused, sandbox stopped.
    let image_ref = node.image_present(&busybox).await;
    let mut config = p.container_config("app", "exec sleep 3600");
    config.image = Some(crate::common::spec(&image_ref));
    let err = p
        .try_create(&first, &pod, &config)
        .await
        .expect_err("a Linux image was created in the Windows backend's pod");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("linux") && err.message().contains("stopped"),
        "{err:?}"
    );
    // Not an OS_NOT_SUPPORTED refusal: this node runs Linux, so tooling that reschedules
    // refused pods elsewhere must leave this one to kubelet's retry.
    assert!(
        err.get_error_details()
            .error_info()
            .is_none_or(|i| i.reason != "OS_NOT_SUPPORTED"),
        "{err:?}"
    );
    assert_eq!(
        Node::state(&node.inner.crimux, &first).await,
        PodSandboxState::SandboxNotready as i32,
        "the inner crimux still has the sandbox ready"
    );
    assert_eq!(
        Node::state(&p.env.crimux, &first).await,
        PodSandboxState::SandboxNotready as i32
    );
    let pause = a.tasks(NS).await.get(&first).copied();
    assert!(
        matches!(pause, None | Some(3)),
        "pause on A not stopped: {pause:?}"
    );
    assert!(a.container_ids(NS).await.iter().all(|id| *id == first));

    // kubelet's retry: a new sandbox, attempt 1, placed by the hint on the delegate.
    let retry = attempt(&pod, 1);
    let second = p.run_pod(&retry).await;
    assert_ne!(second, first);
    assert!(
        b.container_ids(NS).await.contains(&second),
        "retry not on B"
    );
    assert!(!a.container_ids(NS).await.contains(&second));
    assert_eq!(node.image_present(&busybox).await, image_ref);
    let cid = p.create_start(&second, &retry, &config).await;
    assert!(b.container_ids(NS).await.contains(&cid));
    assert!(!a.container_ids(NS).await.contains(&cid));
    assert_eq!(p.sh(&cid, "hostname").await, "round-trip-host\n");
    assert_eq!(p.sh(&cid, "echo $GREETING").await, "hello world\n");
    assert_eq!(
        Node::state(&p.env.crimux, &second).await,
        PodSandboxState::SandboxReady as i32
    );

    // The pause image is pinned on both sides (merged by the outer, and on the inner);
    // busybox is not.
    let pause_ref = p.pause_image.clone();
    for crimux in [&p.env.crimux, &node.inner.crimux] {
        let listed = crimux.listed_images().await;
        let pause = listed
            .iter()
            .find(|(_, tags, _)| tags.contains(&pause_ref))
            .unwrap_or_else(|| panic!("no pause in {listed:?}"));
        assert!(pause.2, "pause not pinned: {listed:?}");
        if let Some(other) = listed.iter().find(|(id, _, _)| *id == image_ref) {
            assert!(!other.2, "busybox pinned: {listed:?}");
        }
    }

    // ... with both labels on its records in A and in B, as `ctr` shows them.
    for (side, ctrd) in [("A", &a), ("B", &b)] {
        let record = ctrd
            .image(NS, &pause_ref)
            .await
            .unwrap_or_else(|| panic!("{side}: no {pause_ref}"));
        for (key, value) in PINNED {
            assert_eq!(
                record.labels.get(key).map(String::as_str),
                Some(value),
                "{side}: {key} on {pause_ref}: {:?}",
                record.labels
            );
        }
    }

    // kubelet removes the dead sandbox, later the pod: nothing stays on A or B.
    for id in [&first, &second] {
        p.stop_remove_pod(id).await;
    }
    leaks::assert_nothing_left("nothing left behind", Duration::from_secs(20), || {
        node.leftovers()
    })
    .await;
}

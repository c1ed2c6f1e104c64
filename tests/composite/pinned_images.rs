//! The sandbox (pause) image is pinned, through the crimux binary: after a RunPodSandbox,
//! ListImages and ImageStatus report it `pinned` (kubelet's image GC never removes it) and
//! its containerd records carry the pin labels; an image pulled for a container is not
//! pinned. RemoveImage still removes a pinned image, as containerd's CRI does.

use k8s_cri::v1::{ImageStatusRequest, RemoveImageRequest};

use crate::common::runtime::PodEnv;
use crate::common::{spec, NS};
use crate::os_round_trip::PINNED;

#[tokio::test]
async fn pause_image_is_pinned_and_container_images_are_not() {
    let p = PodEnv::start().await;
    let pod = p.pod_config("pinned");
    let id = p.run_pod(&pod).await;
    let busybox = p.env.pull_ok(&p.busybox).await;

    let images = p.env.crimux.listed_images().await;
    let pinned = |name: &str| {
        images
            .iter()
            .find(|(_, tags, _)| tags.iter().any(|t| t == name))
            .map(|(_, _, pinned)| *pinned)
            .unwrap_or_else(|| panic!("{name} not listed: {images:?}"))
    };
    assert!(pinned(&p.pause_image), "pause not pinned: {images:?}");
    assert!(!pinned(&p.busybox), "busybox pinned: {images:?}");
    let status = p
        .env
        .images()
        .await
        .image_status(ImageStatusRequest {
            image: Some(spec(&busybox)),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .expect("busybox present");
    assert!(!status.pinned);
    let record = p
        .env
        .ctrd()
        .await
        .image(NS, &p.pause_image)
        .await
        .expect("pause record");
    for (key, value) in PINNED {
        assert_eq!(
            record.labels.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }

    // An operator may still remove it (kubelet never asks); the next pod pulls it again.
    p.stop_remove_pod(&id).await;
    p.env
        .images()
        .await
        .remove_image(RemoveImageRequest {
            image: Some(spec(&p.pause_image)),
        })
        .await
        .expect("RemoveImage of the pinned pause");
    assert!(!p
        .env
        .crimux
        .listed_images()
        .await
        .iter()
        .any(|(_, tags, _)| tags.contains(&p.pause_image)));
    p.assert_no_leaks().await;
}

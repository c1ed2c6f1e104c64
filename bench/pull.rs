//! Pull benchmark: one PullImage of a ~100 MB, 4-layer image through crimux, against
//! `ctr images pull` of the same image, each into its own fresh containerd, from the same
//! local registry (warmed first). Prints both times, their ratio, and crimux's RSS.
//!
//! Run with `bash bench/pull.sh` (a `harness = false` bench target: `cargo bench --bench pull`).
//! `CRIMUX_BIN` overrides the crimux binary measured.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::run;
use common::registry::Registry;
use common::test_images::build;
use common::{spec, Containerd, Crimux, CrimuxConfig};
use k8s_cri::v1::PullImageRequest;

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ctr_pull(containerd: &Containerd, namespace: &str, reference: &str) -> Duration {
    let start = Instant::now();
    run(Command::new("ctr")
        .arg("--address")
        .arg(containerd.socket())
        .args(["--namespace", namespace, "images", "pull", "--plain-http"])
        .arg(reference));
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let images = build("big");
    let image = images.get("big:latest");
    let registry = Registry::start(None);
    registry.push(&images, "big:latest", "crimux-test/big:latest");
    let reference = registry.image("big:latest");
    println!(
        "image {reference}: {} layers, {:.1} MB compressed",
        image.layers.len(),
        image.size as f64 / 1e6
    );

    // Warm the registry's page cache so neither measured pull pays for a cold disk.
    let warm = Containerd::start().await;
    ctr_pull(&warm, "warmup", &reference);
    drop(warm);

    let for_crimux = Containerd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_d = dir.path().join("certs.d");
    registry.write_hosts(&certs_d);
    let mut config = CrimuxConfig::new(&dir.path().join("crimux"), &for_crimux.address());
    config.registry_config_path = Some(certs_d);
    let crimux = Crimux::start(config).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(crimux.pid());

    let mut client = crimux.images().await;
    let start = Instant::now();
    let id = client
        .pull_image(PullImageRequest {
            image: Some(spec(&reference)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| {
            crimux.dump_log();
            panic!("PullImage {reference}: {s:?}")
        })
        .into_inner()
        .image_ref;
    let crimux_time = start.elapsed();
    assert_eq!(id, image.id(), "crimux pulled the wrong image");
    let after_rss = rss_kib(crimux.pid());

    let for_ctr = Containerd::start().await;
    let ctr_time = ctr_pull(&for_ctr, "fresh", &reference);

    println!(
        "crimux PullImage:      {:>8.3} s",
        crimux_time.as_secs_f64()
    );
    println!("ctr images pull:       {:>8.3} s", ctr_time.as_secs_f64());
    println!(
        "ratio crimux/ctr:      {:>8.2}",
        crimux_time.as_secs_f64() / ctr_time.as_secs_f64()
    );
    println!(
        "crimux idle RSS:       {:>8.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "crimux RSS after pull: {:>8.1} MiB",
        after_rss as f64 / 1024.0
    );
}

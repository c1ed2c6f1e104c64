//! Pull benchmark: PullImage of a ~100 MB, 4-layer image through crimux, against
//! `ctr images pull --plain-http` of the same image, each into its own fresh containerd, from
//! the same local registry (warmed first). Repeated `PULL_REPS` times (default 5), the two
//! sides interleaved and their order flipped every repetition so both see the same load;
//! prints every repetition with the 1-minute load average, the medians and the ratio of the
//! medians, and crimux's idle RSS (VmRSS 3 s after start, before any pull).
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
use common::test_images::TestImages;
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

/// The 1-minute load average.
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One PullImage through a fresh crimux on a fresh containerd; (time, idle RSS KiB before
/// the pull, RSS KiB after it).
async fn crimux_pull(
    registry: &Registry,
    images: &TestImages,
    reference: &str,
) -> (Duration, u64, u64) {
    let image = images.get("big:latest");
    let ctrd = Containerd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_d = dir.path().join("certs.d");
    registry.write_hosts(&certs_d);
    let mut config = CrimuxConfig::new(&dir.path().join("crimux"), &ctrd.address());
    config.registry_config_path = Some(certs_d);
    let crimux = Crimux::start(config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(crimux.pid());
    let mut client = crimux.images().await;
    let start = Instant::now();
    let id = client
        .pull_image(PullImageRequest {
            image: Some(spec(reference)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| {
            crimux.dump_log();
            panic!("PullImage {reference}: {s:?}")
        })
        .into_inner()
        .image_ref;
    let took = start.elapsed();
    assert_eq!(id, image.id(), "crimux pulled the wrong image");
    (took, idle_rss, rss_kib(crimux.pid()))
}

/// `ctr images pull` into a fresh containerd; seconds.
async fn fresh_ctr_pull(reference: &str) -> f64 {
    let fresh = Containerd::start().await;
    ctr_pull(&fresh, "fresh", reference).as_secs_f64()
}

#[tokio::main]
async fn main() {
    let reps: usize = std::env::var("PULL_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let images = build("big");
    let image = images.get("big:latest");
    let registry = Registry::start(None);
    registry.push(&images, "big:latest", "crimux-test/big:latest");
    let reference = registry.image("big:latest");
    println!(
        "image {reference}: {} layers, {:.1} MB compressed; {reps} repetitions",
        image.layers.len(),
        image.size as f64 / 1e6
    );

    // Warm the registry's page cache so no measured pull pays for a cold disk.
    let warm = Containerd::start().await;
    ctr_pull(&warm, "warmup", &reference);
    drop(warm);

    let (mut crimux_s, mut ctr_s) = (Vec::new(), Vec::new());
    let (mut idle_rss, mut after_rss) = (Vec::new(), Vec::new());
    for rep in 1..=reps {
        let load = load1();
        let (c, t) = if rep % 2 == 1 {
            let c = crimux_pull(&registry, &images, &reference).await;
            (c, fresh_ctr_pull(&reference).await)
        } else {
            let t = fresh_ctr_pull(&reference).await;
            (crimux_pull(&registry, &images, &reference).await, t)
        };
        let (took, idle, after) = c;
        println!(
            "rep {rep}: load {load:>5}  crimux {:>7.3} s  ctr {t:>7.3} s  ratio {:>5.2}  \
             crimux idle RSS {:.1} MiB, after pull {:.1} MiB",
            took.as_secs_f64(),
            took.as_secs_f64() / t,
            idle as f64 / 1024.0,
            after as f64 / 1024.0
        );
        crimux_s.push(took.as_secs_f64());
        ctr_s.push(t);
        idle_rss.push(idle as f64 / 1024.0);
        after_rss.push(after as f64 / 1024.0);
    }
    let (c, t) = (median(&mut crimux_s), median(&mut ctr_s));
    println!("median crimux PullImage:  {c:>8.3} s");
    println!("median ctr images pull:   {t:>8.3} s");
    println!("ratio of medians:         {:>8.2}", c / t);
    println!(
        "median crimux idle RSS:   {:>8.1} MiB",
        median(&mut idle_rss)
    );
    println!(
        "median RSS after pull:    {:>8.1} MiB",
        median(&mut after_rss)
    );
    println!("load after: {}", load1());
}

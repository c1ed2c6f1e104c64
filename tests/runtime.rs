//! RuntimeService end to end: the real crimux binary, a private containerd, CNI bridge
//! networking, the static pause image and busybox from the test registry. Every test drives
//! crimux with the CRI client over its socket and checks the result from inside the
//! container (ExecSync), in the CRI log file, or in containerd's own API, then that nothing
//! leaked (containerd objects, mounts, iptables).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::eventually;
use common::process::free_port;
use common::runtime::{listed_container_ids, listed_pod_ids, parse_cri_log_line, PodEnv};
use k8s_cri::v1::{
    Capability, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatsFilter,
    CreateContainerRequest, Int64Value, LinuxContainerSecurityContext, ListContainerStatsRequest,
    ListPodSandboxRequest, Mount, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PortMapping, Protocol, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

/// PullImage through crimux's ImageService; returns the image ref.
async fn pull(p: &PodEnv, image: &str) -> String {
    p.env
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(common::spec(image)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("PullImage {image}: {s:?}"))
        .into_inner()
        .image_ref
}

async fn list_pods(p: &PodEnv, filter: Option<PodSandboxFilter>) -> Vec<String> {
    listed_pod_ids(p.rt().await, filter).await
}

async fn list_containers(p: &PodEnv, filter: Option<ContainerFilter>) -> Vec<String> {
    listed_container_ids(p.rt().await, filter).await
}

async fn pod_status(p: &PodEnv, id: &str) -> k8s_cri::v1::PodSandboxStatus {
    p.env
        .crimux
        .pod_status(id)
        .await
        .expect("PodSandboxStatus")
        .expect("PodSandboxStatus has a status")
}

fn pod_ip(status: &k8s_cri::v1::PodSandboxStatus) -> String {
    status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default()
}

async fn remove_container(p: &PodEnv, id: &str) {
    p.rt()
        .await
        .remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .expect("RemoveContainer");
}

async fn stop_container(p: &PodEnv, id: &str, timeout: i64) {
    p.rt()
        .await
        .stop_container(StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        })
        .await
        .expect("StopContainer");
}

fn state_filter(state: ContainerState) -> Option<ContainerStateValue> {
    Some(ContainerStateValue {
        state: state as i32,
    })
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn pod_and_container_lifecycle() {
    let started = Instant::now();
    let p = PodEnv::start().await;
    let image_ref = pull(&p, &p.busybox).await;
    assert!(image_ref.starts_with("sha256:"), "image ref {image_ref}");

    let pod = p.pod_config("life");
    let pod_id = p.run_pod(&pod).await;
    assert_eq!(pod_id.len(), 64, "pod id {pod_id}");
    let status = pod_status(&p, &pod_id).await;
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    let ip = pod_ip(&status);
    assert!(
        ip.starts_with(&p.net.subnet_prefix),
        "pod IP {ip:?} is not in {}0/24",
        p.net.subnet_prefix
    );
    assert_eq!(status.labels.get("app").map(String::as_str), Some("life"));

    let mut config = p.container_config(
        "main",
        "echo hello; id; hostname; cat /etc/resolv.conf; sleep 3600",
    );
    config.labels.insert("tier".into(), "web".into());
    let cid = p.create_start(&pod_id, &pod, &config).await;
    let s = p.container_status(&cid).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    assert!(s.started_at > 0 && s.created_at > 0, "{s:?}");
    assert_eq!(s.labels.get("tier").map(String::as_str), Some("web"));
    let log = std::path::Path::new(&pod.log_directory).join("main.log");
    assert_eq!(s.log_path, log.display().to_string());

    // The CRI log file, exactly: "<RFC3339Nano> stdout F hello" first.
    eventually(
        "the log to hold resolv.conf",
        Duration::from_secs(10),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
                if text.contains("ndots:5") {
                    Ok(())
                } else {
                    Err(format!("log so far: {text:?}"))
                }
            }
        },
    )
    .await;
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<(String, String, String)> = text.lines().map(parse_cri_log_line).collect();
    assert_eq!(lines[0], ("stdout".into(), "F".into(), "hello".into()));
    assert!(lines[1].2.starts_with("uid=0(root)"), "{text}");
    assert_eq!(lines[2].2, "life-host");
    assert!(
        lines.iter().all(|(s, t, _)| s == "stdout" && t == "F"),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.2 == "nameserver 10.96.0.10"),
        "{text}"
    );

    let r = p.exec(&cid, &["echo", "hi"]).await;
    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, b"hi\n".as_slice()));
    assert_eq!(p.sh(&cid, "echo $GREETING").await, "hello world\n");

    // Lists and their filters.
    assert_eq!(list_pods(&p, None).await, vec![pod_id.clone()]);
    let by_prefix = PodSandboxFilter {
        id: pod_id[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(list_pods(&p, Some(by_prefix)).await, vec![pod_id.clone()]);
    let not_ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    };
    assert!(list_pods(&p, Some(not_ready.clone())).await.is_empty());
    let other_app = PodSandboxFilter {
        label_selector: labels(&[("app", "other")]),
        ..Default::default()
    };
    assert!(list_pods(&p, Some(other_app)).await.is_empty());
    for filter in [
        ContainerFilter {
            id: cid[..10].to_string(),
            ..Default::default()
        },
        ContainerFilter {
            state: state_filter(ContainerState::ContainerRunning),
            ..Default::default()
        },
        ContainerFilter {
            pod_sandbox_id: pod_id.clone(),
            ..Default::default()
        },
        ContainerFilter {
            label_selector: labels(&[("tier", "web"), ("c", "main")]),
            ..Default::default()
        },
    ] {
        assert_eq!(
            list_containers(&p, Some(filter.clone())).await,
            vec![cid.clone()],
            "{filter:?}"
        );
    }
    for filter in [
        ContainerFilter {
            state: state_filter(ContainerState::ContainerExited),
            ..Default::default()
        },
        ContainerFilter {
            label_selector: labels(&[("tier", "db")]),
            ..Default::default()
        },
        ContainerFilter {
            pod_sandbox_id: "0".repeat(64),
            ..Default::default()
        },
    ] {
        assert!(
            list_containers(&p, Some(filter.clone())).await.is_empty(),
            "{filter:?}"
        );
    }

    // Stats.
    let stats = p.live_container_stats(&cid).await;
    assert!(stats.cpu.is_some() && stats.memory.is_some(), "{stats:?}");
    let listed = p
        .rt()
        .await
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1, "{listed:?}");

    // Stop: sh ignores SIGTERM as PID 1, so it is killed after the timeout.
    stop_container(&p, &cid, 2).await;
    let s = p.container_status(&cid).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32, "{s:?}");
    assert!(
        [137, 143].contains(&s.exit_code),
        "exit code {}",
        s.exit_code
    );
    assert!(s.finished_at >= s.started_at, "{s:?}");
    let exited = ContainerFilter {
        state: state_filter(ContainerState::ContainerExited),
        ..Default::default()
    };
    assert_eq!(list_containers(&p, Some(exited)).await, vec![cid.clone()]);
    remove_container(&p, &cid).await;
    assert!(list_containers(&p, None).await.is_empty());

    let mut rt = p.rt().await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let status = pod_status(&p, &pod_id).await;
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
    assert_eq!(list_pods(&p, Some(not_ready)).await, vec![pod_id.clone()]);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert!(list_pods(&p, None).await.is_empty());
    assert!(list_containers(&p, None).await.is_empty());
    p.assert_no_leaks().await;
    eprintln!("lifecycle took {:?}", started.elapsed());
}

/// What the container sees: user, env, hostname, DNS, read-only mounts and rootfs,
/// capabilities, pod sysctls.
#[tokio::test]
async fn container_sees_its_config() {
    let p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let mut pod = p.pod_config("seen");
    pod.linux.get_or_insert_with(Default::default).sysctls = HashMap::from([(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "2000".to_string(),
    )]);
    let pod_id = p.run_pod(&pod).await;

    // A non-root container.
    let mut user = p.container_config("user", "sleep 3600");
    user.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        ..Default::default()
    });
    user.envs.push(k8s_cri::v1::KeyValue {
        key: "EXTRA".into(),
        value: "a=b c".into(),
    });
    let uid = p.create_start(&pod_id, &pod, &user).await;
    assert_eq!(p.sh(&uid, "id -u").await.trim(), "1000");
    assert_eq!(
        p.sh(&uid, "echo \"$GREETING|$EXTRA\"").await,
        "hello world|a=b c\n"
    );
    assert_eq!(p.sh(&uid, "hostname").await.trim(), "seen-host");
    let resolv = p.sh(&uid, "cat /etc/resolv.conf").await;
    for line in [
        "nameserver 10.96.0.10",
        "search crimux-test.svc.cluster.local",
        "options ndots:5",
    ] {
        assert!(resolv.lines().any(|l| l == line), "no {line:?} in {resolv}");
    }
    assert_eq!(
        p.sh(&uid, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
            .await
            .trim(),
        "2000"
    );

    // A root container with a read-only host mount, a read-only rootfs, NET_ADMIN added
    // and NET_RAW dropped.
    let host_dir = p.net.dir.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).expect("create host dir");
    std::fs::write(host_dir.join("f"), "from the host\n").expect("write host file");
    let mut locked = p.container_config("locked", "sleep 3600");
    locked.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: host_dir.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    locked
        .linux
        .get_or_insert_with(Default::default)
        .security_context = Some(LinuxContainerSecurityContext {
        readonly_rootfs: true,
        capabilities: Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["NET_RAW".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    let lid = p.create_start(&pod_id, &pod, &locked).await;
    assert_eq!(p.sh(&lid, "cat /data/f").await, "from the host\n");
    let write_mount = p.exec(&lid, &["sh", "-c", "echo x > /data/new"]).await;
    assert_ne!(
        write_mount.exit_code, 0,
        "writing a read-only mount succeeded"
    );
    assert!(!host_dir.join("new").exists());
    let write_root = p.exec(&lid, &["sh", "-c", "echo x > /newfile"]).await;
    assert_ne!(
        write_root.exit_code, 0,
        "writing a read-only rootfs succeeded"
    );
    let status = p.sh(&lid, "grep CapEff /proc/self/status").await;
    let hex = status.split_whitespace().nth(1).expect("CapEff value");
    let caps = u64::from_str_radix(hex, 16).expect("CapEff is hex");
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_NET_RAW: u64 = 13;
    const CAP_CHOWN: u64 = 0;
    const CAP_SYS_ADMIN: u64 = 21;
    assert!(caps & (1 << CAP_NET_ADMIN) != 0, "NET_ADMIN not in {hex}");
    assert!(caps & (1 << CAP_NET_RAW) == 0, "NET_RAW still in {hex}");
    assert!(
        caps & (1 << CAP_CHOWN) != 0,
        "default CHOWN missing in {hex}"
    );
    assert!(caps & (1 << CAP_SYS_ADMIN) == 0, "SYS_ADMIN in {hex}");
    // The non-root container has no effective capabilities.
    let user_caps = p.sh(&uid, "grep CapEff /proc/self/status").await;
    assert!(user_caps.contains("0000000000000000"), "{user_caps}");

    p.stop_remove_pod(&pod_id).await;
    assert!(list_containers(&p, None).await.is_empty());
    p.assert_no_leaks().await;
}

#[tokio::test]
async fn exit_codes_and_reasons() {
    let p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let pod = p.pod_config("exits");
    let pod_id = p.run_pod(&pod).await;
    let failing = p
        .create_start(&pod_id, &pod, &p.container_config("fail", "exit 42"))
        .await;
    let ok = p
        .create_start(&pod_id, &pod, &p.container_config("ok", "true"))
        .await;
    let s = p.wait_exited(&failing, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"), "{s:?}");
    let s = p.wait_exited(&ok, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{s:?}");
    assert!(s.finished_at >= s.started_at && s.started_at > 0, "{s:?}");
    // Stopping an exited container is fine and keeps its exit code.
    stop_container(&p, &failing, 1).await;
    assert_eq!(p.container_status(&failing).await.exit_code, 42);
    remove_container(&p, &failing).await;
    remove_container(&p, &ok).await;
    p.stop_remove_pod(&pod_id).await;
    p.assert_no_leaks().await;
}

#[tokio::test]
async fn host_port_reaches_the_container() {
    let p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let host_port = free_port();
    let mut pod = p.pod_config("web");
    pod.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let pod_id = p.run_pod(&pod).await;
    let script = "mkdir -p /www && echo crimux-says-hi > /www/index.html && \
                  exec httpd -f -p 8080 -h /www";
    let cid = p
        .create_start(&pod_id, &pod, &p.container_config("httpd", script))
        .await;
    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(b) = http_get(host_port) {
            body = b;
            if body.contains("crimux-says-hi") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        body.contains("crimux-says-hi"),
        "GET 127.0.0.1:{host_port} answered {body:?}"
    );
    let rules = common::runtime::iptables_lines();
    assert!(
        rules.iter().any(|l| l.contains(&pod_id)),
        "no portmap rule names the pod"
    );
    stop_container(&p, &cid, 1).await;
    p.stop_remove_pod(&pod_id).await;
    p.assert_no_leaks().await;
}

fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test]
async fn pods_reach_each_other() {
    let p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let a = p.pod_config("ping-a");
    let b = p.pod_config("ping-b");
    let a_id = p.run_pod(&a).await;
    let b_id = p.run_pod(&b).await;
    let a_ip = pod_ip(&pod_status(&p, &a_id).await);
    let b_ip = pod_ip(&pod_status(&p, &b_id).await);
    assert_ne!(a_ip, b_ip);
    // ping needs NET_RAW, which the default set has.
    let ca = p
        .create_start(&a_id, &a, &p.container_config("a", "sleep 3600"))
        .await;
    let cb = p
        .create_start(&b_id, &b, &p.container_config("b", "sleep 3600"))
        .await;
    for (from, to) in [(&ca, &b_ip), (&cb, &a_ip)] {
        let r = p.exec(from, &["busybox", "ping", "-c1", "-W2", to]).await;
        assert_eq!(
            r.exit_code,
            0,
            "ping {to}: {} {}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
    }
    p.stop_remove_pod(&a_id).await;
    p.stop_remove_pod(&b_id).await;
    p.assert_no_leaks().await;
}

/// crimux killed with SIGKILL finds every pod and container again, with the exit code of
/// a container that exited while it was down.
#[tokio::test]
async fn crimux_restart_recovers_state() {
    let mut p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let pod = p.pod_config("survivor");
    let pod_id = p.run_pod(&pod).await;
    let running = p
        .create_start(&pod_id, &pod, &p.container_config("runner", "sleep 3600"))
        .await;
    let exiting = p
        .create_start(
            &pod_id,
            &pod,
            &p.container_config("exiter", "sleep 3; exit 7"),
        )
        .await;
    let before_pods = list_pods(&p, None).await;
    let before_containers = list_containers(&p, None).await;

    p.env.crimux.kill();
    // Wait, through containerd itself, for the exit to happen while crimux is down.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((3, code)) = p.task_status(&exiting).await {
            assert_eq!(code, 7);
            break;
        }
        assert!(Instant::now() < deadline, "container did not exit in 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.env.crimux.restart().await;

    assert_eq!(list_pods(&p, None).await, before_pods);
    assert_eq!(list_containers(&p, None).await, before_containers);
    assert_eq!(
        pod_status(&p, &pod_id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    let s = p.container_status(&running).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    let s = p.wait_exited(&exiting, Duration::from_secs(10)).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (7, "Error"), "{s:?}");
    assert_eq!(p.sh(&running, "echo alive").await, "alive\n");

    p.stop_remove_pod(&pod_id).await;
    assert!(list_containers(&p, None).await.is_empty());
    p.assert_no_leaks().await;
}

#[tokio::test]
async fn crimux_survives_a_containerd_restart() {
    let mut p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let pod = p.pod_config("steady");
    let pod_id = p.run_pod(&pod).await;
    let cid = p
        .create_start(&pod_id, &pod, &p.container_config("c", "sleep 3600"))
        .await;

    p.env.containerd.restart().await;
    let restarted = Instant::now();
    eventually(
        "ListPodSandbox after the restart",
        Duration::from_secs(10),
        || async {
            let mut rt = p.rt().await;
            match rt.list_pod_sandbox(ListPodSandboxRequest::default()).await {
                Ok(r) if r.get_ref().items.iter().any(|i| i.id == pod_id) => Ok(()),
                Ok(r) => Err(format!("pods {:?}", r.into_inner().items)),
                Err(s) => Err(format!("{s:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "crimux served again {:?} after containerd",
        restarted.elapsed()
    );
    assert_eq!(
        pod_status(&p, &pod_id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    assert_eq!(
        p.container_status(&cid).await.state,
        ContainerState::ContainerRunning as i32
    );
    assert_eq!(p.sh(&cid, "echo still").await, "still\n");
    let second = p
        .create_start(&pod_id, &pod, &p.container_config("after", "exit 3"))
        .await;
    assert_eq!(
        p.wait_exited(&second, Duration::from_secs(20))
            .await
            .exit_code,
        3
    );
    p.stop_remove_pod(&pod_id).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pods_at_once() {
    let p = PodEnv::start().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let config = p.pod_config(&format!("many-{i}"));
        let mut rt = p.rt().await;
        tasks.spawn(async move {
            rt.run_pod_sandbox(k8s_cri::v1::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
        });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let id = done.expect("join").unwrap_or_else(|s| {
            p.env.crimux.dump_log();
            panic!("RunPodSandbox: {s:?}")
        });
        p.pod_ids.lock().expect("ids").push(id.clone());
        ids.push(id);
    }
    ids.sort();
    assert_eq!(list_pods(&p, None).await, ids);
    let ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list_pods(&p, Some(ready)).await.len(), 20);
    let mut ips = Vec::new();
    for id in &ids {
        ips.push(pod_ip(&pod_status(&p, id).await));
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "pod IPs are not distinct: {ips:?}");
    eprintln!("20 pods ran in {:?}", started.elapsed());

    let started = Instant::now();
    for id in ids.clone() {
        let mut rt = p.rt().await;
        tasks.spawn(async move {
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await?;
            Ok(String::new())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("join").expect("stop + remove");
    }
    eprintln!("20 pods removed in {:?}", started.elapsed());
    assert!(list_pods(&p, None).await.is_empty());
    p.assert_no_leaks().await;
}

#[tokio::test]
async fn bad_requests_get_the_right_codes() {
    let p = PodEnv::start().await;
    pull(&p, &p.busybox).await;
    let mut rt = p.rt().await;
    let unknown = "f".repeat(64);

    let err = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of an unknown pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = rt
        .container_status(k8s_cri::v1::ContainerStatusRequest {
            container_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of an unknown container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    rt.remove_container(RemoveContainerRequest {
        container_id: unknown.clone(),
    })
    .await
    .expect("RemoveContainer of an unknown id is OK");
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: unknown.clone(),
    })
    .await
    .expect("StopPodSandbox of an unknown id is OK");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: unknown.clone(),
    })
    .await
    .expect("RemovePodSandbox of an unknown id is OK");

    let pod = p.pod_config("bad");
    let pod_id = p.run_pod(&pod).await;
    let err = p.try_run_pod(&pod).await.expect_err("the same pod twice");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: None,
            sandbox_config: Some(pod.clone()),
        })
        .await
        .expect_err("CreateContainer without config");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut escaping = p.container_config("escape", "true");
    escaping.log_path = "../x".into();
    let err = p
        .try_create(&pod_id, &pod, &escaping)
        .await
        .expect_err("log_path ../x");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let err = p
        .try_create(&pod_id, &pod, &p.container_config("late", "true"))
        .await
        .expect_err("a container in a stopped pod");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("RemovePodSandbox");

    let mut windows = p.pod_config("win");
    windows
        .annotations
        .insert("crimux.io/os".into(), "windows".into());
    let err = p
        .try_run_pod(&windows)
        .await
        .expect_err("a Windows pod on a Linux-only node");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let info = err
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {err:?}"));
    assert_eq!(info.reason, "OS_NOT_SUPPORTED", "{info:?}");

    assert!(list_pods(&p, None).await.is_empty());
    p.assert_no_leaks().await;
}

//! Two Linux backends: the primary on the harness's unix socket, the delegate over TCP with
//! mutual TLS serving handler `wsl2`. Where a pod runs is checked through each containerd's
//! own API, not through crimux.

use std::time::Duration;

use k8s_cri::v1::{ContainerState, ContainerStatusRequest, ExecSyncRequest, PodSandboxState};
use tonic::Code;

use crate::common::runtime::parse_cri_log_line;
use crate::common::{eventually, NS};
use crate::env::{Composite, Primary, HANDLER};

/// Waits until the CRI log of `container` in `pod` has a complete stdout line `text`.
async fn assert_logged(c: &Composite, pod: &k8s_cri::v1::PodSandboxConfig, name: &str, text: &str) {
    let path = c.log_file(pod, name);
    eventually(
        &format!("{text:?} in {}", path.display()),
        Duration::from_secs(15),
        || {
            let path = path.clone();
            async move {
                let log = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                let found = log
                    .lines()
                    .map(parse_cri_log_line)
                    .any(|(stream, tag, line)| stream == "stdout" && tag == "F" && line == text);
                if found {
                    Ok(())
                } else {
                    Err(format!("log so far: {log:?}"))
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn wsl2_pod_runs_on_the_tls_delegate_and_its_routes_survive_a_crimux_kill() {
    let mut c = Composite::start(Primary::Discovered).await;
    let busybox = c.p.busybox.clone();
    c.pull_ok(&busybox, None).await;
    for (who, ctrd) in [
        ("primary", c.primary_ctrd().await),
        ("delegate", c.delegate_ctrd().await),
    ] {
        assert!(
            ctrd.image_names(NS).await.contains(&busybox),
            "a pull without a pod goes to every Linux backend; {who} lacks it"
        );
    }

    let here = c.p.pod_config("here");
    let here_id = c.run_pod(&here, "").await;
    let there = c.p.pod_config("there");
    let there_id = c.run_pod(&there, HANDLER).await;
    let here_c =
        c.p.create_start(
            &here_id,
            &here,
            &c.p.container_config("hc", "echo hello-primary; exec sleep 3600"),
        )
        .await;
    let there_c =
        c.p.create_start(
            &there_id,
            &there,
            &c.p.container_config("tc", "echo hello-delegate; exec sleep 3600"),
        )
        .await;

    // Each containerd holds exactly its own pod: sandbox and container objects and tasks.
    let primary = c.primary_ctrd().await;
    let delegate = c.delegate_ctrd().await;
    let p_objs = primary.container_ids(NS).await;
    let d_objs = delegate.container_ids(NS).await;
    assert_eq!(
        p_objs,
        [here_id.clone(), here_c.clone()].into(),
        "primary objects"
    );
    assert_eq!(
        d_objs,
        [there_id.clone(), there_c.clone()].into(),
        "delegate objects"
    );
    let d_tasks = delegate.tasks(NS).await;
    assert_eq!(
        d_tasks.get(&there_id),
        Some(&2),
        "delegate pause task: {d_tasks:?}"
    );
    assert_eq!(
        d_tasks.get(&there_c),
        Some(&2),
        "delegate container task: {d_tasks:?}"
    );
    let p_tasks = primary.tasks(NS).await;
    assert!(
        !p_tasks.contains_key(&there_id) && !p_tasks.contains_key(&there_c),
        "primary runs delegate tasks: {p_tasks:?}"
    );

    // Logs, exec-sync and stats follow the pod to the delegate.
    assert_logged(&c, &there, "tc", "hello-delegate").await;
    assert_logged(&c, &here, "hc", "hello-primary").await;
    let out = c.p.sh(&there_c, "echo $GREETING; hostname").await;
    assert_eq!(out, "hello world\nthere-host\n");
    c.p.live_container_stats(&there_c).await;
    c.p.pod_stats(&there_id).await;
    let stat_ids = c.p.stats_ids().await;
    let mut both = vec![here_c.clone(), there_c.clone()];
    both.sort();
    assert_eq!(stat_ids, both, "merged container stats");

    // Lists are merged, and say which handler each pod runs with.
    let mut pods = vec![here_id.clone(), there_id.clone()];
    pods.sort();
    assert_eq!(c.pod_ids().await, pods);
    assert_eq!(c.container_ids().await, both);
    let listed = c.pods().await;
    let handler_of = |id: &str| {
        listed
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.runtime_handler.clone())
    };
    assert_eq!(handler_of(&there_id).as_deref(), Some(HANDLER));
    assert_eq!(handler_of(&here_id).as_deref(), Some(""));

    // SIGKILL crimux: every route is rebuilt, nothing is duplicated.
    c.p.env.crimux.kill();
    c.p.env.crimux.restart().await;
    assert_eq!(c.pod_ids().await, pods, "pods after restart");
    assert_eq!(c.container_ids().await, both, "containers after restart");
    for id in [&here_id, &there_id] {
        assert_eq!(
            c.pod_state(id)
                .await
                .expect("PodSandboxStatus after restart"),
            PodSandboxState::SandboxReady as i32
        );
    }
    c.assert_container_running(&here_c).await;
    c.assert_container_running(&there_c).await;
    assert_eq!(c.p.sh(&there_c, "hostname").await, "there-host\n");
    assert_eq!(c.p.sh(&here_c, "hostname").await, "here-host\n");
    // A second container in the delegate pod, after the restart, lands there too.
    let there_c2 =
        c.p.create_start(
            &there_id,
            &there,
            &c.p.container_config("tc2", "exec sleep 3600"),
        )
        .await;
    assert!(delegate.container_ids(NS).await.contains(&there_c2));

    // Removal follows the pod too, and leaves the delegate empty.
    c.p.stop_remove_pod(&there_id).await;
    eventually("delegate emptied", Duration::from_secs(15), || async {
        let objs = delegate.container_ids(NS).await;
        let tasks = delegate.tasks(NS).await;
        if objs.is_empty() && tasks.is_empty() {
            Ok(())
        } else {
            Err(format!("objects {objs:?} tasks {tasks:?}"))
        }
    })
    .await;
    assert_eq!(primary.container_ids(NS).await, p_objs, "primary untouched");
    assert_eq!(c.pod_ids().await, vec![here_id.clone()]);
}

#[tokio::test]
async fn delegate_down_keeps_the_primary_working_and_is_reconciled_when_back() {
    let mut c = Composite::start(Primary::Discovered).await;
    let busybox = c.p.busybox.clone();
    c.pull_ok(&busybox, None).await;
    let here = c.p.pod_config("here");
    let here_id = c.run_pod(&here, "").await;
    let there = c.p.pod_config("there");
    let there_id = c.run_pod(&there, HANDLER).await;
    let here_c =
        c.p.create_start(
            &here_id,
            &here,
            &c.p.container_config("hc", "exec sleep 3600"),
        )
        .await;
    let there_c =
        c.p.create_start(
            &there_id,
            &there,
            &c.p.container_config("tc", "exec sleep 3600"),
        )
        .await;

    // The delegate containerd goes away (its shims, and so the pod, keep running).
    c.delegate.containerd.stop();

    // The primary keeps working: a new container in its pod.
    let here_c2 =
        c.p.create_start(
            &here_id,
            &here,
            &c.p.container_config("hc2", "exec sleep 3600"),
        )
        .await;
    assert_eq!(c.p.sh(&here_c2, "hostname").await, "here-host\n");
    assert_eq!(
        c.pod_state(&here_id).await.expect("primary pod status"),
        PodSandboxState::SandboxReady as i32
    );

    // The delegate's pod and container are still listed, from crimux's records.
    let pods = c.pod_ids().await;
    assert!(pods.contains(&here_id), "{pods:?}");
    assert!(
        pods.contains(&there_id),
        "the unreachable delegate's pod is not listed (last known state): {pods:?}"
    );
    let containers = c.container_ids().await;
    assert!(
        containers.contains(&here_c) && containers.contains(&here_c2),
        "{containers:?}"
    );
    assert!(
        containers.contains(&there_c),
        "the unreachable delegate's container is not listed: {containers:?}"
    );

    // Operations on them say Unavailable.
    let mut rt = c.p.rt().await;
    let code = rt
        .container_status(ContainerStatusRequest {
            container_id: there_c.clone(),
            verbose: false,
        })
        .await
        .expect_err("ContainerStatus on a down backend")
        .code();
    assert_eq!(code, Code::Unavailable);
    let code = rt
        .exec_sync(ExecSyncRequest {
            container_id: there_c.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        })
        .await
        .expect_err("ExecSync on a down backend")
        .code();
    assert_eq!(code, Code::Unavailable);
    let code = c
        .pod_state(&there_id)
        .await
        .expect_err("PodSandboxStatus")
        .code();
    assert_eq!(code, Code::Unavailable);
    let code =
        c.p.try_create(&there_id, &there, &c.p.container_config("late", "true"))
            .await
            .expect_err("CreateContainer on a down backend")
            .code();
    assert_eq!(code, Code::Unavailable);
    let code =
        c.p.try_run_pod_on(&c.p.pod_config("nowhere"), HANDLER)
            .await
            .expect_err("RunPodSandbox on a down backend")
            .code();
    assert_eq!(code, Code::Unavailable);

    // Back: everything is reconciled.
    c.delegate.containerd.start_again().await;
    eventually(
        "the delegate pod answers again",
        Duration::from_secs(30),
        || async {
            match c.pod_state(&there_id).await {
                Ok(s) if s == PodSandboxState::SandboxReady as i32 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let s = c.p.container_status(&there_c).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    assert_eq!(c.p.sh(&there_c, "hostname").await, "there-host\n");
    let mut pods = c.pod_ids().await;
    let n = pods.len();
    pods.dedup();
    assert_eq!(pods.len(), n, "duplicate pods: {pods:?}");
    let mut want = vec![here_id.clone(), there_id.clone()];
    want.sort();
    assert_eq!(pods, want, "pods after the delegate is back");
    let mut containers = c.container_ids().await;
    let mut want = vec![here_c.clone(), here_c2.clone(), there_c.clone()];
    want.sort();
    containers.dedup();
    assert_eq!(containers, want, "containers after the delegate is back");

    // A new wsl2 pod runs there.
    let again = c.p.pod_config("again");
    let again_id = c.run_pod(&again, HANDLER).await;
    let again_c =
        c.p.create_start(
            &again_id,
            &again,
            &c.p.container_config("ac", "exec sleep 3600"),
        )
        .await;
    assert_eq!(c.p.sh(&again_c, "hostname").await, "again-host\n");
    let d_objs = c.delegate_ctrd().await.container_ids(NS).await;
    assert!(
        d_objs.contains(&again_id) && d_objs.contains(&again_c),
        "{d_objs:?}"
    );
}

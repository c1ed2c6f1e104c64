//! A `wsl2` pod through the outer crimux runs on the inner crimux, with logs under the
//! mapped directory, exec-sync, streaming exec and port-forward relayed through the outer's
//! streaming server, events, stats, a restart of the outer, and nothing left behind.

use std::time::Duration;

use k8s_cri::v1::{
    ContainerEventType, GetEventsRequest, PodSandboxState, RemoveContainerRequest,
    StopContainerRequest,
};
use tokio_stream::StreamExt;

use crimux_streaming::client;

use crate::common::runtime::parse_cri_log_line;
use crate::common::streaming::{exec_url, http_get, port_forward_url, Streams};
use crate::common::{eventually, NS};
use crate::env::{has_requested_id, Delegated, HANDLER};

const SECOND: Duration = Duration::from_secs(1);

/// The lines of a CRI log file as (stream, tag, text), once it has `want` stdout lines.
async fn log_lines(path: &std::path::Path, want: usize) -> Vec<(String, String, String)> {
    let read = || -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(parse_cri_log_line)
            .collect()
    };
    eventually(
        &format!("{want} stdout lines in {}", path.display()),
        20 * SECOND,
        || async {
            let lines = read();
            if lines.iter().filter(|(s, _, _)| s == "stdout").count() >= want {
                Ok(())
            } else {
                Err(format!("log so far: {lines:?}"))
            }
        },
    )
    .await;
    read()
}

/// The streaming server's base URL a crimux logged at start (`url=http://...`).
fn streaming_base(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("streaming server ready"))
        .filter_map(|l| l.split("url=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|u| u.trim_matches('"').trim_end_matches('/').to_string())
        .next_back()
        .unwrap_or_else(|| panic!("no streaming URL in the log:\n{log}"))
}

/// Reads the event stream until container `id` has had every event in `wanted`.
async fn wait_events(
    events: &mut tonic::Streaming<k8s_cri::v1::ContainerEventResponse>,
    id: &str,
    wanted: &[ContainerEventType],
) {
    let mut seen = Vec::new();
    let got = tokio::time::timeout(20 * SECOND, async {
        while let Some(e) = events.next().await {
            let e = e.expect("event");
            if e.container_id == id {
                seen.push(e.container_event_type);
                if wanted.iter().all(|w| seen.contains(&(*w as i32))) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(
        matches!(got, Ok(true)),
        "events for {id}: {seen:?}, wanted {wanted:?}"
    );
}

#[tokio::test]
async fn wsl2_pod_runs_on_the_inner_crimux_through_the_outer() {
    let mut d = Delegated::start().await;
    let busybox = d.p.busybox.clone();

    // A pod with handler wsl2: forwarded, with the outer's id, to the inner crimux.
    let there = d.pod_config("there");
    d.pull_for(&busybox, &there).await;
    let there_id = d.run_pod(&there, HANDLER).await;
    assert_eq!(
        d.inner_pods().await,
        std::slice::from_ref(&there_id),
        "inner crimux's pods"
    );
    let (a, b) = (d.ctrd_a().await, d.ctrd_b().await);
    assert_eq!(b.container_ids(NS).await, [there_id.clone()].into());
    assert!(
        a.container_ids(NS).await.is_empty(),
        "containerd A has the pod"
    );
    let status = d
        .inner
        .crimux
        .pod_status(&there_id)
        .await
        .expect("inner PodSandboxStatus")
        .expect("status");
    assert!(!has_requested_id(&status.annotations), "{status:?}");
    assert_eq!(
        status.metadata.as_ref().map(|m| m.name.as_str()),
        Some("there")
    );

    // Container events, from here on, through the outer crimux.
    let mut events =
        d.p.rt()
            .await
            .get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();

    // A container that logs, then reads stdin-less forever: its log is written by the
    // inner side under the mapped directory, and reported under the host's name.
    let script = "echo first line; echo second line; echo to-stderr >&2; exec sleep 3600";
    let ctr = d.p.container_config("c", script);
    let cid = d.p.create_start(&there_id, &there, &ctr).await;
    assert_eq!(d.inner_containers().await, std::slice::from_ref(&cid));
    assert_eq!(
        b.container_ids(NS).await,
        [there_id.clone(), cid.clone()].into()
    );
    assert_eq!(
        b.tasks(NS).await.get(&cid),
        Some(&2),
        "running in containerd B"
    );
    let log = d.distro_log_dir("there").join("c.log");
    let lines = log_lines(&log, 2).await;
    let stdout: Vec<(String, String)> = lines
        .iter()
        .filter(|(s, _, _)| s == "stdout")
        .map(|(_, tag, text)| (tag.clone(), text.clone()))
        .collect();
    assert_eq!(
        stdout,
        [
            ("F".to_string(), "first line".to_string()),
            ("F".to_string(), "second line".to_string())
        ]
    );
    assert!(
        lines
            .iter()
            .any(|(s, t, x)| s == "stderr" && t == "F" && x == "to-stderr"),
        "{lines:?}"
    );
    assert!(
        !d.host_log_dir("there").exists(),
        "the outer side wrote the log itself"
    );
    let s = d.p.container_status(&cid).await;
    assert_eq!(
        s.log_path,
        d.host_log_dir("there").join("c.log").display().to_string(),
        "ContainerStatus reports the host's path"
    );
    assert!(!has_requested_id(&s.annotations), "{s:?}");

    // Events: created and started, with the outer's id.
    wait_events(
        &mut events,
        &cid,
        &[
            ContainerEventType::ContainerCreatedEvent,
            ContainerEventType::ContainerStartedEvent,
        ],
    )
    .await;

    // ExecSync.
    assert_eq!(
        d.p.sh(&cid, "echo $GREETING; hostname").await,
        "hello world\nthere-host\n"
    );

    // Streaming exec through the outer's URL: stdin echoed, exit code 42.
    let url = exec_url(&d.p, &cid, &["sh", "-c", "cat; exit 42"], Streams::PIPES)
        .await
        .expect("Exec");
    let (outer_base, inner_base) = (
        streaming_base(&d.outer().log()),
        streaming_base(&d.inner.crimux.log()),
    );
    assert!(
        url.starts_with(&outer_base) && !url.starts_with(&inner_base),
        "{url} is not at the outer's streaming server {outer_base} (inner: {inner_base})"
    );
    let run = async {
        let mut session = client::exec(&url, Streams::PIPES.options()).await?;
        session.write_stdin(b"ping from the host\n").await?;
        session.close_stdin().await?;
        session.output().await
    };
    let out = match tokio::time::timeout(120 * SECOND, run).await {
        Ok(Ok(out)) => out,
        other => {
            d.dump_logs();
            panic!("exec session: {other:?}");
        }
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping from the host\n");
    assert_eq!(out.exit_code, 42, "{out:?}");

    // Port-forward into the delegate pod's network namespace.
    let web_script = "mkdir -p /www && echo hello-from-the-distro > /www/index.html && \
                      exec httpd -f -p 8080 -h /www";
    let web =
        d.p.create_start(&there_id, &there, &d.p.container_config("web", web_script))
            .await;
    eventually("httpd to answer", 15 * SECOND, || async {
        let r =
            d.p.exec(
                &web,
                &["wget", "-q", "-O-", "http://127.0.0.1:8080/index.html"],
            )
            .await;
        match r.exit_code {
            0 => Ok(()),
            n => Err(format!("wget exit {n}")),
        }
    })
    .await;
    let url = port_forward_url(&d.p, &there_id, &[8080])
        .await
        .expect("PortForward");
    let session = client::port_forward(&url, Default::default())
        .await
        .expect("port-forward session");
    let mut fwd = session.open(8080).await.expect("forward 8080");
    let response = http_get(&mut fwd).await;
    assert!(
        response.starts_with("HTTP/1.") && response.contains("hello-from-the-distro"),
        "{response:?}"
    );
    session.close().await;

    // Stats, per container, per pod and listed.
    d.p.live_container_stats(&cid).await;
    d.p.pod_stats(&there_id).await;
    let listed = d.p.stats_ids().await;
    assert!(listed.contains(&cid) && listed.contains(&web), "{listed:?}");

    // A default-handler pod stays on containerd A, and the inner crimux never sees it.
    let here = d.p.pod_config("here");
    let here_id = d.run_pod(&here, "").await;
    let here_c =
        d.p.create_start(
            &here_id,
            &here,
            &d.p.container_config("hc", "exec sleep 3600"),
        )
        .await;
    assert_eq!(
        a.container_ids(NS).await,
        [here_id.clone(), here_c.clone()].into()
    );
    assert_eq!(d.inner_pods().await, std::slice::from_ref(&there_id));
    let mut pods = vec![here_id.clone(), there_id.clone()];
    pods.sort();
    assert_eq!(d.outer_pods().await, pods);

    // SIGKILL the outer crimux: both pods are found again and operable.
    d.p.env.crimux.kill();
    d.p.env.crimux.restart().await;
    assert_eq!(d.outer_pods().await, pods, "pods after the restart");
    let mut ctrs = vec![cid.clone(), web.clone(), here_c.clone()];
    ctrs.sort();
    assert_eq!(
        d.outer_containers().await,
        ctrs,
        "containers after the restart"
    );
    let state = d
        .outer()
        .pod_status(&there_id)
        .await
        .expect("PodSandboxStatus after the restart")
        .map(|s| s.state);
    assert_eq!(state, Some(PodSandboxState::SandboxReady as i32));
    assert_eq!(d.p.sh(&cid, "hostname").await, "there-host\n");
    assert_eq!(d.p.sh(&here_c, "hostname").await, "here-host\n");

    // A Windows-looking log directory (C:\...) is mapped too, and reported back as such.
    let mut win = d.p.pod_config("winlog");
    win.log_directory = format!("{}logs\\winlog", d.win_prefix);
    let win_id = d.run_pod(&win, HANDLER).await;
    let mut wc =
        d.p.container_config("w", "echo from-a-windows-path; exec sleep 3600");
    wc.log_path = "w\\0.log".into();
    let win_c = d.p.create_start(&win_id, &win, &wc).await;
    let win_log = d.dir.path().join("distro-win/logs/winlog/w/0.log");
    let lines = log_lines(&win_log, 1).await;
    assert_eq!(
        lines[0],
        ("stdout".into(), "F".into(), "from-a-windows-path".into())
    );
    assert_eq!(
        d.p.container_status(&win_c).await.log_path,
        format!("{}logs\\winlog\\w\\0.log", d.win_prefix)
    );

    // Stop and remove: nothing stays on the delegate side, nor in the inner's lists.
    let mut rt = d.p.rt().await;
    let mut events = rt
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents after the restart")
        .into_inner();
    rt.stop_container(StopContainerRequest {
        container_id: web.clone(),
        timeout: 5,
    })
    .await
    .expect("StopContainer");
    rt.remove_container(RemoveContainerRequest {
        container_id: web.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert!(!d.inner_containers().await.contains(&web));
    wait_events(
        &mut events,
        &web,
        &[
            ContainerEventType::ContainerStoppedEvent,
            ContainerEventType::ContainerDeletedEvent,
        ],
    )
    .await;
    d.p.stop_remove_pod(&there_id).await;
    d.p.stop_remove_pod(&win_id).await;
    d.assert_inner_clean().await;
    assert_eq!(d.outer_pods().await, std::slice::from_ref(&here_id));
    assert_eq!(a.container_ids(NS).await, [here_id.clone(), here_c].into());
    d.p.stop_remove_pod(&here_id).await;
    d.p.assert_no_leaks().await;
}

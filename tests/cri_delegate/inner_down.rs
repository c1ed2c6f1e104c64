//! The inner crimux unreachable (its relay cut, then the inner crimux itself stopped): the
//! outer still lists the delegate's pods and containers from its records, operations on
//! them are Unavailable naming the backend, the primary keeps working, and everything
//! answers again once the inner side is back.

use std::time::Duration;

use k8s_cri::v1::{
    ContainerStatusRequest, ExecSyncRequest, PodSandboxState, PodSandboxStatusRequest,
    StatusRequest,
};
use tonic::Code;

use crate::common::eventually;
use crate::env::{Delegated, DELEGATE, HANDLER};

#[tokio::test]
async fn inner_crimux_down_gives_unavailable_and_its_pods_stay_listed() {
    let mut d = Delegated::start().await;
    let busybox = d.p.busybox.clone();
    let there = d.pod_config("there");
    d.pull_for(&busybox, &there).await;
    let there_id = d.run_pod(&there, HANDLER).await;
    let there_c =
        d.p.create_start(
            &there_id,
            &there,
            &d.p.container_config("tc", "exec sleep 3600"),
        )
        .await;
    let here = d.p.pod_config("here");
    let here_id = d.run_pod(&here, "").await;
    let mut pods = vec![here_id.clone(), there_id.clone()];
    pods.sort();

    for how in ["relay cut", "inner crimux stopped"] {
        match how {
            "relay cut" => d.inner.cut(),
            _ => d.inner.crimux.stop(),
        }
        // Lists still show the delegate's pod and container (last known state).
        assert_eq!(d.outer_pods().await, pods, "{how}");
        assert!(d.outer_containers().await.contains(&there_c), "{how}");
        // Operations routed to it are Unavailable, naming the backend.
        let mut rt = d.p.rt().await;
        let err = rt
            .container_status(ContainerStatusRequest {
                container_id: there_c.clone(),
                verbose: false,
            })
            .await
            .expect_err("ContainerStatus with the inner crimux down");
        assert_eq!(err.code(), Code::Unavailable, "{how}: {err:?}");
        assert!(err.message().contains(DELEGATE), "{how}: {err:?}");
        let err = rt
            .exec_sync(ExecSyncRequest {
                container_id: there_c.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await
            .expect_err("ExecSync");
        assert_eq!(err.code(), Code::Unavailable, "{how}: {err:?}");
        let err = rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: there_id.clone(),
                verbose: false,
            })
            .await
            .expect_err("PodSandboxStatus");
        assert_eq!(err.code(), Code::Unavailable, "{how}: {err:?}");
        let err =
            d.p.try_run_pod_on(&d.p.pod_config("nowhere"), HANDLER)
                .await
                .expect_err("RunPodSandbox");
        assert_eq!(err.code(), Code::Unavailable, "{how}: {err:?}");
        // The runtime status says which backend is unreachable.
        let status = rt
            .status(StatusRequest { verbose: false })
            .await
            .expect("Status")
            .into_inner()
            .status
            .expect("conditions");
        let condition = status
            .conditions
            .iter()
            .find(|c| c.r#type == format!("BackendReachable/{DELEGATE}"))
            .unwrap_or_else(|| panic!("{how}: no condition for {DELEGATE}: {status:?}"));
        assert!(!condition.status, "{how}: {condition:?}");
        // The primary keeps working.
        assert_eq!(
            rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: here_id.clone(),
                verbose: false,
            })
            .await
            .expect("primary pod status")
            .into_inner()
            .status
            .map(|s| s.state),
            Some(PodSandboxState::SandboxReady as i32),
            "{how}"
        );

        // Back: the delegate's pod answers again, with its container still running.
        match how {
            "relay cut" => d.inner.reconnect(),
            _ => d.inner.crimux.restart().await,
        }
        eventually(
            &format!("the delegate pod to answer again after {how}"),
            Duration::from_secs(30),
            || async {
                let mut rt = d.p.rt().await;
                match rt
                    .pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: there_id.clone(),
                        verbose: false,
                    })
                    .await
                {
                    Ok(r)
                        if r.get_ref().status.as_ref().map(|s| s.state)
                            == Some(PodSandboxState::SandboxReady as i32) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        assert_eq!(d.p.sh(&there_c, "echo back").await, "back\n", "{how}");
        assert_eq!(d.outer_pods().await, pods, "{how}: nothing listed twice");
    }

    d.p.stop_remove_pod(&there_id).await;
    d.p.stop_remove_pod(&here_id).await;
    d.assert_inner_clean().await;
    d.p.assert_no_leaks().await;
}

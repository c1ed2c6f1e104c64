//! Exec, Attach and PortForward: validate the request, check with the pod's backend that
//! the session can start now, and answer with a single-use URL at crimux's streaming
//! server (`crimux-streaming`), where the client then upgrades to SPDY or WebSocket.

use k8s_cri::v1;
use tonic::Status;

use crimux_core::{ContainerId, Error, PodSandboxId, StreamingBackend};
use crimux_streaming::Streams;

use super::CriRuntimeService;

fn required(rpc: &str, what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("{rpc}: {what} is required")));
    }
    Ok(())
}

/// CRI ports are int32; only 1-65535 name a TCP port.
fn ports(raw: &[i32]) -> Result<Vec<u16>, Error> {
    raw.iter()
        .map(|&p| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::InvalidArgument(format!("PortForward: invalid port {p}")))
        })
        .collect()
}

impl CriRuntimeService {
    fn streaming_server(&self) -> Result<&crimux_streaming::Server, Error> {
        self.streaming
            .as_deref()
            .ok_or_else(|| Error::Unavailable("streaming server not configured".into()))
    }

    // The command line may carry secrets: only its length is logged.
    #[tracing::instrument(skip_all, fields(container_id = %request.container_id, args = request.cmd.len(), tty = request.tty), err(Display, level = "warn"))]
    pub(super) async fn answer_exec(
        &self,
        request: v1::ExecRequest,
    ) -> Result<v1::ExecResponse, Status> {
        required("Exec", "container_id", &request.container_id)?;
        let streams = Streams {
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
            tty: request.tty,
        };
        streams.validate("Exec")?;
        if request.cmd.is_empty() {
            return Err(Error::InvalidArgument("Exec: cmd is required".into()).into());
        }
        let server = self.streaming_server()?;
        let id = ContainerId::from(request.container_id.as_str());
        self.dispatcher.check_exec(&id).await?;
        let url = server.exec_url(&id, request.cmd, streams)?;
        Ok(v1::ExecResponse { url })
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id, tty = request.tty), err(Display, level = "warn"))]
    pub(super) async fn answer_attach(
        &self,
        request: v1::AttachRequest,
    ) -> Result<v1::AttachResponse, Status> {
        required("Attach", "container_id", &request.container_id)?;
        let streams = Streams {
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
            tty: request.tty,
        };
        streams.validate("Attach")?;
        let server = self.streaming_server()?;
        let id = ContainerId::from(request.container_id.as_str());
        self.dispatcher.check_attach(&id).await?;
        let url = server.attach_url(&id, streams)?;
        Ok(v1::AttachResponse { url })
    }

    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id, ports = ?request.port), err(Display, level = "warn"))]
    pub(super) async fn answer_port_forward(
        &self,
        request: v1::PortForwardRequest,
    ) -> Result<v1::PortForwardResponse, Status> {
        required("PortForward", "pod_sandbox_id", &request.pod_sandbox_id)?;
        let ports = ports(&request.port)?;
        let server = self.streaming_server()?;
        let id = PodSandboxId::from(request.pod_sandbox_id.as_str());
        self.dispatcher.check_port_forward(&id).await?;
        let url = server.port_forward_url(&id, ports)?;
        Ok(v1::PortForwardResponse { url })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use tonic::Code;

    use crimux_core::{Backend, Result};
    use crimux_dispatch::testing::FakeBackend;
    use crimux_dispatch::Dispatcher;

    use super::*;

    fn service(with_server: Option<Arc<crimux_streaming::Server>>) -> CriRuntimeService {
        let fake = FakeBackend::primary("main", "linux").into_arc();
        let dispatcher = Dispatcher::new(vec![fake as Arc<dyn Backend>], None).unwrap();
        let mut service = CriRuntimeService::new(Arc::new(dispatcher));
        if let Some(s) = with_server {
            service = service.with_streaming(s);
        }
        service
    }

    struct Nothing;
    #[async_trait]
    impl StreamingBackend for Nothing {
        async fn check_exec(&self, _: &ContainerId) -> Result<()> {
            Ok(())
        }
    }

    async fn server() -> Arc<crimux_streaming::Server> {
        crimux_streaming::Server::bind(Default::default(), Arc::new(Nothing))
            .await
            .unwrap()
    }

    fn exec(
        id: &str,
        cmd: &[&str],
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> v1::ExecRequest {
        v1::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout,
            stderr,
        }
    }

    #[tokio::test]
    async fn requests_are_validated_before_anything_else() {
        let s = service(Some(server().await));
        for (req, what) in [
            (exec("", &["sh"], false, true, false, false), "container_id"),
            (
                exec("c", &["sh"], false, false, false, false),
                "one of stdin",
            ),
            (
                exec("c", &["sh"], false, true, true, true),
                "tty and stderr",
            ),
            (exec("c", &[], false, true, false, false), "cmd"),
        ] {
            let err = s.answer_exec(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{what}");
            assert!(err.message().contains(what), "{}", err.message());
        }
        let attach = v1::AttachRequest {
            container_id: "c".into(),
            stdin: false,
            tty: true,
            stdout: true,
            stderr: true,
        };
        assert_eq!(
            s.answer_attach(attach).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let pf = v1::PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80, 70000],
        };
        assert_eq!(
            s.answer_port_forward(pf).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(ports(&[1, 65535]).unwrap(), vec![1, 65535]);
        assert!(ports(&[0]).is_err() && ports(&[-1]).is_err());
    }

    #[tokio::test]
    async fn unknown_ids_pass_through_and_no_server_is_unavailable() {
        let s = service(Some(server().await));
        let err = s
            .answer_exec(exec("nosuch", &["sh"], false, true, false, false))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let pf = v1::PortForwardRequest {
            pod_sandbox_id: "nosuch".into(),
            port: vec![80],
        };
        assert_eq!(
            s.answer_port_forward(pf).await.unwrap_err().code(),
            Code::NotFound
        );

        let s = service(None);
        let err = s
            .answer_exec(exec("c", &["sh"], false, true, false, false))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("streaming server not configured"));
    }
}

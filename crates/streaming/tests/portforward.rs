//! portforward.k8s.io over SPDY/3.1 against the real server and a fake backend: parallel
//! requests on one session, a refused port reported on its error stream while the session
//! goes on, invalid streams refused.

mod common;

use common::{closed, request, server, SpdyClient};
use crimux_spdy::RstStatus;

const PF: &str = "portforward.k8s.io";

async fn open_pair(c: &mut SpdyClient, error_id: u32, port: &str, request_id: &str) {
    c.open(
        error_id,
        &[
            ("streamtype", "error"),
            ("port", port),
            ("requestid", request_id),
        ],
    )
    .await;
    // The client never writes on the error stream.
    c.data(error_id, b"", true).await;
    c.open(
        error_id + 2,
        &[
            ("streamtype", "data"),
            ("port", port),
            ("requestid", request_id),
        ],
    )
    .await;
}

#[tokio::test]
async fn two_parallel_requests_and_a_refused_port() {
    let (server, _) = server().await;
    let url = server.port_forward_url(&"p1".into(), vec![80]).unwrap();
    assert!(url.contains("/portforward/"));
    let (head, mut c) = SpdyClient::connect(&url, &[PF]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("X-Stream-Protocol-Version: portforward.k8s.io"));

    open_pair(&mut c, 1, "80", "0").await;
    open_pair(&mut c, 5, "8080", "1").await;
    c.data(3, b"first", false).await;
    c.data(7, b"second", false).await;
    c.until(|c| c.text(3) == "port 80: first" && c.text(7) == "port 8080: second")
        .await;

    // A refused port: a message on that request's error stream, the session goes on.
    open_pair(&mut c, 9, "9", "2").await;
    c.until(|c| c.fin.contains(&9) && c.fin.contains(&11)).await;
    assert!(
        c.text(9).contains("error forwarding port 9 to pod p1"),
        "{}",
        c.text(9)
    );
    assert!(c.text(9).contains("connection refused"));

    c.data(3, b" again", true).await;
    c.until(|c| c.fin.contains(&3) && c.fin.contains(&1)).await;
    assert_eq!(c.text(3), "port 80: firstport 80:  again");
    assert_eq!(c.text(1), "");
    c.data(7, b"!", false).await;
    c.until(|c| c.text(7).ends_with("port 8080: !")).await;
}

#[tokio::test]
async fn invalid_streams_are_refused_and_old_clients_pair_by_stream_id() {
    let (server, _) = server().await;
    let url = server.port_forward_url(&"p1".into(), vec![]).unwrap();
    let (head, mut c) = SpdyClient::connect(&url, &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    c.open(1, &[("streamtype", "data")]).await;
    c.open(3, &[("streamtype", "data"), ("port", "0")]).await;
    c.open(5, &[("streamtype", "stdin"), ("port", "80")]).await;
    c.until(|c| c.reset.len() == 3).await;
    assert!(c.reset.values().all(|s| *s == RstStatus::RefusedStream));
    // No requestID: error stream n, data stream n + 2.
    c.open(7, &[("streamtype", "error"), ("port", "81")]).await;
    c.open(9, &[("streamtype", "data"), ("port", "81")]).await;
    c.data(9, b"old", false).await;
    c.until(|c| c.text(9) == "port 81: old").await;
}

#[tokio::test]
async fn port_forward_needs_spdy_and_its_protocol() {
    let (server, _) = server().await;
    let url = server.port_forward_url(&"p1".into(), vec![]).unwrap();
    let (head, mut tcp) = request(&url, "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(closed(&mut tcp).await);
    let url = server.port_forward_url(&"p1".into(), vec![]).unwrap();
    let (head, _) = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test]
async fn a_pod_side_close_ends_the_request_while_the_client_keeps_its_side_open() {
    let (server, _) = server().await;
    let url = server.port_forward_url(&"p1".into(), vec![7]).unwrap();
    let (_, mut c) = SpdyClient::connect(&url, &[PF]).await;
    open_pair(&mut c, 1, "7", "0").await;
    c.data(3, b"GET /", false).await;
    // The client never half-closes its data stream; both streams still end.
    c.until(|c| c.fin.contains(&3) && c.fin.contains(&1)).await;
    assert_eq!(c.text(3), "port 7: GET /");
    assert_eq!(c.text(1), "");
}

#[tokio::test]
async fn a_pod_connection_failing_mid_session_is_reported_on_the_error_stream() {
    let (server, _) = server().await;
    let url = server.port_forward_url(&"p1".into(), vec![13]).unwrap();
    let (_, mut c) = SpdyClient::connect(&url, &[PF]).await;
    open_pair(&mut c, 1, "13", "0").await;
    c.until(|c| c.fin.contains(&1) && c.fin.contains(&3)).await;
    assert_eq!(c.text(3), "partial");
    assert!(
        c.text(1).contains("error forwarding port 13 to pod p1")
            && c.text(1).contains("pod connection reset"),
        "{}",
        c.text(1)
    );
    // The session goes on.
    open_pair(&mut c, 5, "80", "1").await;
    c.data(7, b"still", false).await;
    c.until(|c| c.text(7) == "port 80: still").await;
}

//! Connection behaviour against a hand-driven client peer over an in-memory
//! duplex pipe. The peer uses the crate's codec and applies no flow control
//! of its own, so every window the server grants or consumes is visible.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crimux_spdy::frame::{MAX_FRAME_LEN, SETTINGS_INITIAL_WINDOW_SIZE};
use crimux_spdy::{
    Config, Connection, Frame, FrameCodec, GoAwayStatus, Headers, Limits, RstStatus, Setting,
    Stream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(150);

struct Peer {
    io: DuplexStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Peer {
    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&frame, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// Next frame, or None on EOF / when nothing arrives within `dur`.
    async fn next_within(&mut self, dur: Duration) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match tokio::time::timeout(dur, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Err(_) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("peer read: {e}"),
            }
        }
    }

    async fn recv(&mut self) -> Frame {
        self.next_within(WAIT).await.expect("frame expected")
    }

    /// Next frame that is not a WINDOW_UPDATE.
    async fn recv_skip_updates(&mut self) -> Frame {
        loop {
            match self.recv().await {
                Frame::WindowUpdate { .. } => continue,
                f => return f,
            }
        }
    }

    async fn open(&mut self, id: u32, streamtype: &str, fin: bool) {
        let headers: Headers = [("streamtype", streamtype)].into_iter().collect();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            headers,
        })
        .await;
    }

    async fn data(&mut self, id: u32, bytes: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(bytes),
        })
        .await;
    }

    /// Collects DATA of `id` until `n` bytes arrived, returning other frames' count.
    async fn read_data(&mut self, id: u32, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv().await {
                Frame::Data {
                    stream_id, data, ..
                } if stream_id == id => got.extend_from_slice(&data),
                Frame::WindowUpdate { .. } | Frame::SynReply { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    }
}

/// Starts a server connection; checks and consumes the session-window grant
/// the server announces first.
async fn setup(config: Config) -> (Connection, Peer) {
    let (a, b) = tokio::io::duplex(4 << 20);
    let grant = config.session_window - 64 * 1024;
    let conn = Connection::new(a, config).unwrap();
    let mut peer = Peer {
        io: b,
        codec: FrameCodec::new(Limits::default()).unwrap(),
        buf: BytesMut::new(),
    };
    if grant > 0 {
        assert_eq!(
            peer.recv().await,
            Frame::WindowUpdate {
                stream_id: 0,
                delta: grant
            }
        );
    }
    (conn, peer)
}

async fn accept(conn: &Connection) -> Stream {
    tokio::time::timeout(WAIT, conn.accept())
        .await
        .unwrap()
        .expect("stream")
}

async fn read_all(s: &mut Stream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn stream_exchange_with_reply_and_fin() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    assert_eq!(s.id(), 1);
    assert_eq!(s.headers().get("streamtype"), Some("stdout"));
    s.reply([("x-ok", "1")].into_iter().collect(), false)
        .unwrap();
    match peer.recv().await {
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers,
        } => assert_eq!(headers.get("x-ok"), Some("1")),
        other => panic!("{other:?}"),
    }
    peer.data(1, b"hello", true).await;
    assert_eq!(read_all(&mut s).await, b"hello");
    s.write_all(b"world").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(peer.read_data(1, 5).await, b"world");
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        }
    );
    assert!(s.write_all(b"late").await.is_err(), "write after FIN");
}

#[tokio::test]
async fn half_close_in_both_orders() {
    let (conn, mut peer) = setup(Config::strict()).await;
    // Peer closes first; the server keeps writing.
    peer.open(1, "stdin", true).await;
    let mut s1 = accept(&conn).await;
    assert!(read_all(&mut s1).await.is_empty());
    s1.write_all(b"after-peer-fin").await.unwrap();
    assert_eq!(peer.read_data(1, 14).await, b"after-peer-fin");
    // Server closes first; the peer keeps sending.
    peer.open(3, "stdin", false).await;
    let mut s3 = accept(&conn).await;
    s3.shutdown().await.unwrap();
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::SynReply {
            stream_id: 3,
            fin: true,
            headers: Headers::new()
        }
    );
    peer.data(3, b"still-open", true).await;
    assert_eq!(read_all(&mut s3).await, b"still-open");
}

#[tokio::test]
async fn slow_reader_gets_window_updates_only_as_it_reads() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdin", false).await;
    let mut s = accept(&conn).await;
    // Fill the whole 64 KiB stream window; the server must not grant more yet.
    for _ in 0..16 {
        peer.data(1, &[7; 4096], false).await;
    }
    while let Some(f) = peer.next_within(QUIET).await {
        assert!(
            !matches!(f, Frame::WindowUpdate { stream_id: 1, .. }),
            "{f:?}"
        );
    }
    let mut buf = vec![0; 40 * 1024];
    s.read_exact(&mut buf).await.unwrap();
    let mut stream_credit = 0;
    while let Some(f) = peer.next_within(QUIET).await {
        if let Frame::WindowUpdate {
            stream_id: 1,
            delta,
        } = f
        {
            stream_credit += delta;
        }
    }
    assert_eq!(stream_credit, 40 * 1024);
}

#[tokio::test]
async fn overrunning_the_stream_window_is_a_flow_control_error() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdin", false).await;
    peer.open(3, "stdin", false).await;
    let mut s1 = accept(&conn).await;
    let mut s3 = accept(&conn).await;
    for _ in 0..16 {
        peer.data(1, &[1; 4096], false).await;
    }
    peer.data(1, b"x", false).await;
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::FlowControlError
        }
    );
    let err = s1.read_u8().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // The session's own window was credited back, so stream 3 still works.
    peer.data(3, b"ok", true).await;
    assert_eq!(read_all(&mut s3).await, b"ok");
}

#[tokio::test]
async fn writer_blocks_on_stream_window_until_update() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    let writer = tokio::spawn(async move {
        s.write_all(&vec![9; 100 * 1024]).await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    assert_eq!(peer.read_data(1, 64 * 1024).await.len(), 64 * 1024);
    assert_eq!(
        peer.next_within(QUIET).await,
        None,
        "window exhausted: nothing more"
    );
    assert!(!writer.is_finished());
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 64 * 1024,
    })
    .await;
    peer.send(Frame::WindowUpdate {
        stream_id: 0,
        delta: 64 * 1024,
    })
    .await;
    assert_eq!(peer.read_data(1, 36 * 1024).await.len(), 36 * 1024);
    assert_eq!(
        peer.recv().await,
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        }
    );
    tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
}

#[tokio::test]
async fn session_window_limits_all_streams() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    peer.open(3, "stdout", false).await;
    let mut a = accept(&conn).await;
    let mut b = accept(&conn).await;
    let wa = tokio::spawn(async move {
        a.write_all(&[1; 48 * 1024]).await.unwrap();
        a
    });
    let wb = tokio::spawn(async move {
        b.write_all(&[2; 48 * 1024]).await.unwrap();
        b
    });
    let mut total = 0;
    while let Some(f) = peer.next_within(QUIET).await {
        if let Frame::Data { data, .. } = f {
            total += data.len();
        }
    }
    assert_eq!(
        total,
        64 * 1024,
        "session window caps the sum of both streams"
    );
    peer.send(Frame::WindowUpdate {
        stream_id: 0,
        delta: 32 * 1024,
    })
    .await;
    while let Some(f) = peer.next_within(QUIET).await {
        if let Frame::Data { data, .. } = f {
            total += data.len();
        }
    }
    assert_eq!(total, 96 * 1024);
    wa.await.unwrap();
    wb.await.unwrap();
}

#[tokio::test]
async fn peer_initial_window_setting_adjusts_open_streams() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: 1000,
        }],
    })
    .await;
    // Make sure the SETTINGS was applied before writing.
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(peer.recv().await, Frame::Ping { id: 1 });
    let w = tokio::spawn(async move {
        s.write_all(&[5; 3000]).await.unwrap();
        s
    });
    assert_eq!(peer.read_data(1, 1000).await.len(), 1000);
    assert_eq!(peer.next_within(QUIET).await, None);
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 2000,
    })
    .await;
    assert_eq!(peer.read_data(1, 2000).await.len(), 2000);
    w.await.unwrap();
}

#[tokio::test]
async fn lenient_mode_ignores_windows_and_pauses_reading() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    // Sending: no WINDOW_UPDATE ever arrives, yet everything is delivered.
    s.write_all(&vec![3; 200 * 1024]).await.unwrap();
    assert_eq!(peer.read_data(1, 200 * 1024).await.len(), 200 * 1024);
    // Receiving: an overrun is not reset; the reader stops reading the socket.
    for _ in 0..40 {
        peer.data(1, &[4; 4096], false).await;
    }
    peer.send(Frame::Ping { id: 11 }).await;
    while let Some(f) = peer.next_within(QUIET).await {
        assert!(
            matches!(f, Frame::WindowUpdate { .. }),
            "no echo while paused: {f:?}"
        );
    }
    let mut buf = vec![0; 160 * 1024];
    s.read_exact(&mut buf).await.unwrap();
    assert!(buf.iter().all(|b| *b == 4));
    assert_eq!(peer.recv_skip_updates().await, Frame::Ping { id: 11 });
}

#[tokio::test]
async fn ping_echo_and_server_ping() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(peer.recv().await, Frame::Ping { id: 1 });
    // An even id the server never sent is ignored.
    peer.send(Frame::Ping { id: 4 }).await;
    assert_eq!(peer.next_within(QUIET).await, None);
    let pinger = tokio::spawn(async move {
        let rtt = conn.ping().await.unwrap();
        (conn, rtt)
    });
    let Frame::Ping { id } = peer.recv().await else {
        panic!("ping expected")
    };
    assert_eq!(id % 2, 0);
    peer.send(Frame::Ping { id }).await;
    let (_conn, rtt) = tokio::time::timeout(WAIT, pinger).await.unwrap().unwrap();
    assert!(rtt < WAIT);
}

#[tokio::test]
async fn server_goaway_refuses_new_streams_but_finishes_old_ones() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    conn.goaway(GoAwayStatus::Ok);
    assert_eq!(
        peer.recv().await,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::Ok
        }
    );
    peer.open(3, "stdout", true).await;
    assert!(tokio::time::timeout(WAIT, conn.accept())
        .await
        .unwrap()
        .is_none());
    peer.data(1, b"old stream works", true).await;
    assert_eq!(read_all(&mut s).await, b"old stream works");
    s.write_all(b"reply").await.unwrap();
    assert_eq!(peer.read_data(1, 5).await, b"reply");
    assert!(conn.open_stream(Headers::new(), false).is_err());
}

#[tokio::test]
async fn peer_goaway_stops_accepting() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: GoAwayStatus::Ok,
    })
    .await;
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(peer.recv().await, Frame::Ping { id: 1 });
    assert_eq!(conn.peer_goaway(), Some((0, GoAwayStatus::Ok)));
    assert!(conn.accept().await.is_none());
    assert!(conn.open_stream(Headers::new(), false).is_err());
}

#[tokio::test]
async fn reset_one_stream_leaves_others_working() {
    let (conn, mut peer) = setup(Config::strict()).await;
    peer.open(1, "stdout", false).await;
    peer.open(3, "stderr", false).await;
    let mut s1 = accept(&conn).await;
    let mut s3 = accept(&conn).await;
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: RstStatus::Cancel,
    })
    .await;
    let err = tokio::time::timeout(WAIT, s1.read_u8())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(s1.write_all(b"x").await.is_err());
    peer.data(3, b"fine", true).await;
    assert_eq!(read_all(&mut s3).await, b"fine");
    s3.reset(RstStatus::InternalError);
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::RstStream {
            stream_id: 3,
            status: RstStatus::InternalError
        }
    );
    // Data for a stream that never existed.
    peer.data(99, b"?", false).await;
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::RstStream {
            stream_id: 99,
            status: RstStatus::InvalidStream
        }
    );
}

#[tokio::test]
async fn hundred_concurrent_streams() {
    let (conn, mut peer) = setup(Config::strict()).await;
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let mut s = accept(&conn).await;
            tasks.push(tokio::spawn(async move {
                let input = read_all(&mut s).await;
                let kind = s.headers().get("streamtype").unwrap().to_string();
                s.write_all(format!("{kind}:").as_bytes()).await.unwrap();
                s.write_all(&input).await.unwrap();
                s.shutdown().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        conn
    });
    for i in 0..100u32 {
        peer.open(2 * i + 1, &format!("t{i}"), false).await;
    }
    for i in 0..100u32 {
        peer.data(2 * i + 1, format!("payload-{i}").as_bytes(), true)
            .await;
    }
    let mut outputs = vec![Vec::new(); 100];
    let mut finished = 0;
    while finished < 100 {
        match peer.recv().await {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                outputs[(stream_id / 2) as usize].extend_from_slice(&data);
                if fin {
                    finished += 1;
                }
            }
            Frame::SynReply { fin: true, .. } => finished += 1,
            _ => {}
        }
    }
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(out), format!("t{i}:payload-{i}"));
    }
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_opened_stream() {
    let (conn, mut peer) = setup(Config::strict()).await;
    let mut s = conn
        .open_stream([("streamtype", "data")].into_iter().collect(), false)
        .unwrap();
    assert_eq!(s.id(), 2);
    match peer.recv().await {
        Frame::SynStream {
            stream_id: 2,
            headers,
            ..
        } => assert_eq!(headers.get("streamtype"), Some("data")),
        other => panic!("{other:?}"),
    }
    peer.send(Frame::SynReply {
        stream_id: 2,
        fin: false,
        headers: [("ok", "y")].into_iter().collect(),
    })
    .await;
    assert_eq!(s.reply_headers().await.unwrap().get("ok"), Some("y"));
    peer.data(2, b"in", true).await;
    assert_eq!(read_all(&mut s).await, b"in");
}

#[tokio::test]
async fn session_errors_send_goaway_and_close() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    // Version 2 control frame.
    peer.send_raw(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1])
        .await;
    assert_eq!(
        peer.recv().await,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::ProtocolError
        }
    );
    assert_eq!(peer.next_within(WAIT).await, None, "connection closed");
    tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
    assert!(conn.accept().await.is_none());
    assert!(s.read_u8().await.is_err());
}

#[tokio::test]
async fn oversized_frame_closes_the_session() {
    let config = Config {
        max_frame_len: 1024,
        ..Config::default()
    };
    let (conn, mut peer) = setup(config).await;
    peer.open(1, "stdin", false).await;
    let _s = accept(&conn).await;
    peer.data(1, &vec![0; 2048], false).await;
    assert!(matches!(
        peer.recv_skip_updates().await,
        Frame::GoAway {
            status: GoAwayStatus::ProtocolError,
            ..
        }
    ));
    tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
    assert!(conn.close_reason().unwrap().contains("exceeds"));
    let _ = MAX_FRAME_LEN;
}

#[tokio::test]
async fn stream_id_going_backwards_is_a_session_error() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(5, "a", false).await;
    let _s = accept(&conn).await;
    peer.open(3, "b", false).await;
    assert!(matches!(
        peer.recv_skip_updates().await,
        Frame::GoAway {
            last_good_stream_id: 5,
            status: GoAwayStatus::ProtocolError
        }
    ));
}

#[tokio::test]
async fn idle_timeout_closes_with_goaway() {
    let config = Config {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (conn, mut peer) = setup(config).await;
    assert_eq!(
        peer.recv().await,
        Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::Ok
        }
    );
    assert_eq!(peer.next_within(WAIT).await, None);
    tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
    assert_eq!(conn.close_reason().as_deref(), Some("idle timeout"));
}

#[tokio::test]
async fn close_sends_goaway_and_ends_streams() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(1, "stdout", false).await;
    let mut s = accept(&conn).await;
    tokio::time::timeout(WAIT, conn.close()).await.unwrap();
    assert_eq!(
        peer.recv().await,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::Ok
        }
    );
    assert_eq!(peer.next_within(WAIT).await, None);
    assert_eq!(
        s.read_u8().await.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionAborted
    );
    assert!(conn.is_closed());
}

#[tokio::test]
async fn dropping_an_unfinished_stream_cancels_it() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(1, "stdout", false).await;
    let s = accept(&conn).await;
    drop(s);
    assert_eq!(
        peer.recv_skip_updates().await,
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel
        }
    );
}

#[tokio::test]
async fn dropping_a_half_closed_stream_keeps_its_last_frames() {
    let (conn, mut peer) = setup(Config::default()).await;
    peer.open(1, "data", false).await;
    let mut s = accept(&conn).await;
    s.write_all(b"bye").await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    let mut got = Vec::new();
    let mut fin = false;
    while !fin {
        match peer.recv_skip_updates().await {
            Frame::SynReply { .. } => {}
            Frame::Data {
                stream_id: 1,
                fin: f,
                data,
            } => {
                got.extend_from_slice(&data);
                fin = f;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"bye");
    // The peer's late data is discarded without a reset; its FIN forgets the stream,
    // and the session goes on.
    peer.data(1, &[7u8; 100_000], false).await;
    peer.data(1, b"", true).await;
    assert_eq!(peer.next_within(QUIET).await, None);
    peer.open(3, "stdout", false).await;
    let mut s = accept(&conn).await;
    s.write_all(b"next").await.unwrap();
    assert_eq!(peer.read_data(3, 4).await, b"next");
}

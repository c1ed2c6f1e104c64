//! An in-process mock registry: a minimal HTTP/1.1 server on 127.0.0.1 (one request per
//! connection) serving one image, with switchable authentication and a token endpoint.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const REPO: &str = "test/app";
pub const SERVICE: &str = "mock-registry";
pub const TOKEN: &str = "good-token";

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self) -> Vec<(String, String)> {
        let q = self.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// How the mock registry wants to be authenticated.
#[derive(Clone, Debug)]
pub enum AuthMode {
    Anonymous,
    Basic {
        user: String,
        pass: String,
    },
    /// Bearer tokens from `/token` by GET; `creds` are required on the token request if set.
    Bearer {
        creds: Option<(String, String)>,
    },
    /// Bearer tokens from an OAuth2 refresh token; `post` false makes POST /token answer 405.
    Refresh {
        refresh: String,
        post: bool,
    },
    /// A fixed bearer token, no token service.
    Static(String),
}

/// The image the mock serves: an OCI index (tag `v1`) over one docker manifest.
#[derive(Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub index: Vec<u8>,
}

impl Image {
    pub fn new() -> Image {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": sha256(&manifest), "size": manifest.len(),
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(b"att"), "size": 3,
                 "platform": {"os": "unknown", "architecture": "unknown"}},
            ],
        })
        .to_string()
        .into_bytes();
        Image {
            config,
            layer,
            manifest,
            index,
        }
    }
}

/// A running mock registry.
pub struct Mock {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Request>>>,
}

impl Mock {
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }
}

/// Serves `image` under `REPO`, guarded by `auth`. `tamper` serves wrong manifest bytes.
pub async fn registry(image: Image, auth: AuthMode) -> Mock {
    registry_with(image, auth, false).await
}

pub async fn registry_with(image: Image, auth: AuthMode, tamper: bool) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |r: &Request| handle(&image, &auth, tamper, addr, r);
    serve(listener, Arc::new(handler))
}

/// Serves anything with `handler`.
pub fn serve(
    listener: TcpListener,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) -> Mock {
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, log) = (handler.clone(), log2.clone());
            tokio::spawn(async move {
                let _ = connection(stream, handler, log).await;
            });
        }
    });
    Mock { addr, log }
}

/// A registry that knows nothing: every request is 404 NAME_UNKNOWN.
pub async fn always_404() -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, Arc::new(|_: &Request| not_found("NAME_UNKNOWN")))
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

async fn connection(
    mut stream: TcpStream,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
    log: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf[0] == 0x16 {
            // A TLS ClientHello on a plain port: answer as Go's net/http does, then hang up.
            stream.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n").await?;
            return stream.shutdown().await;
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 65536 {
            return Ok(());
        }
    };
    // Not HTTP (a TLS ClientHello): hang up, as a plain-http registry would.
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Ok(());
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let req = Request {
        method,
        path,
        headers,
        body,
    };
    let resp = handler(&req);
    log.lock().unwrap().push(req);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.shutdown().await
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn token_json() -> Response {
    Response::new(200, format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
}

fn handle(image: &Image, auth: &AuthMode, tamper: bool, addr: SocketAddr, r: &Request) -> Response {
    if r.path.starts_with("/token") {
        return token_endpoint(auth, r);
    }
    let authz = r.header("authorization").unwrap_or("");
    let challenge = format!(
        r#"Bearer realm="http://{addr}/token",service="{SERVICE}",scope="repository:{REPO}:pull""#
    );
    let denied = match auth {
        AuthMode::Anonymous => None,
        AuthMode::Basic { user, pass } => {
            (authz != basic(user, pass)).then(|| r#"Basic realm="mock""#.to_string())
        }
        AuthMode::Bearer { .. } | AuthMode::Refresh { .. } => {
            (authz != format!("Bearer {TOKEN}")).then_some(challenge)
        }
        AuthMode::Static(t) => (authz != format!("Bearer {t}")).then_some(challenge),
    };
    if let Some(c) = denied {
        return Response::new(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .header("WWW-Authenticate", &c);
    }
    let Some(rest) = r.path.strip_prefix(&format!("/v2/{REPO}/")) else {
        return not_found("NAME_UNKNOWN");
    };
    let manifests = [
        (&image.index, "application/vnd.oci.image.index.v1+json"),
        (
            &image.manifest,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ];
    if let Some(object) = rest.strip_prefix("manifests/") {
        let found = if object == "v1" {
            Some(manifests[0])
        } else {
            manifests.into_iter().find(|(b, _)| sha256(b) == object)
        };
        return match found {
            Some((bytes, mt)) => {
                let mut bytes = bytes.clone();
                if tamper {
                    bytes.push(b' ');
                }
                Response::new(200, bytes).header("Content-Type", mt)
            }
            None => not_found("MANIFEST_UNKNOWN"),
        };
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        for blob in [&image.config, &image.layer] {
            if sha256(blob) == digest {
                return Response::new(200, blob.clone())
                    .header("Content-Type", "application/octet-stream");
            }
        }
        return not_found("BLOB_UNKNOWN");
    }
    not_found("NAME_UNKNOWN")
}

fn not_found(code: &str) -> Response {
    Response::new(
        404,
        format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#),
    )
}

fn token_endpoint(auth: &AuthMode, r: &Request) -> Response {
    let denied = || Response::new(401, r#"{"details":"bad credentials"}"#);
    match auth {
        AuthMode::Bearer { creds } if r.method == "GET" => {
            let q = r.query();
            let want_scope = ("scope".to_string(), format!("repository:{REPO}:pull"));
            if !q.contains(&("service".into(), SERVICE.into())) || !q.contains(&want_scope) {
                return Response::new(400, "bad service or scope");
            }
            match creds {
                Some((u, p)) if r.header("authorization") != Some(&basic(u, p)) => denied(),
                None if r.header("authorization").is_some() => {
                    Response::new(400, "anonymous expected")
                }
                _ => token_json(),
            }
        }
        AuthMode::Refresh { refresh, post } if r.method == "POST" => {
            if !post {
                return Response::new(405, "");
            }
            let f = r.form();
            let ok = f.get("grant_type").map(String::as_str) == Some("refresh_token")
                && f.get("refresh_token") == Some(refresh)
                && f.get("service").map(String::as_str) == Some(SERVICE)
                && f.get("client_id").map(String::as_str) == Some("crimux")
                && f.get("scope") == Some(&format!("repository:{REPO}:pull"));
            if ok {
                Response::new(200, format!(r#"{{"access_token":"{TOKEN}"}}"#))
            } else {
                denied()
            }
        }
        AuthMode::Refresh { refresh, .. } if r.method == "GET" => {
            if r.header("authorization")
                .is_some_and(|a| a == basic("", refresh))
            {
                token_json()
            } else {
                denied()
            }
        }
        _ => Response::new(404, ""),
    }
}

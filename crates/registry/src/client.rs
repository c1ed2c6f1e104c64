//! The distribution API client: resolve a reference to a manifest, fetch manifests and blobs,
//! trying each configured host in order and authenticating on demand.
//!
//! `Registry` is shared by every pull and caches what is expensive to redo: HTTP clients (one
//! per TLS configuration), bearer tokens (per host, repository, scope and credentials, so one
//! pod's credentials never serve another's pull) and which loopback hosts speak plain http.
//! `Repository` is one pull's view: a reference plus the credentials kubelet sent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crimux_core::{Credentials, Error, Result};
use futures::StreamExt as _;
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::Digest as _;

use crate::auth::Auth;
use crate::hosts::{Capabilities, HostsConfig, RegistryHost};
use crate::manifest::{detect_media_type, MANIFEST_ACCEPT};
use crate::reference::Reference;

/// A blob body, chunk by chunk.
pub type BlobStream = Pin<Box<dyn futures::Stream<Item = Result<Bytes>> + Send>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A body that stalls this long is abandoned; a slow but moving one is not.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// containerd refuses manifests larger than this; so do we.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A resolved reference: the manifest (or index) it names, and its bytes.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
}

/// The shared client. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    hosts: HostsConfig,
    clients: Mutex<HashMap<TlsKey, reqwest::Client>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    plain_http: Mutex<HashSet<String>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TlsKey {
    ca: Vec<PathBuf>,
    client: Vec<(PathBuf, Option<PathBuf>)>,
    skip_verify: bool,
}

/// Host (origin of the API root), repository, scope, and a fingerprint of the credentials.
type TokenKey = (String, String, String, String);

#[derive(Clone)]
struct CachedToken {
    header: String,
    expires: Instant,
}

impl Registry {
    /// `config_path` is containerd's `config_path` for `hosts.toml` (`None`: no mirrors).
    pub fn new(config_path: Option<&Path>) -> Result<Registry> {
        Ok(Registry {
            inner: Arc::new(Inner {
                hosts: HostsConfig::load(config_path)?,
                clients: Mutex::default(),
                tokens: Mutex::default(),
                plain_http: Mutex::default(),
            }),
        })
    }

    /// One pull's view of a repository. Credentials are checked on first use.
    pub fn repository(
        &self,
        reference: &Reference,
        credentials: Option<&Credentials>,
    ) -> Repository {
        Repository {
            registry: self.clone(),
            reference: reference.clone(),
            auth: Auth::from_credentials(credentials).map_err(|e| e.to_string()),
        }
    }

    /// The HTTP client for a host's TLS settings, built once.
    fn client_for(&self, host: &RegistryHost) -> Result<reqwest::Client> {
        let key = TlsKey {
            ca: host.ca.clone(),
            client: host
                .client
                .iter()
                .map(|c| (c.cert.clone(), c.key.clone()))
                .collect(),
            skip_verify: host.skip_verify,
        };
        let mut clients = self.inner.clients.lock().map_err(|_| poisoned())?;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = build_client(&key)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn cached_token(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.inner.tokens.lock().ok()?;
        tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.header.clone())
    }

    fn store_token(&self, key: TokenKey, header: String, lifetime: Duration) {
        if let Ok(mut tokens) = self.inner.tokens.lock() {
            let now = Instant::now();
            tokens.retain(|_, t| t.expires > now);
            // Renew a little early so a token does not expire mid-request.
            let lifetime = lifetime
                .saturating_sub(Duration::from_secs(5))
                .max(Duration::from_secs(1));
            tokens.insert(
                key,
                CachedToken {
                    header,
                    expires: now + lifetime,
                },
            );
        }
    }

    fn forget_token(&self, key: &TokenKey) {
        if let Ok(mut tokens) = self.inner.tokens.lock() {
            tokens.remove(key);
        }
    }

    fn is_plain_http(&self, origin: &str) -> bool {
        self.inner
            .plain_http
            .lock()
            .is_ok_and(|s| s.contains(origin))
    }

    fn mark_plain_http(&self, origin: String) {
        if let Ok(mut s) = self.inner.plain_http.lock() {
            s.insert(origin);
        }
    }
}

fn poisoned() -> Error {
    Error::Internal("registry client cache lock poisoned".into())
}

fn build_client(key: &TlsKey) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("crimux/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_IDLE_TIMEOUT)
        .danger_accept_invalid_certs(key.skip_verify);
    for ca in &key.ca {
        let pem = std::fs::read(ca).map_err(|e| {
            Error::InvalidArgument(format!("reading CA certificate {}: {e}", ca.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::InvalidArgument(format!("CA certificate {}: {e}", ca.display())))?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    for (cert, key_file) in &key.client {
        let mut pem = std::fs::read(cert).map_err(|e| {
            Error::InvalidArgument(format!(
                "reading client certificate {}: {e}",
                cert.display()
            ))
        })?;
        if let Some(k) = key_file {
            pem.push(b'\n');
            pem.extend(std::fs::read(k).map_err(|e| {
                Error::InvalidArgument(format!("reading client key {}: {e}", k.display()))
            })?);
        }
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            Error::InvalidArgument(format!("client certificate {}: {e}", cert.display()))
        })?;
        b = b.identity(identity);
    }
    b.build()
        .map_err(|e| Error::Internal(format!("building HTTP client: {}", error_chain(&e))))
}

/// One pull's access to one repository. Cheap to clone, for concurrent blob fetches.
#[derive(Clone)]
pub struct Repository {
    registry: Registry,
    reference: Reference,
    /// Malformed credentials surface on first use, as InvalidArgument.
    auth: std::result::Result<Auth, String>,
}

impl Repository {
    /// The reference this repository was opened for.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// GETs the manifest or index the reference names, verifying it against the reference's
    /// digest when there is one.
    pub async fn resolve(&self) -> Result<Resolved> {
        let object = self.reference.object();
        let (resp, host) = self
            .request(
                Capabilities {
                    resolve: true,
                    ..Default::default()
                },
                &format!("manifests/{object}"),
                MANIFEST_ACCEPT,
            )
            .await?;
        let content_type = header_str(&resp, reqwest::header::CONTENT_TYPE);
        let header_digest = header_str(&resp, "docker-content-digest");
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| self.context(&host, e))?;
        let expected = match &self.reference.digest {
            Some(d) => d.clone(),
            None => {
                let computed = digest_of("sha256", &bytes);
                if header_digest.starts_with("sha256:") && header_digest != computed {
                    return Err(self.context(
                        &host,
                        Error::Internal(format!(
                            "manifest digest mismatch: registry says {header_digest}, content is {computed}"
                        )),
                    ));
                }
                computed
            }
        };
        self.verify(&host, &expected, &bytes)?;
        let media_type =
            detect_media_type(&content_type, &bytes).map_err(|e| self.context(&host, e))?;
        let digest = Digest::try_from(expected.as_str())
            .map_err(|e| self.context(&host, Error::Internal(format!("digest {expected}: {e}"))))?;
        let descriptor = Descriptor::new(
            MediaType::from(media_type.as_str()),
            bytes.len() as u64,
            digest,
        );
        Ok(Resolved { descriptor, bytes })
    }

    /// GETs a manifest by its descriptor's digest and verifies digest and size.
    pub async fn fetch_manifest(&self, descriptor: &Descriptor) -> Result<Bytes> {
        let digest = descriptor.digest().to_string();
        let accept = format!("{}, {MANIFEST_ACCEPT}", descriptor.media_type());
        let (resp, host) = self
            .request(
                Capabilities {
                    pull: true,
                    ..Default::default()
                },
                &format!("manifests/{digest}"),
                &accept,
            )
            .await?;
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| self.context(&host, e))?;
        self.verify(&host, &digest, &bytes)?;
        if descriptor.size() != 0 && descriptor.size() != bytes.len() as u64 {
            return Err(self.context(
                &host,
                Error::Internal(format!(
                    "manifest {digest} is {} bytes, expected {}",
                    bytes.len(),
                    descriptor.size()
                )),
            ));
        }
        Ok(bytes)
    }

    /// GETs a blob as a stream. The caller verifies the digest as it writes.
    pub async fn fetch_blob(&self, descriptor: &Descriptor) -> Result<BlobStream> {
        let digest = descriptor.digest().to_string();
        let (resp, host) = self
            .request(
                Capabilities {
                    pull: true,
                    ..Default::default()
                },
                &format!("blobs/{digest}"),
                "*/*",
            )
            .await?;
        if let Some(len) = resp.content_length() {
            if descriptor.size() != 0 && len != descriptor.size() {
                return Err(self.context(
                    &host,
                    Error::Internal(format!(
                        "blob {digest} is {len} bytes, expected {}",
                        descriptor.size()
                    )),
                ));
            }
        }
        let what = format!("reading blob {digest} of {} from {host}", self.reference);
        let stream = resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| Error::Unavailable(format!("{what}: {}", error_chain(&e))))
        });
        Ok(Box::pin(stream))
    }

    /// Says which image and registry an error is about.
    fn context(&self, host: &str, e: Error) -> Error {
        e.context(format!("image {} on registry {host}", self.reference))
    }

    fn verify(&self, host: &str, expected: &str, bytes: &[u8]) -> Result<()> {
        let algorithm = expected.split(':').next().unwrap_or_default();
        let actual = digest_of(algorithm, bytes);
        if actual != expected {
            return Err(self.context(
                host,
                Error::Internal(format!(
                    "content digest mismatch: expected {expected}, got {actual}"
                )),
            ));
        }
        Ok(())
    }
}

/// `algorithm:hex` of `bytes`; unknown algorithms give a value that matches nothing.
fn digest_of(algorithm: &str, bytes: &[u8]) -> String {
    let hex = match algorithm {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        _ => return format!("{algorithm}:<unsupported>"),
    };
    format!("{algorithm}:{hex}")
}

fn header_str(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Reads a whole body, refusing one larger than `limit`.
pub(crate) async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(Error::Internal(format!(
            "response larger than {limit} bytes"
        )));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Error::Unavailable(format!("reading response: {}", error_chain(&e))))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::Internal(format!(
                "response larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// An error and its causes on one line: reqwest's own message hides the useful part.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[path = "transport.rs"]
mod transport;

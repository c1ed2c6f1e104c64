//! One API request, carried across the configured hosts: mirrors first, then the server;
//! each attempt authenticates on a 401 challenge and classifies the answer into crimux
//! errors. Only the last host's error is returned; earlier failures are logged and noted.

use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::*;
use crate::auth::{basic_header, fetch_token, parse_www_authenticate, Challenge};

/// Error bodies are small JSON documents; read no more than this of one.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Basic credentials do not expire; re-learn the scheme now and then anyway.
const BASIC_LIFETIME: Duration = Duration::from_secs(3600);

/// Why one attempt at one URL failed.
enum Fail {
    /// Could not connect at all (refused, DNS, TLS handshake, connect timeout).
    Connect(reqwest::Error),
    Err(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Err(e)
    }
}

fn send_error(e: reqwest::Error) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    Error::Unavailable(format!("{what}: {}", error_chain(&e)))
}

impl Repository {
    /// GETs `<api root>/<repository>/<path>` from the first host (with capability `caps`)
    /// that serves it. Returns the response and the host that answered.
    pub(super) async fn request(
        &self,
        caps: Capabilities,
        path: &str,
        accept: &str,
    ) -> Result<(reqwest::Response, String)> {
        let auth = match &self.auth {
            Ok(a) => a,
            Err(e) => {
                return Err(Error::InvalidArgument(format!(
                    "image {}: {e}",
                    self.reference
                )))
            }
        };
        let domain = &self.reference.domain;
        let hosts: Vec<RegistryHost> = self
            .registry
            .inner
            .hosts
            .hosts_for(domain)
            .map_err(|e| e.context(format!("image {}", self.reference)))?
            .into_iter()
            .filter(|h| {
                (caps.resolve && h.capabilities.resolve) || (caps.pull && h.capabilities.pull)
            })
            .collect();
        if hosts.is_empty() {
            let op = if caps.resolve { "resolve" } else { "pull" };
            return Err(Error::FailedPrecondition(format!(
                "image {}: no host configured for registry {domain} has the {op:?} capability",
                self.reference
            )));
        }
        let mut failures: Vec<String> = Vec::new();
        let last = hosts.len() - 1;
        for (i, host) in hosts.iter().enumerate() {
            let name = host_name(&host.url);
            match self.try_host(host, auth, path, accept).await {
                Ok(resp) => return Ok((resp, name)),
                Err(e) if i < last => {
                    tracing::warn!(image = %self.reference, host = %name, error = %e, "registry host failed; trying the next");
                    failures.push(format!("{name}: {e}"));
                }
                Err(e) => {
                    let mut what = format!("image {} on registry {name}", self.reference);
                    if !failures.is_empty() {
                        what.push_str(&format!(" (after mirrors failed: {})", failures.join("; ")));
                    }
                    return Err(e.context(what));
                }
            }
        }
        Err(Error::Internal("no registry host tried".into()))
    }

    /// One host: https, then plain http for loopback registries that do not speak TLS.
    async fn try_host(
        &self,
        host: &RegistryHost,
        auth: &Auth,
        path: &str,
        accept: &str,
    ) -> Result<reqwest::Response> {
        let client = self.registry.client_for(host)?;
        let origin = host.url.origin().ascii_serialization();
        let url = format!(
            "{}/{}/{path}",
            host.url.as_str().trim_end_matches('/'),
            self.reference.repository
        );
        let fallback = host.http_fallback && host.url.scheme() == "https";
        let http_url = format!("http://{}", url.trim_start_matches("https://"));
        if fallback && self.registry.is_plain_http(&origin) {
            return self
                .authed(&client, host, &http_url, auth, accept)
                .await
                .map_err(fail_error);
        }
        match self.authed(&client, host, &url, auth, accept).await {
            Err(Fail::Connect(e)) if fallback => {
                tracing::debug!(host = %origin, error = %error_chain(&e), "https failed on a loopback registry; trying http");
                let resp = self
                    .authed(&client, host, &http_url, auth, accept)
                    .await
                    .map_err(fail_error)?;
                self.registry.mark_plain_http(origin);
                Ok(resp)
            }
            other => other.map_err(fail_error),
        }
    }

    /// Sends, answers a 401 challenge once, and classifies the final response.
    async fn authed(
        &self,
        client: &reqwest::Client,
        host: &RegistryHost,
        url: &str,
        auth: &Auth,
        accept: &str,
    ) -> std::result::Result<reqwest::Response, Fail> {
        let repo = &self.reference.repository;
        let scope = format!("repository:{repo}:pull");
        let key: TokenKey = (
            host.url.origin().ascii_serialization(),
            repo.clone(),
            scope.clone(),
            auth.fingerprint(),
        );
        let header = match auth {
            Auth::RegistryToken(t) => Some(format!("Bearer {t}")),
            _ => self.registry.cached_token(&key),
        };
        let resp = send(client, host, url, accept, header.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(classify(resp).await?);
        }
        if matches!(auth, Auth::RegistryToken(_)) {
            return Err(Error::Unauthenticated(
                "the registry rejected the registry token (401)".into(),
            )
            .into());
        }
        if header.is_some() {
            self.registry.forget_token(&key);
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .collect();
        let (header, lifetime) = authorize(client, &challenges, &scope, auth).await?;
        self.registry.store_token(key, header.clone(), lifetime);
        let resp = send(client, host, url, accept, Some(&header)).await?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(Error::Unauthenticated(format!(
                "the registry refused {} credentials ({})",
                auth.kind(),
                resp.status()
            ))
            .into());
        }
        Ok(classify(resp).await?)
    }
}

fn fail_error(f: Fail) -> Error {
    match f {
        Fail::Connect(e) => send_error(e),
        Fail::Err(e) => e,
    }
}

/// `host[:port]` of an API root, for messages.
fn host_name(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

async fn send(
    client: &reqwest::Client,
    host: &RegistryHost,
    url: &str,
    accept: &str,
    authorization: Option<&str>,
) -> std::result::Result<reqwest::Response, Fail> {
    let mut req = client.get(url).header(ACCEPT, accept);
    for (k, v) in &host.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(a) = authorization {
        req = req.header(AUTHORIZATION, a);
    }
    req.send().await.map_err(|e| {
        if e.is_connect() {
            Fail::Connect(e)
        } else {
            Fail::Err(send_error(e))
        }
    })
}

/// Answers the strongest challenge we can: Bearer (a token), then Basic.
async fn authorize(
    client: &reqwest::Client,
    challenges: &[Challenge],
    scope: &str,
    auth: &Auth,
) -> Result<(String, Duration)> {
    if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
        let mut scopes = vec![scope.to_string()];
        for s in bearer
            .param("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !scopes.iter().any(|have| have == s) {
                scopes.push(s.to_string());
            }
        }
        let token = fetch_token(client, bearer, &scopes, auth).await?;
        return Ok((format!("Bearer {}", token.token), token.expires_in));
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return match auth.basic() {
            Some((u, p)) => Ok((basic_header(u, p), BASIC_LIFETIME)),
            None => Err(Error::Unauthenticated(
                "the registry requires credentials and none were given".into(),
            )),
        };
    }
    Err(Error::Unauthenticated(
        "the registry answered 401 without a challenge crimux can answer".into(),
    ))
}

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Turns a non-success answer into the error kubelet should see.
async fn classify(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let codes: Vec<&str> = parsed.errors.iter().map(|e| e.code.as_str()).collect();
    let detail = parsed
        .errors
        .iter()
        .map(|e| {
            if e.message.is_empty() {
                e.code.clone()
            } else {
                format!("{}: {}", e.code, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let msg = if detail.is_empty() {
        format!("registry answered {status}")
    } else {
        format!("registry answered {status} ({detail})")
    };
    let has = |c: &str| codes.contains(&c);
    Err(
        if status == StatusCode::NOT_FOUND
            || has("MANIFEST_UNKNOWN")
            || has("NAME_UNKNOWN")
            || has("BLOB_UNKNOWN")
        {
            Error::NotFound(format!("not found: {msg}"))
        } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || has("UNAUTHORIZED")
            || has("DENIED")
        {
            Error::Unauthenticated(format!("access denied: {msg}"))
        } else if status == StatusCode::TOO_MANY_REQUESTS || has("TOOMANYREQUESTS") {
            Error::Unavailable(format!("rate limited: {msg}"))
        } else if status.is_server_error() {
            Error::Unavailable(msg)
        } else {
            Error::Internal(msg)
        },
    )
}

//! Registry authentication: `WWW-Authenticate` challenges, the credentials kubelet sends,
//! and the token service dance of the distribution spec.
//!
//! A registry answers 401 with `Basic` (resend with the password) or `Bearer` (fetch a token
//! from the realm, then resend). Tokens are fetched with GET and basic auth, except with an
//! identity (refresh) token, which goes through the OAuth2 POST form as containerd does,
//! falling back to GET where the token service has no POST endpoint.
//! Nothing here logs or formats a secret.

use std::time::Duration;

use base64::Engine as _;
use crimux_core::{Credentials, Error, Result};
use serde::Deserialize;

/// The `client_id` crimux names itself with to OAuth2 token services.
pub const CLIENT_ID: &str = "crimux";
/// Tokens without `expires_in` live this long (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Token responses are small; refuse to buffer a huge one.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `basic`, `bearer`, ...
    pub scheme: String,
    /// Parameter names lowercased; values unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value, which may hold several challenges:
/// `Basic realm="r", Bearer realm="https://a/token",service="s",scope="repository:x:pull,push"`.
/// Malformed tails are dropped rather than failing the whole header.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_commas();
        let Some(scheme) = p.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            p.skip_ws_commas();
            let save = p.i;
            let Some(name) = p.token() else { break };
            p.skip_ws();
            if !p.eat(b'=') {
                // A bare token starts the next challenge (or is a token68 we ignore).
                if p.peek().is_some_and(|c| c != b',') || p.peek().is_none() {
                    p.i = save;
                    break;
                }
                continue;
            }
            while p.eat(b'=') {} // token68 padding
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ' || c == b'\t') {
            self.i += 1;
        }
    }
    fn skip_ws_commas(&mut self) {
        while self
            .peek()
            .is_some_and(|c| c == b' ' || c == b'\t' || c == b',')
        {
            self.i += 1;
        }
    }
    /// An RFC 7230 token (plus `/` so token68-ish values survive).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c))
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// A quoted string starting at `"`, with `\` escapes; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// What the caller gave us to authenticate with, sorted by how it is used.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    /// Username and password (from the fields, or decoded from `auth`).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token for the registry's token service.
    IdentityToken { username: String, token: String },
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Auth {
    /// Sorts CRI credentials; a malformed `auth` field is InvalidArgument.
    pub fn from_credentials(c: Option<&Credentials>) -> Result<Auth> {
        let Some(c) = c.filter(|c| !c.is_empty()) else {
            return Ok(Auth::Anonymous);
        };
        if !c.registry_token.is_empty() {
            return Ok(Auth::RegistryToken(c.registry_token.clone()));
        }
        let (mut username, mut password) = (c.username.clone(), c.password.clone());
        if !c.auth.is_empty() {
            let bad = || {
                Error::InvalidArgument(
                    "the credentials' auth field is not base64 of \"user:password\"".into(),
                )
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(c.auth.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = text.split_once(':').ok_or_else(bad)?;
            (username, password) = (u.to_string(), p.to_string());
        }
        if !c.identity_token.is_empty() {
            return Ok(Auth::IdentityToken {
                username,
                token: c.identity_token.clone(),
            });
        }
        Ok(Auth::Basic { username, password })
    }

    /// A name for logs and cache keys' readers: never the secret.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Anonymous => "anonymous",
            Auth::Basic { .. } => "basic",
            Auth::IdentityToken { .. } => "identity-token",
            Auth::RegistryToken(_) => "registry-token",
        }
    }

    /// A stable fingerprint so cached tokens are never shared between different credentials.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        match self {
            Auth::Anonymous => h.update(b"anon"),
            Auth::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Auth::IdentityToken { username, token } => {
                h.update(b"identity\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(token.as_bytes());
            }
            Auth::RegistryToken(t) => {
                h.update(b"registry\0");
                h.update(t.as_bytes());
            }
        }
        hex::encode(h.finalize())
    }

    /// `(username, password)` for a `Basic` header, if these credentials have one.
    pub fn basic(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Basic { username, password } => Some((username, password)),
            Auth::IdentityToken { username, token } => Some((username, token)),
            _ => None,
        }
    }
}

/// A `Basic` authorization header value.
pub fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A token from a token service.
#[derive(Clone)]
pub struct Token {
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Fetches a bearer token for `scopes` from the challenge's realm.
pub async fn fetch_token(
    client: &reqwest::Client,
    challenge: &Challenge,
    scopes: &[String],
    auth: &Auth,
) -> Result<Token> {
    let realm = challenge
        .param("realm")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::Unauthenticated("bearer challenge without a realm".into()))?;
    let realm = url::Url::parse(realm).map_err(|e| {
        Error::Unauthenticated(format!(
            "bearer challenge realm {realm:?} is not a URL: {e}"
        ))
    })?;
    let service = challenge.param("service").unwrap_or_default();
    if let Auth::IdentityToken { username, token } = auth {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("service", service),
            ("client_id", CLIENT_ID),
        ];
        let scope = scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let resp = client
            .post(realm.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| token_send_error(&realm, e))?;
        match resp.status().as_u16() {
            404 | 405 => {
                tracing::debug!(realm = %realm, "token service has no OAuth2 POST endpoint; using GET");
                return get_token(client, &realm, service, scopes, Some((username, token))).await;
            }
            _ => return read_token(&realm, resp).await,
        }
    }
    get_token(client, &realm, service, scopes, auth.basic()).await
}

async fn get_token(
    client: &reqwest::Client,
    realm: &url::Url,
    service: &str,
    scopes: &[String],
    basic: Option<(&str, &str)>,
) -> Result<Token> {
    let mut url = realm.clone();
    {
        let mut q = url.query_pairs_mut();
        if !service.is_empty() {
            q.append_pair("service", service);
        }
        for s in scopes {
            q.append_pair("scope", s);
        }
    }
    let mut req = client.get(url);
    if let Some((u, p)) = basic {
        req = req.header(reqwest::header::AUTHORIZATION, basic_header(u, p));
    }
    let resp = req.send().await.map_err(|e| token_send_error(realm, e))?;
    read_token(realm, resp).await
}

fn token_send_error(realm: &url::Url, e: reqwest::Error) -> Error {
    Error::Unavailable(format!(
        "token service {}: {}",
        realm_name(realm),
        crate::client::error_chain(&e)
    ))
}

/// The realm without its query, for messages.
fn realm_name(realm: &url::Url) -> String {
    format!("{}{}", realm.origin().ascii_serialization(), realm.path())
}

async fn read_token(realm: &url::Url, resp: reqwest::Response) -> Result<Token> {
    let status = resp.status();
    let body = crate::client::read_limited(resp, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| e.context(format!("token service {}", realm_name(realm))))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthenticated(format!(
            "token service {} refused the credentials ({status})",
            realm_name(realm)
        )));
    }
    if !status.is_success() {
        let msg = format!("token service {} answered {status}", realm_name(realm));
        return Err(if status.is_server_error() {
            Error::Unavailable(msg)
        } else {
            Error::Unauthenticated(msg)
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        Error::Unauthenticated(format!(
            "token service {} sent no token: {e}",
            realm_name(realm)
        ))
    })?;
    let token = if parsed.token.is_empty() {
        parsed.access_token
    } else {
        parsed.token
    };
    if token.is_empty() {
        return Err(Error::Unauthenticated(format!(
            "token service {} sent an empty token",
            realm_name(realm)
        )));
    }
    let expires_in = parsed
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok(Token { token, expires_in })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn parses_challenges() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            (
                "Basic realm=\"Registry\"",
                vec![ch("basic", &[("realm", "Registry")])],
            ),
            ("basic", vec![ch("basic", &[])]),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                vec![ch(
                    "bearer",
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("service", "registry.docker.io"),
                        ("scope", "repository:library/busybox:pull"),
                    ],
                )],
            ),
            (
                r#"Bearer realm="https://r/t", scope="repository:a:pull,push""#,
                vec![ch(
                    "bearer",
                    &[
                        ("realm", "https://r/t"),
                        ("scope", "repository:a:pull,push"),
                    ],
                )],
            ),
            (
                r#"Basic realm="a, b", Bearer realm="https://x/token",service=x"#,
                vec![
                    ch("basic", &[("realm", "a, b")]),
                    ch("bearer", &[("realm", "https://x/token"), ("service", "x")]),
                ],
            ),
            (
                r#"Bearer realm="q\"uo\\te", Service = "s""#,
                vec![ch("bearer", &[("realm", "q\"uo\\te"), ("service", "s")])],
            ),
            (
                "Negotiate, Basic realm=x",
                vec![ch("negotiate", &[]), ch("basic", &[("realm", "x")])],
            ),
            (
                "Bearer realm=\"unterminated",
                vec![ch("bearer", &[("realm", "unterminated")])],
            ),
            ("", vec![]),
            ("  ,  ", vec![]),
        ];
        for (header, want) in cases {
            assert_eq!(parse_www_authenticate(header), want, "{header}");
        }
    }

    fn creds(f: impl FnOnce(&mut Credentials)) -> Credentials {
        let mut c = Credentials::default();
        f(&mut c);
        c
    }

    #[test]
    fn sorts_credentials() {
        assert!(matches!(
            Auth::from_credentials(None).unwrap(),
            Auth::Anonymous
        ));
        assert!(matches!(
            Auth::from_credentials(Some(&Credentials::default())).unwrap(),
            Auth::Anonymous
        ));
        let c = creds(|c| {
            c.username = "u".into();
            c.password = "p".into();
        });
        assert_eq!(
            Auth::from_credentials(Some(&c)).unwrap().basic(),
            Some(("u", "p"))
        );
        let c = creds(|c| c.auth = base64::engine::general_purpose::STANDARD.encode("me:pa:ss"));
        assert_eq!(
            Auth::from_credentials(Some(&c)).unwrap().basic(),
            Some(("me", "pa:ss"))
        );
        let c = creds(|c| c.auth = "!!!".into());
        assert!(matches!(
            Auth::from_credentials(Some(&c)),
            Err(Error::InvalidArgument(_))
        ));
        let c = creds(|c| c.auth = base64::engine::general_purpose::STANDARD.encode("nocolon"));
        assert!(matches!(
            Auth::from_credentials(Some(&c)),
            Err(Error::InvalidArgument(_))
        ));
        let c = creds(|c| c.identity_token = "refresh".into());
        assert!(matches!(
            Auth::from_credentials(Some(&c)).unwrap(),
            Auth::IdentityToken { .. }
        ));
        let c = creds(|c| c.registry_token = "xyzzy".into());
        let a = Auth::from_credentials(Some(&c)).unwrap();
        assert!(matches!(&a, Auth::RegistryToken(t) if t == "xyzzy"));
        assert!(!format!("{a:?}").contains("xyzzy"));
        assert_ne!(Auth::Anonymous.fingerprint(), a.fingerprint());
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }
}

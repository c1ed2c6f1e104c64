//! Image references: docker's grammar and normalisation, as containerd's CRI plugin applies
//! them to what kubelet sends.
//!
//! `busybox` becomes `docker.io/library/busybox:latest`; a reference with a digest and no tag
//! gets no default tag; a first path component counts as a registry host only when it looks
//! like one (has `.` or `:`, or is `localhost`), so `user/app` lives on docker.io.
//!
//! The grammar, from docker's `reference` package:
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain '/'] path-component ['/' path-component]*
//! domain         := host [':' port]            host := domain-name | IPv4 | '[' IPv6 ']'
//! path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator := '.' | '_' | '__' | '-'+
//! tag            := [\w][\w.-]{0,127}
//! ```

use std::fmt;

use crimux_core::{Error, Result};

/// The registry docker.io references really live on for the API.
pub const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A fully normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any: `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Path inside the registry: `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, validated.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference the way containerd/docker do.
    pub fn parse(s: &str) -> Result<Reference> {
        parse(s)
            .map_err(|why| Error::InvalidArgument(format!("invalid image reference {s:?}: {why}")))
    }

    /// `domain/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// `domain/repository:tag`, when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `domain/repository@digest`: the canonical form of one resolved image.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What goes after `/manifests/` in the API: the digest if pinned, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

fn parse(s: &str) -> std::result::Result<Reference, String> {
    if s.is_empty() {
        return Err("empty reference".into());
    }
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(
            "cannot specify a 64-byte hexadecimal string (an image id) as a reference".into(),
        );
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => {
            validate_digest(d)?;
            (rest, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A tag is a ':' after the last '/'; an earlier ':' is a port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
            validate_tag(tag)?;
            (name, Some(tag.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err("empty repository name".into());
    }
    let (mut domain, mut path) = split_domain(name);
    validate_domain(&domain)?;
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    validate_path(&path)?;
    if domain == LEGACY_DOCKER_HUB {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("{OFFICIAL_PREFIX}{path}");
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag,
    };
    Ok(Reference {
        domain,
        repository: path,
        tag,
        digest,
    })
}

/// Splits `name` into registry host and path as docker's `splitDockerDomain` does.
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    }
}

fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let bad = || Err(format!("invalid registry host {domain:?}"));
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad();
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad();
        }
        match after {
            "" => ("", None),
            p => match p.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return bad(),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return bad();
        }
    }
    if domain.starts_with('[') {
        return Ok(());
    }
    for component in host.split('.') {
        let b = component.as_bytes();
        let ok = !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> std::result::Result<(), String> {
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!("invalid repository path component {component:?}"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ (('.' | '_' | '__' | '-'+) [a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

/// Validates `algorithm:hex` for the algorithms a registry can verify.
pub(crate) fn validate_digest(d: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("invalid digest {d:?}: {why}"));
    let Some((alg, hex)) = d.split_once(':') else {
        return bad("missing algorithm");
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return bad("unsupported algorithm"),
    };
    if hex.len() != len {
        return bad("wrong length");
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return bad("not lowercase hex");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// input, domain, repository, tag, digest
    type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn normalises_valid_references() {
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36".into(),
                DOCKER_HUB,
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "user/app".into(),
                DOCKER_HUB,
                "user/app",
                Some("latest"),
                None,
            ),
            (
                "docker.io/busybox".into(),
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/busybox".into(),
                DOCKER_HUB,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "docker.io/library/busybox:v".into(),
                DOCKER_HUB,
                "library/busybox",
                Some("v"),
                None,
            ),
            (
                "127.0.0.1:5000/a/b:1".into(),
                "127.0.0.1:5000",
                "a/b",
                Some("1"),
                None,
            ),
            ("localhost/x".into(), "localhost", "x", Some("latest"), None),
            (
                "localhost:5000/x:y".into(),
                "localhost:5000",
                "x",
                Some("y"),
                None,
            ),
            (
                "quay.io/coreos/etcd".into(),
                "quay.io",
                "coreos/etcd",
                Some("latest"),
                None,
            ),
            (
                "registry.k8s.io/pause:3.9".into(),
                "registry.k8s.io",
                "pause",
                Some("3.9"),
                None,
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000",
                "x",
                Some("latest"),
                None,
            ),
            ("Foo.com/x".into(), "Foo.com", "x", Some("latest"), None),
            (
                "a/b/c/d".into(),
                DOCKER_HUB,
                "a/b/c/d",
                Some("latest"),
                None,
            ),
            (
                "a-b__c.d_e---f".into(),
                DOCKER_HUB,
                "library/a-b__c.d_e---f",
                Some("latest"),
                None,
            ),
            (format!("x@{D}"), DOCKER_HUB, "library/x", None, Some(D)),
            (
                format!("x:t@{D}"),
                DOCKER_HUB,
                "library/x",
                Some("t"),
                Some(D),
            ),
            (
                format!("example.com:443/x@{D}"),
                "example.com:443",
                "x",
                None,
                Some(D),
            ),
            (
                "x:_Tag.1-2".into(),
                DOCKER_HUB,
                "library/x",
                Some("_Tag.1-2"),
                None,
            ),
        ];
        for (input, domain, repo, tag, digest) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.domain, domain, "{input}");
            assert_eq!(r.repository, repo, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let long = format!("example.com/{}", "a".repeat(250));
        let cases = [
            "",
            ":",
            "@",
            "busybox:",
            "Busybox",
            "user/App",
            "UPPER",
            "x@sha256:abc",
            "x@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "x@md5:0123456789abcdef0123456789abcdef",
            "x@",
            "x:tag@",
            "-x",
            "x-",
            "a//b",
            "a/",
            "/a",
            "a..b",
            "a___b",
            "example.com:port/x",
            "exa_mple.com/x",
            "x:-tag",
            "x:t/a",
            "x y",
            &long,
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for input in cases {
            match Reference::parse(input) {
                Err(Error::InvalidArgument(msg)) => {
                    assert!(
                        msg.contains(&format!("{input:?}")),
                        "{msg} should name {input:?}"
                    )
                }
                other => panic!("{input:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn long_tag_is_rejected_and_max_accepted() {
        assert!(Reference::parse(&format!("x:{}", "a".repeat(128))).is_ok());
        assert!(Reference::parse(&format!("x:{}", "a".repeat(129))).is_err());
    }

    #[test]
    fn renders_forms() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(
            r.tagged().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.object(), "latest");
        assert_eq!(r.with_digest(D), format!("docker.io/library/busybox@{D}"));

        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/a/b:1@{D}"));
        assert_eq!(r.object(), D);
        let r = Reference::parse(&format!("a@{D}")).unwrap();
        assert_eq!(r.tagged(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/a@{D}"));
        // Normal forms parse back to themselves.
        for s in ["busybox", "user/app:1", "localhost:5000/x"] {
            let r = Reference::parse(s).unwrap();
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }
}

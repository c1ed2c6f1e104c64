//! The registry client against an in-process mock registry: auth flows, error mapping,
//! digest verification and mirror fallback, over real HTTP on 127.0.0.1.

mod support;

use crimux_core::{Credentials, Error, Platform};
use crimux_registry::manifest::{select_manifest, Manifest};
use crimux_registry::{Reference, Registry};
use futures::StreamExt as _;
use support::*;

fn reference(host: &str, suffix: &str) -> Reference {
    Reference::parse(&format!("{host}/{REPO}{suffix}")).unwrap()
}

/// A registry whose hosts.toml sends `host` straight to plain http.
fn plain_http_registry(dir: &tempfile::TempDir, host: &str) -> Registry {
    let d = dir.path().join(host);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("hosts.toml"),
        format!("server = \"http://{host}\"\n"),
    )
    .unwrap();
    Registry::new(Some(dir.path())).unwrap()
}

fn userpass(u: &str, p: &str) -> Credentials {
    Credentials {
        username: u.into(),
        password: p.into(),
        ..Default::default()
    }
}

/// Resolves `v1`, picks linux/amd64, fetches the manifest, config and layer, and checks all bytes.
async fn pull(
    registry: &Registry,
    host: &str,
    creds: Option<&Credentials>,
    image: &Image,
) -> Result<(), Error> {
    let repo = registry.repository(&reference(host, ":v1"), creds);
    let resolved = repo.resolve().await?;
    assert_eq!(resolved.bytes.as_ref(), image.index.as_slice());
    assert_eq!(
        resolved.descriptor.digest().to_string(),
        sha256(&image.index)
    );
    assert_eq!(
        resolved.descriptor.media_type().to_string(),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(resolved.descriptor.size(), image.index.len() as u64);
    let Manifest::Index(index) =
        Manifest::parse(resolved.descriptor.media_type().as_ref(), &resolved.bytes)?
    else {
        panic!("expected an index");
    };
    let desc =
        select_manifest(&index, &Platform::new("linux", "amd64")).expect("linux/amd64 entry");
    let manifest = repo.fetch_manifest(&desc).await?;
    assert_eq!(manifest.as_ref(), image.manifest.as_slice());
    let Manifest::Image(m) = Manifest::parse(desc.media_type().as_ref(), &manifest)? else {
        panic!("expected an image manifest");
    };
    for (desc, want) in [(m.config(), &image.config), (&m.layers()[0], &image.layer)] {
        let mut stream = repo.fetch_blob(desc).await?;
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk?);
        }
        assert_eq!(&got, want);
    }
    Ok(())
}

#[tokio::test]
async fn anonymous_pull_falls_back_to_http_on_loopback() {
    let image = Image::new();
    let mock = registry(image.clone(), AuthMode::Anonymous).await;
    // No hosts.toml: https first, which the plain-http mock cannot speak, then http.
    let registry = Registry::new(None).unwrap();
    pull(&registry, &mock.host(), None, &image).await.unwrap();
    // Resolving by digest verifies against the reference.
    let by_digest = registry.repository(
        &reference(&mock.host(), &format!("@{}", sha256(&image.manifest))),
        None,
    );
    let resolved = by_digest.resolve().await.unwrap();
    assert_eq!(
        resolved.descriptor.media_type().to_string(),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let accept = mock.requests_to("/v2/").into_iter().next().unwrap();
    let accept = accept.header("accept").unwrap();
    for mt in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ] {
        assert!(accept.contains(mt), "{accept}");
    }
}

#[tokio::test]
async fn basic_auth_good_and_bad() {
    let image = Image::new();
    let mock = registry(
        image.clone(),
        AuthMode::Basic {
            user: "alice".into(),
            pass: "s3cret".into(),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let registry = plain_http_registry(&dir, &mock.host());
    pull(
        &registry,
        &mock.host(),
        Some(&userpass("alice", "s3cret")),
        &image,
    )
    .await
    .unwrap();
    // The `auth` field carries the same pair.
    let auth = Credentials {
        auth: "YWxpY2U6czNjcmV0".into(),
        ..Default::default()
    };
    pull(&registry, &mock.host(), Some(&auth), &image)
        .await
        .unwrap();

    for creds in [Some(userpass("alice", "wrong")), None] {
        let err = pull(&registry, &mock.host(), creds.as_ref(), &image)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Unauthenticated(_)), "{msg}");
        assert!(
            msg.contains(&format!("{}/{REPO}:v1", mock.host())) && msg.contains(&mock.host()),
            "{msg}"
        );
        assert!(!msg.contains("wrong"), "secret leaked: {msg}");
    }
}

#[tokio::test]
async fn bearer_token_flow_with_and_without_credentials() {
    let image = Image::new();
    let mock = registry(
        image.clone(),
        AuthMode::Bearer {
            creds: Some(("bob".into(), "pw".into())),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let registry = plain_http_registry(&dir, &mock.host());
    pull(
        &registry,
        &mock.host(),
        Some(&userpass("bob", "pw")),
        &image,
    )
    .await
    .unwrap();
    // The token was fetched once (service, scope and basic auth checked by the mock) and reused.
    assert_eq!(mock.requests_to("/token").len(), 1);
    let err = pull(
        &registry,
        &mock.host(),
        Some(&userpass("bob", "nope")),
        &image,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");

    let anon = support::registry(image.clone(), AuthMode::Bearer { creds: None }).await;
    let registry = plain_http_registry(&dir, &anon.host());
    pull(&registry, &anon.host(), None, &image).await.unwrap();
    let token_reqs = anon.requests_to("/token");
    assert_eq!(token_reqs.len(), 1);
    assert!(token_reqs[0].header("authorization").is_none());
}

#[tokio::test]
async fn identity_token_refresh_post_and_get_fallback() {
    let image = Image::new();
    let creds = Credentials {
        identity_token: "refresh-me".into(),
        ..Default::default()
    };
    for post in [true, false] {
        let mock = registry(
            image.clone(),
            AuthMode::Refresh {
                refresh: "refresh-me".into(),
                post,
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let registry = plain_http_registry(&dir, &mock.host());
        pull(&registry, &mock.host(), Some(&creds), &image)
            .await
            .unwrap();
        let methods: Vec<String> = mock
            .requests_to("/token")
            .into_iter()
            .map(|r| r.method)
            .collect();
        let want: &[&str] = if post { &["POST"] } else { &["POST", "GET"] };
        assert_eq!(methods, want);
        let bad = Credentials {
            identity_token: "stale".into(),
            ..Default::default()
        };
        let err = pull(&registry, &mock.host(), Some(&bad), &image)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    }
}

#[tokio::test]
async fn registry_token_is_sent_as_is() {
    let image = Image::new();
    let mock = registry(image.clone(), AuthMode::Static("fixed".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let registry = plain_http_registry(&dir, &mock.host());
    let creds = Credentials {
        registry_token: "fixed".into(),
        ..Default::default()
    };
    pull(&registry, &mock.host(), Some(&creds), &image)
        .await
        .unwrap();
    assert!(mock.requests_to("/token").is_empty());
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer fixed")));
    let bad = Credentials {
        registry_token: "other".into(),
        ..Default::default()
    };
    let err = pull(&registry, &mock.host(), Some(&bad), &image)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
}

#[tokio::test]
async fn missing_things_are_not_found() {
    let image = Image::new();
    let mock = registry(image.clone(), AuthMode::Anonymous).await;
    let dir = tempfile::tempdir().unwrap();
    let registry = plain_http_registry(&dir, &mock.host());
    let err = registry
        .repository(&reference(&mock.host(), ":nope"), None)
        .resolve()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(err.is_not_found(), "{msg}");
    assert!(
        msg.contains(&format!("{}/{REPO}:nope", mock.host())) && msg.contains("MANIFEST_UNKNOWN"),
        "{msg}"
    );
    let other = Reference::parse(&format!("{}/other/repo:v1", mock.host())).unwrap();
    assert!(registry
        .repository(&other, None)
        .resolve()
        .await
        .unwrap_err()
        .is_not_found());
    // A blob the registry lacks.
    let Manifest::Image(m) = Manifest::parse("", &image.manifest).unwrap() else {
        panic!()
    };
    let mut missing = m.config().clone();
    missing.set_digest(sha256(b"absent").parse().unwrap());
    let repo = registry.repository(&reference(&mock.host(), ":v1"), None);
    assert!(repo
        .fetch_blob(&missing)
        .await
        .err()
        .unwrap()
        .is_not_found());
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let addr = closed_port().await;
    let registry = Registry::new(None).unwrap();
    let err = registry
        .repository(&reference(&addr.to_string(), ":v1"), None)
        .resolve()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{msg}");
    assert!(
        msg.contains(&addr.to_string()) && msg.contains(REPO),
        "{msg}"
    );
}

#[tokio::test]
async fn digests_are_verified() {
    let image = Image::new();
    let mock = registry_with(image.clone(), AuthMode::Anonymous, true).await;
    let dir = tempfile::tempdir().unwrap();
    let registry = plain_http_registry(&dir, &mock.host());
    let want = sha256(&image.manifest);
    let err = registry
        .repository(&reference(&mock.host(), &format!("@{want}")), None)
        .resolve()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Internal(_)), "{msg}");
    let mut tampered = image.manifest.clone();
    tampered.push(b' ');
    assert!(
        msg.contains(&want) && msg.contains(&sha256(&tampered)),
        "{msg}"
    );
    // fetch_manifest checks the descriptor's digest too.
    let Manifest::Index(index) = Manifest::parse("", &image.index).unwrap() else {
        panic!()
    };
    let desc = select_manifest(&index, &Platform::new("linux", "amd64")).unwrap();
    let repo = registry.repository(&reference(&mock.host(), ":v1"), None);
    assert!(matches!(
        repo.fetch_manifest(&desc).await,
        Err(Error::Internal(_))
    ));
}

#[tokio::test]
async fn mirrors_are_tried_in_order() {
    let image = Image::new();
    let good = registry(image.clone(), AuthMode::Anonymous).await;
    let empty = always_404().await;
    let resolve_less = registry(image.clone(), AuthMode::Anonymous).await;
    let refused = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let domain = "upstream.invalid";
    std::fs::create_dir_all(dir.path().join(domain)).unwrap();
    let server = closed_port().await;
    std::fs::write(
        dir.path().join(domain).join("hosts.toml"),
        format!(
            "server = \"http://{server}\"\n\
             [host.\"http://{refused}\"]\n\
             [host.\"http://{}\"]\n\
             capabilities = [\"pull\"]\n\
             [host.\"http://{}\"]\n\
             [host.\"http://{}\"]\n",
            resolve_less.host(),
            empty.host(),
            good.host()
        ),
    )
    .unwrap();
    let registry = Registry::new(Some(dir.path())).unwrap();
    // Resolve skips the pull-only mirror; blobs come from it, the first pull host that answers.
    pull(&registry, domain, None, &image).await.unwrap();
    assert!(resolve_less
        .requests_to("/v2/test/app/manifests/v1")
        .is_empty());
    assert!(!resolve_less.requests_to("/v2/test/app/blobs/").is_empty());
    assert_eq!(empty.requests_to("/v2/test/app/manifests/v1").len(), 1);
    assert_eq!(good.requests_to("/v2/test/app/manifests/v1").len(), 1);

    // Everything fails: the server's error is reported, with the mirrors' noted.
    let err = registry
        .repository(&reference(domain, ":missing"), None)
        .resolve()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{msg}");
    assert!(
        msg.contains(&server.to_string()) && msg.contains(&good.host()) && msg.contains(domain),
        "{msg}"
    );
}

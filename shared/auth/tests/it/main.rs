//! Token verification against a dev issuer's key set: what passes and what is refused.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth::{AuthError, DevIssuer, Jwks, Verifier, VerifierConfig, bearer_token};
use serde_json::{Value, json};

/// One key per test process: RSA key generation is the slow part.
static ISSUER: LazyLock<DevIssuer> = LazyLock::new(|| match DevIssuer::generate() {
    Ok(issuer) => issuer,
    Err(e) => panic!("the dev issuer must be able to generate a key: {e}"),
});

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn verifier() -> Verifier {
    Verifier::new(ISSUER.verifier_config().expect("the dev JWKS is valid"))
}

fn claims(overrides: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "sub": "alice",
        "iss": ISSUER.issuer(),
        "aud": ISSUER.audience(),
        "token_use": "id",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    });
    if let (Some(base), Some(extra)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

/// Verifies `token` and compares the outcome: `Ok(sub)` or the error.
async fn check(token: &str, expected: Result<&str, AuthError>) {
    let got = verifier().verify(token).await.map(|c| c.sub);
    assert_eq!(
        got.as_deref().map_err(Clone::clone),
        expected,
        "token {token}"
    );
}

fn sign(overrides: Value) -> String {
    ISSUER
        .sign(&claims(overrides))
        .expect("signing with the dev key works")
}

#[tokio::test]
async fn a_valid_token_passes() {
    let token = ISSUER.issue("alice", Duration::from_secs(300)).unwrap();
    let claims = verifier().verify(&token).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, vec![ISSUER.audience().to_string()]);
    assert_eq!(claims.token_use.as_deref(), Some("id"));
}

#[tokio::test]
async fn cognito_access_tokens_use_client_id() {
    check(
        &sign(json!({"aud": null, "client_id": ISSUER.audience(), "token_use": "access"})),
        Ok("alice"),
    )
    .await;
    check(
        &sign(json!({"aud": null, "client_id": "another-app", "token_use": "access"})),
        Err(AuthError::WrongAudience),
    )
    .await;
    check(&sign(json!({"aud": ["x", ISSUER.audience()]})), Ok("alice")).await;
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let long_ago = now() - 3600;
    check(
        &sign(json!({"exp": long_ago, "nbf": long_ago - 60})),
        Err(AuthError::Expired),
    )
    .await;
    check(
        &sign(json!({"nbf": now() + 3600})),
        Err(AuthError::NotYetValid),
    )
    .await;
    check(
        &sign(json!({"iss": "https://evil.example/"})),
        Err(AuthError::WrongIssuer),
    )
    .await;
    check(
        &sign(json!({"aud": "another-api"})),
        Err(AuthError::WrongAudience),
    )
    .await;
    check(&sign(json!({"aud": null})), Err(AuthError::WrongAudience)).await;
    check(
        &sign(json!({"token_use": "refresh"})),
        Err(AuthError::WrongTokenUse("refresh".to_string())),
    )
    .await;
    check(
        &sign(json!({"iss": null})),
        Err(AuthError::MissingClaim("iss".to_string())),
    )
    .await;
}

/// The ops console reads `cognito:groups`: the dev issuer mints it, the verifier returns
/// it, and a token carrying too many groups or too long a name is refused.
#[tokio::test]
async fn groups_are_read_and_bounded() {
    let token = ISSUER
        .issue_with_groups("olive", &["fleet-ops", "viewers"], Duration::from_secs(300))
        .unwrap();
    let claims = verifier().verify(&token).await.unwrap();
    assert_eq!(claims.groups, vec!["fleet-ops", "viewers"]);
    assert!(claims.in_group("fleet-ops") && !claims.in_group("fleet"));
    let plain = ISSUER.issue("alice", Duration::from_secs(300)).unwrap();
    assert!(verifier().verify(&plain).await.unwrap().groups.is_empty());

    let many: Vec<String> = (0..=auth::MAX_GROUPS).map(|i| format!("g{i}")).collect();
    let refused = verifier()
        .verify(&sign(json!({"cognito:groups": many})))
        .await;
    assert!(
        matches!(&refused, Err(AuthError::Malformed(m)) if m.contains("cognito:groups")),
        "{refused:?}"
    );
    let long = "g".repeat(auth::MAX_GROUP_LEN + 1);
    let refused = verifier()
        .verify(&sign(json!({"cognito:groups": [long]})))
        .await;
    assert!(
        matches!(refused, Err(AuthError::Malformed(_))),
        "{refused:?}"
    );
    let not_a_list = verifier()
        .verify(&sign(json!({"cognito:groups": "fleet-ops"})))
        .await;
    assert!(
        matches!(not_a_list, Err(AuthError::Malformed(_))),
        "{not_a_list:?}"
    );
    assert!(
        ISSUER
            .issue_with_groups("olive", &many, Duration::from_secs(300))
            .is_err(),
        "the dev issuer refuses what the verifier would"
    );
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let token = sign(json!({}));
    let (rest, signature) = token.rsplit_once('.').unwrap();
    // Change the first signature character: still base64url, no longer the signature.
    let first = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{rest}.{first}{}", &signature[1..]);
    check(&tampered, Err(AuthError::BadSignature)).await;

    // A payload swapped in from another token keeps the header and signature.
    let other = sign(json!({"sub": "mallory"}));
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let swapped = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    check(&swapped, Err(AuthError::BadSignature)).await;
}

#[tokio::test]
async fn a_token_from_another_key_is_refused() {
    let stranger = DevIssuer::generate().unwrap();
    let token = stranger.issue("alice", Duration::from_secs(300)).unwrap();
    check(&token, Err(AuthError::UnknownKey)).await;
}

#[tokio::test]
async fn garbage_is_refused() {
    for garbage in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "....."] {
        let got = verifier().verify(garbage).await;
        assert!(
            matches!(got, Err(AuthError::Malformed(_))),
            "{garbage:?} gave {got:?}"
        );
    }
    // An unsigned token (`alg: none`) with otherwise perfect claims.
    let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64_url(claims(json!({})).to_string().as_bytes());
    let got = verifier().verify(&format!("{header}.{payload}.")).await;
    assert!(matches!(got, Err(AuthError::Malformed(_))), "{got:?}");
}

#[test]
fn bearer_headers() {
    assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::Missing));
    assert!(matches!(
        bearer_token(Some("Basic abc")),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        bearer_token(Some("abc")),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn errors_never_leak_details() {
    for e in [
        AuthError::Expired,
        AuthError::BadSignature,
        AuthError::Malformed("x".into()),
    ] {
        assert_eq!(e.client_message(), "unauthorized");
        assert!(!e.is_server_error());
    }
    assert!(AuthError::KeySetUnavailable("down".into()).is_server_error());
}

#[test]
fn the_key_is_created_once_and_reloaded() {
    let dir = std::env::temp_dir().join(format!("fleet-auth-{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join("dev-issuer.pem");
    let first = DevIssuer::load_or_create(&path).unwrap();
    let second = DevIssuer::load_or_create(&path).unwrap();
    assert_eq!(first.kid(), second.kid());
    assert_eq!(first.jwks(), second.jwks());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key must be owner-only");
    }
    std::fs::write(&path, "not a key").unwrap();
    assert!(DevIssuer::load_or_create(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_remote_jwks_is_fetched_once_and_cached() {
    let hits = Arc::new(AtomicUsize::new(0));
    let jwks = ISSUER.jwks();
    let app = {
        let hits = hits.clone();
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let verifier = Verifier::new(VerifierConfig {
        issuer: ISSUER.issuer().to_string(),
        audience: ISSUER.audience().to_string(),
        jwks: Jwks::from_url(format!("http://{addr}/.well-known/jwks.json")).unwrap(),
    });
    for sub in ["alice", "bob"] {
        let token = ISSUER.issue(sub, Duration::from_secs(60)).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub, sub);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the key set is cached");

    // A token naming an unknown key refetches once, then is refused without hammering.
    let stranger = DevIssuer::generate().unwrap();
    for _ in 0..3 {
        let token = stranger.issue("alice", Duration::from_secs(60)).unwrap();
        assert_eq!(verifier.verify(&token).await, Err(AuthError::UnknownKey));
    }
    assert!(hits.load(Ordering::SeqCst) <= 2);

    server.abort();
    let _ = server.await;
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_server_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let verifier = Verifier::new(VerifierConfig {
        issuer: ISSUER.issuer().to_string(),
        audience: ISSUER.audience().to_string(),
        jwks: Jwks::from_url(format!("http://127.0.0.1:{port}/jwks.json")).unwrap(),
    });
    let token = ISSUER.issue("alice", Duration::from_secs(60)).unwrap();
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(err.is_server_error(), "{err:?}");
}

/// A JWKS endpoint that can be switched to hanging, as an identity provider that is down.
async fn switchable_jwks() -> (String, Arc<std::sync::atomic::AtomicBool>, Arc<AtomicUsize>) {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let jwks = ISSUER.jwks();
    let app = {
        let (down, hits) = (down.clone(), hits.clone());
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let (down, jwks) = (down.load(Ordering::SeqCst), jwks.clone());
                async move {
                    if down {
                        std::future::pending::<()>().await;
                    }
                    axum::Json(jwks)
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port on 127.0.0.1");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/jwks.json"), down, hits)
}

#[tokio::test]
async fn with_the_identity_provider_down_stale_keys_are_served_without_waiting() {
    let (url, down, hits) = switchable_jwks().await;
    let verifier = Verifier::new(VerifierConfig {
        issuer: ISSUER.issuer().to_string(),
        audience: ISSUER.audience().to_string(),
        jwks: Jwks::from_url_with(
            url,
            auth::JwksConfig {
                // Every key is stale at once, and a fetch would wait for an hour: a
                // request that waited on a refresh would never come back.
                max_age: Duration::ZERO,
                fetch_timeout: Duration::from_secs(3600),
                ..auth::JwksConfig::default()
            },
        )
        .unwrap(),
    });
    let token = ISSUER.issue("alice", Duration::from_secs(60)).unwrap();
    assert_eq!(verifier.verify(&token).await.unwrap().sub, "alice");
    down.store(true, Ordering::SeqCst);
    let deadline = Duration::from_secs(30);
    for _ in 0..20 {
        let verified = tokio::time::timeout(deadline, verifier.verify(&token))
            .await
            .expect("a request never waits for the issuer while a key is cached");
        assert_eq!(verified.unwrap().sub, "alice");
    }
    // One background refresh is hanging on the issuer; requests did not each start one.
    assert!(hits.load(Ordering::SeqCst) <= 2, "{hits:?}");
}

#[tokio::test]
async fn with_the_identity_provider_down_unknown_keys_do_not_each_wait_for_a_fetch() {
    let (url, down, hits) = switchable_jwks().await;
    down.store(true, Ordering::SeqCst);
    let verifier = Verifier::new(VerifierConfig {
        issuer: ISSUER.issuer().to_string(),
        audience: ISSUER.audience().to_string(),
        jwks: Jwks::from_url_with(
            url,
            auth::JwksConfig {
                fetch_timeout: Duration::from_millis(200),
                ..auth::JwksConfig::default()
            },
        )
        .unwrap(),
    });
    let token = ISSUER.issue("alice", Duration::from_secs(60)).unwrap();
    for _ in 0..10 {
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(err.is_server_error(), "{err:?}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch per min_refetch, not one per request"
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

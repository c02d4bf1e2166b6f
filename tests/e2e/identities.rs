//! Identities: API keys issued by admins (shown once, hashed, revocable, expiring,
//! last use recorded) and bearer tokens from an identity provider's key pair, with
//! issuer, audience and bounded clock skew.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ota::server::{self, Components};
use ota_api::auth::Role;
use ota_testkit::{eventually, json_of, TestApp};
use serde_json::{json, Value};

async fn issue(app: &TestApp, role: &str, expires_at: Option<String>) -> Value {
    let body = json!({"name": format!("{role} key"), "role": role, "expires_at": expires_at});
    let (status, key) = json_of(
        app.http
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(app.token(Role::Admin))
            .json(&body)
            .send()
            .await
            .expect("issue"),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key
}

fn with_key(app: &TestApp, method: reqwest::Method, path: &str, key: &Value) -> reqwest::RequestBuilder {
    app.http.request(method, app.url(path)).bearer_auth(key["key"].as_str().expect("key"))
}

#[tokio::test]
async fn api_keys_are_issued_by_admins_act_with_their_role_and_stop_when_revoked_or_expired() {
    let app = TestApp::spawn().await;
    let operator = issue(&app, "operator", None).await;
    let viewer = issue(&app, "viewer", None).await;
    assert!(operator["key"].as_str().is_some_and(|k| k.starts_with("ota_")), "{operator}");

    // The operator key writes, and its events name it.
    let firmware = app.firmware("1.0").await;
    let (status, body) = json_of(
        with_key(&app, reqwest::Method::POST, &format!("/api/v1/firmware/{firmware}/deprecate"), &operator)
            .send()
            .await
            .expect("w"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let actor: String =
        sqlx::query_scalar("SELECT metadata->>'actor_id' FROM events WHERE event_type = 'FirmwareDeprecated'")
            .fetch_one(&app.db)
            .await
            .expect("actor");
    assert_eq!(actor, format!("api-key:{}", operator["id"].as_str().expect("id")));
    // The viewer key reads and may not write; neither may manage keys.
    assert_eq!(with_key(&app, reqwest::Method::GET, "/api/v1/stats", &viewer).send().await.expect("r").status(), 200);
    let refused = with_key(&app, reqwest::Method::POST, &format!("/api/v1/firmware/{firmware}/deprecate"), &viewer);
    assert_eq!(refused.send().await.expect("w").status(), 403);
    let escalate = with_key(&app, reqwest::Method::POST, "/api/v1/api-keys", &operator)
        .json(&json!({"name": "x", "role": "admin"}));
    assert_eq!(escalate.send().await.expect("escalate").status(), 403);

    // Listing shows every key, never a secret, with its last use.
    let list = eventually("last use recorded", Duration::from_secs(10), || async {
        let (_, list) = json_of(app.get_as("/api/v1/api-keys", Role::Admin).send().await.ok()?).await;
        let used = list.as_array()?.iter().find(|k| k["id"] == operator["id"])?["last_used_at"].is_string();
        used.then_some(list)
    })
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert!(list.as_array().is_some_and(|keys| keys.iter().all(|k| k.get("key").is_none())), "{list}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE $1")
        .bind(format!("%{}%", operator["key"].as_str().and_then(|k| k.rsplit('_').next()).unwrap_or("none")))
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 0, "the secret itself is stored nowhere");

    // Revoked: refused at once.
    let revoke = app.http.delete(app.url(&format!("/api/v1/api-keys/{}", operator["id"].as_str().expect("id"))));
    let (status, revoked) = json_of(revoke.bearer_auth(app.token(Role::Admin)).send().await.expect("revoke")).await;
    assert_eq!((status, revoked["revoked_at"].is_string()), (200, true), "{revoked}");
    assert_eq!(with_key(&app, reqwest::Method::GET, "/api/v1/stats", &operator).send().await.expect("r").status(), 401);

    // Expired: refused; a tampered secret too.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let expiring = issue(&app, "viewer", Some(soon)).await;
    assert_eq!(with_key(&app, reqwest::Method::GET, "/api/v1/stats", &expiring).send().await.expect("r").status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(with_key(&app, reqwest::Method::GET, "/api/v1/stats", &expiring).send().await.expect("r").status(), 401);
    let mut tampered = viewer.clone();
    tampered["key"] = json!(format!("{}x", viewer["key"].as_str().expect("key")));
    assert_eq!(with_key(&app, reqwest::Method::GET, "/api/v1/stats", &tampered).send().await.expect("r").status(), 401);
    let past = json!({"name": "old", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"});
    let (status, _) = json_of(
        app.http
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(app.token(Role::Admin))
            .json(&past)
            .send()
            .await
            .expect("p"),
    )
    .await;
    assert_eq!(status, 422);
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl").args(args).status().expect("openssl (scripts/test.sh installs it)");
    assert!(status.success(), "openssl {args:?}");
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test]
async fn tokens_from_an_identity_providers_key_pair_are_checked_for_issuer_audience_lifetime_and_nbf() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    for (name, algorithm) in [("rsa", "RSA"), ("ec", "EC")] {
        let mut args = vec!["genpkey", "-algorithm", algorithm, "-out"];
        let private = path(&format!("{name}.key"));
        args.push(&private);
        if algorithm == "EC" {
            args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
        } else {
            args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]);
        }
        openssl(&args);
        openssl(&["pkey", "-in", &private, "-pubout", "-out", &path(&format!("{name}.pub"))]);
    }
    for (name, algorithm) in [("rsa", Algorithm::RS256), ("ec", Algorithm::ES256)] {
        let mut settings = app.settings.clone();
        settings.listen = "127.0.0.1:0".parse().expect("addr");
        settings.jwt_public_key_file = Some(path(&format!("{name}.pub")));
        settings.jwt_issuer = Some("https://idp.example".into());
        settings.jwt_audience = Some("ota".into());
        settings.jwt_leeway_secs = 5;
        let idp = server::start(&settings, Components { relay: false, projections: false, rollouts: false })
            .await
            .expect("server");
        let pem = std::fs::read(path(&format!("{name}.key"))).expect("key");
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("encoding key");
        let token = |claims: Value| jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("sign");
        let good =
            json!({"sub": "alice", "role": "operator", "iss": "https://idp.example", "aud": "ota", "exp": now() + 60});
        let status_with = |token: String| {
            let url = format!("http://{}/api/v1/stats", idp.addr);
            async move {
                reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("request").status().as_u16()
            }
        };
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/v1/stats", idp.addr))
            .bearer_auth(token(good.clone()))
            .send()
            .await
            .expect("request");
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{name}: {body}");
        let mut skewed = good.clone();
        skewed["exp"] = json!(now() - 2);
        assert_eq!(status_with(token(skewed)).await, 200, "{name}: within the clock skew");
        let mut expired = good.clone();
        expired["exp"] = json!(now() - 60);
        assert_eq!(status_with(token(expired)).await, 401, "{name}: expired");
        let mut audience = good.clone();
        audience["aud"] = json!("someone-else");
        assert_eq!(status_with(token(audience)).await, 401, "{name}: wrong audience");
        let mut issuer = good.clone();
        issuer["iss"] = json!("https://evil.example");
        assert_eq!(status_with(token(issuer)).await, 401, "{name}: wrong issuer");
        let mut early = good.clone();
        early["nbf"] = json!(now() + 600);
        assert_eq!(status_with(token(early)).await, 401, "{name}: not valid yet");
        let mut long = good.clone();
        (long["iat"], long["exp"]) = (json!(now()), json!(now() + 2 * 86_400));
        assert_eq!(status_with(token(long)).await, 401, "{name}: lives longer than a day");
        // The shared secret still works alongside, with its own issuer and audience.
        let hs = ota_api::auth::Auth::new(&settings.token_settings()).expect("auth");
        assert_eq!(status_with(hs.issue("bob", Role::Viewer, Duration::from_secs(60)).expect("issue")).await, 200);
        assert!(
            matches!(
                hs.issue("bob", Role::Viewer, Duration::from_secs(2 * 86_400)),
                Err(ota_api::auth::AuthConfigError::TooLong { .. })
            ),
            "a two-day token was issued"
        );
    }
    // An identity provider's key without an issuer and an audience to bind it would
    // accept the tokens it signs for any other service.
    for (issuer, audience) in [(None, Some("ota")), (Some("https://idp.example"), None)] {
        let mut unbound = app.settings.clone();
        unbound.jwt_public_key_file = Some(path("rsa.pub"));
        unbound.jwt_issuer = issuer.map(str::to_owned);
        unbound.jwt_audience = audience.map(str::to_owned);
        let refused = ota_api::auth::Auth::new(&unbound.token_settings()).err();
        assert!(matches!(refused, Some(ota_api::auth::AuthConfigError::UnboundIdentityProvider)), "{refused:?}");
    }
}

/// Issue 11 (per-process secrets): with neither OTA_DOWNLOAD_URL_SECRET nor
/// OTA_JWT_SECRET (an identity provider's key only), each process drew its own link
/// key and a link issued by one instance failed on another. Now every instance on a
/// database signs with the one key kept there; another deployment has its own.
#[tokio::test]
async fn instances_without_a_link_secret_share_one_link_key_through_their_database() {
    let app = TestApp::spawn().await;
    let mut settings = app.settings.clone();
    settings.jwt_secret = None;
    settings.download_url_secret = None;
    let first = ota::server::download_signer(&settings, &app.db).await.expect("first instance");
    let second = ota::server::download_signer(&settings, &app.db).await.expect("second instance");
    let path = "/default/controller/v1/dev-1/softwaremodules/1/artifacts/os.swu";
    let now = chrono::Utc::now().timestamp();
    let query = first.query(path, now + 600);
    let (expires, signature) =
        query.split('&').filter_map(|pair| pair.split_once('=')).fold((0, String::new()), |(e, s), (k, v)| match k {
            "expires" => (v.parse().unwrap_or(e), s),
            "signature" => (e, v.to_owned()),
            _ => (e, s),
        });
    assert_eq!(second.verify(path, expires, &signature, now), Ok(()), "a link of one instance works on another");

    let elsewhere = TestApp::spawn().await;
    let foreign = ota::server::download_signer(&settings, &elsewhere.db).await.expect("another deployment");
    assert!(foreign.verify(path, expires, &signature, now).is_err(), "another database, another key");
}

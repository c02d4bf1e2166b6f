//! Authentication and authorisation over every `/api/v1` route, the public
//! health endpoints and unknown routes.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ota_api::auth::Role;
use ota_testkit::{json_of, TestApp, AUDIENCE, ISSUER};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};

/// The `/api/v1` routes every build is known to have, as (method, path template).
const KNOWN_ROUTES: [(&str, &str); 15] = [
    ("GET", "/firmware"),
    ("POST", "/firmware"),
    ("GET", "/firmware/{id}"),
    ("GET", "/firmware/{id}/content"),
    ("GET", "/firmware/{id}/history"),
    ("POST", "/firmware/{id}/deprecate"),
    ("GET", "/campaigns"),
    ("POST", "/campaigns"),
    ("GET", "/campaigns/{id}"),
    ("GET", "/campaigns/{id}/history"),
    ("POST", "/campaigns/{id}/start"),
    ("POST", "/campaigns/{id}/pause"),
    ("POST", "/campaigns/{id}/resume"),
    ("POST", "/campaigns/{id}/cancel"),
    ("GET", "/stats"),
];

/// Every bearer-authenticated `/api/v1` route with its method, read from the server's own
/// OpenAPI document (which the contract tests prove lists every registered route), so
/// that a route added anywhere is covered here without anyone remembering to.
pub(crate) async fn route_table(app: &TestApp) -> Vec<(Method, String)> {
    let (status, doc) = json_of(app.http.get(app.url("/api/v1/openapi.json")).send().await.expect("document")).await;
    assert_eq!(status, 200, "{doc}");
    let mut table = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // The status route takes a device's token as well; its own tests cover it.
        let Some(template) = path.strip_prefix("/api/v1").filter(|p| !p.ends_with("/status")) else { continue };
        for (method, operation) in item.as_object().expect("path item") {
            if operation["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())) {
                table.push((
                    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method"),
                    template.to_owned(),
                ));
            }
        }
    }
    for (method, path) in KNOWN_ROUTES {
        assert!(
            table.iter().any(|(m, p)| m.as_str() == method && p == path),
            "the document misses {method} {path}: {table:?}"
        );
    }
    table
}

/// Every `/api/v1` route as a request line: ids filled in with the given fixtures.
pub(crate) async fn routes(app: &TestApp, firmware: &str, campaign: &str) -> Vec<(Method, String)> {
    route_table(app)
        .await
        .into_iter()
        .map(|(method, template)| {
            let id = if template.starts_with("/firmware") {
                firmware
            } else if template.starts_with("/campaigns") {
                campaign
            } else {
                "dev-1"
            };
            (method, format!("/api/v1{}", template.replace("{id}", id)))
        })
        .collect()
}

/// Routes of the firmware and campaign API, whose reads of existing fixtures must succeed.
fn is_fixture_route(path: &str) -> bool {
    ["/api/v1/firmware", "/api/v1/campaigns", "/api/v1/stats"].iter().any(|p| path.starts_with(p))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

const OTHER_SECRET: &str = "another-secret-another-secret-0123456789";

fn forge(secret: &str, algorithm: Algorithm, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign token")
}

fn operator_claims(exp: u64) -> Value {
    json!({"sub": "mallory", "role": "operator", "iat": now(), "exp": exp, "iss": ISSUER, "aud": AUDIENCE})
}

/// Authorization headers that must all be refused, with what each one is.
fn bad_credentials(app: &TestApp) -> Vec<(&'static str, Option<String>)> {
    let secret = app.jwt_secret();
    let valid = app.token(Role::Admin);
    vec![
        ("no Authorization header", None),
        ("garbage bearer token", Some("Bearer garbage".to_owned())),
        ("empty bearer token", Some("Bearer ".to_owned())),
        ("scheme only", Some("Bearer".to_owned())),
        ("token without scheme", Some(valid.clone())),
        ("Basic scheme", Some("Basic YWRtaW46YWRtaW4=".to_owned())),
        ("Basic scheme carrying a valid token", Some(format!("Basic {valid}"))),
        (
            "token signed with another secret",
            Some(format!("Bearer {}", forge(OTHER_SECRET, Algorithm::HS256, operator_claims(now() + 600)))),
        ),
        (
            "expired token beyond the leeway",
            Some(format!("Bearer {}", forge(secret, Algorithm::HS256, operator_claims(now() - 120)))),
        ),
        ("token long expired", Some(format!("Bearer {}", forge(secret, Algorithm::HS256, operator_claims(1))))),
        (
            "token without exp",
            Some(format!("Bearer {}", forge(secret, Algorithm::HS256, json!({"sub": "mallory", "role": "admin"})))),
        ),
        (
            "token without sub",
            Some(format!("Bearer {}", forge(secret, Algorithm::HS256, json!({"role": "admin", "exp": now() + 600})))),
        ),
        (
            "token with an unknown role",
            Some(format!(
                "Bearer {}",
                forge(secret, Algorithm::HS256, json!({"sub": "mallory", "role": "root", "exp": now() + 600}))
            )),
        ),
        (
            "token signed with HS512",
            Some(format!("Bearer {}", forge(secret, Algorithm::HS512, operator_claims(now() + 600)))),
        ),
        ("valid token with a tampered payload", Some(format!("Bearer {}", tamper(&valid)))),
        (
            "token for another audience",
            Some(format!(
                "Bearer {}",
                forge(secret, Algorithm::HS256, {
                    let mut claims = operator_claims(now() + 600);
                    claims["aud"] = json!("someone-else");
                    claims
                })
            )),
        ),
        (
            "token from another issuer",
            Some(format!(
                "Bearer {}",
                forge(secret, Algorithm::HS256, {
                    let mut claims = operator_claims(now() + 600);
                    claims["iss"] = json!("https://evil.example");
                    claims
                })
            )),
        ),
        (
            "token without an audience",
            Some(format!(
                "Bearer {}",
                forge(secret, Algorithm::HS256, {
                    json!({"sub": "mallory", "role": "admin", "exp": now() + 600, "iss": ISSUER})
                })
            )),
        ),
    ]
}

/// Swaps the payload of `token` for one naming another subject, keeping the signature.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let other = forge(OTHER_SECRET, Algorithm::HS256, json!({"sub": "mallory", "role": "admin", "exp": now() + 600}));
    let payload = other.split('.').nth(1).expect("payload");
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

/// Headers that a proxy or an internal caller might set; none of them is a credential.
fn spoofing_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-internal-call", "true"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-host", "localhost"),
        ("x-forwarded-user", "admin"),
        ("x-remote-user", "admin"),
        ("x-user-role", "admin"),
        ("x-api-key", "admin"),
    ]
}

fn request(app: &TestApp, method: &Method, path: &str) -> reqwest::RequestBuilder {
    app.http.request(method.clone(), app.url(path))
}

async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count events")
}

/// A firmware and a draft campaign, so that a request that got through would change something.
pub(crate) async fn fixtures(app: &TestApp) -> (String, String) {
    let firmware = app.firmware("1.0.0").await;
    let (status, body) = app.create_campaign("c", &firmware, &["dev-1", "dev-2"]).await;
    assert_eq!(status, 201, "{body}");
    let campaign = body["id"].as_str().expect("campaign id").to_owned();
    app.all_caught_up().await;
    (firmware, campaign)
}

/// A body each write route would accept.
fn with_valid_body(
    builder: reqwest::RequestBuilder,
    method: &Method,
    path: &str,
    firmware: &str,
) -> reqwest::RequestBuilder {
    if *method != Method::POST {
        return builder;
    }
    if path == "/api/v1/firmware" {
        let metadata = json!({"name": "intruder", "version": "6.6.6", "device_model": "gw"});
        let form = Form::new()
            .part("metadata", Part::text(metadata.to_string()).mime_str("application/json").expect("mime"))
            .part("file", Part::bytes(b"evil image".to_vec()).file_name("evil.swu"));
        builder.multipart(form)
    } else if path == "/api/v1/campaigns" {
        builder.json(&json!({"name": "intruder", "firmware_id": firmware,
            "target": {"device_ids": ["dev-9"]}}))
    } else {
        builder
    }
}

/// Status and JSON body; an event stream (which never ends) is left unread.
pub(crate) async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let streaming = response.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
    if streaming {
        return (response.status().as_u16(), Value::Null);
    }
    json_of(response).await
}

fn assert_unauthorized(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"], "unauthorized", "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_missing_or_bad_credentials() {
    let app = TestApp::spawn().await;
    let (firmware, campaign) = fixtures(&app).await;
    // An admin API key, revoked: it must open nothing.
    let (status, key) = json_of(
        app.http
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(app.token(Role::Admin))
            .json(&json!({"name": "leaked", "role": "admin"}))
            .send()
            .await
            .expect("issue"),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let revoke = app.http.delete(app.url(&format!("/api/v1/api-keys/{}", key["id"].as_str().expect("id"))));
    assert_eq!(revoke.bearer_auth(app.token(Role::Admin)).send().await.expect("revoke").status(), 200);
    let events = event_count(&app).await;
    let routes = routes(&app, &firmware, &campaign).await;
    assert!(routes.len() >= KNOWN_ROUTES.len());
    let mut credentials = bad_credentials(&app);
    credentials.push(("a revoked API key", Some(format!("Bearer {}", key["key"].as_str().expect("key")))));
    credentials.push(("a made-up API key", Some(format!("Bearer ota_{}_secret", uuid::Uuid::new_v4().simple()))));

    for (what, authorization) in credentials {
        for (method, path) in &routes {
            let mut builder = with_valid_body(request(&app, method, path), method, path, &firmware);
            if let Some(value) = &authorization {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            let response = builder.send().await.expect("request");
            let challenge = response.headers().get(header::WWW_AUTHENTICATE).cloned();
            let (status, body) = json_of(response).await;
            assert_unauthorized(status, &body, &format!("{what}: {method} {path}"));
            assert_eq!(
                challenge.as_ref().and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "a 401 names its scheme (RFC 9110 11.6.1): {what}: {method} {path}"
            );
        }
    }
    assert_eq!(event_count(&app).await, events, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_internal_headers_grant_nothing() {
    let app = TestApp::spawn().await;
    let (firmware, campaign) = fixtures(&app).await;
    let events = event_count(&app).await;
    let mut all = HeaderMap::new();
    for (name, value) in spoofing_headers() {
        all.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    for (method, path) in routes(&app, &firmware, &campaign).await {
        for (name, value) in spoofing_headers() {
            let builder = with_valid_body(request(&app, &method, &path), &method, &path, &firmware).header(name, value);
            let (status, body) = json_of(builder.send().await.expect("request")).await;
            assert_unauthorized(status, &body, &format!("{name}: {method} {path}"));
        }
        let builder = with_valid_body(request(&app, &method, &path), &method, &path, &firmware).headers(all.clone());
        let (status, body) = json_of(builder.send().await.expect("request")).await;
        assert_unauthorized(status, &body, &format!("all headers: {method} {path}"));
    }
    assert_eq!(event_count(&app).await, events, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_with_the_right_secret_is_accepted() {
    // The control for the refusals above: the same forging, done right, passes.
    let app = TestApp::spawn().await;
    let token = forge(app.jwt_secret(), Algorithm::HS256, operator_claims(now() + 600));
    let (status, body) =
        json_of(app.http.get(app.url("/api/v1/stats")).bearer_auth(&token).send().await.expect("request")).await;
    assert_eq!(status, 200, "{body}");

    let firmware = app.firmware("1.0.0").await;
    let (status, body) = json_of(
        app.http
            .post(app.url(&format!("/api/v1/firmware/{firmware}/deprecate")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let actor: String =
        sqlx::query_scalar("SELECT metadata ->> 'actor_id' FROM events WHERE event_type = 'FirmwareDeprecated'")
            .fetch_one(&app.db)
            .await
            .expect("actor");
    assert_eq!(actor, "mallory");
}

/// What a route needs, as the README's permission table says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Read,
    Write,
    Approve,
    Audit,
    Admin,
}

fn need(method: &Method, path: &str) -> Need {
    if path.starts_with("/api/v1/api-keys") || path.starts_with("/api/v1/webhooks") {
        Need::Admin
    } else if path.starts_with("/api/v1/audit/") {
        Need::Audit
    } else if path.ends_with("/approve") {
        Need::Approve
    } else if *method == Method::GET {
        Need::Read
    } else {
        Need::Write
    }
}

fn may(role: Role, need: Need) -> bool {
    match need {
        Need::Read => true,
        Need::Write => matches!(role, Role::Admin | Role::Operator),
        Need::Approve => matches!(role, Role::Admin | Role::Approver),
        Need::Audit => matches!(role, Role::Admin | Role::Auditor),
        Need::Admin => role == Role::Admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_permission_table_says() {
    let app = TestApp::spawn().await;
    let (firmware, campaign) = fixtures(&app).await;
    let events = event_count(&app).await;
    for role in Role::ALL {
        let token = app.token(role);
        for (method, path) in routes(&app, &firmware, &campaign).await {
            let need = need(&method, &path);
            let allowed = may(role, need);
            if allowed && need != Need::Read && method != Method::GET {
                // Allowed writes are proven by every other test; here they would change the fixtures.
                continue;
            }
            let builder = with_valid_body(request(&app, &method, &path), &method, &path, &firmware).bearer_auth(&token);
            let (status, body) = answer_of(builder.send().await.expect("request")).await;
            let what = format!("{role:?} {method} {path}");
            if !allowed {
                assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{what}: {body}");
                let role_name = format!("{role:?}").to_lowercase();
                assert!(body["message"].as_str().is_some_and(|m| m.contains(&role_name)), "{what}: {body}");
            } else if is_fixture_route(&path)
                || ["/api/v1/api-keys", "/api/v1/audit/verify", "/api/v1/audit/fleet"].contains(&path.as_str())
            {
                assert_eq!(status, 200, "{what}: {body}");
            } else {
                // Other reads name no existing resource; they may miss, never refuse the role.
                assert!(![401, 403].contains(&status), "{what}: {status} {body}");
            }
        }
    }
    assert_eq!(event_count(&app).await, events, "no refused request wrote anything");

    // The refused requests were valid: an operator's identical request succeeds, and an admin's.
    let (status, body) = app.campaign_action(&campaign, "start").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_of(
        app.http
            .post(app.url(&format!("/api/v1/campaigns/{campaign}/pause")))
            .bearer_auth(app.token(Role::Admin))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paused")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_public() {
    let app = TestApp::spawn().await;
    let (status, body) = json_of(app.http.get(app.url("/health")).send().await.expect("health")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");

    // A client on the shared NATS can be between reconnects when the machine is loaded.
    let body = ota_testkit::eventually("health ok", std::time::Duration::from_secs(15), || async {
        let (status, body) = json_of(app.http.get(app.url("/health/detailed")).send().await.ok()?).await;
        (status == 200 && body["status"] == "ok").then_some(body)
    })
    .await;
    for dependency in ["postgres", "nats", "object_store", "relay"] {
        assert_eq!(body[dependency]["ok"], true, "{dependency}: {body}");
    }
    assert!(body["relay"]["unpublished_events"].is_i64(), "{body}");
    let names: BTreeSet<&str> = body["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .map(|p| p["name"].as_str().expect("projection name"))
        .collect();
    for name in ["firmware", "campaigns", "activity"] {
        assert!(names.contains(name), "projection {name} missing: {body}");
    }
    for p in body["projections"].as_array().expect("projections") {
        assert!(p["applied"].is_i64(), "{p}");
        assert!(p["last_global_seq"].is_i64(), "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_json() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let paths = [
        "/".to_owned(),
        "/nope".to_owned(),
        "/api".to_owned(),
        "/api/v2/firmware".to_owned(),
        "/api/v1".to_owned(),
        "/api/v1/nope".to_owned(),
        "/api/v1/gadgets".to_owned(),
        "/api/v1/firmware/".to_owned(),
        format!("/api/v1/firmware/{id}/nope"),
        format!("/api/v1/campaigns/{id}/start/now"),
    ];
    for path in &paths {
        for (authenticated, method) in [(true, Method::GET), (false, Method::GET), (true, Method::POST)] {
            let mut builder = request(&app, &method, path);
            if authenticated {
                builder = builder.bearer_auth(app.token(Role::Admin));
            }
            let (status, body) = json_of(builder.send().await.expect("request")).await;
            assert_eq!(status, 404, "{method} {path} (auth: {authenticated}): {body}");
            assert_eq!(body["error"], "not_found", "{method} {path}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_names_the_caller_and_what_its_role_may_do() {
    let app = TestApp::spawn().await;
    for (role, may) in [
        (Role::Admin, vec!["read", "write", "approve", "audit", "admin"]),
        (Role::Operator, vec!["read", "write"]),
        (Role::Approver, vec!["read", "approve"]),
        (Role::Viewer, vec!["read"]),
        (Role::Auditor, vec!["read", "audit"]),
    ] {
        let (status, me) = json_of(app.get_as("/api/v1/me", role).send().await.expect("me")).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!((me["subject"].as_str(), me["role"].as_str()), (Some("tester"), Some(role.as_str())), "{me}");
        assert_eq!(me["may"], json!(may), "{role:?}");
    }
}

//! Abuse limits: 429 with Retry-After per identity, per device and per address;
//! path parameters that could traverse or smuggle control characters are refused.

use ota_api::auth::Role;
use ota_testkit::{json_of, TestApp, TestOptions};

async fn burst(requests: Vec<reqwest::RequestBuilder>) -> Vec<reqwest::Response> {
    let mut out = Vec::new();
    for request in requests {
        out.push(request.send().await.expect("request"));
    }
    out
}

#[tokio::test]
async fn each_identity_device_and_address_gets_its_own_budget_then_429_with_retry_after() {
    // 2/s per identity (burst 8), 1/s per device (burst 4), 10/s per address (burst 40).
    let app = TestApp::spawn_with(TestOptions { rate_limits: Some((2, 1, 10)), ..TestOptions::default() }).await;
    let token_for = |subject: &str| app.token_for(subject, Role::Viewer);
    let alice = token_for("alice");
    let answers = burst((0..12).map(|_| app.http.get(app.url("/api/v1/stats")).bearer_auth(&alice)).collect()).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().take(8).all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.iter().skip(8).all(|s| *s == 429), "{statuses:?}");
    let refused = answers.into_iter().last().expect("one");
    let retry: u64 = refused.headers()["retry-after"].to_str().ok().and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");
    let (_, body) = json_of(refused).await;
    assert_eq!(body["error"], "rate_limited", "{body}");

    // Another identity has its own budget.
    let bob = token_for("bob");
    assert_eq!(app.http.get(app.url("/api/v1/stats")).bearer_auth(&bob).send().await.expect("bob").status(), 200);

    // A device polling too often is told to wait; another device is not.
    let (one, two) = (app.enrol("rl-1", "a").await, app.enrol("rl-2", "a").await);
    let poll = |device: &str, token: &str| {
        app.http
            .get(app.url(&format!("/default/controller/v1/{device}")))
            .header("Authorization", format!("TargetToken {token}"))
    };
    let polls = burst((0..6).map(|_| poll("rl-1", &one)).collect()).await;
    let statuses: Vec<u16> = polls.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    assert_eq!(poll("rl-2", &two).send().await.expect("poll").status(), 200);

    // The address budget spans identities: keep asking with fresh identities until it runs out.
    let mut limited = false;
    for i in 0..60 {
        let token = token_for(&format!("user-{i}"));
        let response = app.http.get(app.url("/api/v1/stats")).bearer_auth(token).send().await.expect("request");
        if response.status() == 429 {
            let (_, body) = json_of(response).await;
            assert!(body["message"].as_str().is_some_and(|m| m.contains("address")), "{body}");
            limited = true;
            break;
        }
    }
    assert!(limited, "the address limit never applied");
}

#[tokio::test]
async fn path_parameters_that_traverse_or_carry_control_characters_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.enrol("pp-1", "a").await;
    for name in ["a%2Fb", "a%5Cb", "x%00y", "x%0Ay"] {
        let url = app.url(&format!("/default/controller/v1/pp-1/softwaremodules/m/artifacts/{name}"));
        let (status, body) = json_of(
            app.http.get(url).header("Authorization", format!("TargetToken {token}")).send().await.expect("get"),
        )
        .await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    for id in ["..", "%2E%2E", "a%2Fb", "x%07y"] {
        let (status, body) = json_of(app.get(&format!("/api/v1/devices/{id}")).send().await.expect("get")).await;
        assert!(status == 400 || status == 404, "{id}: {status} {body}");
        assert!(body["message"].is_string(), "{id}: {body}");
    }
}

#[tokio::test]
async fn a_request_stuck_behind_the_database_ends_with_503_not_a_hung_client() {
    let app = TestApp::spawn_with(TestOptions { request_timeout_secs: Some(1), ..TestOptions::default() }).await;
    // Another session holds the catalog table: any read of it waits.
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE firmware IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.expect("lock");
    let started = std::time::Instant::now();
    let response = app.get("/api/v1/firmware").send().await.expect("request");
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let (status, body) = json_of(response).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("timeout")), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    blocker.rollback().await.expect("rollback");
    assert_eq!(app.get("/api/v1/firmware").send().await.expect("request").status(), 200);
}

//! Issue 12, item 1, the server's side: on a NATS that devices can reach, the
//! server connects with its own credentials over TLS (a CA it is given), and
//! clients without them are refused.

use std::time::Duration;

use ota::server::{self, Components};
use ota_api::auth::Role;
use ota_testkit::{eventually, json_of, SecuredNats, TestApp, TestOptions};
use serde_json::json;

async fn refused(options: async_nats::ConnectOptions, url: &str) -> bool {
    !matches!(tokio::time::timeout(Duration::from_secs(5), options.connect(url)).await, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_a_nats_that_requires_tls_and_its_password() {
    let nats = SecuredNats::start().await;
    ota::nats::use_ring_for_tls();
    let tls = || async_nats::ConnectOptions::new().add_root_certificates(nats.ca_file.clone()).require_tls(true);
    assert!(refused(async_nats::ConnectOptions::new(), &nats.url).await, "a stranger without TLS or password");
    assert!(refused(tls(), &nats.url).await, "TLS without the password");
    assert!(refused(tls().user_and_password(nats.user.clone(), "guess".into()), &nats.url).await, "a wrong password");

    // A database and prefix of its own; this app's server (on the shared NATS) runs nothing in the background.
    let app = TestApp::spawn_with(TestOptions {
        components: Components { relay: false, projections: false, rollouts: false },
        ..TestOptions::default()
    })
    .await;
    let mut settings = app.settings.clone();
    settings.nats_url = nats.url.clone();
    settings.nats_user = Some(nats.user.clone());
    settings.nats_password = Some(nats.password.as_str().into());
    settings.nats_ca_file = Some(nats.ca_file.clone());
    settings.listen = "127.0.0.1:0".parse().expect("address");
    let secured = server::start(&settings, Components::default()).await.expect("the server starts on the secured NATS");
    let url = |path: &str| format!("http://{}{path}", secured.addr);

    let device = json!({"id": "tls-1", "device_model": "gw", "firmware_version": "1.0"});
    let response =
        app.http.post(url("/api/v1/devices")).bearer_auth(app.token(Role::Operator)).json(&device).send().await;
    assert_eq!(response.expect("register").status(), 201);
    let ours = tls().user_and_password(nats.user.clone(), nats.password.clone()).connect(&nats.url).await;
    let js = async_nats::jetstream::new(ours.expect("the server's credentials work"));
    let stream = app.names.events_stream();
    eventually("the event relayed to the secured NATS", Duration::from_secs(30), || async {
        let mut events = js.get_stream(&stream).await.ok()?;
        (events.info().await.ok()?.state.messages >= 1).then_some(())
    })
    .await;
    let (status, health) = json_of(app.http.get(url("/health/detailed")).send().await.expect("health")).await;
    assert_eq!((status, &health["nats"]["ok"]), (200, &json!(true)), "{health}");
}

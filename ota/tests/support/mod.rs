//! What the crash and multi-instance tests share: an operator talking to any
//! instance, a fleet and a campaign, and the checks that nothing was lost or doubled.

use std::time::Duration;

use ota::simulate::{FleetPolicy, NatsFleet};
use ota_api::auth::Role;
use ota_testkit::{eventually_every, json_of, Deployment, ServerProcess};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_ota");

pub struct Operator<'a> {
    deployment: &'a Deployment,
    token: String,
}

impl<'a> Operator<'a> {
    pub fn new(deployment: &'a Deployment) -> Self {
        Self { deployment, token: deployment.token(Role::Operator) }
    }

    pub async fn post(&self, server: &ServerProcess, path: &str, body: Value) -> (u16, Value) {
        let request = self.deployment.http.post(server.url(path)).bearer_auth(&self.token).json(&body);
        json_of(request.send().await.expect("POST")).await
    }

    /// The campaign as an instance's read model has it (`null` until it got there:
    /// read models follow writes by a few milliseconds, on every instance).
    pub async fn campaign(&self, server: &ServerProcess, id: &str) -> Value {
        let url = server.url(&format!("/api/v1/campaigns/{id}"));
        let (status, body) =
            json_of(self.deployment.http.get(url).bearer_auth(&self.token).send().await.expect("GET")).await;
        match status {
            200 => body,
            404 => Value::Null,
            _ => panic!("GET campaign: {status} {body}"),
        }
    }

    /// Devices of the campaign that reached an end, as the read model has them.
    pub async fn finished(&self, server: &ServerProcess, id: &str) -> i64 {
        let campaign = self.campaign(server, id).await;
        let waves = campaign["waves"].as_array().cloned().unwrap_or_default();
        let ended = |w: &Value| -> i64 {
            ["succeeded", "failed", "timed_out", "rejected"].iter().map(|k| w[k].as_i64().unwrap_or(0)).sum()
        };
        waves.iter().map(ended).sum()
    }

    pub async fn register(&self, server: &ServerProcess, id: &str) {
        let body = json!({"id": id, "device_model": "gw", "firmware_version": "1.0"});
        let (status, body) = self.post(server, "/api/v1/devices", body).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Uploads firmware 2.0 for model `gw`; returns its id.
    pub async fn firmware(&self, server: &ServerProcess) -> String {
        let metadata = json!({"name": "os", "version": "2.0", "device_model": "gw"}).to_string();
        let form = reqwest::multipart::Form::new()
            .part("metadata", reqwest::multipart::Part::text(metadata).mime_str("application/json").expect("mime"))
            .part("file", reqwest::multipart::Part::bytes(b"image 2.0".to_vec()).file_name("image.swu"));
        let upload = self.deployment.http.post(server.url("/api/v1/firmware")).bearer_auth(&self.token).multipart(form);
        let (status, firmware) = json_of(upload.send().await.expect("upload")).await;
        assert_eq!(status, 201, "{firmware}");
        firmware["id"].as_str().expect("firmware id").to_owned()
    }

    /// Registers `devices` devices, uploads a firmware and starts a campaign of
    /// three waves for them; returns the campaign's id and the fleet answering it.
    pub async fn start_campaign(&self, server: &ServerProcess, devices: usize) -> (String, NatsFleet) {
        let ids: Vec<String> = (0..devices).map(|i| format!("fleet-{i:04}")).collect();
        for id in &ids {
            self.register(server, id).await;
        }
        let nats = ota::server::connect_nats(&self.deployment.settings.nats()).await.expect("NATS");
        // Each report takes a while, so reports are arriving whenever a fault lands.
        let policy = FleetPolicy { report_delay: Duration::from_millis(60), ..FleetPolicy::default() };
        let fleet = NatsFleet::start(nats, &self.deployment.names, policy).await.expect("fleet");

        let firmware = self.firmware(server).await;
        // A report taken by a killed instance returns after JetStream's ack wait;
        // a push sent while its device was busy is lost: those devices time out
        // and are retried, so the campaign ends all the same.
        let rollout = json!({"waves": [{"count": devices / 10}, {"percent": 50}, {"percent": 100}],
            "device_timeout_secs": 6, "max_retries": 5, "success_threshold_percent": 50,
            "failure_threshold_percent": 100});
        let body = json!({"name": "faults", "firmware_id": firmware, "target": {"device_ids": ids},
            "rollout": rollout});
        let (status, campaign) = self.post(server, "/api/v1/campaigns", body).await;
        assert_eq!(status, 201, "{campaign}");
        let id = campaign["id"].as_str().expect("campaign id").to_owned();
        let (status, body) = self.post(server, &format!("/api/v1/campaigns/{id}/start"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        (id, fleet)
    }
}

pub async fn until(what: &str, check: impl AsyncFn() -> bool) {
    eventually_every(what, Duration::from_secs(120), Duration::from_millis(50), || async {
        check().await.then_some(())
    })
    .await
}

/// Rows of `sql` (one text column): there must be none.
async fn none_of(deployment: &Deployment, what: &str, sql: &str) {
    let rows: Vec<String> =
        sqlx::query_scalar(sql).fetch_all(&deployment.db).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(rows.is_empty(), "{what}: {rows:?}");
}

/// Every device ended; no decision was taken twice; the stream holds each stored event once.
pub async fn assert_nothing_lost_or_doubled(deployment: &Deployment) {
    deployment.all_caught_up().await;
    none_of(
        deployment,
        "devices not in a final state",
        "SELECT device_id || ': ' || state FROM device_updates
         WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled')",
    )
    .await;
    none_of(
        deployment,
        "devices assigned twice for one try",
        "SELECT aggregate_id FROM events WHERE event_type = 'UpdateAssigned'
         GROUP BY aggregate_id, payload->'UpdateAssigned'->'origin'->>'campaign',
                  payload->'UpdateAssigned'->'origin'->>'retry'
         HAVING count(*) > 1",
    )
    .await;
    none_of(
        deployment,
        "actions that ended twice",
        "SELECT aggregate_id FROM events WHERE event_type = 'ProgressReported'
           AND payload->'ProgressReported'->>'state' IN ('succeeded', 'failed', 'rejected')
         GROUP BY aggregate_id, payload->'ProgressReported'->>'action' HAVING count(*) > 1",
    )
    .await;
    none_of(
        deployment,
        "campaign milestones taken twice",
        "SELECT event_type FROM events WHERE aggregate_type = 'Campaign'
           AND event_type IN ('CampaignStarted', 'MembershipResolved', 'CampaignCompleted', 'WaveStarted')
         GROUP BY aggregate_id, event_type, payload->'WaveStarted'->>'wave' HAVING count(*) > 1",
    )
    .await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&deployment.db).await.expect("count");
    let js = async_nats::jetstream::new(ota::server::connect_nats(&deployment.settings.nats()).await.expect("NATS"));
    let mut stream = js.get_stream(deployment.names.events_stream()).await.expect("events stream");
    let published = stream.info().await.expect("stream info").state.messages;
    assert_eq!(published as i64, stored, "the events stream and the store disagree");
}

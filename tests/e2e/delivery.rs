//! Issue 12, item 3: the delivery rules hold on every path an image takes to a
//! device. Two rules, each coming into force after the path's earlier steps:
//! the image is deprecated, or the server restarts requiring signatures while
//! the image was uploaded unsigned. One table-driven test per path.

use std::time::Duration;

use ota::server::{self, Components};
use ota_testkit::{eventually, json_of, TestApp, TestOptions};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Deprecated,
    Unverified,
}

const RULES: [Rule; 2] = [Rule::Deprecated, Rule::Unverified];

impl Rule {
    /// The error code's last part.
    fn kind(self) -> &'static str {
        match self {
            Rule::Deprecated => "deprecated_firmware",
            Rule::Unverified => "unverified_firmware",
        }
    }
    /// What a recorded reason says.
    fn says(self) -> &'static str {
        match self {
            Rule::Deprecated => "is deprecated",
            Rule::Unverified => "no verified signature",
        }
    }
}

/// A full server (rollouts included) that trusts one signing key, not yet requiring signatures.
struct Bench {
    app: TestApp,
    seed: String,
    rule: Rule,
}

impl Bench {
    async fn new(rule: Rule) -> Self {
        let (seed, public) = ota::signing::keygen();
        let options = TestOptions { firmware_keys: format!("ci:{public}"), ..TestOptions::full() };
        Self { app: TestApp::spawn_with(options).await, seed, rule }
    }

    /// Uploads `os:<version>:gw`, signed unless it is the image the signature rule will refuse.
    async fn image(&self, version: &str, spoiled: bool) -> String {
        let bytes = format!("image {version}").into_bytes();
        let mut metadata = json!({"name": "os", "version": version, "device_model": "gw"});
        if !(spoiled && self.rule == Rule::Unverified) {
            metadata["release"] = crate::signatures::sign(&self.seed, version, &bytes);
        }
        let (status, body) = self.app.upload_firmware_with(metadata, "image.swu", bytes).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("firmware id").to_owned()
    }

    /// The rule comes into force for `spoiled`: it is deprecated, or the server
    /// restarts with `OTA_REQUIRE_SIGNED_FIRMWARE` (an operator turning it on).
    async fn rule_on(&mut self, spoiled: &str) {
        match self.rule {
            Rule::Deprecated => {
                let response =
                    self.app.post(&format!("/api/v1/firmware/{spoiled}/deprecate")).send().await.expect("deprecate");
                assert_eq!(response.status(), 200);
            }
            Rule::Unverified => {
                let app = &mut self.app;
                app.server.shutdown().await;
                app.server.rollouts.take();
                app.server.dispatch.take();
                let mut settings = app.settings.clone();
                settings.require_signed_firmware = true;
                settings.listen = "127.0.0.1:0".parse().expect("address");
                let strict = server::start(&settings, Components::default()).await.expect("strict server");
                app.addr = strict.addr;
                app.server = strict;
                app.settings = settings;
            }
        }
    }

    async fn devices(&self, prefix: &str, n: usize) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        self.app.register_devices(&ids, "rev-a").await;
        ids
    }

    async fn create(&self, firmware: &str, target: Value, rollout: Value) -> (u16, Value) {
        let body = json!({"name": "delivery", "firmware_id": firmware, "target": target, "rollout": rollout});
        json_of(self.app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await
    }

    async fn created(&self, firmware: &str, devices: &[String], rollout: Value) -> String {
        let (status, body) = self.create(firmware, json!({"device_ids": devices}), rollout).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("campaign id").to_owned()
    }

    async fn detail(&self, id: &str) -> Value {
        json_of(self.app.get(&format!("/api/v1/campaigns/{id}")).send().await.expect("campaign")).await.1
    }

    async fn until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("{:?}: {what}", self.rule), Duration::from_secs(60), || async {
            let view = self.detail(id).await;
            done(&view).then_some(view)
        })
        .await
    }

    /// Assignments (rollbacks included) a device was ever given.
    async fn assignments(&self, device: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = 'DeviceUpdate' AND aggregate_id = $1
             AND event_type = 'UpdateAssigned'",
        )
        .bind(device)
        .fetch_one(&self.app.db)
        .await
        .expect("count")
    }

    async fn report(&self, device: &str, state: &str) {
        let path = format!("/api/v1/devices/{device}/status");
        let (status, body) =
            json_of(self.app.post(&path).json(&json!({"state": state})).send().await.expect("report")).await;
        assert_eq!(status, 200, "{device} {state}: {body}");
    }

    fn assert_refused(&self, (status, body): (u16, Value), scope: &str) {
        let code = format!("{scope}.{}", self.rule.kind());
        assert_eq!((status, body["error"].as_str()), (422, Some(code.as_str())), "{:?}: {body}", self.rule);
    }

    fn assert_last_reason(&self, view: &Value, decision: &str) {
        let last = view["decisions"].as_array().and_then(|d| d.last()).cloned().unwrap_or_default();
        assert_eq!(last["decision"], decision, "{view}");
        assert!(last["reason"].as_str().is_some_and(|r| r.contains(self.rule.says())), "{:?}: {last}", self.rule);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_create_refuses_an_image_delivery_forbids() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let image = bench.image("2.0", true).await;
        let devices = bench.devices("create", 1).await;
        bench.rule_on(&image).await;
        bench.assert_refused(bench.create(&image, json!({"device_ids": devices}), json!({})).await, "campaign");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_start_and_scheduled_start_refuse_an_image_refused_since_creation() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let image = bench.image("2.0", true).await;
        let devices = bench.devices("start", 2).await;
        let draft = bench.created(&image, &devices, json!({})).await;
        let start_at = (chrono::Utc::now() + chrono::Duration::seconds(8)).to_rfc3339();
        let scheduled = bench.created(&image, &devices, json!({"start_at": start_at})).await;
        assert_eq!(bench.app.campaign_action(&scheduled, "start").await.0, 200);
        bench.rule_on(&image).await;

        bench.assert_refused(bench.app.campaign_action(&draft, "start").await, "campaign");
        assert_eq!(bench.detail(&draft).await["status"], "draft");
        let cancelled = bench.until(&scheduled, "scheduled start cancelled", |v| v["status"] == "cancelled").await;
        bench.assert_last_reason(&cancelled, "cancelled");
        for device in &devices {
            assert_eq!(bench.assignments(device).await, 0, "{rule:?}: {device}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_after_the_rule_assigns_nothing_and_pauses_the_campaign() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let _fleet = bench.app.fleet().await;
        let image = bench.image("2.0", true).await;
        let devices = bench.devices("wave", 6).await;
        let rollout = json!({"waves": [{"count": 2}, {"percent": 100}], "after_success": "pause"});
        let id = bench.created(&image, &devices, rollout).await;
        assert_eq!(bench.app.campaign_action(&id, "start").await.0, 200);
        bench
            .until(&id, "first wave done", |v| {
                v["decisions"].as_array().is_some_and(|d| d.iter().any(|x| x["decision"] == "approval_requested"))
            })
            .await;
        bench.rule_on(&image).await;

        assert_eq!(bench.app.approve(&id).await.0, 200);
        let paused = bench.until(&id, "paused", |v| v["status"] == "paused").await;
        bench.assert_last_reason(&paused, "paused");
        assert_eq!(paused["waves"][1]["assigned"], 0, "{paused}");
        let mut assigned = 0;
        for device in &devices {
            assigned += bench.assignments(device).await;
        }
        assert_eq!(assigned, 2, "{rule:?}: only the first wave's two devices were ever assigned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_rule_is_not_assigned() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let image = bench.image("2.0", true).await;
        let devices = bench.devices("retry", 2).await;
        let id = bench.created(&image, &devices, json!({"max_retries": 2})).await;
        assert_eq!(bench.app.campaign_action(&id, "start").await.0, 200);
        bench.until(&id, "assigned", |v| v["waves"][0]["assigned"] == 2).await;
        bench.rule_on(&image).await;

        for device in &devices {
            bench.report(device, "failed").await;
        }
        let paused = bench.until(&id, "paused", |v| v["status"] == "paused").await;
        bench.assert_last_reason(&paused, "paused");
        for device in &devices {
            assert_eq!(bench.assignments(device).await, 1, "{rule:?}: {device} was retried: {paused}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_joining_a_continuous_campaign_after_the_rule_gets_nothing() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let _fleet = bench.app.fleet().await;
        let image = bench.image("2.0", true).await;
        bench.devices("first", 1).await;
        let target = json!({"filter": {"device_model": "gw"}, "continuous": true});
        let (status, body) = bench.create(&image, target, json!({})).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        assert_eq!(bench.app.campaign_action(&id, "start").await.0, 200);
        bench.until(&id, "first member updated", |v| v["waves"][0]["succeeded"] == 1).await;
        bench.rule_on(&image).await;

        let late = bench.devices("late", 1).await;
        let paused = bench.until(&id, "paused", |v| v["status"] == "paused").await;
        assert!(paused["decisions"].as_array().is_some_and(|d| d.iter().any(|x| x["decision"] == "members_joined")));
        bench.assert_last_reason(&paused, "paused");
        assert_eq!(bench.assignments(&late[0]).await, 0, "{rule:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_device_update_refuses_an_image_delivery_forbids() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let image = bench.image("2.0", true).await;
        let devices = bench.devices("single", 1).await;
        bench.rule_on(&image).await;
        let path = format!("/api/v1/devices/{}/update", devices[0]);
        let answer =
            json_of(bench.app.post(&path).json(&json!({"firmware_id": image})).send().await.expect("update")).await;
        bench.assert_refused(answer, "update");
        assert_eq!(bench.assignments(&devices[0]).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_route_refuses_to_go_back_to_an_image_delivery_forbids() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        // Devices run 1.0: the rollback target, whatever else they report.
        let old = bench.image("1.0", true).await;
        let new = bench.image("2.0", false).await;
        let devices = bench.devices("back", 1).await;
        let path = format!("/api/v1/devices/{}/update", devices[0]);
        let (status, body) =
            json_of(bench.app.post(&path).json(&json!({"firmware_id": new})).send().await.expect("update")).await;
        assert_eq!(status, 201, "{body}");
        bench.report(&devices[0], "succeeded").await;
        bench.rule_on(&old).await;

        let path = format!("/api/v1/devices/{}/rollback", devices[0]);
        bench.assert_refused(json_of(bench.app.post(&path).send().await.expect("rollback")).await, "update");
        assert_eq!(bench.assignments(&devices[0]).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_campaign_skips_devices_whose_old_image_delivery_forbids() {
    for rule in RULES {
        let mut bench = Bench::new(rule).await;
        let _fleet = bench.app.fleet().await;
        let old = bench.image("1.0", true).await;
        let new = bench.image("2.0", false).await;
        let devices = bench.devices("undo", 4).await;
        let rollout = json!({"waves": [{"count": 2}, {"percent": 100}], "after_success": "pause",
            "rollback_on_abort": true});
        let id = bench.created(&new, &devices, rollout).await;
        assert_eq!(bench.app.campaign_action(&id, "start").await.0, 200);
        bench.until(&id, "first wave updated", |v| v["waves"][0]["succeeded"] == 2).await;
        bench.rule_on(&old).await;

        let abort = bench.app.post(&format!("/api/v1/campaigns/{id}/abort")).json(&json!({"reason": "bad release"}));
        assert_eq!(abort.send().await.expect("abort").status(), 200);
        let rollback = eventually("rollback campaign", Duration::from_secs(30), || async {
            let id = uuid::Uuid::parse_str(&id).ok()?;
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM campaigns WHERE rollback_of = $1")
                .bind(id)
                .fetch_optional(&bench.app.db)
                .await
                .ok()?
        })
        .await;
        let view = bench.until(&rollback.to_string(), "rollbacks skipped", |v| v["waves"][0]["skipped"] == 2).await;
        assert_eq!(view["waves"][0]["assigned"], 2, "{view}");
        let (campaign, _) = bench
            .app
            .server
            .state
            .store
            .load::<ota_domain::campaign::Campaign>(&rollback.to_string().parse().expect("id"))
            .await
            .expect("rollback campaign");
        let members = campaign.membership.expect("membership").waves.concat();
        assert_eq!(members.len(), 2);
        for device in &members {
            let device = device.as_str();
            assert_eq!(bench.assignments(device).await, 1, "{rule:?}: {device} was rolled back");
        }
    }
}

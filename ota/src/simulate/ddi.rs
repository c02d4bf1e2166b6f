//! Demo devices that speak hawkBit DDI: poll, fetch the deployment, download and
//! verify the artifact, report progress and the outcome, as SWUpdate would.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::SimulateError;

/// The fleet's tasks; dropping it stops them.
pub struct DdiFleet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DdiFleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub fn spawn(
    server: &str,
    gateway_token: &str,
    devices: Vec<String>,
    fail_percent: u8,
) -> Result<DdiFleet, SimulateError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SimulateError::Http(e.to_string()))?;
    let authorization = format!("GatewayToken {gateway_token}");
    let tasks = devices
        .into_iter()
        .enumerate()
        .map(|(i, device)| {
            let base = format!("{}/default/controller/v1/{device}", server.trim_end_matches('/'));
            // Deterministic failures: about `fail_percent` of the DDI devices fail their updates.
            let fails = fail_percent > 0 && i % (100 / usize::from(fail_percent.clamp(1, 100))).max(1) == 0;
            let device = Device { http: http.clone(), base, authorization: authorization.clone(), fails };
            tokio::spawn(device.run())
        })
        .collect();
    Ok(DdiFleet { tasks })
}

struct Device {
    http: reqwest::Client,
    base: String,
    authorization: String,
    fails: bool,
}

impl Device {
    async fn run(self) {
        loop {
            let sleep = match self.poll_once().await {
                Ok(sleep) => sleep,
                Err(e) => {
                    tracing::warn!(device = self.base, error = e, "DDI demo device: poll failed");
                    Duration::from_secs(5)
                }
            };
            tokio::time::sleep(sleep).await;
        }
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, String> {
        let response =
            self.http.get(url).header("Authorization", &self.authorization).send().await.map_err(|e| e.to_string())?;
        match response.status().is_success() {
            true => Ok(response),
            false => Err(format!("GET {url}: {}", response.status())),
        }
    }

    async fn send(&self, url: String, body: Value, put: bool) -> Result<(), String> {
        let request = if put { self.http.put(&url) } else { self.http.post(&url) };
        let response =
            request.header("Authorization", &self.authorization).json(&body).send().await.map_err(|e| e.to_string())?;
        match response.status().is_success() {
            true => Ok(()),
            false => Err(format!("{url}: {}", response.status())),
        }
    }

    /// One poll and whatever it asks for; returns how long to sleep.
    async fn poll_once(&self) -> Result<Duration, String> {
        let poll: Value = self.get(&self.base).await?.json().await.map_err(|e| e.to_string())?;
        let sleep = poll["config"]["polling"]["sleep"].as_str().map_or(Duration::from_secs(10), parse_sleep);
        let links = &poll["_links"];
        if links["configData"].is_object() {
            let data = json!({"mode": "merge", "data": {"client": "ota-simulate-ddi"}});
            self.send(format!("{}/configData", self.base), data, true).await?;
        }
        if let Some(href) = links["cancelAction"]["href"].as_str() {
            let feedback = json!({"status": {"execution": "closed", "result": {"finished": "success"}}});
            self.send(format!("{href}/feedback"), feedback, false).await?;
        } else if let Some(href) = links["deploymentBase"]["href"].as_str() {
            self.deploy(href).await?;
        }
        Ok(sleep)
    }

    async fn deploy(&self, href: &str) -> Result<(), String> {
        let deployment: Value = self.get(href).await?.json().await.map_err(|e| e.to_string())?;
        let id = deployment["id"].clone();
        let feedback_url = format!("{}/feedback", href.split('?').next().unwrap_or(href));
        let feedback = |execution: &str, finished: &str, detail: &str| json!({"id": id, "status": {"execution": execution, "result": {"finished": finished}, "details": [detail]}});
        self.send(feedback_url.clone(), feedback("proceeding", "none", "downloading"), false).await?;
        let artifact = &deployment["deployment"]["chunks"][0]["artifacts"][0];
        let url = artifact["_links"]["download-http"]["href"].as_str().ok_or("no download link")?;
        let bytes = self.get(url).await?.bytes().await.map_err(|e| e.to_string())?;
        if artifact["hashes"]["sha256"].as_str() != Some(hex::encode(Sha256::digest(&bytes)).as_str()) {
            return self.send(feedback_url, feedback("closed", "failure", "sha256 mismatch"), false).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (finished, detail) = if self.fails { ("failure", "simulated failure") } else { ("success", "installed") };
        self.send(feedback_url, feedback("closed", finished, detail), false).await
    }
}

fn parse_sleep(text: &str) -> Duration {
    let secs = text.split(':').filter_map(|p| p.parse::<u64>().ok()).fold(0, |acc, part| acc * 60 + part);
    Duration::from_secs(secs.clamp(1, 3600))
}

//! Simulated devices on the native NATS channel: each listens on its commands
//! subject and reports on its status subject, as a real one would. The demo
//! fleet (`ota simulate`) and the tests' fleet are this one simulator.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;
use ota_domain::bus::{device_of_subject, BusNames};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Succeed,
    Fail,
    Reject,
    /// Receives the command and never answers.
    Silent,
}

/// How the fleet behaves unless told otherwise per device.
#[derive(Debug, Clone, Default)]
pub struct FleetPolicy {
    /// Share of updates that fail, in percent: every n-th update fails, deterministically.
    pub fail_percent: u8,
    /// Pause before each report (a real install takes time; tests want none).
    pub report_delay: Duration,
    /// Devices this fleet leaves alone (they are simulated elsewhere, e.g. over DDI).
    pub ignore: HashSet<String>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking reporter task leaves the maps consistent: every write is one insert or push.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct NatsFleet {
    behaviors: Shared<HashMap<String, Behavior>>,
    received: Shared<HashMap<String, Vec<Value>>>,
    task: JoinHandle<()>,
}

/// What the devices share: their behaviours, what they received and answered.
struct Devices {
    behaviors: Shared<HashMap<String, Behavior>>,
    received: Shared<HashMap<String, Vec<Value>>>,
    /// (device, command type, action) answered: a pending command read on connect
    /// may also arrive on the subscription.
    handled: Shared<HashSet<(String, String, u64)>>,
    updates_seen: Arc<AtomicU64>,
    client: async_nats::Client,
    names: BusNames,
    policy: FleetPolicy,
}

impl Devices {
    fn handle(&self, subject: &str, payload: &[u8]) {
        let Some(device) = device_of_subject(subject) else { return };
        if self.policy.ignore.contains(&device) {
            return;
        }
        let Ok(command) = serde_json::from_slice::<Value>(payload) else { return };
        let key = (
            device.clone(),
            command["type"].as_str().unwrap_or_default().to_owned(),
            command["action"].as_u64().unwrap_or(0),
        );
        if !lock(&self.handled).insert(key) {
            return;
        }
        lock(&self.received).entry(device.clone()).or_default().push(command.clone());
        let behavior = match lock(&self.behaviors).get(&device) {
            Some(behavior) => *behavior,
            None if command["type"] == "update" => {
                self.policy.default_behavior(self.updates_seen.fetch_add(1, Ordering::Relaxed) + 1)
            }
            None => Behavior::Succeed,
        };
        // Durably: JetStream keeps the report while no instance runs.
        let subject = self.names.device_report(&device);
        let reports = reports_for(&command, behavior);
        let (client, delay) = (self.client.clone(), self.policy.report_delay);
        tokio::spawn(async move {
            for report in reports {
                tokio::time::sleep(delay).await;
                // The next report goes only after JetStream stored the last one.
                if let Err(e) = client.request(subject.clone(), report.to_string().into()).await {
                    tracing::warn!(subject, error = %e, "report not acknowledged");
                    return;
                }
            }
        });
    }
}

/// Each device's last command, from the commands stream (none if it does not exist yet).
async fn pending_commands(client: &async_nats::Client, names: &BusNames) -> Vec<(String, Vec<u8>)> {
    let js = async_nats::jetstream::new(client.clone());
    let Ok(mut stream) = js.get_stream(names.commands_stream()).await else { return Vec::new() };
    if stream.info().await.map_or(true, |info| info.state.messages == 0) {
        return Vec::new();
    }
    let config = pull::OrderedConfig {
        filter_subject: names.all_device_commands(),
        deliver_policy: DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let Ok(consumer) = stream.create_consumer(config).await else { return Vec::new() };
    let Ok(mut messages) = consumer.messages().await else { return Vec::new() };
    let mut pending = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        let remaining = message.info().map_or(0, |info| info.pending);
        pending.push((message.subject.to_string(), message.payload.to_vec()));
        if remaining == 0 {
            break;
        }
    }
    pending
}

impl Drop for NatsFleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NatsFleet {
    /// Subscribes before returning, so no command sent afterwards is missed, then
    /// takes the commands sent while the fleet was offline (each device's last
    /// one, kept by JetStream), as a device does when it connects.
    pub async fn start(
        client: async_nats::Client,
        names: &BusNames,
        policy: FleetPolicy,
    ) -> Result<Self, async_nats::Error> {
        let mut commands = client.subscribe(names.all_device_commands()).await?;
        client.flush().await?;
        let fleet = Devices {
            behaviors: Arc::default(),
            received: Arc::default(),
            handled: Arc::default(),
            updates_seen: Arc::default(),
            client: client.clone(),
            names: names.clone(),
            policy,
        };
        let (behaviors, received) = (fleet.behaviors.clone(), fleet.received.clone());
        let pending = pending_commands(&client, names).await;
        let task = tokio::spawn(async move {
            for (subject, payload) in pending {
                fleet.handle(&subject, &payload);
            }
            while let Some(message) = commands.next().await {
                fleet.handle(&message.subject, &message.payload);
            }
        });
        Ok(Self { behaviors, received, task })
    }

    pub fn set(&self, device: &str, behavior: Behavior) {
        lock(&self.behaviors).insert(device.to_owned(), behavior);
    }

    /// How many update commands a device received.
    pub fn updates_received(&self, device: &str) -> usize {
        self.count(device, "update")
    }

    pub fn cancels_received(&self, device: &str) -> usize {
        self.count(device, "cancel")
    }

    fn count(&self, device: &str, kind: &str) -> usize {
        lock(&self.received).get(device).map_or(0, |v| v.iter().filter(|c| c["type"] == kind).count())
    }

    /// Runs until the NATS subscription ends.
    pub async fn run(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl FleetPolicy {
    /// The n-th update (from 1) fails when it falls on the configured share.
    fn default_behavior(&self, nth: u64) -> Behavior {
        if self.fail_percent == 0 {
            return Behavior::Succeed;
        }
        let every = (100 / u64::from(self.fail_percent.clamp(1, 100))).max(1);
        if nth.is_multiple_of(every) {
            Behavior::Fail
        } else {
            Behavior::Succeed
        }
    }
}

/// What a device answers to a command.
fn reports_for(command: &Value, behavior: Behavior) -> Vec<Value> {
    let action = command["action"].clone();
    match (command["type"].as_str(), behavior) {
        (_, Behavior::Silent) => vec![],
        // A device asked to cancel agrees (an unasked `cancelled` is refused and harmless).
        (Some("cancel"), _) => vec![json!({"state": "cancelled", "action": action})],
        (Some("update"), Behavior::Reject) => vec![json!({"state": "rejected", "action": action})],
        (Some("update"), Behavior::Succeed | Behavior::Fail) => {
            let last = if behavior == Behavior::Succeed { "succeeded" } else { "failed" };
            vec![
                json!({"state": "downloading", "progress": 0, "action": action}),
                json!({"state": "downloading", "progress": 100, "action": action}),
                json!({"state": "installing", "action": action}),
                json!({"state": last, "message": "simulated device", "action": action}),
            ]
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_update_fails_for_the_configured_share() {
        let policy = FleetPolicy { fail_percent: 25, ..FleetPolicy::default() };
        let failed = (1..=100).filter(|n| policy.default_behavior(*n) == Behavior::Fail).count();
        assert_eq!(failed, 25);
        assert_eq!(FleetPolicy::default().default_behavior(7), Behavior::Succeed);
    }

    #[test]
    fn a_cancel_is_agreed_to_unless_silent() {
        let cancel = json!({"type": "cancel", "action": 3});
        assert_eq!(reports_for(&cancel, Behavior::Fail), vec![json!({"state": "cancelled", "action": 3})]);
        assert!(reports_for(&cancel, Behavior::Silent).is_empty());
    }

    #[test]
    fn an_update_reports_progress_then_its_outcome() {
        let update = json!({"type": "update", "action": 5});
        let reports = reports_for(&update, Behavior::Fail);
        assert_eq!(reports.last().map(|r| r["state"].clone()), Some(json!("failed")));
        assert_eq!(reports_for(&update, Behavior::Reject), vec![json!({"state": "rejected", "action": 5})]);
    }
}

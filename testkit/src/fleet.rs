//! A simulated fleet on the native NATS channel: each device listens on its
//! commands subject and reports on its status subject, as a real one would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use ota_domain::bus::{decode_subject_token, BusNames};
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

/// Behaviour per device (default: succeed); change it while the fleet runs.
pub type Behaviors = Arc<Mutex<HashMap<String, Behavior>>>;

pub struct Fleet {
    pub behaviors: Behaviors,
    /// Every command each device received, in order.
    pub received: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    task: JoinHandle<()>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fleet {
    pub async fn start(nats_url: &str, names: &BusNames) -> Self {
        let client = async_nats::connect(nats_url).await.expect("fleet connects to NATS");
        let mut commands =
            client.subscribe(format!("{}.devices.*.commands", names.prefix())).await.expect("fleet subscribes");
        // Subscribed before anything is assigned: no command can be missed.
        client.flush().await.expect("flush");
        let behaviors: Behaviors = Arc::default();
        let received: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let (b, r, names) = (behaviors.clone(), received.clone(), names.clone());
        let task = tokio::spawn(async move {
            while let Some(message) = commands.next().await {
                let token = message.subject.split('.').nth(2).unwrap_or_default().to_owned();
                let Some(device) = decode_subject_token(&token) else { continue };
                let Ok(command) = serde_json::from_slice::<Value>(&message.payload) else { continue };
                r.lock().expect("lock").entry(device.clone()).or_default().push(command.clone());
                let behavior = b.lock().expect("lock").get(&device).copied().unwrap_or(Behavior::Succeed);
                if command["type"] == "cancel" && behavior != Behavior::Silent {
                    // A device asked to cancel agrees (an unasked `cancelled` is refused and harmless).
                    let report = json!({"state": "cancelled", "action": command["action"].clone()});
                    let _ = client.request(names.device_status(&device), report.to_string().into()).await;
                }
                if command["type"] != "update" {
                    continue;
                }
                let (client, subject) = (client.clone(), names.device_status(&device));
                let action = command["action"].clone();
                tokio::spawn(async move {
                    let reports: Vec<Value> = match behavior {
                        Behavior::Silent => vec![],
                        Behavior::Reject => vec![json!({"state": "rejected", "action": action})],
                        Behavior::Succeed | Behavior::Fail => {
                            let last = if behavior == Behavior::Succeed { "succeeded" } else { "failed" };
                            vec![
                                json!({"state": "downloading", "progress": 50, "action": action}),
                                json!({"state": "installing", "action": action}),
                                json!({"state": last, "message": "simulated", "action": action}),
                            ]
                        }
                    };
                    for report in reports {
                        // Request/reply: the next report goes only after the last one is stored.
                        let _ = client.request(subject.clone(), report.to_string().into()).await;
                    }
                });
            }
        });
        Self { behaviors, received, task }
    }

    pub fn set(&self, device: &str, behavior: Behavior) {
        self.behaviors.lock().expect("lock").insert(device.to_owned(), behavior);
    }

    /// How many update commands a device received.
    pub fn updates_received(&self, device: &str) -> usize {
        self.received
            .lock()
            .expect("lock")
            .get(device)
            .map_or(0, |v| v.iter().filter(|c| c["type"] == "update").count())
    }

    pub fn cancels_received(&self, device: &str) -> usize {
        self.received
            .lock()
            .expect("lock")
            .get(device)
            .map_or(0, |v| v.iter().filter(|c| c["type"] == "cancel").count())
    }
}

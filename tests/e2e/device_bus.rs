//! Issue 12, items 1 and 9: the device bus with accounts (`ota bus config`). A
//! device is its own nkey, over TLS; it hears only its own commands, speaks only
//! for itself and never sees or touches the server's events. Observers read the
//! public subjects and write nothing. Every attack here is refused by the
//! nats-server itself, and the rollout it tried to disturb ends as the real
//! devices reported.

use std::time::Duration;

use futures::StreamExt;
use ota::bus_accounts::last_command_subject;
use ota_testkit::{eventually, json_of, BusClient, DeviceBus, TestApp, TestOptions};
use serde_json::{json, Value};

async fn on_bus(bus: &DeviceBus) -> TestApp {
    TestApp::spawn_with(TestOptions { nats: Some((bus.server_connection(), "ota".into())), ..TestOptions::full() })
        .await
}

async fn campaign(app: &TestApp, devices: &[&str]) -> String {
    let firmware = app.firmware("2.0").await;
    let (status, created) = app.create_campaign("bus", &firmware, devices).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(app.campaign_action(&id, "start").await.0, 200);
    id
}

async fn next_command(subscription: &mut async_nats::Subscriber) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("a command within 30 s")
        .expect("the subscription is open");
    serde_json::from_slice(&message.payload).expect("a JSON command")
}

/// Reports durably on the device's own `.report` subject: JetStream's ack comes back.
async fn report(device: &BusClient, subject: String, body: Value) {
    let ack = device.client.request(subject, body.to_string().into()).await.expect("JetStream acknowledges");
    let ack: Value = serde_json::from_slice(&ack.payload).expect("an ack");
    assert!(ack["seq"].as_u64().is_some(), "{ack}");
}

async fn finished(app: &TestApp, id: &str) -> Value {
    eventually("campaign completed", Duration::from_secs(60), || async {
        let view = json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.ok()?).await.1;
        (view["status"] == "completed").then_some(view)
    })
    .await
}

/// Nothing arrives on a subscription (a refused one, or one the bus never feeds).
async fn hears_nothing(subscription: &mut async_nats::Subscriber) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(2), subscription.next()).await, Err(_) | Ok(None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_get_and_report_updates_on_the_bus_as_themselves_and_join_by_reload() {
    let mut bus = DeviceBus::start(&["bus-1"]).await;
    let app = on_bus(&bus).await;
    // Enrolled while the bus runs: a line in the configuration and a reload.
    bus.enrol("bus-late").await;
    let names = bus.names.clone();

    let early = bus.device("bus-1").await;
    let late = bus.device("bus-late").await;
    let mut early_commands = early.client.subscribe(names.device_commands("bus-1")).await.expect("subscribe");
    early.client.flush().await.expect("flush");
    let id = campaign(&app, &["bus-1", "bus-late"]).await;

    let command = next_command(&mut early_commands).await;
    assert_eq!(command["type"], "update", "{command}");
    let action = command["action"].clone();
    report(&early, names.device_report("bus-1"), json!({"state": "downloading", "action": action})).await;
    report(&early, names.device_report("bus-1"), json!({"state": "succeeded", "action": action})).await;

    // The late device was offline as its command went out: it reads its last one.
    let last = eventually("the late device's command is kept", Duration::from_secs(30), || async {
        let reply = late.client.request(last_command_subject(&names, "bus-late"), "".into()).await.ok()?;
        serde_json::from_slice::<Value>(&reply.payload).ok().filter(|c| c["type"] == "update")
    })
    .await;
    let status = names.device_status("bus-late");
    for state in ["downloading", "succeeded"] {
        let body = json!({"state": state, "action": last["action"]}).to_string();
        let reply = late.client.request(status.clone(), body.into()).await.expect("a server answers");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(reply["ok"], true, "{reply}");
    }

    let view = finished(&app, &id).await;
    assert_eq!(view["waves"][0]["succeeded"], 2, "{view}");
    assert!(early.errors().is_empty() && late.errors().is_empty(), "{:?} {:?}", early.errors(), late.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_speak_or_listen_for_another_nor_touch_the_events() {
    let bus = DeviceBus::start(&["victim", "attacker"]).await;
    let app = on_bus(&bus).await;
    let names = bus.names.clone();
    assert!(bus.stranger().await.is_none(), "a key the configuration does not list is refused");
    let plain = async_nats::ConnectOptions::new().connect(&bus.url);
    assert!(!matches!(tokio::time::timeout(Duration::from_secs(5), plain).await, Ok(Ok(_))), "no TLS, no key");

    let victim = bus.device("victim").await;
    let attacker = bus.device("attacker").await;
    let observer = bus.observer().await;
    let mut victims_commands = victim.client.subscribe(names.device_commands("victim")).await.expect("subscribe");
    let mut public = observer.client.subscribe(names.all_events()).await.expect("observer subscribes");

    // Listening in: another's commands, all commands, the events, others' inboxes.
    let mut eavesdrops = Vec::new();
    for subject in [names.device_commands("victim"), names.all_device_commands(), names.all_events(), "_INBOX.>".into()]
    {
        eavesdrops.push((subject.clone(), attacker.client.subscribe(subject).await.expect("sent")));
    }
    let mut peeking = observer.client.subscribe(names.device_commands("victim")).await.expect("sent");
    attacker.client.flush().await.expect("flush");
    victim.client.flush().await.expect("flush");
    observer.client.flush().await.expect("flush");
    for (subject, _) in &eavesdrops {
        assert!(attacker.refused(subject).await, "subscribing to {subject}: {:?}", attacker.errors());
    }
    assert!(observer.refused(&names.device_commands("victim")).await, "{:?}", observer.errors());

    let id = campaign(&app, &["victim"]).await;
    let command = next_command(&mut victims_commands).await;
    let action = command["action"].clone();

    // Speaking for the victim: a failure on both its subjects (which would trip the
    // gate and leave it failed), reading its command and signed link, forging events.
    let failed = json!({"state": "failed", "action": action}).to_string();
    let forged_event = names.event_subject("Campaign", &id);
    let attempts = [
        names.device_status("victim"),
        names.device_report("victim"),
        last_command_subject(&names, "victim"),
        forged_event.clone(),
        format!("$JS.API.STREAM.DELETE.{}", names.events_stream()),
    ];
    for subject in &attempts {
        attacker.client.publish(subject.clone(), failed.clone().into()).await.expect("sent");
    }
    observer.client.publish(forged_event.clone(), failed.clone().into()).await.expect("sent");
    attacker.client.flush().await.expect("flush");
    observer.client.flush().await.expect("flush");
    for subject in &attempts {
        assert!(attacker.refused(subject).await, "publishing to {subject}: {:?}", attacker.errors());
    }
    assert!(observer.refused(&forged_event).await, "{:?}", observer.errors());

    report(&victim, names.device_report("victim"), json!({"state": "succeeded", "action": action})).await;
    let view = finished(&app, &id).await;
    assert_eq!((&view["waves"][0]["succeeded"], &view["waves"][0]["failed"]), (&json!(1), &json!(0)), "{view}");

    for (subject, subscription) in &mut eavesdrops {
        assert!(hears_nothing(subscription).await, "{subject} leaked to another device");
    }
    assert!(hears_nothing(&mut peeking).await, "a command leaked to an observer");
    // The observer read the public events of that campaign, and no forged one.
    let mut seen = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), public.next()).await {
        seen.push(serde_json::from_slice::<Value>(&message.payload).expect("an event record"));
    }
    assert!(seen.iter().any(|e| e["event_type"] == "CampaignCompleted"), "{seen:?}");
    assert!(seen.iter().all(|e| e["event_type"].is_string()), "a forged message reached the public subjects");
}

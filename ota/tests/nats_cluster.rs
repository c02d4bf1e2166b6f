//! The messaging layer scales out too: on a three-node JetStream cluster with
//! every stream kept in three copies (`OTA_NATS_REPLICAS=3`), one NATS node is
//! killed mid-campaign; clients move to the others and nothing is lost.

mod support;

use ota_testkit::{Deployment, NatsCluster};

use support::{assert_nothing_lost_or_doubled, until, Operator, BIN};

const DEVICES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_when_one_of_three_nats_nodes_is_killed() {
    let mut cluster = NatsCluster::start(3).await;
    let deployment = Deployment::on_nats(BIN, &cluster.urls(), 3).await;
    let operator = Operator::new(&deployment);
    let server = deployment.start().await;
    let (id, _fleet) = operator.start_campaign(&server, DEVICES).await;

    until("the second wave to report", async || operator.finished(&server, &id).await >= 40).await;
    // The node leading the events stream: with a single copy, the stream would be gone.
    let js = async_nats::jetstream::new(
        ota::server::connect_nats(&ota::nats::NatsConnection::open(&cluster.urls())).await.expect("NATS"),
    );
    let mut events = js.get_stream(deployment.names.events_stream()).await.expect("events stream");
    let info = events.info().await.expect("info").clone();
    assert_eq!(info.config.num_replicas, 3, "streams are replicated");
    let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
    let node: usize = leader.trim_start_matches('n').parse().expect("nodes are named n<i>");
    cluster.kill(node).await;

    until("the campaign to complete", async || operator.campaign(&server, &id).await["status"] == "completed").await;
    assert_nothing_lost_or_doubled(&deployment).await;
}

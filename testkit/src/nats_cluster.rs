//! A three-node NATS JetStream cluster on loopback ports, each node its own
//! `nats-server` process, for tests that lose a node mid-campaign.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::stream;
use tokio::process::{Child, Command};

use crate::process::free_port;

pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    clients: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream can place a replicated stream.
    pub async fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clients: Vec<SocketAddr> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<SocketAddr> = (0..size).map(|_| free_port()).collect();
        let route_urls: Vec<String> = routes.iter().map(|r| format!("\"nats-route://{r}\"")).collect();
        let mut nodes = Vec::new();
        for (i, (client, route)) in clients.iter().zip(&routes).enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let config = format!(
                "server_name: n{i}\nlisten: \"{client}\"\njetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: ota-test, listen: \"{route}\", routes: [{}] }}\n",
                store.display(),
                route_urls.join(", ")
            );
            let path = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&path, config).expect("node config");
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).expect("node log");
            let child = Command::new("nats-server")
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("nats-server is installed (scripts/test.sh installs it)");
            nodes.push(Some(child));
        }
        let cluster = Self { nodes, clients, _dir: dir };
        cluster.until_replicated_streams_work(size).await;
        cluster
    }

    /// `nats://a,nats://b,...`: what `NATS_URL` takes for a cluster.
    pub fn urls(&self) -> String {
        self.clients.iter().map(|c| format!("nats://{c}")).collect::<Vec<_>>().join(",")
    }

    /// SIGKILL one node: its clients reconnect to another, its replicas are gone.
    pub async fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            child.kill().await.expect("kill a NATS node");
        }
    }

    async fn until_replicated_streams_work(&self, replicas: usize) {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.clients.iter().map(|c| format!("nats://{c}")).collect::<Vec<_>>())
            .await
            .expect("connect to the cluster");
        let js = async_nats::jetstream::new(client);
        let config = stream::Config { name: "cluster_probe".into(), num_replicas: replicas, ..Default::default() };
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if js.get_or_create_stream(config.clone()).await.is_ok() {
                    let _ = js.delete_stream("cluster_probe").await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        ready.expect("the JetStream cluster to elect its leaders within 60 s");
    }
}

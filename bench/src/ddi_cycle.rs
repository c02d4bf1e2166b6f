//! hawkBit DDI full cycle: every device of a started campaign does once what a
//! real client does for an update, from the base poll to the final feedback:
//!
//! 1. `GET /default/controller/v1/{id}` (base poll), follow `_links.deploymentBase`;
//! 2. `GET .../deploymentBase/{action}?c=...`;
//! 3. `POST .../deploymentBase/{action}/feedback` (proceeding);
//! 4. `GET` the artifact's `download-http` link, reading the whole image;
//! 5. `POST .../deploymentBase/{action}/feedback` (closed, success).
//!
//! C workers, each on its own keep-alive connection, take devices from one shared
//! queue. Afterwards the server's own figures (the campaign's outcome and the
//! download log) are checked against what the clients did.
//!
//! As in the base-poll benchmark, the generator runs on its own thread with a
//! single-threaded runtime, as an outside client would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use ota_testkit::{eventually_every, json_of, TestApp, TestOptions};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::ddi::{process_cpu, thread_cpu, MAX_LATENCY_US};

/// The firmware image every device downloads.
const IMAGE_BYTES: usize = 256 * 1024;
/// Enrolments in flight at once (not measured).
const ENROL_CONCURRENCY: usize = 16;
/// How long the campaign may take to assign every device (not measured).
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the server's figures may take to settle after the last cycle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The five requests of one cycle, in order.
#[derive(Clone, Copy)]
enum Step {
    Poll,
    Deployment,
    Proceeding,
    Download,
    Closed,
}

impl Step {
    const ALL: [Step; 5] = [Step::Poll, Step::Deployment, Step::Proceeding, Step::Download, Step::Closed];

    fn label(self) -> &'static str {
        match self {
            Step::Poll => "GET base poll",
            Step::Deployment => "GET deploymentBase",
            Step::Proceeding => "POST feedback proceeding",
            Step::Download => "GET artifact (256 KiB)",
            Step::Closed => "POST feedback closed/success",
        }
    }
}

pub async fn run(devices: usize, connections: usize) {
    assert!(devices > 0 && connections > 0, "--ddi-cycle-devices and --ddi-connections must be > 0");
    println!(
        "machine: {} cores, load average {}; DDI full cycle: {devices} devices, {connections} keep-alive connections, one {IMAGE_BYTES}-byte artifact",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let app = TestApp::spawn_with(TestOptions::full()).await;

    let image: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let metadata = json!({"name": "os", "version": "2.0", "device_model": "gw"});
    let (status, body) = app.upload_firmware_with(metadata, "bundle.swu", image).await;
    assert_eq!(status, 201, "firmware upload: {body}");
    let firmware = body["id"].as_str().expect("firmware id").to_owned();

    let ids: Vec<String> = (0..devices).map(|i| format!("cycle-{i:06}")).collect();
    let started = Instant::now();
    let tokens: Vec<String> =
        futures::stream::iter(ids.iter().map(|id| app.enrol(id, "rev-a"))).buffered(ENROL_CONCURRENCY).collect().await;
    println!(
        "enrolled {devices} devices over HTTP ({ENROL_CONCURRENCY} concurrent) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let campaign = start_campaign(&app, &firmware, &ids).await;
    let started = Instant::now();
    let (assigned, skipped) =
        eventually_every("every device assigned or skipped", ASSIGN_TIMEOUT, Duration::from_millis(100), || async {
            let view = get_json(&app, &format!("/api/v1/campaigns/{campaign}")).await?;
            let (assigned, skipped) = (wave_sum(&view, "assigned"), wave_sum(&view, "skipped"));
            (assigned + skipped >= devices as u64).then_some((assigned, skipped))
        })
        .await;
    println!(
        "campaign started -> {assigned} devices assigned, {skipped} skipped (campaign read model): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let host = HeaderValue::from_str(&app.addr.to_string()).expect("address as Host header");
    let targets: Arc<[Device]> = ids
        .iter()
        .zip(&tokens)
        .map(|(id, token)| Device {
            poll: format!("/default/controller/v1/{id}").parse().expect("poll path"),
            auth: HeaderValue::from_str(&format!("TargetToken {token}")).expect("target token as header value"),
        })
        .collect();
    let load_before = load_average();
    let outcome = on_own_thread(app.addr, host, targets, connections).await;
    let load_after = load_average();
    outcome.print(devices, connections, &load_before, &load_after);

    let Some(last_cycle) = outcome.tally.last_end else {
        println!("no cycle ran: nothing to verify");
        return;
    };
    verify(&app, &campaign, &firmware, devices, last_cycle).await;
}

/// Creates a campaign over `ids` with the default rollout (one wave, 100 %) and starts it.
async fn start_campaign(app: &TestApp, firmware: &str, ids: &[String]) -> String {
    let body = json!({"name": "ddi-cycle", "firmware_id": firmware, "target": {"device_ids": ids}, "rollout": {}});
    let (status, created) =
        json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create campaign")).await;
    assert_eq!(status, 201, "create campaign: {created}");
    let campaign = created["id"].as_str().expect("campaign id").to_owned();
    let (status, started) = app.campaign_action(&campaign, "start").await;
    assert_eq!(status, 200, "start campaign: {started}");
    campaign
}

/// A JSON answer of the operator API, or `None` on any failure (retried by the caller).
async fn get_json(app: &TestApp, path: &str) -> Option<Value> {
    let (status, body) = json_of(app.get(path).send().await.ok()?).await;
    (status == 200).then_some(body)
}

/// `field` summed over the waves of `GET /api/v1/campaigns/{id}`.
fn wave_sum(view: &Value, field: &str) -> u64 {
    view["waves"].as_array().map_or(0, |waves| waves.iter().filter_map(|w| w[field].as_u64()).sum())
}

/// Waits (up to `SETTLE_TIMEOUT`) for the campaign and the download log to show
/// what the clients did, and prints how long each took after the last cycle.
async fn verify(app: &TestApp, campaign: &str, firmware: &str, devices: usize, last_cycle: Instant) {
    let expected_bytes = (devices * IMAGE_BYTES) as u64;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut campaign_seen = (String::from("?"), 0u64);
    let mut downloads_seen = (0u64, 0u64);
    let (mut campaign_settled, mut downloads_settled) = (None, None);
    loop {
        if campaign_settled.is_none() {
            if let Some(view) = get_json(app, &format!("/api/v1/campaigns/{campaign}")).await {
                campaign_seen = (view["status"].as_str().unwrap_or("?").to_owned(), wave_sum(&view, "succeeded"));
                if campaign_seen.0 == "completed" && campaign_seen.1 == devices as u64 {
                    campaign_settled = Some(last_cycle.elapsed());
                }
            }
        }
        if downloads_settled.is_none() {
            if let Some(body) = get_json(app, &format!("/api/v1/firmware/{firmware}/downloads")).await {
                let stats = &body["stats"];
                downloads_seen =
                    (stats["devices_complete"].as_u64().unwrap_or(0), stats["bytes"].as_u64().unwrap_or(0));
                if downloads_seen == (devices as u64, expected_bytes) {
                    downloads_settled = Some(last_cycle.elapsed());
                }
            }
        }
        if (campaign_settled.is_some() && downloads_settled.is_some()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verdict = |settled: Option<Duration>| match settled {
        Some(after) => format!("MATCH, settled {:.2} s after the last cycle", after.as_secs_f64()),
        None => format!("MISMATCH after waiting {} s", SETTLE_TIMEOUT.as_secs()),
    };
    println!(
        "verify campaign: status {} with {} succeeded (expected completed with {devices}): {}",
        campaign_seen.0,
        campaign_seen.1,
        verdict(campaign_settled)
    );
    println!(
        "verify downloads: devices_complete {} and bytes {} (expected {devices} and {expected_bytes}): {}",
        downloads_seen.0,
        downloads_seen.1,
        verdict(downloads_settled)
    );
}

/// One device as its client knows it: where to poll and its credentials.
struct Device {
    poll: Uri,
    auth: HeaderValue,
}

/// Runs the workers on a thread of their own with a single-threaded runtime, so
/// they take at most one core and never queue behind the server's tasks.
async fn on_own_thread(addr: SocketAddr, host: HeaderValue, devices: Arc<[Device]>, connections: usize) -> Outcome {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cycle-generator".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("generator runtime");
            let _ = done.send(runtime.block_on(generate(addr, host, devices, connections)));
        })
        .expect("generator thread");
    outcome.await.expect("generator thread ended without an outcome")
}

async fn generate(addr: SocketAddr, host: HeaderValue, devices: Arc<[Device]>, connections: usize) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let (thread_before, process_before) = (thread_cpu(), process_cpu());
    let tasks: Vec<_> =
        (0..connections).map(|_| tokio::spawn(worker(addr, host.clone(), devices.clone(), next.clone()))).collect();
    let mut total = Tally::new();
    for tally in futures::future::join_all(tasks).await {
        total.merge(tally.expect("worker task"));
    }
    // The spawned tasks ran on this thread, so its CPU time is the generator's.
    let (thread_after, process_after) = (thread_cpu(), process_cpu());
    Outcome {
        tally: total,
        generator_cpu: thread_after.zip(thread_before).map(|(a, b)| a.saturating_sub(b)),
        process_cpu: process_after.zip(process_before).map(|(a, b)| a.saturating_sub(b)),
    }
}

/// One keep-alive connection running whole cycles for devices from the shared queue.
async fn worker(addr: SocketAddr, host: HeaderValue, devices: Arc<[Device]>, next: Arc<AtomicUsize>) -> Tally {
    let mut tally = Tally::new();
    let mut connection = Connection { addr, sender: None, reconnects: 0 };
    // Connected before the first cycle, so its handshake is not in a step's latency.
    connection.sender = connect(addr).await.ok();
    while let Some(device) = devices.get(next.fetch_add(1, Ordering::Relaxed)) {
        let started = Instant::now();
        tally.first_start.get_or_insert(started);
        let done = cycle(&mut connection, &host, device, &mut tally.steps).await;
        let ended = Instant::now();
        tally.last_end = Some(ended);
        tally.cycle.saturating_record(micros(ended.duration_since(started)));
        match done {
            Some(bytes) => {
                tally.cycles_ok += 1;
                tally.bytes += bytes;
            }
            None => tally.cycles_failed += 1,
        }
    }
    tally.reconnects = connection.reconnects;
    tally
}

/// One device's whole update; the artifact bytes read, or `None` when a step
/// failed (recorded under that step) and the rest of the cycle was abandoned.
async fn cycle(connection: &mut Connection, host: &HeaderValue, device: &Device, steps: &mut Steps) -> Option<u64> {
    let get = |uri: Uri, accept: bool| request(Method::GET, uri, host, &device.auth, accept, None);

    let poll = steps.json(connection, Step::Poll, get(device.poll.clone(), true)).await?;
    let Some(base) = poll["_links"]["deploymentBase"]["href"].as_str().and_then(origin_form) else {
        return steps.bad_body(Step::Poll, "no _links.deploymentBase.href");
    };

    let deployment = steps.json(connection, Step::Deployment, get(base.clone(), true)).await?;
    let action = deployment["id"].as_str();
    let artifact = deployment["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
        .as_str()
        .and_then(origin_form);
    let feedback: Option<Uri> = format!("{}/feedback", base.path()).parse().ok();
    let (Some(action), Some(artifact), Some(feedback)) = (action, artifact, feedback) else {
        return steps.bad_body(Step::Deployment, "no id or no chunks[0].artifacts[0] download-http link");
    };
    let report = |execution: &str, finished: &str| {
        let body = json!({"id": action, "status": {"execution": execution, "result": {"finished": finished}}});
        request(Method::POST, feedback.clone(), host, &device.auth, true, Some(Bytes::from(body.to_string())))
    };

    steps.call(connection, Step::Proceeding, report("proceeding", "none"), false).await?;
    let image = steps.call(connection, Step::Download, get(artifact, false), false).await?;
    if image.len != IMAGE_BYTES as u64 {
        return steps.bad_body(Step::Download, "artifact of the wrong length");
    }
    steps.call(connection, Step::Closed, report("closed", "success"), false).await?;
    Some(image.len)
}

/// The path and query of a link the server handed out (absolute or not), as an
/// HTTP/1 request target on the connection already open.
fn origin_form(href: &str) -> Option<Uri> {
    let uri: Uri = href.parse().ok()?;
    uri.path_and_query()?.as_str().parse().ok()
}

fn request(
    method: Method,
    uri: Uri,
    host: &HeaderValue,
    auth: &HeaderValue,
    accept_json: bool,
    json_body: Option<Bytes>,
) -> Request<Full<Bytes>> {
    let has_body = json_body.is_some();
    let mut request = Request::new(Full::new(json_body.unwrap_or_default()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(HOST, host.clone());
    headers.insert(AUTHORIZATION, auth.clone());
    if accept_json {
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    }
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    request
}

/// A keep-alive HTTP/1 connection, opened again when the server closed it or it broke.
struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    reconnects: u64,
}

impl Connection {
    /// Sends `request` and reads the whole answer; the body is kept when asked or
    /// when the status is not 200 (for the error report), otherwise only counted.
    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<(StatusCode, Body), BoxError> {
        let mut send = match self.sender.take() {
            Some(send) if !send.is_closed() => send,
            Some(_) => {
                self.reconnects += 1;
                connect(self.addr).await?
            }
            None => connect(self.addr).await?,
        };
        send.ready().await?;
        let response = send.send_request(request).await?;
        let status = response.status();
        let body = read(response.into_body(), keep_body || status != StatusCode::OK).await?;
        // Kept only after a whole exchange: a broken connection is dropped and opened again.
        self.sender = Some(send);
        Ok((status, body))
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

struct Body {
    kept: Vec<u8>,
    len: u64,
}

/// Reads a body to its end (so the connection can be reused), counting its bytes.
async fn read(mut body: Incoming, keep: bool) -> Result<Body, hyper::Error> {
    let mut out = Body { kept: Vec::new(), len: 0 };
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.len += data.len() as u64;
            if keep {
                out.kept.extend_from_slice(&data);
            }
        }
    }
    Ok(out)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Latencies and errors of one step.
struct StepTally {
    /// Every answered request (any status), in microseconds.
    latency: Histogram<u64>,
    non_200: u64,
    bad_body: u64,
    transport: u64,
    /// The first error seen, for the report.
    first_error: Option<String>,
}

impl StepTally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("histogram bounds"),
            non_200: 0,
            bad_body: 0,
            transport: 0,
            first_error: None,
        }
    }

    fn errors(&self) -> u64 {
        self.non_200 + self.bad_body + self.transport
    }

    fn merge(&mut self, other: StepTally) {
        self.latency.add(&other.latency).expect("histograms of equal bounds");
        self.non_200 += other.non_200;
        self.bad_body += other.bad_body;
        self.transport += other.transport;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct Steps([StepTally; 5]);

impl Steps {
    fn new() -> Self {
        Self(Step::ALL.map(|_| StepTally::new()))
    }

    fn get(&mut self, step: Step) -> &mut StepTally {
        &mut self.0[step as usize]
    }

    /// One request of `step`: its latency is recorded; a transport error or a
    /// status other than 200 is counted and gives `None`.
    async fn call(
        &mut self,
        connection: &mut Connection,
        step: Step,
        request: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Option<Body> {
        let started = Instant::now();
        let answer = connection.exchange(request, keep_body).await;
        let tally = self.get(step);
        match answer {
            Err(e) => {
                tally.transport += 1;
                tally.first_error.get_or_insert_with(|| format!("transport: {e}"));
                None
            }
            Ok((status, body)) => {
                tally.latency.saturating_record(micros(started.elapsed()));
                if status == StatusCode::OK {
                    return Some(body);
                }
                tally.non_200 += 1;
                tally.first_error.get_or_insert_with(|| {
                    let text = String::from_utf8_lossy(&body.kept);
                    format!("{status}: {}", text.chars().take(200).collect::<String>())
                });
                None
            }
        }
    }

    /// `call`, with the answer parsed as JSON (a body that is not JSON is counted).
    async fn json(&mut self, connection: &mut Connection, step: Step, request: Request<Full<Bytes>>) -> Option<Value> {
        let body = self.call(connection, step, request, true).await?;
        match serde_json::from_slice(&body.kept) {
            Ok(value) => Some(value),
            Err(_) => self.bad_body(step, "not JSON"),
        }
    }

    /// Counts an answer of `step` the cycle cannot go on with.
    fn bad_body<T>(&mut self, step: Step, what: &str) -> Option<T> {
        let tally = self.get(step);
        tally.bad_body += 1;
        tally.first_error.get_or_insert_with(|| format!("200 but {what}"));
        None
    }
}

/// What one worker (or, merged, all of them) did.
struct Tally {
    steps: Steps,
    /// Whole cycles, failed ones included, in microseconds.
    cycle: Histogram<u64>,
    cycles_ok: u64,
    cycles_failed: u64,
    /// Artifact bytes read in successful cycles.
    bytes: u64,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    /// Connections the server closed; each is opened again.
    reconnects: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            steps: Steps::new(),
            cycle: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("histogram bounds"),
            cycles_ok: 0,
            cycles_failed: 0,
            bytes: 0,
            first_start: None,
            last_end: None,
            reconnects: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        let Tally { steps, cycle, cycles_ok, cycles_failed, bytes, first_start, last_end, reconnects } = other;
        for (mine, theirs) in self.steps.0.iter_mut().zip(steps.0) {
            mine.merge(theirs);
        }
        self.cycle.add(&cycle).expect("histograms of equal bounds");
        self.cycles_ok += cycles_ok;
        self.cycles_failed += cycles_failed;
        self.bytes += bytes;
        self.first_start = match (self.first_start, first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_end = self.last_end.max(last_end);
        self.reconnects += reconnects;
    }
}

struct Outcome {
    tally: Tally,
    generator_cpu: Option<Duration>,
    process_cpu: Option<Duration>,
}

impl Outcome {
    fn print(&self, devices: usize, connections: usize, load_before: &str, load_after: &str) {
        let t = &self.tally;
        let wall = match (t.first_start, t.last_end) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let per_second = |n: f64| if wall > 0.0 { n / wall } else { 0.0 };
        let requests: u64 = t.steps.0.iter().map(|s| s.latency.len()).sum();
        let cpu = match (self.generator_cpu, self.process_cpu) {
            (Some(g), Some(p)) if wall > 0.0 => format!(
                "CPU: generator {:.0}% of a core, whole process (server + generator) {:.2} cores",
                g.as_secs_f64() / wall * 100.0,
                p.as_secs_f64() / wall
            ),
            _ => "CPU: not measured".to_owned(),
        };
        println!(
            "full cycle: {devices} devices, {connections} connections | {} cycles ok, {} failed in {wall:.2} s: {:.0} cycles/s, {:.0} requests/s (5 per cycle), artifact {:.0} MiB/s",
            t.cycles_ok,
            t.cycles_failed,
            per_second(t.cycles_ok as f64),
            per_second(requests as f64),
            per_second(t.bytes as f64) / (1024.0 * 1024.0)
        );
        println!(
            "  {cpu} | {} connections closed by the server | load average before {load_before}, after {load_after}",
            t.reconnects
        );
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let max = |h: &Histogram<u64>| h.max() as f64 / 1000.0;
        for step in Step::ALL {
            let s = &t.steps.0[step as usize];
            let errors = match s.errors() {
                0 => "errors 0".to_owned(),
                n => format!(
                    "errors {n} (non-200 {}, bad body {}, transport {}; first: {})",
                    s.non_200,
                    s.bad_body,
                    s.transport,
                    s.first_error.as_deref().unwrap_or("?")
                ),
            };
            println!(
                "  {:<30} {:>6} requests | ms p50 {:>7.2} p99 {:>7.2} max {:>7.2} | {errors}",
                step.label(),
                s.latency.len(),
                ms(&s.latency, 0.5),
                ms(&s.latency, 0.99),
                max(&s.latency)
            );
        }
        println!(
            "  {:<30} {:>6} cycles   | ms p50 {:>7.2} p99 {:>7.2} max {:>7.2}",
            "whole cycle (5 requests)",
            t.cycle.len(),
            ms(&t.cycle, 0.5),
            ms(&t.cycle, 0.99),
            max(&t.cycle)
        );
        crate::figures::record("full update cycles", per_second(t.cycles_ok as f64), "cycles/s");
        crate::figures::record("full update cycles failed", t.cycles_failed as f64, "cycles");
        crate::figures::record("whole cycle p99", ms(&t.cycle, 0.99), "ms");
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), for the machine's state.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

//! hawkBit DDI base-poll load: N registered devices polling
//! `GET /default/controller/v1/{id}` with their target tokens over C keep-alive
//! connections, beside the same generator against `GET /health` (the server's
//! cheapest route) in the same run, for the ratio.
//!
//! The generator runs on its own thread with a single-threaded runtime, as an
//! outside client would, and is kept cheap: one hyper HTTP/1 connection per task
//! (no pool), requests assembled from pre-built URIs and header maps, and the
//! body only checked for its first bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use ota_api::auth::Role;
use ota_projections::ProjectionName;
use ota_testkit::{json_of, TestApp, TestOptions};
use tokio::net::TcpStream;

/// Requests before the measured window, so connections and caches are warm.
const WARM_UP: Duration = Duration::from_secs(2);
/// Registrations in flight at once (not measured).
const REGISTER_CONCURRENCY: usize = 16;
/// Latencies are recorded in microseconds, up to a minute, 3 significant digits.
pub(crate) const MAX_LATENCY_US: u64 = 60_000_000;

/// Who sends the polls: the bench's own generator (on its own thread) or Debian's
/// `wrk` in a process of its own, with this many threads.
#[derive(Clone, Copy)]
pub enum Generator {
    Own,
    Wrk { threads: usize },
}

pub async fn run(devices: usize, seconds: u64, connections: usize, generator: Generator) {
    assert!(
        devices > 0 && seconds > 0 && connections > 0,
        "--ddi-devices, --ddi-seconds and --ddi-connections must be > 0"
    );
    let window = Duration::from_secs(seconds);
    println!(
        "machine: {} cores; DDI base poll: {devices} devices, {connections} keep-alive connections, {seconds} s measured after {} s warm-up",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        WARM_UP.as_secs()
    );
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let ids: Vec<String> = (0..devices).map(|i| format!("ddi-{i:06}")).collect();

    let started = Instant::now();
    let tokens = register(&app, &ids).await;
    let registered = started.elapsed();
    let started = Instant::now();
    for projection in [ProjectionName::Devices, ProjectionName::Activity] {
        app.caught_up_within(projection, Duration::from_secs(600), Duration::from_millis(200)).await;
    }
    println!(
        "registered {devices} devices over HTTP ({REGISTER_CONCURRENCY} concurrent) in {:.1} s; read models caught up {:.1} s later",
        registered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    if let Generator::Wrk { threads } = generator {
        let Some(tokens) = tokens else { panic!("registration answered without target tokens") };
        return with_wrk(app.addr, &ids, &tokens, connections, threads, seconds).await;
    }
    let host = HeaderValue::from_str(&app.addr.to_string()).expect("address as Host header");
    let accept = HeaderValue::from_static("application/json");
    let health: Arc<[Target]> = Arc::new([Target::new("/health", &host, &accept, None)]);
    let baseline = on_own_thread(app.addr, health, b"{\"status\"", connections, window).await;
    baseline.print("GET /health");

    let Some(tokens) = tokens else {
        println!("registration answered without a target_token (server without DDI support): DDI phase skipped");
        return;
    };
    let polls: Arc<[Target]> = ids
        .iter()
        .zip(&tokens)
        .map(|(id, token)| {
            let auth = HeaderValue::from_str(&format!("TargetToken {token}")).expect("target token as header value");
            Target::new(&format!("/default/controller/v1/{id}"), &host, &accept, Some(auth))
        })
        .collect();
    let ddi = on_own_thread(app.addr, polls, b"{\"config\"", connections, window).await;
    ddi.print("GET /default/controller/v1/{id}");

    let ratio = ddi.rate() / baseline.rate();
    let caveat = if ddi.errors() + baseline.errors() > 0 { " (not meaningful: some answers were errors)" } else { "" };
    println!("ratio DDI base poll / GET /health: {ratio:.2}{caveat}");
    crate::figures::record("DDI base poll / GET /health", ratio, "ratio");
}

async fn with_wrk(
    addr: SocketAddr,
    ids: &[String],
    tokens: &[String],
    connections: usize,
    threads: usize,
    seconds: u64,
) {
    // A warm-up, as the own generator has.
    let polls: Vec<(String, Option<String>)> = ids
        .iter()
        .zip(tokens)
        .map(|(id, token)| (format!("/default/controller/v1/{id}"), Some(format!("TargetToken {token}"))))
        .collect();
    let health = vec![("/health".to_owned(), None)];
    let run = |requests: Vec<(String, Option<String>)>, seconds: u64| {
        tokio::task::spawn_blocking(move || crate::wrk::run(addr, &requests, connections, threads, seconds))
    };
    run(polls.clone(), WARM_UP.as_secs()).await.expect("wrk warm-up").expect("wrk warm-up");
    let baseline = run(health, seconds).await.expect("wrk").expect("wrk on /health");
    baseline.print("GET /health");
    let cpu = process_cpu();
    let ddi = run(polls, seconds).await.expect("wrk").expect("wrk on the DDI base poll");
    ddi.print("GET /default/controller/v1/{id}");
    if let (Some(before), Some(after)) = (cpu, process_cpu()) {
        println!("server CPU during the DDI run: {:.2} cores", (after - before).as_secs_f64() / seconds as f64);
    }
    let ratio = ddi.requests_per_sec / baseline.requests_per_sec;
    println!("ratio DDI base poll / GET /health (wrk, {threads} threads): {ratio:.2}");
    crate::figures::record("DDI base poll / GET /health under wrk", ratio, "ratio");
}

/// Registers every device through `POST /api/v1/devices`; returns the one-time
/// target tokens in the order of `ids`, or `None` when the server gave none.
async fn register(app: &TestApp, ids: &[String]) -> Option<Vec<String>> {
    let token = app.token(Role::Operator);
    let url = app.url("/api/v1/devices");
    let answers: Vec<Option<String>> = futures::stream::iter(ids.iter().map(|id| {
        let body = serde_json::json!({"id": id, "device_model": "gw", "hardware_version": "rev-a"});
        let request = app.http.post(&url).bearer_auth(&token).json(&body);
        async move {
            let (status, body) = json_of(request.send().await.expect("register request")).await;
            assert!(status == 201 || status == 200, "register {id}: {status} {body}");
            body["target_token"].as_str().map(str::to_owned)
        }
    }))
    .buffered(REGISTER_CONCURRENCY)
    .collect()
    .await;
    if answers.iter().all(Option::is_none) {
        return None;
    }
    let tokens: Option<Vec<String>> = answers.into_iter().collect();
    Some(tokens.expect("some registrations answered without a target_token"))
}

/// One pre-built request: each poll clones these (reference counts, one small copy).
struct Target {
    uri: Uri,
    headers: HeaderMap,
}

impl Target {
    fn new(path: &str, host: &HeaderValue, accept: &HeaderValue, auth: Option<HeaderValue>) -> Self {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(HOST, host.clone());
        headers.insert(ACCEPT, accept.clone());
        if let Some(auth) = auth {
            headers.insert(AUTHORIZATION, auth);
        }
        Self { uri: path.parse().expect("request path"), headers }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Runs the generator on a thread of its own with a single-threaded runtime, so
/// it takes at most one core and never queues behind the server's tasks.
async fn on_own_thread(
    addr: SocketAddr,
    targets: Arc<[Target]>,
    prefix: &'static [u8],
    connections: usize,
    window: Duration,
) -> Outcome {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("generator runtime");
            let _ = done.send(runtime.block_on(generate(addr, targets, prefix, connections, window)));
        })
        .expect("generator thread");
    outcome.await.expect("generator thread ended without an outcome")
}

async fn generate(
    addr: SocketAddr,
    targets: Arc<[Target]>,
    prefix: &'static [u8],
    connections: usize,
    window: Duration,
) -> Outcome {
    let measure_from = Instant::now() + WARM_UP;
    let end = measure_from + window;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let targets = targets.clone();
            // Spread the connections over the device list.
            let first = c * targets.len() / connections;
            tokio::spawn(connection(addr, targets, prefix, first, measure_from, end))
        })
        .collect();
    // The spawned tasks run on this thread, so its CPU time is the generator's.
    tokio::time::sleep_until(measure_from.into()).await;
    let (thread_before, process_before) = (thread_cpu(), process_cpu());
    tokio::time::sleep_until(end.into()).await;
    let (thread_after, process_after) = (thread_cpu(), process_cpu());
    let mut total = Tally::new();
    for tally in futures::future::join_all(tasks).await {
        total.merge(tally.expect("connection task"));
    }
    Outcome {
        tally: total,
        window,
        generator_cpu: thread_after.zip(thread_before).map(|(a, b)| a.saturating_sub(b)),
        process_cpu: process_after.zip(process_before).map(|(a, b)| a.saturating_sub(b)),
    }
}

enum Answer {
    Ok,
    Status(StatusCode),
    Body,
}

/// One keep-alive connection polling targets round-robin until `end`; only
/// requests sent and answered within `[measure_from, end]` are counted.
async fn connection(
    addr: SocketAddr,
    targets: Arc<[Target]>,
    prefix: &'static [u8],
    first: usize,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let mut next = first;
    loop {
        let started = Instant::now();
        if started >= end {
            return tally;
        }
        if sender.as_ref().is_some_and(SendRequest::is_closed) {
            // The server closed the keep-alive connection: not an error, but counted.
            sender = None;
            tally.reconnects += 1;
        }
        if sender.is_none() {
            match connect(addr).await {
                Ok(send) => sender = Some(send),
                Err(_) => {
                    if started >= measure_from {
                        tally.transport += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(send) = sender.as_mut() else { continue };
        let target = &targets[next % targets.len()];
        next = next.wrapping_add(1);
        let answer = poll(send, target, prefix).await;
        let answered = Instant::now();
        if answer.is_err() {
            sender = None;
        }
        if started < measure_from || answered > end {
            continue;
        }
        tally
            .latency
            .saturating_record(u64::try_from(answered.duration_since(started).as_micros()).unwrap_or(u64::MAX));
        match answer {
            Ok(Answer::Ok) => {}
            Ok(Answer::Status(status)) => {
                tally.bad_status += 1;
                tally.first_bad_status.get_or_insert(status);
            }
            Ok(Answer::Body) => tally.bad_body += 1,
            Err(_) => tally.transport += 1,
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

async fn poll(send: &mut SendRequest<Empty<Bytes>>, target: &Target, prefix: &[u8]) -> Result<Answer, hyper::Error> {
    send.ready().await?;
    let response = send.send_request(target.request()).await?;
    let status = response.status();
    // Read the body to its end either way, so the connection can be reused.
    let starts_well = body_starts_with(response.into_body(), prefix).await?;
    Ok(if status != StatusCode::OK {
        Answer::Status(status)
    } else if !starts_well {
        Answer::Body
    } else {
        Answer::Ok
    })
}

/// Drains the body; true when it starts with `prefix`. Nothing is parsed or copied.
async fn body_starts_with(mut body: Incoming, prefix: &[u8]) -> Result<bool, hyper::Error> {
    let mut seen = 0;
    let mut matches = true;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if seen < prefix.len() {
                let n = (prefix.len() - seen).min(data.len());
                matches &= data[..n] == prefix[seen..seen + n];
                seen += n;
            }
        }
    }
    Ok(matches && seen == prefix.len())
}

/// What one connection (or, merged, all of them) saw in the measured window.
struct Tally {
    /// Every measured request, errors included, in microseconds.
    latency: Histogram<u64>,
    bad_status: u64,
    first_bad_status: Option<StatusCode>,
    bad_body: u64,
    transport: u64,
    /// Connections the server closed (measured or not); each is opened again.
    reconnects: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("histogram bounds"),
            bad_status: 0,
            first_bad_status: None,
            bad_body: 0,
            transport: 0,
            reconnects: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.add(&other.latency).expect("histograms of equal bounds");
        self.bad_status += other.bad_status;
        self.first_bad_status = self.first_bad_status.or(other.first_bad_status);
        self.bad_body += other.bad_body;
        self.transport += other.transport;
        self.reconnects += other.reconnects;
    }
}

struct Outcome {
    tally: Tally,
    window: Duration,
    generator_cpu: Option<Duration>,
    process_cpu: Option<Duration>,
}

impl Outcome {
    /// Answered requests (errors included) per second of the window.
    fn rate(&self) -> f64 {
        self.tally.latency.len() as f64 / self.window.as_secs_f64()
    }

    fn errors(&self) -> u64 {
        self.tally.bad_status + self.tally.bad_body + self.tally.transport
    }

    fn print(&self, route: &str) {
        let t = &self.tally;
        let ms = |q: f64| t.latency.value_at_quantile(q) as f64 / 1000.0;
        let errors = match self.errors() {
            0 => "errors 0".to_owned(),
            n => format!(
                "errors {n} (non-200 {}{}, bad body {}, transport {})",
                t.bad_status,
                t.first_bad_status.map_or(String::new(), |s| format!(", first {s}")),
                t.bad_body,
                t.transport
            ),
        };
        let reconnects = match t.reconnects {
            0 => String::new(),
            n => format!(" | {n} connections closed by the server"),
        };
        let window = self.window.as_secs_f64();
        let cpu = match (self.generator_cpu, self.process_cpu) {
            (Some(g), Some(p)) => format!(
                " | CPU: generator {:.0}% of a core, whole process {:.2} cores",
                g.as_secs_f64() / window * 100.0,
                p.as_secs_f64() / window
            ),
            _ => String::new(),
        };
        println!(
            "{route}: {} polls, {:.0} polls/s | latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} | {errors}{reconnects}{cpu}",
            t.latency.len(),
            self.rate(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            t.latency.max() as f64 / 1000.0
        );
        crate::figures::record(route.to_owned(), self.rate(), "requests/s");
        crate::figures::record(format!("{route} p99"), ms(0.99), "ms");
        crate::figures::record(format!("{route} errors"), self.errors() as f64, "requests");
    }
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`, nanoseconds).
pub(crate) fn thread_cpu() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time of every live thread of this process: server and generator together.
pub(crate) fn process_cpu() -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may end between listing and reading.
        total += schedstat(&path.to_string_lossy()).unwrap_or_default();
    }
    Some(total)
}

fn schedstat(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

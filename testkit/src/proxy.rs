//! TCP proxies for fault tests: one in front of Postgres or NATS whose link can be
//! cut (closed), stalled (a black hole: nothing passes, nothing closes) and restored,
//! or that loses the answer to one COMMIT (an ambiguous commit), to prove that a
//! fault in flight loses nothing; one in front of the HTTP
//! server that loses answers, to prove that a retried command runs once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// A Postgres simple-protocol `Query` message holding exactly `COMMIT` (how sqlx
/// ends a transaction): `Q`, its length (4 + 7), the text and its NUL.
const COMMIT_QUERY: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
const BEGIN_QUERY: &[u8] = b"Q\0\0\0\x0aBEGIN\0";

pub struct FaultProxy {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    kill: broadcast::Sender<()>,
    task: JoinHandle<()>,
}

/// What the proxy does to the traffic, shared by every connection.
struct Faults {
    cut: AtomicBool,
    /// While true nothing is forwarded and nothing is closed: a black hole.
    stalled: watch::Sender<bool>,
    /// While set, the COMMIT of the next transaction whose statements carry these
    /// bytes reaches the server but its answer never comes back.
    lose_commit_marked: Mutex<Option<Vec<u8>>>,
    commits_lost: AtomicUsize,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let faults = Arc::new(Faults {
            cut: AtomicBool::new(false),
            stalled: watch::channel(false).0,
            lose_commit_marked: Mutex::new(None),
            commits_lost: AtomicUsize::new(0),
        });
        let (kill, _) = broadcast::channel(1);
        let task = tokio::spawn(accept_loop(listener, target, faults.clone(), kill.clone()));
        Self { addr, faults, kill, task }
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.faults.cut.store(true, Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    /// A black-hole partition: bytes stop flowing both ways, but no connection is
    /// closed or reset and new ones are accepted (and hang), until `restore`.
    pub fn stall(&self) {
        self.faults.stalled.send_replace(true);
    }

    pub fn restore(&self) {
        self.faults.cut.store(false, Ordering::SeqCst);
        self.faults.stalled.send_replace(false);
    }

    /// An ambiguous commit: the next transaction (on the Postgres protocol) whose
    /// statements carry `marker` has its COMMIT delivered to the server, which
    /// commits, and then the connection is dropped before the answer gets back.
    pub fn lose_commit_answer_of(&self, marker: &[u8]) {
        *self.faults.lose_commit_marked.lock().expect("faults") = Some(marker.to_vec());
    }

    /// How many COMMIT answers were lost so far.
    pub fn commits_lost(&self) -> usize {
        self.faults.commits_lost.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.kill.send(());
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, faults: Arc<Faults>, kill: broadcast::Sender<()>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if faults.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut killed = kill.subscribe();
        let faults = faults.clone();
        tokio::spawn(async move {
            // A black hole swallows the connection attempt too.
            flowing(&faults).await;
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = inbound.into_split();
            let (server_read, server_write) = outbound.into_split();
            let severed = Arc::new(AtomicBool::new(false));
            let up = pump_up(client_read, server_write, faults.clone(), severed.clone());
            let down = pump(server_read, client_write, faults.clone(), severed);
            tokio::select! {
                _ = up => {}
                _ = down => {}
                _ = killed.recv() => {}
            }
        });
    }
}

/// Waits while the proxy is stalled.
async fn flowing(faults: &Faults) {
    let mut stalled = faults.stalled.subscribe();
    let _ = stalled.wait_for(|stalled| !stalled).await;
}

/// Client to server, watching for the COMMIT whose answer is to be lost.
async fn pump_up(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, faults: Arc<Faults>, severed: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut marked = false;
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        flowing(&faults).await;
        let chunk = &buffer[..read];
        let sever = {
            let mut armed = faults.lose_commit_marked.lock().expect("faults");
            if contains(chunk, BEGIN_QUERY) {
                // Only the marked transaction's own statements count.
                marked = false;
            }
            if let Some(marker) = armed.as_deref() {
                marked |= contains(chunk, marker);
            }
            let sever = marked && armed.is_some() && contains(chunk, COMMIT_QUERY);
            if sever {
                *armed = None;
            }
            sever
        };
        if sever {
            // No answer may pass from here on; the COMMIT itself still goes through.
            severed.store(true, Ordering::SeqCst);
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
        if sever {
            // Let the server commit before the connection goes.
            tokio::time::sleep(Duration::from_millis(200)).await;
            faults.commits_lost.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Server to client.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, faults: Arc<Faults>, severed: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        flowing(&faults).await;
        if severed.load(Ordering::SeqCst) {
            // Wait for the other direction to drop the connection.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

/// A TCP proxy in front of the HTTP server that can lose answers: while armed, it
/// passes a request on, and when the first byte of the answer comes back it closes
/// the client's connection instead. The server has executed (and committed) the
/// request; the client only sees a broken connection: the case a retry with an
/// `Idempotency-Key` must survive.
pub struct AnswerLosingProxy {
    pub addr: SocketAddr,
    armed: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl AnswerLosingProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (armed, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn(losing_accept_loop(listener, target, armed.clone(), lost.clone()));
        Self { addr, armed, lost, task }
    }

    /// Loses the next `count` answers (each on the connection it arrives on).
    pub fn lose_next(&self, count: usize) {
        self.armed.store(count, Ordering::SeqCst);
    }

    /// How many answers were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn losing_accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    armed: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let (armed, lost) = (armed.clone(), lost.clone());
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (mut client_read, mut client_write) = inbound.into_split();
            let (mut server_read, mut server_write) = outbound.into_split();
            let upstream = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let take = armed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if take {
                    lost.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                if client_write.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
            // Dropping both halves closes the client's connection without an answer.
            upstream.abort();
        });
    }
}

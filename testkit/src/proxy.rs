//! TCP proxies for fault tests: one in front of Postgres or NATS whose link can be
//! cut and restored, to prove that an outage loses nothing; one in front of the HTTP
//! server that loses answers, to prove that a retried command runs once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub struct FaultProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    kill: broadcast::Sender<()>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let (kill, _) = broadcast::channel(1);
        let task = tokio::spawn(accept_loop(listener, target, cut.clone(), kill.clone()));
        Self { addr, cut, kill, task }
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.kill.send(());
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, cut: Arc<AtomicBool>, kill: broadcast::Sender<()>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut killed = kill.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = killed.recv() => {}
            }
        });
    }
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

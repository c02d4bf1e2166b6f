//! The HTTP listener: our own accept loop on hyper, because `axum::serve` has no
//! header-read timeout and no connection limit (a client that sends half a request
//! held its connection, and a file descriptor, forever). Each connection gets
//! `OTA_HEADER_TIMEOUT_SECS` to send its request headers (and to finish a TLS
//! handshake); an idle keep-alive connection is closed after as long. At most
//! `OTA_MAX_CONNECTIONS` are open: beyond that the loop stops accepting and new
//! connections wait in the kernel's listen queue until one ends.
//!
//! HTTP/1.1 only (with keep-alive): devices and the management API speak it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ota_api::client::ClientCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// How the listener treats connections.
#[derive(Clone)]
pub struct Transport {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// HTTPS with this configuration; plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("OTA_TLS_CERT and OTA_TLS_KEY go together: {0} is set without the other")]
    Incomplete(&'static str),
    #[error("{what} {path}: {source}")]
    Pem { what: &'static str, path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("OTA_TLS_CERT {0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("OTA_TLS_CERT and OTA_TLS_KEY do not make a usable pair: {0}")]
    Config(#[from] rustls::Error),
    #[error("OTA_TLS_CLIENT_CA needs OTA_TLS_CERT and OTA_TLS_KEY: client certificates come with TLS")]
    ClientCaWithoutTls,
    #[error("OTA_TLS_CLIENT_CA {0} holds no usable CA certificate")]
    NoClientCa(PathBuf),
    #[error("OTA_TLS_CLIENT_CA: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// The TLS configuration `OTA_TLS_CERT` and `OTA_TLS_KEY` name (both or neither).
/// With `OTA_TLS_CLIENT_CA`, clients may present a certificate, which must then
/// chain to that CA (devices authenticate with it); clients without one (operators,
/// token-holding devices) are served as before.
pub fn tls_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) if client_ca.is_some() => return Err(TlsError::ClientCaWithoutTls),
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(TlsError::Incomplete("OTA_TLS_CERT")),
        (None, Some(_)) => return Err(TlsError::Incomplete("OTA_TLS_KEY")),
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem { what: "OTA_TLS_CERT", path: cert.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        what: "OTA_TLS_KEY",
        path: key.to_owned(),
        source,
    })?;
    // rustls has two providers in this build; name one rather than rely on a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::Pem { what: "OTA_TLS_CLIENT_CA", path: path.to_owned(), source })?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(TlsError::NoClientCa(path.to_owned()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting,
/// lets every connection finish the request it is on, and returns once all closed.
pub async fn serve(listener: TcpListener, router: Router, transport: Transport, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(transport.max_connections.max(1)));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let tls = transport.tls.clone().map(TlsAcceptor::from);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let Some((slot, stream, peer)) = accepted else { continue };
        let connection =
            Connection { router: router.clone(), peer, header_timeout: transport.header_timeout, client: None };
        let (tls, stop) = (tls.clone(), stop.clone());
        connections.spawn(async move {
            connection.run(stream, tls, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// The next connection, once a slot is free; `None` after an accept error (logged).
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(tokio::sync::OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    // The semaphore is never closed, so this only waits.
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((slot, stream, peer))
        }
        Err(e) => {
            // Out of file descriptors (EMFILE) or the like: give connections time to end.
            tracing::error!(error = %e, "accepting a connection failed");
            tokio::time::sleep(Duration::from_millis(250)).await;
            None
        }
    }
}

struct Connection {
    router: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    client: Option<ClientCertificate>,
}

/// The subject's common name of a client certificate: hawkBit's convention for
/// the controller id.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let name = certificate.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(name)
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, stop: CancellationToken) {
        let Some(tls) = tls else { return self.serve_http(stream, stop).await };
        // A handshake that stalls would hold the slot: it gets the header timeout too.
        let handshake = tokio::select! {
            () = stop.cancelled() => return,
            handshake = tokio::time::timeout(self.header_timeout, tls.accept(stream)) => handshake,
        };
        match handshake {
            Ok(Ok(stream)) => {
                // Verified against OTA_TLS_CLIENT_CA by rustls during the handshake.
                let client =
                    stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(common_name);
                Self { client: client.map(ClientCertificate), ..self }.serve_http(stream, stop).await
            }
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve_http<S>(self, stream: S, stop: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { router, peer, header_timeout, client } = self;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(client) = &client {
                request.extensions_mut().insert(client.clone());
            }
            router.clone().call(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
        let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = stop.cancelled() => {
                // Finish the request in flight, then close; an idle connection closes now.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{tls_config, TlsError};

    #[test]
    fn a_certificate_or_a_key_alone_is_refused() {
        let alone = tls_config(None, Some(Path::new("key.pem")), None).err();
        assert!(matches!(alone, Some(TlsError::Incomplete("OTA_TLS_KEY"))), "{alone:?}");
        let alone = tls_config(Some(Path::new("cert.pem")), None, None).err();
        assert!(matches!(alone, Some(TlsError::Incomplete("OTA_TLS_CERT"))), "{alone:?}");
        assert!(matches!(tls_config(None, None, None), Ok(None)));
        let ca_alone = tls_config(None, None, Some(Path::new("ca.pem"))).err();
        assert!(matches!(ca_alone, Some(TlsError::ClientCaWithoutTls)), "{ca_alone:?}");
    }

    #[test]
    fn an_unreadable_certificate_is_named() {
        let refused =
            tls_config(Some(Path::new("/nonexistent/cert.pem")), Some(Path::new("/nonexistent/key.pem")), None);
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("OTA_TLS_CERT /nonexistent/cert.pem"), "{message}");
    }
}

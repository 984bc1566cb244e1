//! Serving a router on a TCP listener: HTTP/1.1 and HTTP/2, in the clear or over TLS (the
//! shared policy of [`crate::tls`]; with mutual TLS the client's certificates reach handlers as
//! the [`PeerCertificates`] request extension), a bound on the time to complete the TLS
//! handshake and to send request headers (slow clients cannot hold connections open), and
//! graceful shutdown that lets requests in flight finish within a grace period, after which the
//! remaining connections (event streams never end by themselves) are closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::tls::PeerCertificates;

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time connections get to finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// TLS (see [`crate::tls::server_config`]); without it, plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let watcher = graceful.watcher();
                let (builder, router) = (builder.clone(), router.clone());
                let handshake = options.tls.clone().map(|config| {
                    (tokio_rustls::TlsAcceptor::from(config), options.header_read_timeout)
                });
                connections.spawn(async move {
                    let result = match handshake {
                        None => {
                            let service = TowerToHyperService::new(router);
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Some((acceptor, deadline)) => {
                            let Some(tls) = tls_handshake(acceptor, stream, deadline, peer).await else {
                                return;
                            };
                            let certificates = tls.get_ref().1.peer_certificates().map(|c| {
                                PeerCertificates(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()))
                            });
                            let router = router.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                                if let Some(c) = &certificates {
                                    request.extensions_mut().insert(c.clone());
                                }
                                request
                            });
                            let service = TowerToHyperService::new(router);
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                            watcher.watch(connection.into_owned()).await
                        }
                    };
                    if let Err(err) = result {
                        tracing::debug!(%peer, %err, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::debug!(open = connections.len(), "closing connections still open after the grace period");
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Completes a TLS handshake within `deadline`; failures are logged (a client without an
/// acceptable certificate ends here).
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    deadline: Duration,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::info!(%peer, %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not completed in time");
            None
        }
    }
}

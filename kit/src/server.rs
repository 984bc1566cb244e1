//! Serving a router on a TCP listener with a hardened edge: HTTP/1.1 and HTTP/2, in the clear
//! or over TLS (the shared policy of [`crate::tls`]), graceful shutdown, and limits that keep
//! an idle, slow or greedy client from starving the others of the process.
//!
//! The limits of one listener ([`Edge`]):
//!
//! * **Connections at once.** Beyond [`Edge::max_connections`], a new connection first evicts
//!   the oldest one still in its TLS handshake, else the oldest one with no request in flight
//!   (both cost their owner nothing but a reconnection); when every connection is busy with a
//!   request, the new one is closed. So thousands of idle connections cannot keep a client
//!   that completes its handshake out: it takes an idle one's place.
//! * **Time.** A TLS handshake must end within [`Edge::handshake_timeout`]; the first request
//!   must start within [`Edge::header_timeout`] of the handshake (protocol detection included),
//!   and HTTP/1 request headers must arrive within it; a request body within
//!   [`Edge::body_timeout`]; a connection with no request in flight for
//!   [`Edge::idle_timeout`] is closed (HTTP/1 keep-alive and HTTP/2 alike; a response still
//!   streaming, such as an event stream, counts as in flight).
//! * **Size.** A request body larger than [`Edge::max_body_bytes`] is refused (413, or the
//!   interface's equivalent) without being read; HTTP/2 connections carry at most
//!   [`Edge::max_concurrent_streams`] requests at once.
//!
//! Refusals of the edge come in the interface's own error format ([`ErrorFormat`]). With mutual
//! TLS the client's certificates and their typed identity, parsed once per connection, reach
//! handlers as the [`ConnectionIdentity`] request extension.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::authz::{ConnectionIdentity, ErrorFormat, Refusal, Refused};
use crate::tls::PeerCertificates;

/// The limits of one listener.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Connections at once (see the module documentation for what happens beyond).
    pub max_connections: usize,
    /// Time to complete a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to start the first request after connecting, and to send a request's headers.
    pub header_timeout: Duration,
    /// Time to send a request body.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Requests at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Time connections get to finish after shutdown is requested.
    pub shutdown_grace: Duration,
}

impl Edge {
    /// For REST and RESTCONF APIs (operators, controllers, orchestrators): bodies up to 16 MiB.
    pub fn api() -> Edge {
        Edge {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_body_bytes: 16 << 20,
            max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// For key delivery to applications (ETSI 014): small bodies (a `dec_keys` of the most
    /// key IDs a request may name fits well), short timeouts.
    pub fn keys() -> Edge {
        Edge {
            max_body_bytes: 256 << 10,
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..Edge::api()
        }
    }

    /// For the KMS peer service between neighbouring nodes.
    pub fn peer() -> Edge {
        Edge { max_connections: 1024, max_body_bytes: 4 << 20, ..Edge::api() }
    }

    /// For management endpoints (health, readiness, metrics): GETs only.
    pub fn management() -> Edge {
        Edge {
            max_connections: 256,
            max_body_bytes: 4 << 10,
            idle_timeout: Duration::from_secs(60),
            ..Edge::api()
        }
    }
}

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// TLS (see [`crate::tls::server_config`]); without it, plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The limits.
    pub edge: Edge,
    /// The error format of the edge's refusals, by request path.
    pub format_of: fn(&str) -> ErrorFormat,
    /// TLS 1.2 with pre-shared keys instead of `tls`: each connection acts as the identity of
    /// the key it was made with.
    #[cfg(feature = "psk")]
    pub psk: Option<Arc<crate::psk::PskServer>>,
}

fn problem_format(_: &str) -> ErrorFormat {
    ErrorFormat::Problem
}

impl ServeOptions {
    /// A service's API listener: `tls` (or plain HTTP), the API edge, refusals as
    /// `format_of` says.
    pub fn api(tls: Option<Arc<rustls::ServerConfig>>, format_of: fn(&str) -> ErrorFormat) -> Self {
        ServeOptions { tls, edge: Edge::api(), format_of, ..ServeOptions::default() }
    }

    /// A management listener (plain HTTP, the management edge).
    pub fn management() -> Self {
        ServeOptions { edge: Edge::management(), ..ServeOptions::default() }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            edge: Edge::api(),
            format_of: problem_format,
            #[cfg(feature = "psk")]
            psk: None,
        }
    }
}

/// Why a connection is told to end.
const EVICTED: u8 = 1;
const IDLE: u8 = 2;
const STOPPING: u8 = 3;

/// What a connection is doing, for eviction and idleness. Requests only touch atomics; the
/// listener's reaper reads them and signals the connection through `control` when it must end,
/// so nothing but the connection itself is polled while it serves.
struct Activity {
    handshaken: AtomicBool,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds since the server started when the connection was made or the last request
    /// ended.
    last_active_ms: AtomicU64,
    /// Why it must end ([`EVICTED`], [`IDLE`], [`STOPPING`]), once `control` is notified.
    reason: std::sync::atomic::AtomicU8,
    control: Notify,
}

impl Activity {
    fn tell(&self, reason: u8) {
        self.reason.store(reason, Ordering::Relaxed);
        self.control.notify_one();
    }
}

/// The connections of a listener, oldest first.
struct Connections {
    started: Instant,
    max: usize,
    open: Mutex<(u64, BTreeMap<u64, Arc<Activity>>)>,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A place for a new connection: evicts the oldest handshaking, else the oldest idle one
    /// when full; `None` when every connection is busy.
    fn admit(self: &Arc<Self>, handshake: bool) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.1.len() >= self.max {
            let victim = open
                .1
                .iter()
                .find(|(_, a)| !a.handshaken.load(Ordering::Relaxed))
                .or_else(|| open.1.iter().find(|(_, a)| a.in_flight.load(Ordering::Relaxed) == 0))
                .map(|(id, _)| *id)?;
            if let Some(activity) = open.1.remove(&victim) {
                activity.tell(EVICTED);
            }
        }
        let id = open.0;
        open.0 += 1;
        let activity = Arc::new(Activity {
            handshaken: AtomicBool::new(!handshake),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            reason: std::sync::atomic::AtomicU8::new(0),
            control: Notify::new(),
        });
        open.1.insert(id, activity.clone());
        Some(Slot { connections: self.clone(), id, activity })
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }

    /// Tells the connections that have been idle too long to end: no request in flight since
    /// the header timeout (before their first request) or the idle timeout (after).
    fn reap(&self, edge: &Edge) {
        let now = self.now_ms();
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for activity in open.1.values() {
            if !activity.handshaken.load(Ordering::Relaxed)
                || activity.in_flight.load(Ordering::Relaxed) > 0
                || activity.reason.load(Ordering::Relaxed) != 0
            {
                continue;
            }
            let limit = if activity.requests.load(Ordering::Relaxed) == 0 {
                edge.header_timeout
            } else {
                edge.idle_timeout
            };
            let idle = now.saturating_sub(activity.last_active_ms.load(Ordering::Relaxed));
            if idle >= limit.as_millis() as u64 {
                activity.tell(IDLE);
            }
        }
    }

    /// Tells every connection to end (the server stops).
    fn stop_all(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for activity in open.1.values() {
            activity.tell(STOPPING);
        }
    }
}

/// A connection's place; given back when dropped.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(|p| p.into_inner());
        open.1.remove(&self.id);
    }
}

/// Raises this process's limit of open files to what the system allows (once), and returns
/// the limit: each listener's connection cap stays well under it.
fn open_files_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if let Some(max) = limit.maximum
            && limit.current != Some(max)
        {
            limit.current = Some(max);
            let _ = setrlimit(Resource::Nofile, limit);
        }
        let current = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
        usize::try_from(current).unwrap_or(usize::MAX)
    })
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // A listener's connections stay under a quarter of the files the process may open (the
    // other listeners, the stores and outgoing connections need the rest).
    let max = options.edge.max_connections.min((open_files_limit() / 4).max(16));
    let connections = Arc::new(Connections {
        started: Instant::now(),
        max,
        open: Mutex::new((0, BTreeMap::new())),
    });
    // The reaper looks at every connection a few times per shortest limit (at least every
    // second), so a limit is enforced at most that late.
    let tick = (options.edge.header_timeout.min(options.edge.idle_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let reaper = tokio::spawn({
        let (connections, edge) = (connections.clone(), options.edge.clone());
        async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                connections.reap(&edge);
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.edge.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.edge.max_concurrent_streams)
        .max_header_list_size(64 << 10)
        .max_pending_accept_reset_streams(64)
        .keep_alive_interval(Some(options.edge.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let shared = Arc::new(Shared { builder, router, options });
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
                let Some(slot) = connections.admit(shared.options.handshakes()) else {
                    tracing::debug!(%peer, open = connections.len(), "every connection is busy; refused");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tasks.spawn(connection(shared.clone(), slot, stream, peer));
            }
            Some(_) = tasks.join_next() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    reaper.abort();
    connections.stop_all();
    let grace = shared.options.edge.shutdown_grace;
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace + Duration::from_secs(1), drained).await.is_err() {
        tracing::debug!(
            open = tasks.len(),
            "closing connections still open after the grace period"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

struct Shared {
    builder: Builder<TokioExecutor>,
    router: Router,
    options: ServeOptions,
}

impl ServeOptions {
    /// Whether connections start with a TLS handshake.
    fn handshakes(&self) -> bool {
        #[cfg(feature = "psk")]
        if self.psk.is_some() {
            return true;
        }
        self.tls.is_some()
    }
}

/// One connection, from its handshake to its end.
async fn connection(
    shared: Arc<Shared>,
    slot: Slot,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    #[cfg(feature = "psk")]
    if let Some(psk) = &shared.options.psk {
        let Some((tls, identity)) = handshake(&shared, &slot, peer, psk.accept(stream)).await
        else {
            return;
        };
        let identity = ConnectionIdentity::of_key(identity);
        let service = ConnService::with_identity(&shared, &slot, Some(identity));
        drive(&shared, &slot, TokioIo::new(tls), service).await;
        return;
    }
    match &shared.options.tls {
        None => {
            let service = ConnService::new(&shared, &slot, None);
            drive(&shared, &slot, TokioIo::new(stream), service).await;
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let Some(tls) = handshake(&shared, &slot, peer, acceptor.accept(stream)).await else {
                return;
            };
            let certificates = tls.get_ref().1.peer_certificates().map(|c| {
                PeerCertificates(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()))
            });
            let service = ConnService::new(&shared, &slot, certificates);
            drive(&shared, &slot, TokioIo::new(tls), service).await;
        }
    }
}

/// Runs a TLS handshake within the edge's handshake timeout, unless the connection is closed
/// meanwhile (evicted, or the server stops); marks the connection handshaken when it succeeds.
async fn handshake<T, E: std::fmt::Display>(
    shared: &Shared,
    slot: &Slot,
    peer: std::net::SocketAddr,
    accept: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    let activity = &slot.activity;
    let timed = tokio::time::timeout(shared.options.edge.handshake_timeout, accept);
    let done = tokio::select! {
        done = timed => match done {
            Ok(Ok(done)) => done,
            Ok(Err(err)) => {
                tracing::info!(%peer, %err, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, "TLS handshake not completed in time");
                return None;
            }
        },
        () = activity.control.notified() => {
            tracing::debug!(%peer, "connection still in its handshake closed");
            return None;
        }
    };
    activity.handshaken.store(true, Ordering::Relaxed);
    activity.last_active_ms.store(slot.connections.now_ms(), Ordering::Relaxed);
    Some(done)
}

/// Runs the HTTP connection until it ends, is evicted, stays idle too long, or the server
/// stops (the last two close it gracefully, within the shutdown grace).
async fn drive<I>(shared: &Shared, slot: &Slot, io: TokioIo<I>, service: ConnService)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = &slot.activity;
    let hyper_service = hyper::service::service_fn(move |request| service.call(request));
    let connection = shared.builder.serve_connection_with_upgrades(io, hyper_service);
    tokio::pin!(connection);
    tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
            return;
        }
        () = activity.control.notified() => {}
    }
    match activity.reason.load(Ordering::Relaxed) {
        EVICTED => {
            tracing::debug!("idle connection closed for a new one");
            return;
        }
        IDLE => tracing::debug!("idle connection closed"),
        _ => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(shared.options.edge.shutdown_grace, connection).await;
}

/// The per-connection service: request extensions (certificates, identity), activity
/// tracking, and the body limits, around the router. Cloned per request as one reference.
#[derive(Clone)]
struct ConnService(Arc<ConnShared>);

struct ConnShared {
    router: Router,
    connections: Arc<Connections>,
    activity: Arc<Activity>,
    identity: Option<ConnectionIdentity>,
    edge: Edge,
    format_of: fn(&str) -> ErrorFormat,
}

impl ConnService {
    fn new(shared: &Shared, slot: &Slot, certificates: Option<PeerCertificates>) -> ConnService {
        ConnService::with_identity(shared, slot, certificates.and_then(ConnectionIdentity::of))
    }

    fn with_identity(
        shared: &Shared,
        slot: &Slot,
        identity: Option<ConnectionIdentity>,
    ) -> ConnService {
        ConnService(Arc::new(ConnShared {
            router: shared.router.clone(),
            connections: slot.connections.clone(),
            activity: slot.activity.clone(),
            identity,
            edge: shared.options.edge.clone(),
            format_of: shared.options.format_of,
        }))
    }

    fn call(
        &self,
        mut request: http::Request<Incoming>,
    ) -> impl Future<Output = Result<http::Response<Body>, std::convert::Infallible>> + Send + use<>
    {
        use futures_util::FutureExt;
        use hyper::body::Body as _;
        use tower::ServiceExt;
        let this = self.0.clone();
        if let Some(i) = &this.identity {
            request.extensions_mut().insert(i.clone());
        }
        let router = this.router.clone();
        let guard = InFlight::start(this);
        // Most requests (GETs) have no body: straight to the router, nothing to wait for.
        if request.body().is_end_stream() {
            let request = request.map(|_| Body::empty());
            let answer = router
                .oneshot(request)
                .map(move |r| Ok(finish(r.unwrap_or_else(|e| match e {}), guard)));
            return futures_util::future::Either::Left(answer);
        }
        futures_util::future::Either::Right(async move {
            let request = match guard.0.limited_body(request).await {
                Ok(request) => request,
                Err(refused) => return Ok(refused.into_response()),
            };
            let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
            Ok(finish(response, guard))
        })
    }
}

/// The response as sent: a body of known length is sent at once (the request ends here); one
/// that streams (an event stream) keeps the request in flight until the body is dropped.
fn finish(response: http::Response<Body>, guard: InFlight) -> http::Response<Body> {
    if axum::body::HttpBody::size_hint(response.body()).exact().is_some() {
        drop(guard);
        return response;
    }
    response.map(|body| Body::new(TrackedBody { inner: body, _guard: guard }))
}

impl ConnShared {
    /// The request with its body read within the edge's size and time limits, or the refusal.
    async fn limited_body(
        &self,
        request: http::Request<Incoming>,
    ) -> Result<http::Request<Body>, Refused> {
        use hyper::body::Body as _;
        let format = (self.format_of)(request.uri().path());
        let max = self.edge.max_body_bytes;
        let too_big = || {
            Refused::new(
                format,
                Refusal::TooLarge,
                format!("the request body is larger than {max} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_big());
        }
        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            return Ok(http::Request::from_parts(parts, Body::empty()));
        }
        let timeout = self.edge.body_timeout;
        let collected = tokio::time::timeout(timeout, Limited::new(body, max).collect())
            .await
            .map_err(|_| {
                Refused::new(
                    format,
                    Refusal::Timeout,
                    format!("the request body did not arrive within {} s", timeout.as_secs()),
                )
            })?;
        match collected {
            Ok(c) => Ok(http::Request::from_parts(parts, Body::from(c.to_bytes()))),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                Err(too_big())
            }
            Err(e) => Err(Refused::new(
                format,
                Refusal::Timeout,
                format!("the request body could not be read: {e}"),
            )),
        }
    }
}

/// Counts a request in flight from its start until its response is sent (or, for a streamed
/// body, until the body is dropped); a connection's idle time counts from the last end.
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn start(shared: Arc<ConnShared>) -> InFlight {
        shared.activity.requests.fetch_add(1, Ordering::Relaxed);
        shared.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0.activity;
        activity.last_active_ms.store(self.0.connections.now_ms(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted in flight until it is dropped.
struct TrackedBody {
    inner: Body,
    _guard: InFlight,
}

impl axum::body::HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

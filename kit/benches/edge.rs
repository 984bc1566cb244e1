//! What the trust checks cost per request: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-kit --bench edge [-- --seconds N --rounds N]
//! ```
//!
//! One process, two servers of the same router (a 12 KiB JSON answer, about the size of a
//! node's `qkd_node`) over mutual TLS, served in turn on a current-thread runtime pinned to
//! core 0, loaded from core 1 by 16 HTTP/1.1 keep-alive clients presenting an operator's
//! certificate:
//!
//! * **previous**: the serving loop of the commit before the service kit (`qkdn-yang`'s
//!   `serve`, reproduced here: TLS handshake, the client's certificates as a request extension,
//!   hyper's auto connection), no authorization;
//! * **this commit**: `qkdn_kit::server::serve` (the hardened edge: connection slots, activity
//!   tracking, body limits, the identity parsed once per connection) and the authorization gate
//!   in front of the router (caller, classification, policy decision, `Authorized`).
//!
//! Rounds alternate between the two so that the machine's drift hits both alike; the figures
//! are requests/s and the server thread's CPU time per request (medians over the rounds), and
//! their ratio. `--requests N` makes each client send N requests instead of running for a time,
//! for counting instructions, which do not drift:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=edge.cg target/release/deps/edge-* --requests 500 --rounds 1
//! callgrind_annotate --inclusive=yes edge.cg | grep -E 'previous_serve::.*closure|server::connection::.*closure'
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use qkdn_kit::authz::{Denials, Gate};
use qkdn_kit::pki::{Authority, Usage};
use qkdn_kit::tls::PeerCertificates;
use qkdn_kit::{Identity, Interface, Operation, Role, ServeOptions};
use tower::ServiceExt as _;

/// The services' allocator, so that allocations cost what they cost in the services.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: usize = 12 << 10;

fn router() -> Router {
    let body: Bytes = Bytes::from(format!("{{\"x\":\"{}\"}}", "y".repeat(BODY - 8)));
    Router::new().route(
        "/restconf/data/etsi-qkd-sdn-node:qkd_node",
        get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/yang-data+json")], body) }
        }),
    )
}

fn classify(_: &http::Method, _: &str) -> (Interface, Option<Operation>) {
    (Interface::AgentRestconf, Some(Operation::Read))
}

/// The previous commit's serving loop, without graceful shutdown (the bench never stops it).
async fn previous_serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(TokioTimer::new());
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let (builder, router) = (builder.clone(), router.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let certificates = tls.get_ref().1.peer_certificates().map(|c| {
                PeerCertificates(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()))
            });
            let router =
                router.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    if let Some(c) = &certificates {
                        request.extensions_mut().insert(c.clone());
                    }
                    request
                });
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
        });
    }
}

/// CPU time (user + system) of the calling thread, seconds (clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Starts a server thread on core 0; returns its port and a channel of its CPU time readings.
fn server(
    current: bool,
    tls: Arc<rustls::ServerConfig>,
) -> (u16, std::sync::mpsc::Receiver<f64>, std::sync::mpsc::Sender<()>) {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            // CPU readings on request, answered from this thread.
            tokio::spawn(async move {
                loop {
                    while ask_rx.try_recv().is_ok() {
                        cpu_tx.send(thread_cpu()).unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            if current {
                let gate = Gate::new(classify, Arc::new(Denials::default()));
                let options = ServeOptions { tls: Some(tls), ..ServeOptions::default() };
                qkdn_kit::serve(listener, gate.protect(router()), options, std::future::pending())
                    .await
                    .unwrap();
            } else {
                previous_serve(listener, router(), tls).await;
            }
        });
    });
    (port_rx.recv().unwrap(), cpu_rx, ask_tx)
}

/// How long a load lasts.
#[derive(Clone, Copy)]
enum Amount {
    /// For this many seconds.
    Seconds(f64),
    /// This many requests per client (for counting instructions under callgrind).
    Requests(u64),
}

/// 16 clients GETting the node back to back (on core 1): requests done.
fn load(port: u16, tls: Arc<rustls::ClientConfig>, amount: Amount) -> u64 {
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let deadline = match amount {
                Amount::Seconds(s) => Instant::now() + Duration::from_secs_f64(s),
                Amount::Requests(_) => Instant::now() + Duration::from_secs(3600),
            };
            let most = match amount {
                Amount::Seconds(_) => u64::MAX,
                Amount::Requests(n) => n,
            };
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                tasks.push(tokio::spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let stream = connector.connect(name, tcp).await.unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    let mut done = 0u64;
                    while Instant::now() < deadline && done < most {
                        let request =
                            http::Request::get("/restconf/data/etsi-qkd-sdn-node:qkd_node")
                                .header("host", "localhost")
                                .body(Empty::<Bytes>::new())
                                .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert!(body.len() >= BODY - 8);
                        done += 1;
                    }
                    done
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        })
    })
    .join()
    .unwrap()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn pki(dir: &Path) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ca = Authority::generate("bench CA").unwrap();
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    let node = Identity::Node("00000001-0000-0000-0000-000000000000".parse().unwrap());
    let (cert, key) = ca
        .issue_identity(&node, &["localhost"], Usage::Service)
        .unwrap()
        .write(dir, "node")
        .unwrap();
    let operator = Identity::operator("bench", Role::Admin);
    let (ccert, ckey) =
        ca.issue_identity(&operator, &[], Usage::Client).unwrap().write(dir, "operator").unwrap();
    let ca_file = dir.join("ca.crt");
    let server = qkdn_kit::tls::server_config(&cert, &key, Some(&ca_file)).unwrap();
    let client = qkdn_kit::tls::client_config(&ca_file, Some((&ccert, &ckey))).unwrap();
    (server, Arc::new(client))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut rounds) = (3.0f64, 5usize);
    let mut requests = None::<u64>;
    let mut only = None::<String>;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            "--rounds" => rounds = args.next().and_then(|s| s.parse().ok()).expect("--rounds N"),
            "--server" => only = args.next(),
            "--requests" => {
                requests = Some(args.next().and_then(|s| s.parse().ok()).expect("--requests N"))
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = pki(dir.path());
    let servers: Vec<(&str, u16, std::sync::mpsc::Receiver<f64>, std::sync::mpsc::Sender<()>)> =
        [("previous", false), ("this commit", true)]
            .into_iter()
            .filter(|(name, _)| only.as_deref().is_none_or(|o| name.starts_with(o)))
            .map(|(name, current)| {
                let (port, cpu, ask) = server(current, server_tls.clone());
                (name, port, cpu, ask)
            })
            .collect();
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 2];
    for _ in 0..rounds {
        for (i, (_, port, cpu, ask)) in servers.iter().enumerate() {
            ask.send(()).unwrap();
            let before = cpu.recv().unwrap();
            let t0 = Instant::now();
            let amount = requests.map_or(Amount::Seconds(seconds), Amount::Requests);
            let requests = load(*port, client_tls.clone(), amount);
            let wall = t0.elapsed().as_secs_f64();
            ask.send(()).unwrap();
            let used = cpu.recv().unwrap() - before;
            figures[i].0.push(requests as f64 / wall);
            figures[i].1.push(used / requests as f64 * 1e6);
        }
    }
    println!(
        "| server, 16 connections, mutual TLS, 12 KiB answers | requests/s (median of {rounds}) | server CPU per request |"
    );
    println!("|---|---|---|");
    let mut medians = Vec::new();
    for ((name, ..), (rates, cpus)) in servers.iter().zip(figures.iter_mut()) {
        let (rate, cpu) = (median(rates), median(cpus));
        println!("| {name} | {rate:.0} | {cpu:.2} µs |");
        medians.push((rate, cpu));
    }
    if let [previous, current] = medians.as_slice() {
        println!(
            "\nthis commit / previous: requests/s {:.3}, CPU per request {:.3}",
            current.0 / previous.0,
            current.1 / previous.1
        );
    }
}

//! The hardened edge over real sockets: idle and half-open connections beyond the cap do not
//! keep a client out; busy ones do, and the newcomer is closed; slow handshakes, headers and
//! bodies, and idle connections are cut; oversized bodies are refused in the interface's
//! format without being read.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use qkdn_kit::ErrorFormat;
use qkdn_kit::identity::{Identity, Role};
use qkdn_kit::pki::{Authority, Usage};
use qkdn_kit::server::{Edge, ServeOptions, serve};
use qkdn_kit::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow"
            }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
}

async fn start(options: ServeOptions) -> (u16, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, router(), options, async {
        let _ = stopped.await;
    }));
    (port, stop)
}

/// One request on a fresh connection; the raw answer (empty when the server closed it).
async fn raw(port: u16, request: &[u8], wait: Duration) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    if stream.write_all(request).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Whether the server closed `stream` (reads EOF or an error within `wait`).
async fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(wait, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn thousands_of_half_open_tls_connections_do_not_keep_a_client_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate("edge CA").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let (cert, key) = ca
        .issue_identity(&Identity::operator("srv", Role::Admin), &["localhost"], Usage::Service)
        .unwrap()
        .write(dir.path(), "server")
        .unwrap();
    let (ccert, ckey) = ca
        .issue_identity(&Identity::operator("alice", Role::Admin), &[], Usage::Client)
        .unwrap()
        .write(dir.path(), "client")
        .unwrap();
    let config = tls::server_config(&cert, &key, Some(&dir.path().join("ca.crt"))).unwrap();
    let edge = Edge { max_connections: 128, ..Edge::api() };
    let (port, _stop) =
        start(ServeOptions { tls: Some(config), edge, ..ServeOptions::default() }).await;
    // 2,000 connections that never start their handshake.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let client_config =
        tls::client_config(&dir.path().join("ca.crt"), Some((&ccert, &ckey))).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(client_config)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..20 {
        let answer = client.get(format!("https://localhost:{port}/")).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
    }
    // The oldest idle connections were closed to make room.
    assert!(closed(&mut idle[0], Duration::from_secs(2)).await);
}

#[tokio::test]
async fn idle_connections_make_room_and_busy_ones_do_not() {
    let edge = Edge { max_connections: 4, ..Edge::api() };
    let (port, _stop) = start(ServeOptions { edge, ..ServeOptions::default() }).await;
    // Four keep-alive connections, each idle after one request.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        idle.push(s);
    }
    assert!(raw(port, GET, Duration::from_secs(2)).await.contains("200 OK"));
    assert!(closed(&mut idle[0], Duration::from_secs(1)).await, "the oldest idle one made room");

    // Four connections busy with slow requests: a fifth is closed unanswered.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(raw(port, GET, Duration::from_secs(1)).await, "");
    // Once they are answered, newcomers are served again.
    for s in &mut busy {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("slow"));
    }
    assert!(raw(port, GET, Duration::from_secs(2)).await.contains("200 OK"));
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let edge = Edge {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..Edge::api()
    };
    let (port, _stop) = start(ServeOptions { edge, ..ServeOptions::default() }).await;
    // Nothing sent after connecting: closed after the header timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed(&mut silent, Duration::from_secs(3)).await);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Headers never finished.
    let answer = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(3)).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // A body that never comes: 408 with a problem body.
    let answer = raw(
        port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // Idle after a request: an HTTP/1 connection waits for its next request's headers at most
    // the header timeout.
    let mut keep = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    keep.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let _ = keep.read(&mut buf).await.unwrap();
    let started = Instant::now();
    assert!(closed(&mut keep, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    use http_body_util::{BodyExt, Empty};
    let edge = Edge { idle_timeout: Duration::from_millis(500), ..Edge::api() };
    let (port, _stop) = start(ServeOptions { edge, ..ServeOptions::default() }).await;
    let connect = || async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        (sender, tokio::spawn(connection))
    };
    let request = |path: &str| {
        http::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // Idle after one request: the server ends the connection.
    let (mut sender, connection) = connect().await;
    let answer = sender.send_request(request("/")).await.unwrap();
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "ok");
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    // A request taking longer than the idle timeout is answered.
    let (mut sender, _connection) = connect().await;
    let answer = sender.send_request(request("/slow")).await.unwrap();
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "slow");
}

#[tokio::test]
async fn oversized_bodies_are_refused_in_the_interface_format() {
    let edge = Edge { max_body_bytes: 1024, ..Edge::api() };
    let options =
        ServeOptions { edge, format_of: |_| ErrorFormat::Etsi014, ..ServeOptions::default() };
    let (port, _stop) = start(options).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/echo");
    let ok = client.post(&url).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "1024");
    // Announced by Content-Length: refused before it is read.
    let big = client.post(&url).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(big.status(), 400);
    let body: serde_json::Value = big.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("larger than 1024 bytes"), "{body}");
    // Streamed without a length: cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let streamed = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 400);
}

//! TLS: RESTCONF over mutual TLS with certificates from the project's PKI; clients without a
//! certificate, or with one from another CA, fail the handshake; the hybrid post-quantum group
//! is negotiated; handlers see the client's certificate.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use qkdn_yang::pki::{Authority, Usage};
use qkdn_yang::restconf::{RestconfOptions, RestconfServer, ServeOptions, serve};
use qkdn_yang::tls::{self, PeerCertificates};
use qkdn_yang::{Datastore, YangContext};
use tokio::sync::oneshot;

use crate::harness::example_node;

struct Pki {
    dir: tempfile::TempDir,
    ca: Authority,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("qkdn test CA").unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        Pki { dir, ca }
    }

    fn issue(&self, name: &str, usage: Usage) -> (std::path::PathBuf, std::path::PathBuf) {
        let hosts: &[&str] =
            if usage == Usage::Service { &["127.0.0.1", "localhost"] } else { &[] };
        self.ca.issue(name, hosts, None, usage).unwrap().write(self.dir.path(), name).unwrap()
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }
}

/// Serves `router` over mutual TLS on a free loopback port; returns the port and a stopper.
async fn serve_tls(pki: &Pki, router: Router) -> (u16, oneshot::Sender<()>) {
    let (cert, key) = pki.issue("server", Usage::Service);
    let config = tls::server_config(&cert, &key, Some(&pki.ca())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions { tls: Some(config), ..ServeOptions::default() };
    tokio::spawn(serve(listener, router, options, async {
        let _ = stopped.await;
    }));
    (port, stop)
}

fn client(pki: &Pki, identity: Option<(&std::path::Path, &std::path::Path)>) -> reqwest::Client {
    let config = tls::client_config(&pki.ca(), identity).unwrap();
    reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
}

#[tokio::test]
async fn restconf_over_mutual_tls() {
    let pki = Pki::new();
    let ds = Datastore::builder(YangContext::qkdn().unwrap()).data(example_node()).build().unwrap();
    let server =
        RestconfServer::builder(ds).options(RestconfOptions::default()).build().await.unwrap();
    let (port, _stop) = serve_tls(&pki, server.router()).await;
    let url = format!("https://localhost:{port}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkdn_id");

    let (cert, key) = pki.issue("controller", Usage::Client);
    let ok = client(&pki, Some((&cert, &key))).get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("qkdn_id"));

    // No client certificate: the handshake fails, nothing is served.
    let err = client(&pki, None).get(&url).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // A certificate from another CA: refused the same way.
    let other = Pki::new();
    let (cert, key) = other.issue("intruder", Usage::Client);
    let config = tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap();
    let intruder = reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap();
    assert!(intruder.get(&url).send().await.is_err());

    // A client that does not trust the server's CA refuses the server.
    let (cert, key) = pki.issue("controller-2", Usage::Client);
    let wrong_roots = tls::client_config(&other.ca(), Some((&cert, &key))).unwrap();
    let doubting =
        reqwest::Client::builder().tls_backend_preconfigured(wrong_roots).build().unwrap();
    assert!(doubting.get(&url).send().await.is_err());
}

#[tokio::test]
async fn the_hybrid_post_quantum_group_is_negotiated() {
    let pki = Pki::new();
    let (port, _stop) = serve_tls(&pki, Router::new().route("/", get(|| async { "ok" }))).await;
    let (cert, key) = pki.issue("client", Usage::Client);
    let config = tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (_, connection) = stream.get_ref();
    assert_eq!(connection.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let group = connection.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768, "negotiated {group:?}");
}

#[tokio::test]
async fn handlers_see_the_client_certificate() {
    let pki = Pki::new();
    let router = Router::new().route(
        "/who",
        get(|certs: Option<axum::Extension<PeerCertificates>>| async move {
            certs.map(|c| tls::fingerprint(&c.0.0[0])).unwrap_or_default()
        }),
    );
    let (port, _stop) = serve_tls(&pki, router).await;
    let (cert, key) = pki.issue("sae-a", Usage::Client);
    let seen = client(&pki, Some((&cert, &key)))
        .get(format!("https://127.0.0.1:{port}/who"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(seen, tls::certificate_sha256(&cert).unwrap());
    assert_eq!(seen.len(), 64);
}

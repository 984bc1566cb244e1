//! TLS over real connections: mutual TLS with certificates from the kit's PKI (clients without
//! a certificate, or with one from another CA, fail the handshake); the hybrid post-quantum
//! group negotiated, and required where an interface asks for it; TLS 1.2 clients refused where
//! 1.3 is the minimum; a client that expects a server identity refuses any other; handlers see
//! the client's certificate and its typed identity.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use qkdn_kit::authz::ConnectionIdentity;
use qkdn_kit::identity::{Identity, Role};
use qkdn_kit::pki::{Authority, Usage};
use qkdn_kit::server::{ServeOptions, serve};
use qkdn_kit::tls::{self, MinVersion, Protocols};
use tokio::sync::oneshot;
use uuid::Uuid;

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

    fn issue(&self, name: &str, identity: &Identity, usage: Usage) -> (PathBuf, PathBuf) {
        let hosts: &[&str] =
            if usage == Usage::Service { &["127.0.0.1", "localhost"] } else { &[] };
        self.ca
            .issue_identity(identity, hosts, usage)
            .unwrap()
            .write(self.dir.path(), name)
            .unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

fn node(n: u128) -> Identity {
    Identity::Node(Uuid::from_u128(n))
}

/// Serves `router` over mutual TLS with `protocols` on a free loopback port.
async fn serve_tls(
    pki: &Pki,
    server: &Identity,
    protocols: Protocols,
    router: Router,
) -> (u16, oneshot::Sender<()>) {
    let (cert, key) = pki.issue("server", server, Usage::Service);
    let config = tls::server_config_with(&cert, &key, Some(&pki.ca()), protocols).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions { tls: Some(config), ..ServeOptions::default() };
    tokio::spawn(serve(listener, router, options, async {
        let _ = stopped.await;
    }));
    (port, stop)
}

fn client(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_ca() {
    let pki = Pki::new();
    let (port, _stop) = serve_tls(&pki, &node(1), Protocols::default(), hello()).await;
    let url = format!("https://localhost:{port}/");
    let (cert, key) = pki.issue("admin", &Identity::operator("alice", Role::Admin), Usage::Client);
    let ok = client(tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap());
    assert_eq!(ok.get(&url).send().await.unwrap().text().await.unwrap(), "ok");

    // No client certificate: the handshake fails, nothing is served.
    let anonymous = client(tls::client_config(&pki.ca(), None).unwrap());
    assert!(anonymous.get(&url).send().await.is_err());
    // A certificate from another CA: refused the same way.
    let other = Pki::new();
    let (cert, key) = other.issue("intruder", &node(9), Usage::Client);
    let intruder = client(tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap());
    assert!(intruder.get(&url).send().await.is_err());
    // A client that does not trust the server's CA refuses the server.
    let (cert, key) = pki.issue("admin-2", &Identity::operator("bob", Role::Admin), Usage::Client);
    let doubting = client(tls::client_config(&other.ca(), Some((&cert, &key))).unwrap());
    assert!(doubting.get(&url).send().await.is_err());
}

/// The version and group a TLS client with `config` negotiates with the server on `port`.
async fn negotiate(
    config: rustls::ClientConfig,
    port: u16,
) -> Result<(rustls::ProtocolVersion, rustls::NamedGroup), std::io::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await?;
    // The server may still refuse the client's certificate after the client is done: read.
    let (_, connection) = stream.get_ref();
    Ok((
        connection.protocol_version().unwrap(),
        connection.negotiated_key_exchange_group().unwrap().name(),
    ))
}

/// A client configuration offering only the classical groups (or only TLS 1.2).
fn classical_client(pki: &Pki, tls12_only: bool) -> rustls::ClientConfig {
    let (cert, key) = pki.issue("old-client", &Identity::Sae("legacy".into()), Usage::Client);
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups.retain(|g| g.name() != rustls::NamedGroup::X25519MLKEM768);
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12_only { &[&rustls::version::TLS12] } else { rustls::DEFAULT_VERSIONS };
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certificates(&pki.ca()).unwrap() {
        roots.add(c).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            tls::load_certificates(&cert).unwrap(),
            tls::load_private_key(&key).unwrap(),
        )
        .unwrap()
}

#[tokio::test]
async fn the_hybrid_group_is_negotiated_and_required_where_asked() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("client", &node(2), Usage::Client);
    let qkdn_client = || tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap();

    // Default: the hybrid group between qkdn ends; classical clients and TLS 1.2 still served.
    let (port, _a) = serve_tls(&pki, &node(1), Protocols::default(), hello()).await;
    let (version, group) = negotiate(qkdn_client(), port).await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768, "negotiated {group:?}");
    assert!(negotiate(classical_client(&pki, false), port).await.is_ok());
    let (version, _) = negotiate(classical_client(&pki, true), port).await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);

    // TLS 1.3 minimum: TLS 1.2 clients refused, classical TLS 1.3 ones served.
    let tls13 = Protocols { min_version: MinVersion::Tls13, require_post_quantum: false };
    let (port, _b) = serve_tls(&pki, &node(1), tls13, hello()).await;
    assert!(negotiate(classical_client(&pki, true), port).await.is_err());
    assert!(negotiate(classical_client(&pki, false), port).await.is_ok());

    // Hybrid group required (the peer service): only clients offering it.
    let (port, _c) = serve_tls(&pki, &node(1), Protocols::QKDN_PEERS, hello()).await;
    assert!(negotiate(classical_client(&pki, false), port).await.is_err());
    assert!(negotiate(classical_client(&pki, true), port).await.is_err());
    let (_, group) = negotiate(qkdn_client(), port).await.unwrap();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
}

#[tokio::test]
async fn a_client_expecting_a_node_refuses_any_other_server() {
    let pki = Pki::new();
    let (port, _stop) = serve_tls(&pki, &node(1), Protocols::QKDN_PEERS, hello()).await;
    let (cert, key) = pki.issue("caller", &node(2), Usage::Service);
    let files = tls::ClientTls { cert, key, ca: pki.ca() };
    let expecting = |n| files.config_expecting(Protocols::QKDN_PEERS, vec![node(n)]).unwrap();
    let url = format!("https://localhost:{port}/");
    assert_eq!(client(expecting(1)).get(&url).send().await.unwrap().status(), 200);
    // Same CA, right host name, but another node: refused by the client.
    let err = client(expecting(3)).get(&url).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("not urn:qkdn:node"), "{err:?}");
}

#[tokio::test]
async fn handlers_see_the_client_certificate_and_its_identity() {
    let pki = Pki::new();
    let router = Router::new().route(
        "/who",
        get(|connection: Option<axum::Extension<ConnectionIdentity>>| async move {
            let Some(axum::Extension(connection)) = connection else { return String::new() };
            let fingerprint = tls::fingerprint(&connection.certificates.0[0]);
            let identity = connection.identity.as_ref().map(|i| i.uri()).unwrap_or_default();
            format!("{fingerprint} {identity}")
        }),
    );
    let (port, _stop) = serve_tls(&pki, &node(1), Protocols::default(), router).await;
    let (cert, key) = pki.issue("sae-a", &Identity::Sae("sae-a".into()), Usage::Client);
    let seen = client(tls::client_config(&pki.ca(), Some((&cert, &key))).unwrap())
        .get(format!("https://127.0.0.1:{port}/who"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(seen, format!("{} urn:qkdn:sae:sae-a", tls::certificate_sha256(&cert).unwrap()));
}

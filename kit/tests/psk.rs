//! TLS with pre-shared keys over real connections (feature `psk`): a client holding a listed
//! key is served as the identity the key is bound to, whatever its requests say; a wrong key, an
//! unlisted identity, or a client offering TLS 1.3 only gets no session; and keys that cannot
//! make a server are refused with their reason.
#![cfg(feature = "psk")]

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use qkdn_kit::Identity;
use qkdn_kit::authz::ConnectionIdentity;
use qkdn_kit::psk::{PskClient, PskError, PskServer};
use qkdn_kit::server::{ServeOptions, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

const KEY: [u8; 32] = [7; 32];

fn client(identity: &str, key: &[u8]) -> PskClient {
    PskClient {
        psk_identity: identity.to_owned(),
        key: Zeroizing::new(key.to_vec()),
        identity: Identity::Sae(format!("sae-of-{identity}")),
    }
}

/// Serves "who is calling" behind a PSK server of `clients`; its port.
async fn serve_who(clients: Vec<PskClient>) -> u16 {
    let psk = Arc::new(PskServer::new(clients).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().route(
        "/who",
        get(|Extension(c): Extension<ConnectionIdentity>| async move {
            c.identity.map(|i| i.to_string()).unwrap_or_default()
        }),
    );
    let options = ServeOptions { psk: Some(psk), ..ServeOptions::default() };
    tokio::spawn(serve(listener, router, options, std::future::pending()));
    port
}

/// One request over TLS-PSK as `identity` with `key` (at most `max` as the TLS version): the
/// answer, or the handshake's error.
async fn call(port: u16, identity: &str, key: &[u8], max: SslVersion) -> Result<String, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_max_proto_version(Some(max)).unwrap();
    builder.set_min_proto_version(Some(max)).unwrap();
    builder.set_cipher_list("PSK").unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let (identity, key) = (identity.as_bytes().to_vec(), key.to_vec());
    builder.set_psk_client_callback(move |_, _, identity_out, key_out| {
        identity_out[..identity.len()].copy_from_slice(&identity);
        identity_out[identity.len()] = 0;
        key_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let ssl = builder.build().configure().unwrap().into_ssl("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut tls).connect().await.map_err(|e| e.to_string())?;
    let request =
        "GET /who?as=sae-of-someone-else HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    Ok(answer)
}

#[tokio::test]
async fn a_listed_key_is_served_as_its_identity_and_nothing_else_gets_a_session() {
    let port = serve_who(vec![client("enc-1", &KEY), client("enc-2", &[9; 16])]).await;
    let answer = call(port, "enc-1", &KEY, SslVersion::TLS1_2).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("urn:qkdn:sae:sae-of-enc-1"), "{answer}");
    let answer = call(port, "enc-2", &[9; 16], SslVersion::TLS1_2).await.unwrap();
    assert!(answer.ends_with("urn:qkdn:sae:sae-of-enc-2"), "{answer}");
    // Another identity's key, an unlisted identity, TLS 1.3 only: no session.
    assert!(call(port, "enc-2", &KEY, SslVersion::TLS1_2).await.is_err());
    assert!(call(port, "enc-3", &KEY, SslVersion::TLS1_2).await.is_err());
    assert!(call(port, "enc-1", &KEY, SslVersion::TLS1_3).await.is_err());
    // The server still serves after the failed handshakes.
    assert!(
        call(port, "enc-1", &KEY, SslVersion::TLS1_2).await.unwrap().starts_with("HTTP/1.1 200")
    );
}

#[test]
fn keys_that_cannot_make_a_server_are_refused() {
    let short = PskServer::new(vec![client("enc-1", &[1; 15])]).unwrap_err();
    assert!(matches!(short, PskError::KeyLength { bytes: 15, .. }), "{short}");
    let twice = PskServer::new(vec![client("enc-1", &KEY), client("enc-1", &[2; 32])]);
    assert!(matches!(twice.unwrap_err(), PskError::Duplicate(name) if name == "enc-1"));
}

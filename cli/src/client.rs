//! The HTTPS client of the `qkdn` commands: mutual TLS with a CA and a client certificate
//! (from `lab.json` or flags), JSON in and out, and errors that keep apart a service that
//! answered "no" (its problem details or ETSI message, exit status 1) from one that could not
//! be reached or asked (exit status 2).

use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;

/// Why a request did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The service answered with an error status.
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said (JSON when it sent JSON).
        body: Json,
        /// The URL.
        url: String,
    },
    /// It could not be asked: connection, TLS, files.
    Trouble(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused { status, body, url } => {
                let said = body["detail"]
                    .as_str()
                    .or(body["message"].as_str())
                    .or(body["title"].as_str())
                    .map(str::to_owned)
                    .or_else(|| {
                        body["ietf-restconf:errors"]["error"][0]["error-message"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| body.to_string());
                write!(f, "{url}: {status}: {said}")
            }
            Failure::Trouble(m) => f.write_str(m),
        }
    }
}

/// A client presenting one identity.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// For endless responses (event streams): no overall timeout, only between reads (the
    /// servers send a keep-alive every 15 s).
    streaming: reqwest::Client,
}

impl Client {
    /// Trusting `ca`, presenting `cert`/`key`.
    pub(crate) fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Client, String> {
        let config = qkdn_kit::tls::client_config(ca, identity)
            .map_err(|e| format!("TLS setup ({}): {e}", ca.display()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config.clone())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        let streaming = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(45))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client { http, streaming })
    }

    /// Opens the event stream at `url` (Server-Sent Events); the response's body is read as
    /// it arrives.
    pub(crate) async fn stream(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let response = self
            .streaming
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| Failure::Trouble(format!("{url}: {}", describe(&e))))?;
        let status = response.status().as_u16();
        if status >= 400 {
            let body = json_body(response.text().await.unwrap_or_default());
            return Err(Failure::Refused { status, body, url: url.to_owned() });
        }
        Ok(response)
    }

    /// GET `url` as JSON.
    pub(crate) async fn get(&self, url: &str) -> Result<Json, Failure> {
        self.send(reqwest::Method::GET, url, None).await
    }

    /// A request with an optional JSON body; the answer's JSON (null when empty).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Json>,
    ) -> Result<Json, Failure> {
        let mut request = self.http.request(method, url);
        if let Some(b) = body {
            request = request.header("content-type", "application/json").body(b.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Trouble(format!("{url}: {}", describe(&e))))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| Failure::Trouble(format!("{url}: {e}")))?;
        let body = json_body(text);
        if status >= 400 {
            return Err(Failure::Refused { status, body, url: url.to_owned() });
        }
        Ok(body)
    }
}

/// A response body as JSON: null when empty, a string when it is not JSON.
fn json_body(text: String) -> Json {
    if text.trim().is_empty() {
        Json::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Json::String(text))
    }
}

/// A reqwest error with its causes (connection refused, certificate problems).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

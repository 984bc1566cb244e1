//! A RESTCONF client for the controller and the orchestrator: typed errors (the server's
//! `ietf-restconf:errors` entries), JSON bodies, and event-stream subscriptions that reconnect
//! with exponential backoff and tell the consumer when to resynchronise.
//!
//! The client takes a [`reqwest::Client`], so the caller decides the TLS setup (client
//! certificate, trust roots); [`RestconfClient::new`] uses a plain one.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::sse::SseParser;

/// One entry of an `ietf-restconf:errors` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestconfErrorEntry {
    /// `error-type`.
    pub error_type: String,
    /// `error-tag`.
    pub error_tag: String,
    /// `error-app-tag`.
    pub error_app_tag: Option<String>,
    /// `error-path`.
    pub error_path: Option<String>,
    /// `error-message`.
    pub error_message: Option<String>,
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{method} {url}: HTTP {status}: {}", summary(.errors))]
    Restconf {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error entries (empty if the body had none).
        errors: Vec<RestconfErrorEntry>,
    },
    /// The server could not be reached or the exchange broke off.
    #[error("{method} {url}: {message}")]
    Transport {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server's answer was not what RESTCONF promises.
    #[error("{url}: unexpected response: {message}")]
    Protocol {
        /// Request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

fn summary(errors: &[RestconfErrorEntry]) -> String {
    match errors.first() {
        None => "no error details".to_owned(),
        Some(e) => {
            let mut s = e.error_tag.clone();
            if let Some(m) = &e.error_message {
                s.push_str(": ");
                s.push_str(m);
            }
            if let Some(p) = &e.error_path {
                s.push_str(&format!(" (at {p})"));
            }
            s
        }
    }
}

impl ClientError {
    /// The HTTP status, for server errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Restconf { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first error entry, for server errors.
    pub fn first_error(&self) -> Option<&RestconfErrorEntry> {
        match self {
            ClientError::Restconf { errors, .. } => errors.first(),
            _ => None,
        }
    }
}

/// Parses an `ietf-restconf:errors` document.
pub fn parse_errors(body: &Json) -> Vec<RestconfErrorEntry> {
    let list = body
        .get("ietf-restconf:errors")
        .or_else(|| body.get("errors"))
        .and_then(|e| e.get("error"))
        .and_then(Json::as_array);
    let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
    list.map(|entries| {
        entries
            .iter()
            .map(|e| RestconfErrorEntry {
                error_type: text(e, "error-type").unwrap_or_default(),
                error_tag: text(e, "error-tag").unwrap_or_default(),
                error_app_tag: text(e, "error-app-tag"),
                error_path: text(e, "error-path"),
                error_message: text(e, "error-message"),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The result of a successful write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The server created the resource (201).
    pub created: bool,
    /// `ETag` of the resource after the write.
    pub etag: Option<String>,
    /// `Location` of a created resource.
    pub location: Option<String>,
}

/// Reconnection timing of subscriptions.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First wait after a failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(30) }
    }
}

/// What a subscription reports.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// (Re)connected: notifications may have been missed, resynchronise now.
    Connected,
    /// A notification: the content of `ietf-restconf:notification` (with `eventTime`).
    Notification(Json),
    /// The connection broke; the subscription retries after a backoff.
    Disconnected(String),
}

/// A live subscription to an event stream. Dropping it closes the connection.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<StreamEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next event (`None` once the subscription has ended).
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client of one RESTCONF server.
#[derive(Clone, Debug)]
pub struct RestconfClient {
    http: reqwest::Client,
    base: String,
}

const YANG_JSON: &str = "application/yang-data+json";

impl RestconfClient {
    /// A client of the server at `base_url` (`http://host:port`), without TLS settings.
    pub fn new(base_url: &str) -> RestconfClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        RestconfClient::with_client(http, base_url)
    }

    /// A client using `http` (for example configured with TLS client certificates).
    pub fn with_client(http: reqwest::Client, base_url: &str) -> RestconfClient {
        RestconfClient { http, base: base_url.trim_end_matches('/').to_owned() }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn data_url(&self, path: &str) -> String {
        format!("{}/restconf/data{}", self.base, path)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Json>,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method.clone(), url).header(header::ACCEPT, YANG_JSON);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.header(header::CONTENT_TYPE, YANG_JSON).body(body.to_string());
        }
        let response = request.send().await.map_err(|e| ClientError::Transport {
            method: method.to_string(),
            url: url.to_owned(),
            message: error_chain(&e),
        })?;
        if response.status().is_client_error() || response.status().is_server_error() {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let errors = serde_json::from_str(&text).map(|j| parse_errors(&j)).unwrap_or_default();
            return Err(ClientError::Restconf {
                method: method.to_string(),
                url: url.to_owned(),
                status,
                errors,
            });
        }
        Ok(response)
    }

    async fn json_of(url: &str, response: reqwest::Response) -> Result<Json, ClientError> {
        let text = response.text().await.map_err(|e| ClientError::Protocol {
            url: url.to_owned(),
            message: format!("cannot read the body: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
            url: url.to_owned(),
            message: format!("the body is not JSON: {e}"),
        })
    }

    /// Finds the RESTCONF root through `/.well-known/host-meta` (RFC 8040 §3.1).
    pub async fn discover_root(&self) -> Result<String, ClientError> {
        let url = format!("{}/.well-known/host-meta", self.base);
        let response = self.send(Method::GET, &url, None, &[]).await?;
        let text = response.text().await.unwrap_or_default();
        let href = text
            .split("rel='restconf'")
            .nth(1)
            .or_else(|| text.split("rel=\"restconf\"").nth(1))
            .and_then(|rest| rest.split("href=").nth(1))
            .and_then(|h| h.get(1..))
            .and_then(|h| h.split(['\'', '"']).next())
            .ok_or_else(|| ClientError::Protocol {
                url: url.clone(),
                message: "no restconf link in host-meta".into(),
            })?;
        Ok(href.to_owned())
    }

    /// GETs the data resource at `path` (below `/restconf/data`, percent-encoded) with optional
    /// query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Json, ClientError> {
        Ok(self.get_with_etag(path, query).await?.0)
    }

    /// Like [`RestconfClient::get`], also returning the `ETag`.
    pub async fn get_with_etag(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(Json, Option<String>), ClientError> {
        let mut url = self.data_url(path);
        if !query.is_empty() {
            let parts: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        percent_encoding::utf8_percent_encode(
                            v,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                })
                .collect();
            url = format!("{url}?{}", parts.join("&"));
        }
        let response = self.send(Method::GET, &url, None, &[]).await?;
        let etag =
            response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((Self::json_of(&url, response).await?, etag))
    }

    async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        headers: &[(&str, &str)],
    ) -> Result<WriteOutcome, ClientError> {
        let url = self.data_url(path);
        let response = self.send(method, &url, body, headers).await?;
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(WriteOutcome {
            created: response.status() == StatusCode::CREATED,
            etag: header_text(header::ETAG),
            location: header_text(header::LOCATION),
        })
    }

    /// PUT: create or replace the resource at `path`.
    pub async fn put(&self, path: &str, body: &Json) -> Result<WriteOutcome, ClientError> {
        self.write(Method::PUT, path, Some(body), &[]).await
    }

    /// PUT only if the resource still has entity-tag `etag`.
    pub async fn put_if_match(
        &self,
        path: &str,
        body: &Json,
        etag: &str,
    ) -> Result<WriteOutcome, ClientError> {
        self.write(Method::PUT, path, Some(body), &[("if-match", etag)]).await
    }

    /// POST: create a child of the resource at `path`.
    pub async fn post(&self, path: &str, body: &Json) -> Result<WriteOutcome, ClientError> {
        self.write(Method::POST, path, Some(body), &[]).await
    }

    /// PATCH (plain merge) the resource at `path`.
    pub async fn patch(&self, path: &str, body: &Json) -> Result<WriteOutcome, ClientError> {
        self.write(Method::PATCH, path, Some(body), &[]).await
    }

    /// DELETE the resource at `path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.write(Method::DELETE, path, None, &[]).await.map(|_| ())
    }

    /// Invokes the RPC `module:name`; returns the content of its output, if any.
    pub async fn invoke(
        &self,
        operation: &str,
        input: Option<&Json>,
    ) -> Result<Option<Json>, ClientError> {
        let url = format!("{}/restconf/operations/{operation}", self.base);
        let module = operation.split(':').next().unwrap_or_default();
        let body = input.map(|i| serde_json::json!({ format!("{module}:input"): i }));
        let response = self.send(Method::POST, &url, body.as_ref(), &[]).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let doc = Self::json_of(&url, response).await?;
        Ok(doc.get(format!("{module}:output")).cloned())
    }

    /// Subscribes to the event stream `name` (`/restconf/streams/{name}`), reconnecting with
    /// `backoff` whenever the connection breaks.
    pub fn subscribe(&self, name: &str, backoff: Backoff) -> Subscription {
        let url = format!("{}/restconf/streams/{name}", self.base);
        self.subscribe_url(&url, backoff)
    }

    /// Subscribes to the stream at `url` (a `location` from `ietf-restconf-monitoring`).
    pub fn subscribe_url(&self, url: &str, backoff: Backoff) -> Subscription {
        let (sender, events) = mpsc::channel(256);
        let http = self.http.clone();
        let url = url.to_owned();
        let task = tokio::spawn(async move {
            let mut wait = backoff.initial;
            loop {
                let reason =
                    match http.get(&url).header(header::ACCEPT, "text/event-stream").send().await {
                        Ok(response) if response.status().is_success() => {
                            wait = backoff.initial;
                            if sender.send(StreamEvent::Connected).await.is_err() {
                                return;
                            }
                            let mut parser = SseParser::default();
                            let mut body = response.bytes_stream();
                            loop {
                                match body.next().await {
                                    Some(Ok(chunk)) => {
                                        for event in parser.push(&chunk) {
                                            let item =
                                                match serde_json::from_str::<Json>(&event.data) {
                                                    Ok(doc) => StreamEvent::Notification(
                                                        doc.get("ietf-restconf:notification")
                                                            .cloned()
                                                            .unwrap_or(doc),
                                                    ),
                                                    Err(e) => StreamEvent::Disconnected(format!(
                                                        "undecodable event: {e}"
                                                    )),
                                                };
                                            if sender.send(item).await.is_err() {
                                                return;
                                            }
                                        }
                                    }
                                    Some(Err(e)) => break error_chain(&e),
                                    None => break "the server closed the stream".to_owned(),
                                }
                            }
                        }
                        Ok(response) => format!("HTTP {}", response.status()),
                        Err(e) => error_chain(&e),
                    };
                if sender.send(StreamEvent::Disconnected(reason)).await.is_err() {
                    return;
                }
                tokio::time::sleep(jittered(wait)).await;
                wait = (wait * 2).min(backoff.max);
            }
        });
        Subscription { events, task }
    }
}

/// `wait` scaled by a factor between 0.5 and 1.0, so clients that lost a server together do not
/// come back together.
pub fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    wait.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

/// An error and its sources, `: `-separated (what reqwest and hyper errors need to say why).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

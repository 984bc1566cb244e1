//! The RESTCONF server (RFC 8040), generic over a [`Datastore`]: whatever modules its context
//! holds are served.
//!
//! [`RestconfServer::builder`] sets it up: options, event streams, operation handlers. `build`
//! writes the server's self-description (`ietf-yang-library`, `ietf-restconf-monitoring`) into
//! the datastore's state and returns a server whose [`RestconfServer::router`] is an axum
//! router, to be served with `qkdn_kit::serve` (or any hyper/axum server, with TLS in
//! front where needed).

mod body;
mod data;
mod discovery;
mod errors;
mod fields;
mod library;
mod operations;
mod precondition;
mod query;
mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

pub use errors::errors_body as restconf_errors_body;
pub use operations::{OperationFuture, OperationHandler};
pub use streams::{EventStreams, NotificationPublisher};

use crate::datastore::Datastore;
use crate::error::DataError;
use crate::path::DataPath;
use errors::{ErrorResponse, YANG_JSON};

/// Server settings.
#[derive(Clone, Debug)]
pub struct RestconfOptions {
    /// Largest accepted request body, in bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body (default 30 s).
    pub body_timeout: Duration,
    /// Time allowed to produce a response head (default 60 s).
    pub request_timeout: Duration,
    /// Compatibility switch: write the outermost member of responses without its module prefix
    /// (`{"qkd_node": ...}`), for clients that cannot read RFC 7951 names. Off by default.
    pub unprefixed_top_level: bool,
    /// The server's public base URL (`https://host:port`), used in stream locations.
    pub base_url: String,
}

impl Default for RestconfOptions {
    fn default() -> Self {
        RestconfOptions {
            max_body_bytes: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            unprefixed_top_level: false,
            base_url: "http://localhost".into(),
        }
    }
}

/// Rendered GET responses, keyed by resource, query and entity-tag (so entries never go stale;
/// the cache is simply emptied when it grows past its bounds). Bodies larger than
/// [`CACHE_LARGEST_BODY`] are not kept.
#[derive(Default)]
pub(crate) struct ResponseCache {
    entries: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    bodies: HashMap<String, Bytes>,
    bytes: usize,
}

const CACHE_ENTRIES: usize = 512;
const CACHE_BYTES: usize = 64 * 1024 * 1024;
const CACHE_LARGEST_BODY: usize = 4 * 1024 * 1024;

impl ResponseCache {
    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).bodies.get(key).cloned()
    }

    pub(crate) fn put(&self, key: String, body: Bytes) {
        if body.len() > CACHE_LARGEST_BODY {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.bodies.len() >= CACHE_ENTRIES || entries.bytes + body.len() > CACHE_BYTES {
            entries.bodies.clear();
            entries.bytes = 0;
        }
        entries.bytes += body.len();
        if let Some(old) = entries.bodies.insert(key, body) {
            entries.bytes -= old.len();
        }
    }
}

/// An application's adapter of write bodies: given the request's target and its JSON body
/// (as the client sent it, before the datastore reads it), returns the body to write, or
/// refuses the request. It lets an application read a client's dialect into what the model
/// means where order or shape would otherwise be lost (for example an ordered path written into
/// an `ordered-by system` leaf-list, which the datastore sorts).
pub type WriteFilter =
    dyn Fn(&DataPath, serde_json::Value) -> Result<serde_json::Value, DataError> + Send + Sync;

pub(crate) struct ServerInner {
    pub(crate) ds: Datastore,
    pub(crate) options: RestconfOptions,
    pub(crate) streams: EventStreams,
    pub(crate) operations: BTreeMap<String, Arc<dyn OperationHandler>>,
    pub(crate) cache: ResponseCache,
    pub(crate) write_filter: Option<Arc<WriteFilter>>,
}

pub(crate) type ServerState = Arc<ServerInner>;

/// Sets up a [`RestconfServer`].
pub struct RestconfServerBuilder {
    ds: Datastore,
    options: RestconfOptions,
    streams: Vec<(String, String)>,
    operations: BTreeMap<String, Arc<dyn OperationHandler>>,
    write_filter: Option<Arc<WriteFilter>>,
}

impl RestconfServerBuilder {
    /// Replaces the options.
    pub fn options(mut self, options: RestconfOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds an event stream.
    pub fn stream(mut self, name: &str, description: &str) -> Self {
        self.streams.push((name.to_owned(), description.to_owned()));
        self
    }

    /// Passes every write body (PUT, POST, PATCH) through `filter` before the datastore reads
    /// it (see [`WriteFilter`]).
    pub fn write_filter(
        mut self,
        filter: impl Fn(&DataPath, serde_json::Value) -> Result<serde_json::Value, DataError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.write_filter = Some(Arc::new(filter));
        self
    }

    /// Registers the handler of the RPC `module:name`.
    pub fn operation(mut self, name: &str, handler: impl OperationHandler) -> Self {
        self.operations.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Checks the operations, publishes the server's self-description and returns the server.
    pub async fn build(self) -> Result<RestconfServer, DataError> {
        let schema = self.ds.context().schema();
        for name in self.operations.keys() {
            if !schema.operations().contains_key(name) {
                return Err(DataError::invalid_value(format!(
                    "cannot register operation {name}: no such RPC in the loaded modules"
                )));
            }
        }
        let streams = EventStreams::default();
        for (name, description) in &self.streams {
            streams.add(name, description);
        }
        let mut state = library::yang_library(schema);
        let monitoring = library::restconf_state(&streams, &self.options.base_url);
        if let (Some(s), Some(m)) = (state.as_object_mut(), monitoring.as_object()) {
            s.extend(m.clone());
        }
        self.ds.merge_state("", state).await?;
        Ok(RestconfServer {
            inner: Arc::new(ServerInner {
                ds: self.ds,
                options: self.options,
                streams,
                operations: self.operations,
                cache: ResponseCache::default(),
                write_filter: self.write_filter,
            }),
        })
    }
}

/// A RESTCONF server over one datastore.
#[derive(Clone)]
pub struct RestconfServer {
    inner: ServerState,
}

impl std::fmt::Debug for RestconfServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestconfServer").field("streams", &self.inner.streams).finish()
    }
}

impl RestconfServer {
    /// Starts setting up a server for `ds`.
    pub fn builder(ds: Datastore) -> RestconfServerBuilder {
        RestconfServerBuilder {
            ds,
            options: RestconfOptions::default(),
            streams: Vec::new(),
            operations: BTreeMap::new(),
            write_filter: None,
        }
    }

    /// The datastore served.
    pub fn datastore(&self) -> &Datastore {
        &self.inner.ds
    }

    /// A publisher for the stream `name`, if the server has it.
    pub fn publisher(&self, name: &str) -> Option<NotificationPublisher> {
        let stream = self.inner.streams.get(name)?;
        Some(NotificationPublisher::new(self.inner.ds.context().clone(), stream))
    }

    /// The axum router serving the RESTCONF API and its discovery resources.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/host-meta", any(discovery::host_meta))
            .route("/.well-known/host-meta.json", any(discovery::host_meta_json))
            .route("/restconf", any(discovery::api_root))
            .route("/restconf/", any(discovery::api_root))
            .route("/restconf/data", any(data::data))
            .route("/restconf/data/", any(data::data))
            .route("/restconf/data/{*rest}", any(data::data))
            .route("/restconf/operations", any(discovery::operations_list))
            .route("/restconf/operations/", any(discovery::operations_list))
            .route("/restconf/operations/{*name}", any(operations::invoke))
            .route("/restconf/yang-library-version", any(discovery::yang_library_version))
            .route("/restconf/streams/{name}", any(stream))
            .fallback(discovery::not_found)
            .layer(middleware::from_fn_with_state(self.inner.clone(), deadline))
            .with_state(self.inner.clone())
    }
}

/// A JSON response (HEAD: headers only, with the length the body would have).
pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>, head: bool) -> Response {
    let body: Bytes = body.into();
    let len = body.len();
    let mut response = if head {
        (status, Body::empty()).into_response()
    } else {
        (status, Body::from(body)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(YANG_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    response
}

/// `GET {+restconf}/streams/{name}`: an SSE subscription.
async fn stream(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ErrorResponse> {
    if request.method() != Method::GET {
        return Err(errors::method_not_allowed(request.method(), "GET"));
    }
    body::check_accept(request.headers(), &["text/event-stream"])?;
    if let Some((param, _)) = query::parameters(request.uri().query())?.into_iter().next() {
        return Err(DataError::invalid_value(match param.as_str() {
            "start-time" | "stop-time" => format!("\"{param}\": this stream has no replay"),
            "filter" => "\"filter\": stream filtering is not supported".to_owned(),
            other => format!("unknown query parameter \"{other}\""),
        })
        .into());
    }
    let info = state.streams.get(&name).ok_or_else(|| {
        DataError::invalid_value(format!("there is no event stream \"{name}\"")).with_status(404)
    })?;
    Ok(streams::subscribe(&name, &info))
}

/// Bounds the time to produce a response head.
async fn deadline(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    let limit = state.options.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ErrorResponse::from(
            DataError::internal(format!(
                "the request did not complete within {} s",
                limit.as_secs()
            ))
            .with_status(503),
        )
        .into_response(),
    }
}

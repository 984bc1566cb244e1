//! Event streams (RFC 8040 §6): named streams of YANG notifications, served to subscribers as
//! Server-Sent Events and listed in `ietf-restconf-monitoring`.
//!
//! The application publishes through a [`NotificationPublisher`]; each notification is checked
//! against its YANG definition by libyang before anyone sees it, then wrapped in the RFC 8040
//! JSON envelope (`ietf-restconf:notification` with `eventTime`). Subscriptions are live only:
//! there is no replay.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::response::Response;
use serde_json::{Value as Json, json};
use tokio::sync::broadcast;

use crate::context::YangContext;
use crate::error::DataError;
use crate::input::normalize_notification;
use crate::ly::canonical_notification;

/// How many notifications a slow subscriber may fall behind before it misses some.
const STREAM_BUFFER: usize = 1024;

pub(crate) struct StreamInfo {
    pub(crate) description: String,
    sender: broadcast::Sender<Arc<str>>,
}

/// The event streams of a server.
#[derive(Clone, Default)]
pub struct EventStreams {
    streams: Arc<RwLock<BTreeMap<String, Arc<StreamInfo>>>>,
}

impl std::fmt::Debug for EventStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl EventStreams {
    /// Adds a stream (or returns the existing one of that name).
    pub(crate) fn add(&self, name: &str, description: &str) -> Arc<StreamInfo> {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        streams
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(StreamInfo {
                    description: description.to_owned(),
                    sender: broadcast::channel(STREAM_BUFFER).0,
                })
            })
            .clone()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<StreamInfo>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Stream names.
    pub fn names(&self) -> Vec<String> {
        self.streams.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    pub(crate) fn all(&self) -> Vec<(String, Arc<StreamInfo>)> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Publishes notifications on one stream.
#[derive(Clone)]
pub struct NotificationPublisher {
    ctx: YangContext,
    stream: Arc<StreamInfo>,
}

impl std::fmt::Debug for NotificationPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationPublisher").field("stream", &self.stream.description).finish()
    }
}

impl NotificationPublisher {
    pub(crate) fn new(ctx: YangContext, stream: Arc<StreamInfo>) -> Self {
        NotificationPublisher { ctx, stream }
    }

    /// Validates and sends a notification given as `{"module:notification": {...}}`. Returns how
    /// many subscribers received it.
    pub fn publish(&self, notification: Json) -> Result<usize, DataError> {
        let (name, body) = normalize_notification(&self.ctx, notification)?;
        let mut single = serde_json::Map::new();
        single.insert(name.clone(), body);
        // What subscribers get is libyang's canonical rendering, so a value reads the same in
        // a notification as in the datastore.
        let canonical = canonical_notification(&self.ctx, &Json::Object(single).to_string())?;
        let body = serde_json::from_str::<Json>(&canonical)
            .ok()
            .and_then(|mut doc| doc.get_mut(&name).map(Json::take))
            .ok_or_else(|| DataError::internal(format!("libyang printed {name} as {canonical}")))?;
        let event_time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let envelope = json!({"ietf-restconf:notification": {"eventTime": event_time, name: body}});
        Ok(self.stream.sender.send(Arc::from(envelope.to_string())).unwrap_or(0))
    }

    /// Current number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.stream.sender.receiver_count()
    }
}

/// The SSE response for a subscription to `stream`.
pub(crate) fn subscribe(name: &str, stream: &StreamInfo) -> Response {
    crate::restconf::sse::response(stream.sender.subscribe(), &format!("qkdn event stream {name}"))
}

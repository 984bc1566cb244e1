//! Server-Sent Events (`text/event-stream`), as RESTCONF event streams use and as the services'
//! REST event streams reuse: [`response`] turns a broadcast channel into an SSE response (one
//! `data:` line per message, keep-alive comments, a comment when a slow reader missed some), and
//! [`SseParser`] splits a received byte stream back into events.

use std::fmt::Display;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use tokio::sync::broadcast;

/// Interval of SSE keep-alive comments, so idle connections survive proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The SSE response streaming every message `receiver` gets, each as one `data:` line, after an
/// opening comment `opening`.
pub fn response<T>(receiver: broadcast::Receiver<T>, opening: &str) -> Response
where
    T: Display + Clone + Send + 'static,
{
    let opening = Bytes::from(format!(": {opening}\n\n"));
    struct State<T> {
        receiver: broadcast::Receiver<T>,
        ticker: tokio::time::Interval,
        opening: Option<Bytes>,
    }
    let mut ticker = tokio::time::interval(KEEPALIVE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State { receiver, ticker, opening: Some(opening) };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(opening) = st.opening.take() {
            st.ticker.reset();
            return Some((Ok::<Bytes, std::io::Error>(opening), st));
        }
        tokio::select! {
            received = st.receiver.recv() => {
                let chunk = match received {
                    Ok(event) => Bytes::from(format!("data: {event}\n\n")),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Bytes::from(format!(": {n} messages were dropped: reader too slow\n\n"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(chunk), st))
            }
            _ = st.ticker.tick() => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st)),
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines, joined with newlines.
    pub data: String,
    /// `id:` field.
    pub id: Option<String>,
}

/// Incremental parser: feed chunks as they arrive, collect complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                }
                self.current = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "event" => self.current.event = Some(value.to_owned()),
                "id" => self.current.id = Some(value.to_owned()),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut p = SseParser::default();
        assert!(p.push(b": hello\n\ndata: {\"a\"").is_empty());
        let events = p.push(b":1}\r\ndata: x\n\nevent: e\ndata:y\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "{\"a\":1}\nx");
        assert_eq!(events[1].event.as_deref(), Some("e"));
        assert_eq!(events[1].data, "y");
    }
}

//! A session with one agent: reads its `qkd_node`, follows its event stream (reconnecting, and
//! reading the whole node again after every reconnection, since notifications may have been
//! missed), reads it again on every notification that is not a performance update and every
//! `resync_interval`, and declares the agent lost when it has neither streamed nor answered
//! for `loss_timeout` (a probe read is made at half that). What it learns goes to the core as
//! [`SessionEvent`]s.

use std::time::Duration;

use qkdn_yang::restconf::client::{Backoff, RestconfClient, StreamEvent};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::inventory::{self, NodeReport};

/// Identifies a session inside the controller.
pub type SessionId = u64;

/// What a session reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// The node as read now; the agent answers.
    Report(Box<NodeReport>),
    /// A performance update for a link of the node.
    Perf(Json),
    /// A notification other than a performance update (alarms, events, ...).
    Notification(Json),
    /// The agent has not answered for the loss timeout.
    Lost(String),
    /// A read failed (the agent may still come back before it is lost).
    ReadFailed(String),
    /// The KMS figures of the agent (see [`crate::kms_figures`]).
    Kms(Box<qkdn_proto::node_api::KmsFigures>),
}

/// How to reach the agent.
#[derive(Clone, Debug)]
pub struct Target {
    /// Requests with a timeout.
    pub client: RestconfClient,
    /// The event stream (no timeout on the body).
    pub streaming: RestconfClient,
    /// Event stream name; none: polling only.
    pub stream: Option<String>,
    /// Full re-read period.
    pub resync_interval: Duration,
    /// Loss timeout.
    pub loss_timeout: Duration,
}

const NODE: &str = "/etsi-qkd-sdn-node:qkd_node";
/// Notifications arriving together cause one read.
const READ_DELAY: Duration = Duration::from_millis(50);

/// Runs the session until the core stops listening (or the task is aborted).
pub async fn run(id: SessionId, target: Target, core: mpsc::Sender<(SessionId, SessionEvent)>) {
    let mut subscription = target.stream.as_deref().map(|s| {
        target.streaming.subscribe(
            s,
            Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(5) },
        )
    });
    let mut last_ok: Option<Instant> = None;
    let mut lost_reported = false;
    let mut streaming = false;
    let mut read_at = Some(Instant::now());
    let mut next_resync = Instant::now() + target.resync_interval;
    let probe = (target.loss_timeout / 2).max(Duration::from_millis(100));
    let started = Instant::now();
    let mut last_read = started;
    loop {
        if read_at.is_some_and(|t| t <= Instant::now()) {
            read_at = None;
            last_read = Instant::now();
            next_resync = Instant::now() + target.resync_interval;
            let event = match target.client.get(NODE, &[]).await {
                Ok(doc) => match NodeReport::parse(&doc) {
                    Ok(report) => {
                        last_ok = Some(Instant::now());
                        lost_reported = false;
                        SessionEvent::Report(Box::new(report))
                    }
                    Err(e) => SessionEvent::ReadFailed(e.to_string()),
                },
                Err(e) => SessionEvent::ReadFailed(e.to_string()),
            };
            if core.send((id, event)).await.is_err() {
                return;
            }
        }
        let since = last_ok.unwrap_or(started).elapsed();
        if since >= target.loss_timeout && !lost_reported {
            lost_reported = true;
            let reason = format!("no answer for {:.1} s", since.as_secs_f64());
            if core.send((id, SessionEvent::Lost(reason))).await.is_err() {
                return;
            }
        }
        // Quiet for half the loss timeout, or not streaming: probe with a read.
        let probe_at = (last_ok.unwrap_or(started)
            + if streaming { probe } else { probe.min(Duration::from_secs(1)) })
        .max(last_read + Duration::from_millis(500));
        let loss_at = last_ok.unwrap_or(started) + target.loss_timeout;
        let mut wake = next_resync.min(probe_at.max(Instant::now() + Duration::from_millis(100)));
        if !lost_reported {
            wake = wake.min(loss_at);
        }
        if let Some(t) = read_at {
            wake = wake.min(t);
        }
        let event = async {
            match subscription.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = event => match e {
                Some(StreamEvent::Connected) => {
                    streaming = true;
                    read_at = Some(Instant::now());
                }
                Some(StreamEvent::Notification(n)) => {
                    last_ok = Some(Instant::now());
                    lost_reported = false;
                    let forward = if inventory::is_perf_update(&n) {
                        SessionEvent::Perf(n)
                    } else {
                        read_at.get_or_insert(Instant::now() + READ_DELAY);
                        SessionEvent::Notification(n)
                    };
                    if core.send((id, forward)).await.is_err() {
                        return;
                    }
                }
                Some(StreamEvent::Disconnected(reason)) => {
                    if streaming {
                        tracing::debug!(session = id, %reason, "event stream lost");
                    }
                    streaming = false;
                    read_at.get_or_insert(Instant::now());
                }
                None => subscription = None,
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= next_resync || now >= probe_at {
                    read_at.get_or_insert(now);
                }
            }
        }
    }
}

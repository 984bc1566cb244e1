//! Agents in the core: starting a session per agent (registered or static, with its KMS
//! monitor), registrations, and what sessions report: node reports (a node that comes back is
//! reconciled), performance updates (folded in at the next performance tick), KMS figures,
//! failed reads, lost agents, and the agents' alarms and events raised again at network scope.

use std::sync::Arc;

use qkdn_yang::restconf::client::RestconfClient;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use qkdn_kit::task::OwnedTask;

use super::{Core, Registration, Session};
use crate::error::ApiError;
use crate::records::{Op, Table};
use crate::session::{self, SessionEvent, SessionId, Target};

impl Core {
    pub(super) fn start_session(
        &mut self,
        url: String,
        registered: Option<Registration>,
        expected_node: Option<Uuid>,
        stream: Option<String>,
    ) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        // Agents advertise their RESTCONF root (`.../restconf`); the client wants the server.
        let url = url.trim_end_matches('/').trim_end_matches("/restconf").to_owned();
        let client = RestconfClient::with_client(self.http.clone(), &url);
        let target = Target {
            client: client.clone(),
            streaming: RestconfClient::with_client(self.streaming_http.clone(), &url),
            stream,
            resync_interval: self.config.agents.resync_interval,
            loss_timeout: self.config.agents.loss_timeout,
        };
        let node = registered.as_ref().map(|r| r.node_id).or(expected_node);
        let task = OwnedTask::spawn(session::run(id, target, self.session_events.clone()));
        let monitor = registered.as_ref().and_then(|r| r.management_url.clone()).map(|m| {
            let (http, period) = (self.http.clone(), self.config.agents.kms_poll_interval);
            let events = self.session_events.clone();
            OwnedTask::spawn(crate::kms_figures::run(id, http, m, period, events))
        });
        self.sessions.insert(
            id,
            Session {
                url,
                registered,
                expected_node: node,
                node,
                reachable: false,
                last_error: None,
                client,
                _task: task,
                _monitor: monitor,
            },
        );
        self.dirty = true;
        id
    }

    pub(super) async fn register_agent(&mut self, r: Registration) -> Result<bool, ApiError> {
        if !(r.restconf_url.starts_with("http://") || r.restconf_url.starts_with("https://")) {
            return Err(ApiError::field("/restconf_url", "must be an http:// or https:// URL"));
        }
        let existing = self
            .sessions
            .iter()
            .find(|(_, s)| s.node == Some(r.node_id) || s.expected_node == Some(r.node_id))
            .map(|(id, s)| (*id, s.registered.as_ref() == Some(&r)));
        if let Some((_, true)) = existing {
            return Ok(false);
        }
        self.store
            .write(vec![Op::put(Table::Agents, r.node_id.to_string(), &r)])
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let created = existing.is_none();
        if let Some((id, _)) = existing {
            // Its tasks stop with it.
            self.sessions.remove(&id);
        }
        tracing::info!(node = %r.node_id, url = %r.restconf_url, "agent registered");
        self.raise(
            "agent-registered",
            "INFO",
            json!({"node": r.node_id}),
            format!("agent of node {} registered at {}", r.node_id, r.restconf_url),
        );
        self.start_session(r.restconf_url.clone(), Some(r), None, Some("NETCONF".into()));
        Ok(created)
    }

    pub(super) fn session_event(&mut self, id: SessionId, event: SessionEvent) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        match event {
            SessionEvent::Report(report) => {
                if let Some(expected) = session.expected_node
                    && expected != report.id
                {
                    session.last_error = Some(format!(
                        "serves node {} where node {expected} was expected",
                        report.id
                    ));
                    return;
                }
                session.node = Some(report.id);
                session.last_error = None;
                let was_reachable = session.reachable;
                session.reachable = true;
                let node = report.id;
                let came_back = !was_reachable || !self.nodes.get(&node).is_some_and(|(_, r)| *r);
                let same = self.nodes.get(&node).is_some_and(|(r, _)| **r == *report);
                self.nodes.insert(node, (Arc::new(*report), true));
                if !same || came_back {
                    self.topology_changed = true;
                    self.dirty = true;
                }
                if came_back {
                    tracing::info!(%node, "agent reachable");
                    self.raise(
                        "agent-reachable",
                        "INFO",
                        json!({"node": node}),
                        format!("the agent of node {node} answers"),
                    );
                    self.reconcile_node(node);
                }
            }
            SessionEvent::Perf(n) => {
                if let Some(node) = session.node
                    && let Some((report, _)) = self.nodes.get_mut(&node)
                    && Arc::make_mut(report).apply_perf_update(&n)
                {
                    // Rates move all the time: they are folded in at the next performance
                    // tick rather than on every update.
                    self.perf_pending = true;
                }
            }
            SessionEvent::Notification(n) => {
                if let Some(node) = session.node {
                    self.forward_notification(node, n);
                }
            }
            SessionEvent::Kms(doc) => {
                if let Some(node) = session.node {
                    self.kms.insert(node, Arc::new(*doc));
                    self.perf_pending = true;
                }
            }
            SessionEvent::ReadFailed(e) => {
                session.last_error = Some(e);
                self.dirty = true;
            }
            SessionEvent::Lost(reason) => {
                session.reachable = false;
                session.last_error = Some(reason.clone());
                if let Some(node) = session.node
                    && let Some(entry) = self.nodes.get_mut(&node)
                {
                    entry.1 = false;
                    tracing::warn!(%node, %reason, "agent lost");
                    self.raise(
                        "agent-lost",
                        "MAJOR",
                        json!({"node": node}),
                        format!("the agent of node {node} is lost: {reason}"),
                    );
                    self.topology_changed = true;
                }
                self.dirty = true;
            }
        }
    }

    /// Alarms and events of agents, raised again at network scope.
    fn forward_notification(&mut self, node: Uuid, n: Json) {
        let Some((name, body)) =
            n.as_object().and_then(|o| o.iter().find(|(k, _)| k.as_str() != "eventTime"))
        else {
            return;
        };
        let local = name.rsplit(':').next().unwrap_or(name).to_owned();
        let severity = ["link", "interface", "application"]
            .iter()
            .find_map(|k| body.get(*k).and_then(|b| b.get("severity")).and_then(Json::as_str))
            .map(|s| s.rsplit(':').next().unwrap_or(s).to_owned())
            .unwrap_or_else(|| "INFO".into());
        self.raise(
            &format!("node-{local}"),
            &severity,
            json!({"node": node, "notification": body}),
            describe_notification(node, &local, body),
        );
    }
}

/// One line for an agent's notification: the node, the notification, what it is about and the
/// agent's own message when it gives one.
fn describe_notification(node: Uuid, local: &str, body: &Json) -> String {
    let mut line = format!("node {node}: {local}");
    for (key, id) in [("link", "qkdl_id"), ("interface", "qkdi_id"), ("application", "app_id")] {
        let Some(subject) = body.get(key) else { continue };
        if let Some(id) = subject.get(id) {
            let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            line.push_str(&format!(" ({key} {id})"));
        }
        if let Some(message) = subject.get("message").and_then(Json::as_str) {
            line.push_str(&format!(": {message}"));
        }
    }
    line
}

//! The orchestrator's state, owned by one task: each domain's last view and whether it is up,
//! the merged network built from them after every change, and the recent events (domains down
//! and back, the domains' own alarms). Readers take the latest [`Snapshot`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::config::OrchestratorConfig;
use crate::domain::{DomainEvent, DomainView};
use crate::merged::{Merged, Part};

/// A domain as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DomainStatus {
    /// Its name.
    pub name: String,
    /// Its controller's RESTCONF URL.
    pub url: String,
    /// Whether its controller answers.
    pub up: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
    /// Nodes it reports.
    pub nodes: usize,
    /// Physical links it reports.
    pub links: usize,
}

/// What readers see.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The domains.
    pub domains: Vec<DomainStatus>,
    /// The merged network.
    pub merged: Arc<Merged>,
    /// Recent events, oldest first.
    pub events: Vec<Json>,
    /// Whether every domain has been heard from once.
    pub complete: bool,
    /// Each domain's application statuses (`DEPLOYED`, `DISCONNECTED`, ...), by name and id.
    pub app_status:
        std::collections::BTreeMap<String, std::collections::BTreeMap<uuid::Uuid, String>>,
}

struct DomainState {
    up: bool,
    heard: bool,
    reason: Option<String>,
    view: DomainView,
}

const EVENTS_KEPT: usize = 512;

/// Runs the owner until the domain sessions stop.
pub async fn run(
    config: Arc<OrchestratorConfig>,
    mut events: mpsc::Receiver<(usize, DomainEvent)>,
    out: watch::Sender<Arc<Snapshot>>,
) {
    let mut domains: Vec<DomainState> = config
        .domains
        .iter()
        .map(|_| DomainState {
            up: false,
            heard: false,
            reason: Some("not heard from yet".into()),
            view: DomainView::default(),
        })
        .collect();
    let mut recent: VecDeque<Json> = VecDeque::new();
    let record = |recent: &mut VecDeque<Json>, kind: &str, domain: &str, message: String| {
        if recent.len() == EVENTS_KEPT {
            recent.pop_front();
        }
        recent.push_back(
            json!({"time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "kind": kind, "domain": domain, "message": message}),
        );
    };
    while let Some((i, event)) = events.recv().await {
        let name = config.domains[i].name.clone();
        let d = &mut domains[i];
        match event {
            DomainEvent::View(view) => {
                if !d.up {
                    tracing::info!(domain = %name, "domain up");
                    record(&mut recent, "domain-up", &name, format!("domain {name} answers"));
                }
                d.up = true;
                d.heard = true;
                d.reason = None;
                d.view = view;
            }
            DomainEvent::Down(reason) => {
                if d.up || !d.heard {
                    tracing::warn!(domain = %name, %reason, "domain down");
                    record(
                        &mut recent,
                        "domain-down",
                        &name,
                        format!("domain {name} is down: {reason}"),
                    );
                }
                d.up = false;
                d.heard = true;
                d.reason = Some(reason);
            }
            DomainEvent::Notification(n) => {
                let (kind, body) = n
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.as_str() != "eventTime"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                let message = body["message"].as_str().unwrap_or(&kind).to_owned();
                record(&mut recent, &format!("{name}:{kind}"), &name, message);
            }
        }
        let merged = Merged::build(
            config.domains.iter().zip(&domains).map(|(c, d)| Part {
                name: &c.name,
                up: d.up,
                view: &d.view,
            }),
            &config.inter_domain_links,
        );
        let snapshot = Snapshot {
            domains: config
                .domains
                .iter()
                .zip(&domains)
                .map(|(c, d)| DomainStatus {
                    name: c.name.clone(),
                    url: c.url.clone(),
                    up: d.up,
                    reason: d.reason.clone(),
                    nodes: d.view.nodes.len(),
                    links: d.view.links.len(),
                })
                .collect(),
            merged: Arc::new(merged),
            events: recent.iter().cloned().collect(),
            complete: domains.iter().all(|d| d.heard),
            app_status: config
                .domains
                .iter()
                .zip(&domains)
                .map(|(c, d)| (c.name.clone(), d.view.apps.clone()))
                .collect(),
        };
        out.send_replace(Arc::new(snapshot));
    }
}

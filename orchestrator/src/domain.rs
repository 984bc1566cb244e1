//! One domain as its controller exports it over ETSI 018: the network tree read into nodes and
//! physical links ([`DomainView::parse`]) and its applications' statuses, and the session that keeps it current: a read of the
//! tree, the controller's `qkd-network` event stream (every notification, and every
//! reconnection, causes a read), a full read every `resync_interval`, and the domain marked
//! down when it has neither streamed nor answered for `loss_timeout`.

use std::time::Duration;

use qkdn_controller::inventory::member;
use qkdn_yang::restconf::client::{Backoff, RestconfClient, StreamEvent};
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// A node of a domain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainNode {
    /// `qkdn_id`.
    pub id: Uuid,
    /// `qkdn_location_id`.
    pub location: Option<String>,
    /// Whether its controller reaches it.
    pub reachable: bool,
    /// Its KME (ETSI 014) URL.
    pub kme_url: Option<String>,
    /// Interfaces.
    pub interfaces: Vec<u32>,
}

/// A physical link of a domain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainLink {
    /// `phys_link_id`.
    pub id: Uuid,
    /// (node, interface) at each end.
    pub ends: [(Uuid, Option<u32>); 2],
    /// Usable.
    pub up: bool,
    /// Secret key rate, bit/s.
    pub skr_bps: u64,
    /// Rate the domain's controller has reserved on it, bit/s.
    pub reserved_bps: u64,
}

/// What a domain's controller exports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DomainView {
    /// Nodes.
    pub nodes: Vec<DomainNode>,
    /// Physical links.
    pub links: Vec<DomainLink>,
    /// The status of each application (`NEW`, `DEPLOYED`, `DISCONNECTED`), by id.
    pub apps: std::collections::BTreeMap<Uuid, String>,
}

fn uuid(v: &Json) -> Option<Uuid> {
    v.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

fn number(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn list(v: &Json) -> impl Iterator<Item = &Json> {
    v.as_array().into_iter().flatten()
}

impl DomainView {
    /// Reads a GET of `etsi-qkd-sdn-topology:qkd_network`.
    pub fn parse(doc: &Json) -> DomainView {
        let network = member(doc, "qkd_network");
        let nodes = list(member(member(network, "sdqkd_nodes"), "sdqkd_node"))
            .filter_map(|n| {
                let details = member(n, "qkdn_details");
                Some(DomainNode {
                    id: uuid(member(n, "qkdn_id"))?,
                    location: member(details, "qkdn_location_id").as_str().map(str::to_owned),
                    reachable: member(details, "reachable").as_bool().unwrap_or(true),
                    kme_url: member(member(details, "kme"), "kme_url").as_str().map(str::to_owned),
                    interfaces: list(member(member(n, "qkd_interfaces"), "qkd_interface"))
                        .filter_map(|i| {
                            number(member(i, "qkdi_id")).and_then(|x| u32::try_from(x).ok())
                        })
                        .collect(),
                })
            })
            .collect();
        let end = |e: &Json| -> Option<(Uuid, Option<u32>)> {
            Some((
                uuid(member(e, "qkdn_id"))?,
                number(member(e, "qkdi_id")).and_then(|x| u32::try_from(x).ok()),
            ))
        };
        let links =
            list(member(member(member(network, "qkd_links"), "qkd_phys_links"), "phys_link"))
                .filter_map(|l| {
                    let details = member(l, "phys_link_details");
                    let perf = member(details, "phys_performance");
                    Some(DomainLink {
                        id: uuid(member(l, "phys_link_id"))?,
                        ends: [
                            end(member(l, "phys_link_local_qkdn"))?,
                            end(member(l, "phys_link_remote_qkdn"))?,
                        ],
                        up: member(details, "enable").as_bool().unwrap_or(false),
                        skr_bps: number(member(perf, "skr")).unwrap_or(0),
                        reserved_bps: number(member(perf, "reserved_bandwidth")).unwrap_or(0),
                    })
                })
                .collect();
        DomainView { nodes, links, apps: Default::default() }
    }

    /// Adds the application statuses of a GET of `etsi-qkd-sdn-connectivity:qkd_applications`.
    pub fn with_apps(mut self, doc: &Json) -> DomainView {
        self.apps = list(member(member(doc, "qkd_applications"), "qkd_app"))
            .filter_map(|a| {
                Some((uuid(member(a, "app_id"))?, member(a, "app_status").as_str()?.to_owned()))
            })
            .collect();
        self
    }
}

/// What a domain session reports.
#[derive(Debug)]
pub enum DomainEvent {
    /// The domain as read now.
    View(DomainView),
    /// A notification of the domain's controller.
    Notification(Json),
    /// The controller has not answered for the loss timeout.
    Down(String),
}

const NETWORK: &str = "/etsi-qkd-sdn-topology:qkd_network";
const APPS: &str = "/etsi-qkd-sdn-connectivity:qkd_applications";
const STREAM: &str = "qkd-network";

/// Follows domain `index` until the receiver goes.
pub async fn run(
    index: usize,
    client: RestconfClient,
    streaming: RestconfClient,
    resync: Duration,
    loss_timeout: Duration,
    out: mpsc::Sender<(usize, DomainEvent)>,
) {
    let mut stream = streaming.subscribe(
        STREAM,
        Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(5) },
    );
    let started = Instant::now();
    let mut last_ok: Option<Instant> = None;
    let mut down_reported = false;
    let mut read_at = Some(Instant::now());
    let mut next_resync = Instant::now() + resync;
    loop {
        if read_at.is_some_and(|t| t <= Instant::now()) {
            read_at = None;
            next_resync = Instant::now() + resync;
            let read = async {
                let network = client.get(NETWORK, &[]).await?;
                // No application yet: the container does not exist.
                let apps = match client.get(APPS, &[]).await {
                    Err(e) if e.status() == Some(404) => Json::Null,
                    other => other?,
                };
                Ok::<_, qkdn_yang::restconf::ClientError>(
                    DomainView::parse(&network).with_apps(&apps),
                )
            };
            match read.await {
                Ok(view) => {
                    last_ok = Some(Instant::now());
                    down_reported = false;
                    if out.send((index, DomainEvent::View(view))).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(domain = index, error = %e, "domain read failed"),
            }
        }
        let since = last_ok.unwrap_or(started);
        if since.elapsed() >= loss_timeout && !down_reported {
            down_reported = true;
            let reason = format!("no answer for {:.1} s", since.elapsed().as_secs_f64());
            if out.send((index, DomainEvent::Down(reason))).await.is_err() {
                return;
            }
        }
        let probe = since + (loss_timeout / 3).max(Duration::from_millis(200));
        let mut wake = next_resync.min(probe.max(Instant::now() + Duration::from_millis(200)));
        if let Some(t) = read_at {
            wake = wake.min(t);
        }
        if !down_reported {
            wake = wake.min(since + loss_timeout);
        }
        tokio::select! {
            e = stream.next() => match e {
                Some(StreamEvent::Connected) => { read_at = Some(Instant::now()); }
                Some(StreamEvent::Notification(n)) => {
                    last_ok = Some(Instant::now());
                    read_at.get_or_insert(Instant::now() + Duration::from_millis(50));
                    if out.send((index, DomainEvent::Notification(n))).await.is_err() {
                        return;
                    }
                }
                Some(StreamEvent::Disconnected(_)) => { read_at.get_or_insert(Instant::now()); }
                None => return,
            },
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= next_resync || Instant::now() >= probe {
                    read_at.get_or_insert(Instant::now());
                }
            }
        }
    }
}

/// Nodes and links for the orchestrator's unit tests.
#[cfg(test)]
pub(crate) mod samples {
    use uuid::Uuid;

    use super::{DomainLink, DomainNode};

    /// Node `i`, reachable, with interface `i`.
    pub(crate) fn node(i: u128) -> DomainNode {
        DomainNode {
            id: Uuid::from_u128(i),
            location: None,
            reachable: true,
            kme_url: None,
            interfaces: vec![i as u32],
        }
    }

    /// Link `100 + i` between nodes `a` and `b`, up, 10 kbit/s.
    pub(crate) fn link(i: u128, a: u128, b: u128) -> DomainLink {
        DomainLink {
            id: Uuid::from_u128(100 + i),
            ends: [(Uuid::from_u128(a), None), (Uuid::from_u128(b), None)],
            up: true,
            skr_bps: 10_000,
            reserved_bps: 0,
        }
    }
}

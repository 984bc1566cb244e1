//! The core's view as the ETSI 018 trees (RFC 7951 JSON, members of augmenting modules
//! prefixed), and controller events as 018 notifications.

use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::apps::{AppState, Application, virtual_link_id};
use crate::core::View;

const TYPES: &str = "etsi-qkd-node-types";
const INV: &str = "etsi-qkd-sdn-inventory";

fn identity(name: &str) -> String {
    format!("{TYPES}:{name}")
}

/// `etsi-qkd-sdn-topology:qkd_network` with the inventory details; key rates and QBER only
/// `with_rates`.
pub(super) fn network(view: &View, with_rates: bool) -> Json {
    let nodes: Vec<Json> =
        view.network
            .nodes
            .values()
            .map(|n| {
                let report = view.reports.get(&n.id);
                let interfaces: Vec<Json> = report
                    .map(|r| {
                        r.interfaces
                            .iter()
                            .map(|(id, kind)| {
                                let mut i = json!({"qkdi_id": id});
                                if let Some(k) = kind.as_deref().filter(|k| {
                                    ["CV-QKD", "DV-QKD", "DV-QKD-COW", "DV-QKD-2Ws"].contains(k)
                                }) {
                                    i[format!("{INV}:qkdi_details")] =
                                        json!({"qkdi_type": identity(k)});
                                }
                                i
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut details = json!({"reachable": n.reachable});
                if let Some(l) = &n.location {
                    details["qkdn_location_id"] = json!(l);
                }
                if let Some(v) = report.and_then(|r| r.version.clone()) {
                    details["qkdn_version"] = json!(v);
                }
                if let Some(s) = report.and_then(|r| r.status.clone()).filter(|s| {
                    ["NEW", "OPERATING", "DOWN", "FAILURE", "OUT"].contains(&s.as_str())
                }) {
                    details["qkdn_status"] = json!(identity(&s));
                }
                let kme = view
                    .agents
                    .iter()
                    .find(|a| a.node == Some(n.id))
                    .and_then(|a| a.registration.as_ref())
                    .and_then(|r| r.kms.etsi014_url.clone());
                if let Some(url) = kme {
                    details["kme"] = json!({"kme_url": url});
                }
                json!({"qkdn_id": n.id.to_string(), "qkd_interfaces": {"qkd_interface": interfaces},
                format!("{INV}:qkdn_details"): details})
            })
            .collect();
    let end = |node: Uuid, iface: Option<u32>| {
        let mut e = json!({"qkdn_id": node.to_string()});
        if let Some(i) = iface {
            e["qkdi_id"] = json!(i);
        }
        e
    };
    let phys: Vec<Json> = view
        .network
        .links
        .values()
        .map(|l| {
            let mut perf = json!({"reserved_bandwidth": clamp(view.promised.get(&l.id).copied().unwrap_or(0))});
            if with_rates {
                perf["expected_consumption"] = json!(clamp(l.expected_bps));
                perf["skr"] = json!(clamp(l.skr_bps));
                perf["eskr"] = json!(clamp(l.eskr_bps));
            }
            if let Some(q) = l.qber.filter(|_| with_rates) {
                perf["phys_perf"] = json!([{"perf_type": identity("QBER"), "value": format!("{:.3}", q.clamp(0.0, 1.0))}]);
            }
            let stores: Vec<Json> = l.ends.iter().filter_map(|(n, _)| key_store(view, *n, l.id)).collect();
            if with_rates && !stores.is_empty() {
                perf["key_store"] = json!(stores);
            }
            let mut details = json!({
                "enable": l.up,
                "phys_link_status": identity(if l.up { "ACTIVE" } else { "OFF" }),
                "phys_performance": perf,
            });
            if !l.down_reasons.is_empty() {
                details["down_reason"] = json!(l.down_reasons);
            }
            json!({
                "phys_link_id": l.id.to_string(),
                "phys_link_type": identity("PHYS"),
                "phys_link_local_qkdn": end(l.ends[0].0, l.ends[0].1),
                "phys_link_remote_qkdn": end(l.ends[1].0, l.ends[1].1),
                format!("{INV}:phys_link_details"): details,
            })
        })
        .collect();
    let svc: Vec<Json> = view
        .apps
        .values()
        .flat_map(|a| a.legs.iter().map(move |leg| (a, leg)))
        .filter(|(_, leg)| view.network.nodes.contains_key(&leg.client_node))
        .filter(|(a, _)| view.network.nodes.contains_key(&a.spec.server.node))
        .map(|(a, leg)| {
            json!({
                "svc_link_id": if a.segment.is_some() { leg.link } else { virtual_link_id(a.spec.app_id, leg.client_node) }.to_string(),
                "svc_link_type": identity("VIRT"),
                "svc_link_local_qkdn": end(a.spec.server.node, None),
                "svc_link_remote_qkdn": end(leg.client_node, None),
                format!("{INV}:svc_link_details"): svc_details(view, a, leg, with_rates),
            })
        })
        .collect();
    json!({"etsi-qkd-sdn-topology:qkd_network": {
        "sdqkd_nodes": {"sdqkd_node": nodes},
        "qkd_links": {"qkd_phys_links": {"phys_link": phys}, "qkd_svc_links": {"svc_link": svc}},
    }})
}

/// A service link's details; relay figures and key stores only `with_rates`.
fn svc_details(view: &View, app: &Application, leg: &crate::apps::Leg, with_rates: bool) -> Json {
    let mut details = json!({
        "svc_bandwidth": clamp(app.spec.qos.demand_bps()),
        "phys_link_id": leg.links.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "path_restoration": {"restoration_type": "AUTOMATIC", "hold_off_time": 0},
    });
    if with_rates && leg.is_virtual() {
        let mut relay = json!({});
        if let Some(r) = view.kms_of(app.spec.server.node).and_then(|k| k.relay(leg.link)) {
            relay["relays"] = json!(r.relays);
            relay["failures"] = json!(r.failures);
            relay["latency_p50"] = json!(decimal(r.latency_p50_ms));
            relay["latency_p99"] = json!(decimal(r.latency_p99_ms));
        }
        let stores: Vec<Json> = [app.spec.server.node, leg.client_node]
            .iter()
            .filter_map(|n| key_store(view, *n, leg.link))
            .collect();
        if !stores.is_empty() {
            relay["key_store"] = json!(stores);
        }
        if relay.as_object().is_some_and(|o| !o.is_empty()) {
            details["relay"] = relay;
        }
    }
    details
}

/// A decimal64 with three fraction digits.
fn decimal(v: f64) -> String {
    format!("{:.3}", if v.is_finite() { v.clamp(0.0, 1e12) } else { 0.0 })
}

/// The key store of `link` at `node`, as the inventory model has it.
fn key_store(view: &View, node: Uuid, link: Uuid) -> Option<Json> {
    let s = view.kms_of(node)?.store(link)?;
    let health = s.health.clone().unwrap_or_default();
    let mut out = json!({
        "qkdn_id": node.to_string(),
        "stored_bits": s.counters.stored_bits(),
        "fill_ratio": decimal(health.fill_ratio),
        "fill_rate": clamp(health.fill_bps.max(0.0) as u64),
        "consumption_rate": clamp(health.consumption_bps.max(0.0) as u64),
    });
    if let Some(t) = health.seconds_to_empty {
        out["time_to_empty"] = json!(clamp(t.max(0.0) as u64));
    }
    Some(out)
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The ETSI 018 status of an application.
pub(super) fn status(app: &Application) -> &'static str {
    match app.state {
        AppState::Registered | AppState::Provisioning => "NEW",
        AppState::Active => "DEPLOYED",
        AppState::NoPath => "DISCONNECTED",
    }
}

/// `etsi-qkd-sdn-connectivity:qkd_applications`; key delivery figures only `with_rates`.
pub(super) fn applications(view: &View, with_rates: bool) -> Json {
    let apps: Vec<Json> = view
        .apps
        .values()
        .map(|a| {
            let spec = &a.spec;
            let mut qos = json!({"min_bandwidth": clamp(spec.qos.rate_bps)});
            if let Some(m) = spec.qos.max_rate_bps {
                qos["max_bandwidth"] = json!(clamp(m));
            }
            if let Some(t) = spec.qos.ttl_s {
                qos["ttl"] = json!(t);
            }
            let client = spec.clients[0].node;
            let mut app = json!({
                "app_id": spec.app_id.to_string(),
                "app_type": identity("CLIENT"),
                "app_priority": spec.qos.priority,
                "server_app_id": spec.server.sae_id,
                "client_app_id": spec.clients.iter().map(|c| c.sae_id.clone()).collect::<Vec<_>>(),
                "local_qkdn_id": spec.server.node.to_string(),
                "remote_qkdn_id": client.to_string(),
                "app_qos": qos,
                "creation_time": a.created,
                "app_status": status(a),
                "svc_link_id": a.legs.first().filter(|_| a.segment.is_some()).map_or(virtual_link_id(spec.app_id, client), |l| l.link).to_string(),
            });
            if !a.candidates.is_empty() {
                app["candidate_paths"] = json!({"candidate_path": a.candidates.iter().enumerate().map(|(i, c)| json!({
                    "path_id": i + 1, "phys_link_id": c.links.iter().map(Uuid::to_string).collect::<Vec<_>>()})).collect::<Vec<_>>()});
            }
            let deliveries: Vec<Json> = crate::apps::desired_entries(a)
                .iter()
                .filter(|e| with_rates && e.kind == crate::apps::EntryKind::App)
                .filter_map(|e| {
                    let d = view.kms_of(e.node)?.application(e.id)?;
                    Some(json!({"qkdn_id": e.node.to_string(), "consumed_bits": d.consumed_bits,
                        "requests": d.requests, "success_ratio": decimal(d.success_ratio),
                        "latency_p50": decimal(d.latency_p50_ms), "latency_p99": decimal(d.latency_p99_ms)}))
                })
                .collect();
            // The list is keyed by node: with several client SAEs at one node, the first one's
            // figures are shown here (every SAE's are on /api/v1/monitoring).
            let mut seen = std::collections::HashSet::new();
            let deliveries: Vec<Json> =
                deliveries.into_iter().filter(|d| seen.insert(d["qkdn_id"].as_str().unwrap_or_default().to_owned())).collect();
            if !deliveries.is_empty() {
                app["delivery"] = json!(deliveries);
            }
            if let Some(leg) = a.legs.first() {
                let path_id = a.candidates.iter().position(|c| c.links == leg.links).map(|i| i + 1);
                let mut deployed = json!({"phys_link_id": leg.links.iter().map(Uuid::to_string).collect::<Vec<_>>()});
                if let Some(p) = path_id {
                    deployed["path_id"] = json!(p);
                }
                app["deployed_path"] = deployed;
            }
            app
        })
        .collect();
    json!({"etsi-qkd-sdn-connectivity:qkd_applications": {"qkd_app": apps}})
}

/// A controller event as an 018 notification: `alarm` for MAJOR and MINOR ones, `event`
/// otherwise, and `sdqkdn_application_status` when an application changed state.
pub(super) fn notification(event: &Json) -> Json {
    let severity = event["severity"].as_str().unwrap_or("INFO");
    let kind = event["kind"].as_str().unwrap_or("");
    let subject = &event["subject"];
    let app_status = match kind {
        "app-provisioned" | "app-rerouted" | "app-restored" => Some("DEPLOYED"),
        "app-no-path" => Some("DISCONNECTED"),
        "app-registered" => Some("NEW"),
        _ => None,
    };
    if let (Some(status), Some(app)) = (app_status, subject["app"].as_str()) {
        return json!({"etsi-qkd-sdn-connectivity:sdqkdn_application_status": {
            "app_id": app, "app_status": status, "message": event["message"]}});
    }
    let mut body = json!({"kind": kind, "message": event["message"]});
    if let Some(n) = subject["node"].as_str() {
        body["qkdn_id"] = json!(n);
    }
    if let Some(a) = subject["app"].as_str() {
        body["app_id"] = json!(a);
    }
    let name = match severity {
        "MAJOR" | "MINOR" => {
            body["severity"] = json!(identity(severity));
            "alarm"
        }
        _ => "event",
    };
    json!({format!("{INV}:{name}"): body})
}

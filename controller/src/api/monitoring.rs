//! `/api/v1/monitoring`: what an operator watches, per link and per application: key rates
//! (SKR, ESKR, expected consumption, the controller's reservations, QBER), the key stores at
//! each end (fill level, fill and consumption rates, time to empty, alarms), the relays of
//! virtual links (keys, failures, latency), and per application its QoS (rate, TTL), how
//! often it was moved, and its key deliveries at each end (bits, requests, success ratio,
//! latency).

use axum::Json as JsonBody;
use axum::extract::State;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::ApiState;
use crate::apps::{EntryKind, desired_entries};
use crate::core::View;

/// The store of `link` at `node`, in the API's terms.
fn store(view: &View, node: Uuid, link: Uuid) -> Json {
    match view.kms_entry(node, "stores", "link", link) {
        None => json!({"node": node, "reported": false}),
        Some(s) => {
            let key_bits = s["key_bits"].as_u64().unwrap_or(0);
            let stored = s["stored"].as_u64().unwrap_or(0);
            json!({
                "node": node, "reported": true,
                "stored_keys": stored, "stored_bits": stored * key_bits, "free_keys": s["free_owned"],
                "fill_ratio": s["fill_ratio"], "fill_bps": s["fill_bps"], "consumption_bps": s["consumption_bps"],
                "seconds_to_empty": s["seconds_to_empty"], "filled_keys": s["filled"], "consumed_keys": s["consumed"],
                "dropped_keys": s["dropped"], "alarms": s["alarms"],
            })
        }
    }
}

/// The monitoring document.
pub fn document(view: &View) -> Json {
    let links: Vec<Json> = view
        .network
        .links
        .values()
        .map(|l| {
            json!({
                "link_id": l.id, "up": l.up, "skr_bps": l.skr_bps, "eskr_bps": l.eskr_bps,
                "expected_consumption_bps": l.expected_bps,
                "reserved_bps": view.promised.get(&l.id).copied().unwrap_or(0), "qber": l.qber,
                "key_stores": l.ends.iter().map(|(n, _)| store(view, *n, l.id)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut virtual_links = Vec::new();
    let mut applications = Vec::new();
    for app in view.apps.values() {
        let spec = &app.spec;
        for leg in app.legs.iter().filter(|l| l.is_virtual()) {
            let relay = view.kms_entry(spec.server.node, "relays", "link", leg.link).map(|r| {
                let (relays, failures) = (r["relays"].as_u64().unwrap_or(0), r["failures"].as_u64().unwrap_or(0));
                json!({"source": spec.server.node, "relays": relays, "keys": r["keys"], "failures": failures,
                    "success_ratio": if relays + failures == 0 { 1.0 } else { relays as f64 / (relays + failures) as f64 },
                    "last_error": r["last_error"], "latency_p50_ms": r["latency_p50_ms"], "latency_p99_ms": r["latency_p99_ms"]})
            });
            virtual_links.push(json!({
                "link_id": leg.link, "application": spec.app_id, "nodes": leg.nodes, "over": leg.links,
                "virt_bandwidth_bps": spec.qos.demand_bps(), "relay": relay,
                "key_stores": [store(view, spec.server.node, leg.link), store(view, leg.client_node, leg.link)],
            }));
        }
        let deliveries: Vec<Json> = desired_entries(app)
            .iter()
            .filter(|e| e.kind == EntryKind::App)
            .filter_map(|e| {
                let d = view.kms_entry(e.node, "applications", "app", e.id)?;
                Some(json!({"node": e.node, "sae_id": e.body["server_app_id"], "consumed_bits": d["consumed_bits"],
                    "requests": d["requests"], "delivered": d["delivered"], "failed": d["failed"],
                    "success_ratio": d["success_ratio"], "latency_p50_ms": d["latency_p50_ms"], "latency_p99_ms": d["latency_p99_ms"],
                    "fetch_requests": d["fetch_requests"], "fetched_keys": d["fetched_keys"], "fetch_failed": d["fetch_failed"],
                    "starved_s": d["starved_s"]}))
            })
            .collect();
        applications.push(json!({
            "app_id": spec.app_id, "state": app.state, "rate_bps": spec.qos.demand_bps(), "ttl_s": spec.qos.ttl_s,
            "reroutes": app.reroutes, "links": app.legs.iter().map(|l| l.link).collect::<Vec<_>>(),
            "deliveries": deliveries,
        }));
    }
    json!({"links": links, "virtual_links": virtual_links, "applications": applications})
}

pub(super) async fn get(State(s): State<ApiState>) -> JsonBody<Json> {
    JsonBody(document(&s.core.view()))
}

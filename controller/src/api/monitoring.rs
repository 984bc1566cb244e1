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
    let Some(s) = view.kms_of(node).and_then(|k| k.store(link)) else {
        return json!({"node": node, "reported": false});
    };
    let c = &s.counters;
    let mut out = json!({
        "node": node, "reported": true,
        "stored_keys": c.stored, "stored_bits": c.stored_bits(), "free_keys": c.free_owned,
        "filled_keys": c.filled, "consumed_keys": c.consumed, "dropped_keys": c.dropped,
    });
    if let Some(h) = &s.health {
        out["fill_ratio"] = json!(h.fill_ratio);
        out["fill_bps"] = json!(h.fill_bps);
        out["consumption_bps"] = json!(h.consumption_bps);
        out["seconds_to_empty"] = json!(h.seconds_to_empty);
        out["alarms"] = json!(h.alarms);
    }
    out
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
            let relay = view.kms_of(spec.server.node).and_then(|k| k.relay(leg.link)).map(|r| {
                json!({"source": spec.server.node, "relays": r.relays, "keys": r.keys, "failures": r.failures,
                    "success_ratio": r.success_ratio(), "last_error": r.last_error,
                    "latency_p50_ms": r.latency_p50_ms, "latency_p99_ms": r.latency_p99_ms})
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
                let d = view.kms_of(e.node)?.application(e.id)?;
                Some(json!({"node": e.node, "sae_id": e.app().and_then(|a| a.server_app_id.clone()), "consumed_bits": d.consumed_bits,
                    "requests": d.requests, "delivered": d.delivered, "failed": d.failed,
                    "success_ratio": d.success_ratio, "latency_p50_ms": d.latency_p50_ms, "latency_p99_ms": d.latency_p99_ms,
                    "fetch_requests": d.fetch_requests, "fetched_keys": d.fetched_keys, "fetch_failed": d.fetch_failed,
                    "starved_s": d.starved_s}))
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

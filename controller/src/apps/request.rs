//! Reading a registration request: every field at fault is collected with its JSON pointer
//! (unknown fields, missing or malformed ends, SAE identifiers that cannot travel in 014 paths
//! and 015 `inet:uri` leaves, QoS out of range or contradicting the ends), rather than stopping
//! at the first.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value as Json;
use uuid::Uuid;

use super::{AppSpec, Endpoint, Qos};

/// A field at fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the field (`/qos/rate_bps`).
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

fn fault(pointer: &str, detail: impl Into<String>) -> FieldError {
    FieldError { pointer: pointer.to_owned(), detail: detail.into() }
}

const SPEC_FIELDS: [&str; 4] = ["app_id", "server", "clients", "qos"];
const QOS_FIELDS: [&str; 8] = [
    "rate_bps",
    "max_rate_bps",
    "ttl_s",
    "max_hops",
    "include_nodes",
    "exclude_nodes",
    "exclude_locations",
    "priority",
];

/// Reads a registration, collecting every field at fault rather than stopping at the first.
pub fn parse_spec(body: &Json) -> Result<AppSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![fault("", "the body must be a JSON object")]);
    };
    for k in obj.keys().filter(|k| !SPEC_FIELDS.contains(&k.as_str())) {
        errors.push(fault(
            &format!("/{k}"),
            format!("unknown field; expected one of {SPEC_FIELDS:?}"),
        ));
    }
    let app_id = match obj.get("app_id") {
        None | Some(Json::Null) => Uuid::new_v4(),
        Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => id,
            None => {
                errors.push(fault("/app_id", "must be a UUID string"));
                Uuid::nil()
            }
        },
    };
    let server = endpoint(obj.get("server"), "/server", &mut errors);
    let mut clients = Vec::new();
    match obj.get("clients") {
        Some(Json::Array(list)) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                if let Some(e) = endpoint(Some(c), &format!("/clients/{i}"), &mut errors) {
                    clients.push(e);
                }
            }
        }
        Some(Json::Array(_)) => errors.push(fault("/clients", "at least one client is needed")),
        None => errors.push(fault("/clients", "required: a list of {sae_id, node}")),
        Some(_) => errors.push(fault("/clients", "must be a list of {sae_id, node}")),
    }
    let qos = qos(obj.get("qos"), &mut errors);
    if let Some(s) = &server {
        for (i, c) in clients.iter().enumerate() {
            if c.sae_id == s.sae_id {
                errors.push(fault(
                    &format!("/clients/{i}/sae_id"),
                    "the server SAE cannot be its own client",
                ));
            }
            if c.node == s.node {
                errors.push(fault(
                    &format!("/clients/{i}/node"),
                    "the client is on the server's node; keys come from QKD links between nodes",
                ));
            }
        }
        if let Some(q) = &qos {
            for (i, n) in q.include_nodes.iter().enumerate() {
                if *n == s.node
                    || clients.iter().any(|c| c.node == *n)
                    || q.exclude_nodes.contains(n)
                {
                    errors.push(fault(
                        &format!("/qos/include_nodes/{i}"),
                        "an end of the application, or excluded, cannot be a node to include",
                    ));
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, c) in clients.iter().enumerate() {
        if !seen.insert(&c.sae_id) {
            errors.push(fault(&format!("/clients/{i}/sae_id"), "named twice"));
        }
    }
    if clients.iter().map(|c| c.node).collect::<BTreeSet<_>>().len() > 1
        && qos.as_ref().is_some_and(|q| !q.include_nodes.is_empty())
    {
        errors.push(fault(
            "/qos/include_nodes",
            "only for applications whose clients share one node",
        ));
    }
    match (errors.is_empty(), server, qos) {
        (true, Some(server), Some(qos)) => Ok(AppSpec { app_id, server, clients, qos }),
        _ => Err(errors),
    }
}

fn endpoint(v: Option<&Json>, at: &str, errors: &mut Vec<FieldError>) -> Option<Endpoint> {
    let Some(obj) = v.and_then(Json::as_object) else {
        errors.push(fault(at, "required: an object {sae_id, node}"));
        return None;
    };
    for k in obj.keys().filter(|k| *k != "sae_id" && *k != "node") {
        errors.push(fault(&format!("{at}/{k}"), "unknown field; expected sae_id and node"));
    }
    let sae = match obj.get("sae_id").and_then(Json::as_str) {
        Some(s) if valid_sae(s) => Some(s.to_owned()),
        Some(_) => {
            errors.push(fault(
                &format!("{at}/sae_id"),
                "must be 1-255 characters of letters, digits and -._~:/",
            ));
            None
        }
        None => {
            errors.push(fault(&format!("{at}/sae_id"), "required: a string"));
            None
        }
    };
    let node = match obj.get("node").and_then(Json::as_str).map(Uuid::parse_str) {
        Some(Ok(n)) => Some(n),
        _ => {
            errors.push(fault(&format!("{at}/node"), "required: the node's qkdn_id (a UUID)"));
            None
        }
    };
    Some(Endpoint { sae_id: sae?, node: node? })
}

/// SAE identifiers travel in 014 URL paths and 015 `inet:uri` leaves.
fn valid_sae(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/".contains(&b))
}

fn qos(v: Option<&Json>, errors: &mut Vec<FieldError>) -> Option<Qos> {
    let Some(obj) = v.and_then(Json::as_object) else {
        errors.push(fault("/qos", "required: an object with at least rate_bps"));
        return None;
    };
    let before = errors.len();
    for k in obj.keys().filter(|k| !QOS_FIELDS.contains(&k.as_str())) {
        errors.push(fault(
            &format!("/qos/{k}"),
            format!("unknown field; expected one of {QOS_FIELDS:?}"),
        ));
    }
    let int = |name: &str, max: u64, errors: &mut Vec<FieldError>| -> Option<u64> {
        match obj.get(name) {
            None | Some(Json::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Some(n),
                _ => {
                    errors.push(fault(
                        &format!("/qos/{name}"),
                        format!("must be an integer from 0 to {max}"),
                    ));
                    None
                }
            },
        }
    };
    let rate = int("rate_bps", u64::from(u32::MAX), errors);
    if rate.is_none() && !obj.contains_key("rate_bps") {
        errors.push(fault("/qos/rate_bps", "required: the key rate to reserve, bit/s"));
    }
    if rate == Some(0) {
        errors.push(fault("/qos/rate_bps", "must be above 0"));
    }
    let max_rate = int("max_rate_bps", u64::from(u32::MAX), errors);
    if let (Some(r), Some(m)) = (rate, max_rate)
        && m < r
    {
        errors.push(fault("/qos/max_rate_bps", format!("{m} is below rate_bps {r}")));
    }
    let ttl = int("ttl_s", u64::from(u32::MAX), errors).map(|t| t as u32);
    let max_hops = int("max_hops", 64, errors).map(|h| h as usize);
    if max_hops == Some(0) {
        errors.push(fault("/qos/max_hops", "must be at least 1"));
    }
    let priority = int("priority", u64::from(u32::MAX), errors).unwrap_or(0) as u32;
    let uuids = |name: &str, errors: &mut Vec<FieldError>| -> Vec<Uuid> {
        match obj.get(name) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(list)) => list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v.as_str().map(Uuid::parse_str) {
                    Some(Ok(u)) => Some(u),
                    _ => {
                        errors.push(fault(&format!("/qos/{name}/{i}"), "must be a node id (UUID)"));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                errors.push(fault(&format!("/qos/{name}"), "must be a list of node ids"));
                Vec::new()
            }
        }
    };
    let include_nodes = uuids("include_nodes", errors);
    let exclude_nodes = uuids("exclude_nodes", errors).into_iter().collect();
    let exclude_locations = match obj.get("exclude_locations") {
        None | Some(Json::Null) => BTreeSet::new(),
        Some(Json::Array(list)) if list.iter().all(Json::is_string) => {
            list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(_) => {
            errors
                .push(fault("/qos/exclude_locations", "must be a list of location ids (strings)"));
            BTreeSet::new()
        }
    };
    (errors.len() == before).then(|| Qos {
        rate_bps: rate.unwrap_or(0),
        max_rate_bps: max_rate,
        ttl_s: ttl,
        max_hops,
        include_nodes,
        exclude_nodes,
        exclude_locations,
        priority,
    })
}

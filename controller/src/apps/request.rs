//! Reading a registration request: every field at fault is collected with its JSON pointer
//! (unknown fields, missing or malformed ends, SAE identifiers that cannot travel in 014 paths
//! and 015 `inet:uri` leaves, QoS out of range or contradicting the ends), rather than stopping
//! at the first.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value as Json;
use uuid::Uuid;

use super::{AppSpec, Endpoint, Qos};

pub use qkdn_kit::problem::FieldError;

fn fault(pointer: &str, detail: impl Into<String>) -> FieldError {
    FieldError { pointer: pointer.to_owned(), detail: detail.into() }
}

const SPEC_FIELDS: [&str; 4] = ["app_id", "server", "clients", "qos"];

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

/// Reads the QoS as [`Qos`] declares it (its fields, their types, unknown fields refused),
/// member by member so that every member at fault is named (a list down to its item), then
/// checks what the types do not say.
fn qos(v: Option<&Json>, errors: &mut Vec<FieldError>) -> Option<Qos> {
    let Some(obj) = v.and_then(Json::as_object) else {
        errors.push(fault("/qos", "required: an object with at least rate_bps"));
        return None;
    };
    let before = errors.len();
    let one = |k: &str, value: Json| {
        Qos::deserialize(Json::Object([(k.to_owned(), value)].into_iter().collect()))
    };
    let mut present: serde_json::Map<String, Json> =
        obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut at_fault = Vec::new();
    for (k, value) in &present {
        let Err(e) = one(k, value.clone()) else { continue };
        at_fault.push(k.clone());
        let items = value.as_array().map(|items| {
            items
                .iter()
                .enumerate()
                .filter(|(_, item)| one(k, Json::Array(vec![(*item).clone()])).is_err())
        });
        match items.map(|bad| bad.map(|(i, _)| i).collect::<Vec<_>>()) {
            Some(bad) if !bad.is_empty() => errors
                .extend(bad.into_iter().map(|i| fault(&format!("/qos/{k}/{i}"), e.to_string()))),
            _ => errors.push(fault(&format!("/qos/{k}"), e.to_string())),
        }
    }
    if !present.contains_key("rate_bps") {
        errors.push(fault("/qos/rate_bps", "required: the key rate to reserve, bit/s"));
    }
    // What the members that read say is checked too, so that every fault is named at once.
    for k in at_fault {
        present.remove(&k);
    }
    let rate_given = present.contains_key("rate_bps");
    let qos = match Qos::deserialize(Json::Object(present)) {
        Ok(q) => q,
        Err(e) => {
            errors.push(fault("/qos", e.to_string()));
            return None;
        }
    };
    let most = u64::from(u32::MAX);
    if rate_given && !(1..=most).contains(&qos.rate_bps) {
        errors.push(fault("/qos/rate_bps", format!("must be an integer from 1 to {most}")));
    }
    if let Some(m) = qos.max_rate_bps {
        if m > most {
            errors.push(fault("/qos/max_rate_bps", format!("must be an integer up to {most}")));
        } else if rate_given && m < qos.rate_bps {
            errors.push(fault(
                "/qos/max_rate_bps",
                format!("{m} is below rate_bps {}", qos.rate_bps),
            ));
        }
    }
    if qos.max_hops.is_some_and(|h| !(1..=64).contains(&h)) {
        errors.push(fault("/qos/max_hops", "must be from 1 to 64"));
    }
    (errors.len() == before).then_some(qos)
}

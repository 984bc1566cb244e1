//! The state documents a RESTCONF server describes itself with: `ietf-yang-library` (RFC 8525,
//! with the RFC 7895 `modules-state` that older clients read) and `ietf-restconf-monitoring`
//! (capabilities and streams). They are written into the datastore's state at start-up, so they
//! are served, filtered and validated like any other data.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value as Json, json};

use super::streams::EventStreams;
use crate::schema::Schema;

/// Revision of `ietf-yang-library` this server implements.
pub(crate) const YANG_LIBRARY_REVISION: &str = "2019-01-04";

/// The capabilities the server implements (RFC 8040 §9.1.1).
pub(crate) const CAPABILITIES: &[&str] = &[
    "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",
    "urn:ietf:params:restconf:capability:depth:1.0",
    "urn:ietf:params:restconf:capability:fields:1.0",
    "urn:ietf:params:restconf:capability:with-defaults:1.0",
];

/// A content identifier that changes whenever the module set does.
fn content_id(schema: &Schema) -> String {
    let mut hasher = DefaultHasher::new();
    for m in schema.modules() {
        (&m.name, &m.revision, m.implemented).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The `ietf-yang-library` state document.
pub(crate) fn yang_library(schema: &Schema) -> Json {
    let id = content_id(schema);
    let entry = |m: &crate::schema::ModuleDef| {
        let mut o = serde_json::Map::new();
        o.insert("name".into(), json!(m.name));
        if let Some(rev) = &m.revision {
            o.insert("revision".into(), json!(rev));
        }
        o.insert("namespace".into(), json!(m.namespace));
        Json::Object(o)
    };
    let implemented: Vec<Json> =
        schema.modules().iter().filter(|m| m.implemented).map(entry).collect();
    let import_only: Vec<Json> = schema
        .modules()
        .iter()
        .filter(|m| !m.implemented && m.revision.is_some())
        .map(entry)
        .collect();
    let mut module_set = json!({"name": "qkdn", "module": implemented});
    if !import_only.is_empty() {
        module_set["import-only-module"] = json!(import_only);
    }
    let legacy: Vec<Json> = schema
        .modules()
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "revision": m.revision.clone().unwrap_or_default(),
                "namespace": m.namespace,
                "conformance-type": if m.implemented { "implement" } else { "import" },
            })
        })
        .collect();
    json!({
        "ietf-yang-library:yang-library": {
            "module-set": [module_set],
            "schema": [{"name": "qkdn", "module-set": ["qkdn"]}],
            "datastore": [
                {"name": "ietf-datastores:running", "schema": "qkdn"},
                {"name": "ietf-datastores:operational", "schema": "qkdn"}
            ],
            "content-id": id,
        },
        "ietf-yang-library:modules-state": {"module-set-id": id, "module": legacy}
    })
}

/// The `ietf-restconf-monitoring` state document; stream locations are built on `base_url`.
pub(crate) fn restconf_state(streams: &EventStreams, base_url: &str) -> Json {
    let streams: Vec<Json> = streams
        .all()
        .into_iter()
        .map(|(name, info)| {
            json!({
                "name": name,
                "description": info.description,
                "replay-support": false,
                "access": [{
                    "encoding": "json",
                    "location": format!("{}/restconf/streams/{}", base_url.trim_end_matches('/'), name),
                }],
            })
        })
        .collect();
    let mut state = json!({"capabilities": {"capability": CAPABILITIES}});
    if !streams.is_empty() {
        state["streams"] = json!({"stream": streams});
    }
    json!({"ietf-restconf-monitoring:restconf-state": state})
}

//! The ETSI GS QKD 015 notifications the agent sends, as RFC 7951 JSON ready for the RESTCONF
//! event stream (where libyang validates each one before it goes out).

use serde_json::{Value as Json, json};
use uuid::Uuid;

const MODULE: &str = "etsi-qkd-sdn-node";

fn notification(name: &str, body: Json) -> Json {
    json!({ format!("{MODULE}:{name}"): body })
}

/// Severity of alarms and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Service affected.
    Major,
    /// Service not affected.
    Minor,
}

impl Severity {
    fn identity(self) -> &'static str {
        match self {
            Severity::Major => "etsi-qkd-node-types:MAJOR",
            Severity::Minor => "etsi-qkd-node-types:MINOR",
        }
    }
}

/// What an alarm or event is about.
#[derive(Clone, Debug)]
pub enum Subject {
    /// A link and its status identity (`ACTIVE`, `PASSIVE`, ...).
    Link(Uuid, &'static str),
    /// An interface and its status identity (`ENABLED`, `FAILED`, ...).
    Interface(u32, &'static str),
    /// An application and its status identity (`ON`, `DISCONNECTED`, ...).
    Application(Uuid, &'static str),
}

fn subject_body(subject: &Subject, message: &str, severity: Severity) -> Json {
    match subject {
        Subject::Link(id, status) => json!({"link": {"qkdl_id": id.to_string(),
            "qkdl_status": format!("etsi-qkd-node-types:{status}"), "message": message, "severity": severity.identity()}}),
        Subject::Interface(id, status) => json!({"interface": {"qkdi_id": id,
            "qkdi_status": format!("etsi-qkd-node-types:{status}"), "message": message, "severity": severity.identity()}}),
        Subject::Application(id, status) => json!({"application": {"app_id": id.to_string(),
            "app_status": format!("etsi-qkd-node-types:{status}"), "message": message, "severity": severity.identity()}}),
    }
}

/// `alarm`.
pub fn alarm(subject: &Subject, message: &str, severity: Severity) -> Json {
    notification("alarm", subject_body(subject, message, severity))
}

/// `event`.
pub fn event(subject: &Subject, message: &str, severity: Severity) -> Json {
    notification("event", subject_body(subject, message, severity))
}

/// `sdqkdn_interface_new`, from the interface's configuration (`qkd_interface` entry).
pub fn interface_new(interface: &Json) -> Json {
    let mut item = interface.clone();
    if let Some(map) = item.as_object_mut() {
        map.remove("qkdi_status");
    }
    notification("sdqkdn_interface_new", json!({"qkd_interface": item}))
}

/// `sdqkdn_interface_down`.
pub fn interface_down(interface: u32, reason: &str) -> Json {
    notification(
        "sdqkdn_interface_down",
        json!({"qkd_interface": {"qkdi_id": interface, "reason": reason}}),
    )
}

/// `sdqkdn_interface_out`.
pub fn interface_out(interface: u32) -> Json {
    notification("sdqkdn_interface_out", json!({"qkd_interface": {"qkdi_id": interface}}))
}

/// `sdqkdn_link_down`.
pub fn link_down(link: Uuid, reason: &str) -> Json {
    notification(
        "sdqkdn_link_down",
        json!({"qkd_link": {"qkdl_id": link.to_string(), "reason": reason}}),
    )
}

/// `sdqkdn_link_perf_update`, from the link's `qkdl_performance` state.
pub fn link_perf_update(link: Uuid, performance: &Json) -> Json {
    notification(
        "sdqkdn_link_perf_update",
        json!({"qkd_link": {"qkdl_id": link.to_string(), "performance": performance}}),
    )
}

/// `sdqkdn_link_overloaded`.
pub fn link_overloaded(link: Uuid, expected: u64, skr: u64, eskr: u64) -> Json {
    notification(
        "sdqkdn_link_overloaded",
        json!({"qkd_link": {"qkdl_id": link.to_string(),
            "performance": {"expected_consumption": clamp32(expected), "skr": clamp32(skr), "eskr": clamp32(eskr)}}}),
    )
}

/// `sdqkdn_application_new`, from the application's configuration (`qkd_app` entry).
pub fn application_new(app: &Json) -> Json {
    let mut body = serde_json::Map::new();
    for key in
        ["app_type", "server_app_id", "client_app_id", "app_priority", "local_qkdn_id", "app_qos"]
    {
        if let Some(v) = app.get(key) {
            body.insert(key.to_owned(), v.clone());
        }
    }
    notification("sdqkdn_application_new", json!({"qkd_application": body}))
}

/// `sdqkdn_application_qos_update`.
pub fn application_qos_update(app: &Json) -> Json {
    let mut body = serde_json::Map::new();
    for key in ["app_id", "app_qos", "app_priority"] {
        if let Some(v) = app.get(key) {
            body.insert(key.to_owned(), v.clone());
        }
    }
    notification("sdqkdn_application_qos_update", json!({"qkd_application": body}))
}

/// `sdqkdn_application_disconnected`.
pub fn application_disconnected(app: Uuid) -> Json {
    notification(
        "sdqkdn_application_disconnected",
        json!({"qkd_application": {"app_id": app.to_string()}}),
    )
}

/// A rate as a `uint32` leaf (bit/s; rates above 4.29 Gbit/s are reported as the maximum).
pub fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

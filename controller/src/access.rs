//! Who may call the controller: its API listener's requests sorted into the interfaces and
//! operations of the service kit's policy table (`qkdn_kit::policy`), and the gate in front.
//!
//! `/api/...` is the REST API: `POST /api/v1/nodes` registers an agent (only itself),
//! `GET /api/v1/nodes/{id}` reads one registration (an agent: only its own), `GET` of
//! `/api/v1/applications[/{id}]` reads applications (an SAE: only its own), other reads are
//! reads, and everything else writes (operator admins). The rest of the listener is the ETSI 018
//! RESTCONF northbound: reads, and operations (`POST /restconf/operations/...`) by orchestrators
//! and admins.

use std::sync::Arc;

use axum::http::Method;
use qkdn_kit::authz::{Denials, ErrorFormat, Gate, Tokens};
use qkdn_kit::{Interface, Operation};

use crate::config::ControllerConfig;

fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Sorts a request of the API listener.
pub fn classify(method: &Method, path: &str) -> (Interface, Option<Operation>) {
    if let Some(rest) = path.strip_prefix("/api/") {
        let rest = rest.trim_end_matches('/');
        let segments: Vec<&str> = rest.split('/').collect();
        let operation = match (method, segments.as_slice()) {
            (&Method::POST, ["v1", "nodes"]) => Operation::RegisterNode,
            (m, ["v1", "nodes", _]) if reads(m) => Operation::ReadRegistration,
            (m, ["v1", "applications"] | ["v1", "applications", _]) if reads(m) => {
                Operation::ReadApplications
            }
            (m, _) if reads(m) => Operation::Read,
            _ => Operation::Write,
        };
        return (Interface::ControllerApi, Some(operation));
    }
    let operation = if reads(method) {
        Operation::Read
    } else if *method == Method::POST && path.starts_with("/restconf/operations/") {
        Operation::Invoke
    } else {
        Operation::Write
    };
    (Interface::ControllerRestconf, Some(operation))
}

/// The error format of the API listener's edge, by path.
pub fn format(path: &str) -> ErrorFormat {
    ErrorFormat::of(classify(&Method::GET, path).0)
}

/// The gate of the API listener.
pub fn gate(config: &ControllerConfig, denials: Arc<Denials>) -> Gate {
    let tokens = Tokens::from_config(&config.api.tokens).unwrap_or_default();
    Gate::new(classify, denials)
        .tokens(tokens)
        .insecure(config.api.listener().insecure(config.insecure_allow_unauthenticated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_path_and_method() {
        let op = |m: Method, p: &str| classify(&m, p);
        assert_eq!(
            op(Method::POST, "/api/v1/nodes"),
            (Interface::ControllerApi, Some(Operation::RegisterNode))
        );
        assert_eq!(
            op(Method::GET, "/api/v1/nodes/x"),
            (Interface::ControllerApi, Some(Operation::ReadRegistration))
        );
        assert_eq!(op(Method::GET, "/api/v1/nodes").1, Some(Operation::Read));
        assert_eq!(op(Method::GET, "/api/v1/applications/x").1, Some(Operation::ReadApplications));
        assert_eq!(op(Method::DELETE, "/api/v1/applications/x").1, Some(Operation::Write));
        assert_eq!(op(Method::PATCH, "/api/v1/applications/x").1, Some(Operation::Write));
        assert_eq!(
            op(Method::POST, "/restconf/operations/etsi-qkd-sdn-connectivity:deploy-segment"),
            (Interface::ControllerRestconf, Some(Operation::Invoke))
        );
        assert_eq!(op(Method::GET, "/restconf/data").1, Some(Operation::Read));
        assert_eq!(op(Method::PUT, "/restconf/data/x").1, Some(Operation::Write));
    }
}

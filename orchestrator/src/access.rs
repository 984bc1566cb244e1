//! Who may call the orchestrator: its API listener's requests sorted into the interfaces and
//! operations of the service kit's policy table (`qkdn_kit::policy`), and the gate in front.
//! `/api/...` is the REST API (operators; admins change services); the rest is the merged ETSI
//! 018 RESTCONF view (operators, and parent orchestrators, read it).

use std::sync::Arc;

use axum::http::Method;
use qkdn_kit::authz::{Denials, ErrorFormat, Gate};
use qkdn_kit::{Interface, Operation};

use crate::config::OrchestratorConfig;

/// Sorts a request of the API listener.
pub fn classify(method: &Method, path: &str) -> (Interface, Option<Operation>) {
    let interface = if path.starts_with("/api/") {
        Interface::OrchestratorApi
    } else {
        Interface::OrchestratorRestconf
    };
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    (interface, Some(if read { Operation::Read } else { Operation::Write }))
}

/// The error format of the API listener's edge, by path.
pub fn format(path: &str) -> ErrorFormat {
    ErrorFormat::of(classify(&Method::GET, path).0)
}

/// The gate of the API listener.
pub fn gate(config: &OrchestratorConfig, denials: Arc<Denials>) -> Gate {
    Gate::new(classify, denials)
        .insecure(config.api.listener().insecure(config.insecure_allow_unauthenticated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_path_and_method() {
        assert_eq!(
            classify(&Method::POST, "/api/v1/services"),
            (Interface::OrchestratorApi, Some(Operation::Write))
        );
        assert_eq!(
            classify(&Method::GET, "/restconf/data"),
            (Interface::OrchestratorRestconf, Some(Operation::Read))
        );
    }
}

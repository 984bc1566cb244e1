//! The management endpoints (plain HTTP, for supervisors and Prometheus): `/healthz`,
//! `/readyz` and `/metrics` (see [`crate::metrics`]), and nothing else: no key, no key ID, no
//! change. Everything an operator or a controller reads beyond that (link diagnostics, the
//! KMS's stores, relays and applications) is on the authenticated API ([`crate::api`]), under
//! the authorization policy. [`ManagementState`] ([`crate::views`]) is what both read.

use axum::Router;
use qkdn_kit::management::Observed;

pub use crate::views::{KmsView, ManagementState};

/// The router of the management endpoints.
pub fn router(state: ManagementState) -> Router {
    qkdn_kit::management::router(state)
}

impl Observed for ManagementState {
    fn not_ready(&self) -> Option<String> {
        (!*self.ready.borrow()).then(|| "starting".to_owned())
    }

    fn metrics(&self) -> String {
        crate::metrics::render(self)
    }
}

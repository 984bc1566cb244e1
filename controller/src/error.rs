//! Errors of the controller's REST API: the service kit's RFC 9457 problems
//! ([`qkdn_kit::problem`]), shared with the orchestrator.

pub use qkdn_kit::problem::{ApiError, FieldError};

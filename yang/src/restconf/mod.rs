//! RESTCONF (RFC 8040): the server ([`server`]) and a client ([`client`]). Services serve the
//! server's router with the service kit's hardened server (`qkdn_kit::server`).

pub mod client;
pub mod server;
pub mod sse;

pub use client::{ClientError, RestconfClient};
pub use server::{
    EventStreams, NotificationPublisher, OperationHandler, RestconfOptions, RestconfServer,
    RestconfServerBuilder, WriteFilter,
};

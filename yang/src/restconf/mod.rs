//! RESTCONF (RFC 8040): the server ([`server`]), a client ([`client`]), and serving a router on
//! a TCP listener with the timeouts and graceful shutdown a long-running service needs
//! ([`serve()`]).

pub mod client;
mod serve;
pub mod server;
pub mod sse;

pub use client::{ClientError, RestconfClient};
pub use serve::{ServeOptions, serve};
pub use server::{
    EventStreams, NotificationPublisher, OperationHandler, RestconfOptions, RestconfServer,
    RestconfServerBuilder,
};

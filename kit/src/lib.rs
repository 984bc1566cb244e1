//! The service kit: plumbing every qkdn service binary shares, so that each interface is
//! secured the same way.
//!
//! * [`identity`]: the typed identities certificates carry (`urn:qkdn:node:...`, `sae`,
//!   `controller`, `orchestrator`, `operator` with a role), and their one parser;
//! * [`policy`]: the authorization table (identity kind x interface x operation), the one place
//!   that says who may do what;
//! * [`authz`]: its enforcement on every request (an axum layer, gRPC included), refusals in
//!   each interface's format, logged and counted;
//! * [`server`]: serving a router with a hardened edge (connection caps with eviction,
//!   handshake, header, body and idle timeouts, body limits);
//! * [`listener`]: the configuration check that every listener authenticates its callers;
//! * [`tls`]: the TLS policy (rustls, aws-lc-rs, X25519MLKEM768) and [`pki`]: a small CA
//!   issuing certificates with typed identities; `psk` (feature `psk`): TLS 1.2 DHE-PSK
//!   through OpenSSL for clients that hold a pre-shared key instead of a certificate;
//! * [`config`]: the one configuration loader (TOML < environment < flags; a problem names
//!   the key, the file and the line);
//! * [`binary`]: the `main` of every service binary, with [`process`] (logging, stop signals,
//!   the run loop), [`management`] (`/healthz`, `/readyz`, `/metrics`) with [`metrics`] (the
//!   Prometheus exposition), [`problem`] (RFC 9457 errors and JSON bodies), and [`task`]
//!   (tasks that stop with their owner).
//!
//! A request flows: TCP accept ([`server`], within the connection cap) -> TLS handshake (the
//! client certificate must chain to the CA) -> its typed identity parsed once per connection
//! -> the body read within its limits -> [`authz::Gate`] classifies and decides with
//! [`policy::RULES`] -> the handler, which judges the conditions left to it through
//! [`authz::Authorized`].

pub mod authz;
pub mod binary;
pub mod config;
pub mod identity;
pub mod listener;
pub mod management;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod problem;
pub mod process;
#[cfg(feature = "psk")]
pub mod psk;
pub mod records;
pub mod server;
pub mod servers;
pub mod task;
pub mod tls;

pub use authz::{Authorized, Caller, Denials, ErrorFormat, Gate, Refused};
pub use identity::{Identity, Kind, Role};
pub use policy::{Interface, Operation};
pub use server::{Edge, ServeOptions, serve};
pub use servers::Servers;

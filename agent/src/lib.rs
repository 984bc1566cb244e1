//! The qkdn node agent: one runs beside every QKD node.
//!
//! It serves the node's ETSI GS QKD 015 tree over RESTCONF (to qkdn's controller or another
//! vendor's), drives the node's QKD devices ([`device`]: a simulator that behaves like
//! hardware, or a real device's ETSI GS QKD 014 key manager), keeps the tree's state live and
//! sends the 015 notifications ([`node`], [`notify`]), registers with the controller
//! ([`register`]), and hands keys and the application table to the embedded KMS ([`kms`]).
//! Every listener but the management one is authenticated and authorized ([`access`]).
//!
//! [`Agent::start`] starts everything from an [`config::AgentConfig`].

pub mod access;
mod agent;
pub mod api;
pub mod binary;
pub mod config;
pub mod device;
pub mod kms;
pub mod management;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod peer;
pub mod register;
pub mod views;

pub use agent::{Agent, AgentError, AgentHandle, AgentOptions};

//! The qkdn SDN controller (DESIGN.md §2, §6): it learns the topology from its agents
//! ([`session`], [`inventory`], [`topology`]), routes key relay over it ([`routing`]),
//! registers applications and provisions their virtual links and `qkd_app` entries on the
//! nodes ([`apps`], [`provision`]), moves them when links fail ([`core`]), keeps everything in
//! redb ([`store`]) and serves a REST API ([`api`]) and the ETSI GS QKD 018 northbound over
//! RESTCONF ([`northbound`]).

pub mod access;
pub mod api;
pub mod apps;
pub mod binary;
pub mod config;
pub mod core;
pub mod error;
pub mod inventory;
pub mod metrics;
pub mod monitor;
pub mod northbound;
pub mod provision;
pub mod routing;
pub mod service;
pub mod session;
pub mod store;
pub mod topology;

pub use service::Controller;

//! The qkdn SDN controller (DESIGN.md §2, §6): it learns the topology from its agents
//! ([`session`], [`inventory`], [`topology`]), routes key relay over it ([`routing`]),
//! registers applications and provisions their virtual links and `qkd_app` entries on the
//! nodes ([`apps`], [`provision`]), moves them when links fail ([`core`]), keeps everything in
//! redb ([`records`]) and serves a REST API ([`api`]) and the ETSI GS QKD 018 northbound over
//! RESTCONF ([`northbound`]).

pub mod access;
pub mod api;
pub mod apps;
pub mod binary;
pub mod config;
pub mod controller;
pub mod core;
pub mod error;
pub mod inventory;
pub mod kms_figures;
pub mod metrics;
pub mod northbound;
pub mod provision;
pub mod records;
pub mod routing;
pub mod session;
pub mod topology;

pub use controller::Controller;

//! The qkdn orchestrator (DESIGN.md §2, §6.7): it follows several controllers' domains through
//! their ETSI 018 views ([`domain`]), joins them into one network whose gateways are the nodes
//! two domains share ([`merged`], [`state`]), and serves that network over REST ([`api`]) and
//! over RESTCONF in the same 018 modules ([`northbound`]), with end-to-end candidate paths cut
//! into per-domain segments ([`paths`]), and provisions end-to-end key services across domains,
//! segment by segment through each domain's controller ([`end_to_end`]).

pub mod access;
pub mod api;
pub mod binary;
pub mod config;
pub mod domain;
pub mod end_to_end;
pub mod merged;
pub mod metrics;
pub mod northbound;
pub mod orchestrator;
pub mod paths;
pub mod records;
pub mod service_book;
pub mod state;

pub use orchestrator::Orchestrator;

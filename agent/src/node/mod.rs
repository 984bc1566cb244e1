//! The node's ETSI GS QKD 015 tree and the rules around it: the baseline the configuration
//! defines ([`baseline`]), a plain-data view of the tree ([`catalog`]), the commit hook that
//! checks meaning and makes changes durable ([`rules`]), virtual links written as paths
//! ([`paths`]), the durable store ([`durable`]), and the live node that drives devices and keeps
//! the state current ([`live`]).

pub mod baseline;
pub mod catalog;
pub mod durable;
pub mod live;
pub mod paths;
pub mod rules;

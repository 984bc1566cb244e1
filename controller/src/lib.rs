//! The qkdn SDN controller (issue 5, in progress): today its key-relay routing, as pure
//! functions over a topology snapshot ([`routing`]). Agent sessions, the topology graph kept
//! live, the application API, provisioning, failure handling, durable state and the ETSI 018
//! northbound follow.

pub mod routing;

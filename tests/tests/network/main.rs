//! Networks of real processes: agents with simulated devices and KMSs, a controller, SAEs,
//! and a third-party RESTCONF server, all over their real interfaces.

mod authorization;
mod domains;
mod lab;
mod provisioning;
mod qber;
mod restart;
mod services;
mod static_agents;
mod supply;

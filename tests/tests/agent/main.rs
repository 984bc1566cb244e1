//! The agent as a real process: keys, RESTCONF, persistence, notifications, registration,
//! TeraFlowSDN interoperability, configuration errors and signals. One test binary, one module
//! per subject.

mod crash;
mod etsi014;
mod exhaustion;
mod harness;
mod keys;
mod kms;
mod lifecycle;
mod notifications;
mod peer_auth;
mod registration;
mod relay;
mod restconf;
mod rotation;
mod skip;
mod store_alarms;
mod supply;
mod tfs;

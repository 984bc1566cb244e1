//! Registration with the controller: on start, and again whenever the controller was lost, the
//! agent announces itself with `POST {controller}/api/v1/nodes`, retrying with exponential
//! backoff (and jitter) across the configured controller URLs. Once registered it checks every
//! heartbeat period that the controller still knows it (`GET {controller}/api/v1/nodes/{id}`):
//! a 404 or an unreachable controller starts registration again.
//!
//! Body of the registration:
//!
//! ```json
//! {"node_id": "<uuid>", "restconf_url": "http://127.0.0.1:8441/restconf",
//!  "kms": {"etsi014_url": null, "peer_url": "http://127.0.0.1:7441"},
//!  "certificate_sha256": null, "agent_version": "0.1.0",
//!  "management_url": "http://127.0.0.1:9441"}
//! ```

use std::time::Duration;

use qkdn_yang::restconf::client::jittered;
use serde::Serialize;
use tokio::sync::watch;

pub use qkdn_proto::node_api::{KmsEndpoints, Registration};

/// Where registration stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RegistrationState {
    /// No controller is configured.
    Standalone,
    /// Trying to register.
    Registering {
        /// Attempts so far.
        attempts: u32,
        /// Last failure.
        last_error: Option<String>,
    },
    /// Registered with this controller.
    Registered {
        /// The controller's URL.
        controller: String,
    },
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Registers and stays registered until `shutdown` turns true.
pub async fn run(
    urls: Vec<String>,
    http: reqwest::Client,
    registration: Registration,
    heartbeat: Duration,
    state: watch::Sender<RegistrationState>,
    mut shutdown: watch::Receiver<bool>,
) {
    if urls.is_empty() {
        state.send_replace(RegistrationState::Standalone);
        return;
    }
    let mut attempts = 0u32;
    let mut wait = INITIAL_BACKOFF;
    let mut next_url = 0usize;
    loop {
        let base = urls[next_url % urls.len()].trim_end_matches('/').to_owned();
        next_url += 1;
        attempts += 1;
        let result = http.post(format!("{base}/api/v1/nodes")).json(&registration).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("{base}: HTTP {}", r.status())),
            Err(e) => Some(format!("{base}: {e}")),
        };
        match error {
            None => {
                tracing::info!(controller = %base, "registered with the controller");
                state.send_replace(RegistrationState::Registered { controller: base.clone() });
                attempts = 0;
                wait = INITIAL_BACKOFF;
                next_url -= 1;
                // Stay registered: heartbeats until the controller forgets or disappears.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(heartbeat) => {}
                        _ = shutdown.changed() => if *shutdown.borrow() { return },
                    }
                    let check = http
                        .get(format!("{base}/api/v1/nodes/{}", registration.node_id))
                        .send()
                        .await;
                    match check {
                        Ok(r) if r.status().is_success() => continue,
                        Ok(r) => {
                            tracing::warn!(controller = %base, status = %r.status(), "the controller no longer knows this node; registering again")
                        }
                        Err(e) => {
                            tracing::warn!(controller = %base, error = %e, "the controller is unreachable; registering again")
                        }
                    }
                    break;
                }
                state.send_replace(RegistrationState::Registering {
                    attempts: 0,
                    last_error: Some("controller lost".into()),
                });
            }
            Some(err) => {
                tracing::debug!(error = %err, attempts, "registration failed");
                state.send_replace(RegistrationState::Registering {
                    attempts,
                    last_error: Some(err),
                });
                tokio::select! {
                    _ = tokio::time::sleep(jittered(wait)) => {}
                    _ = shutdown.changed() => if *shutdown.borrow() { return },
                }
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

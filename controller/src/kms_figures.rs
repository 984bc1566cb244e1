//! The KMS figures of an agent, for the controller's monitoring: its key stores (fill level,
//! fill and consumption rates, time to empty, alarms), its relays (per virtual link it sources:
//! relays, keys, failures, latency) and its applications (key bits delivered, `enc_keys`
//! requests, success ratio, latency), read from the agent's API (the `management_url` it
//! registered, `https://.../api`, with the controller's client certificate: the agent lets the
//! controllers of its domains read it) every `kms_poll_interval` and sent to the core as one
//! document.

use std::time::Duration;

use qkdn_proto::node_api::{ApplicationsReply, KmsFigures, RelaysReply, StoresReply};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::session::{SessionEvent, SessionId};

/// Polls `management_url` until the core stops listening.
pub async fn run(
    id: SessionId,
    http: reqwest::Client,
    management_url: String,
    period: Duration,
    core: mpsc::Sender<(SessionId, SessionEvent)>,
) {
    let base = management_url.trim_end_matches('/').to_owned();
    loop {
        tokio::time::sleep(period).await;
        let stores = read::<StoresReply>(&http, &base, "/v1/kms/stores").await;
        let relays = read::<RelaysReply>(&http, &base, "/v1/kms/relays").await;
        let applications = read::<ApplicationsReply>(&http, &base, "/v1/kms/applications").await;
        if stores.is_none() && relays.is_none() && applications.is_none() {
            continue;
        }
        let figures = KmsFigures {
            stores: stores.map(|r| r.stores).unwrap_or_default(),
            relays: relays.map(|r| r.relays).unwrap_or_default(),
            applications: applications.map(|r| r.applications).unwrap_or_default(),
        };
        if core.send((id, SessionEvent::Kms(Box::new(figures)))).await.is_err() {
            return;
        }
    }
}

/// One figure list of the agent's API; none when it does not answer, or not as agreed.
async fn read<T: DeserializeOwned>(http: &reqwest::Client, base: &str, path: &str) -> Option<T> {
    let response = http.get(format!("{base}{path}")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    match serde_json::from_str(&text) {
        Ok(figures) => Some(figures),
        Err(e) => {
            tracing::warn!(url = %format!("{base}{path}"), error = %e, "the agent's KMS figures do not read as agreed");
            None
        }
    }
}

//! The KMS figures of an agent, for the controller's monitoring: its key stores (fill level,
//! fill and consumption rates, time to empty, alarms), its relays (per virtual link it sources:
//! relays, keys, failures, latency) and its applications (key bits delivered, `enc_keys`
//! requests, success ratio, latency), read from the agent's API (the `management_url` it
//! registered, `https://.../api`, with the controller's client certificate: the agent lets the
//! controllers of its domains read it) every `kms_poll_interval` and sent to the core as one
//! document.

use std::time::Duration;

use serde_json::{Value as Json, json};
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
        let mut doc = json!({});
        for (name, path) in [
            ("stores", "/v1/kms/stores"),
            ("relays", "/v1/kms/relays"),
            ("applications", "/v1/kms/applications"),
        ] {
            let answer = match http.get(format!("{base}{path}")).send().await {
                Ok(r) if r.status().is_success() => {
                    r.text().await.ok().and_then(|t| serde_json::from_str::<Json>(&t).ok())
                }
                _ => None,
            };
            if let Some(mut a) = answer {
                doc[name] = a[name].take();
            }
        }
        if doc.as_object().is_some_and(|o| !o.is_empty())
            && core.send((id, SessionEvent::Kms(Box::new(doc)))).await.is_err()
        {
            return;
        }
    }
}

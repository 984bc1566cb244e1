//! The ETSI GS QKD 018 northbound: the project's reconstruction of `etsi-qkd-sdn-topology`,
//! `etsi-qkd-sdn-inventory` and `etsi-qkd-sdn-connectivity` served over RESTCONF on the API
//! listener. The tree is operational state written from the core's view whenever it changes
//! (at most every [`SYNC_PERIOD`]); the connectivity steps are RESTCONF operations that go to
//! the core; the controller's alarms and events go out on the `qkd-network` event stream.

mod operations;
mod tree;

use std::time::Duration;

use axum::Router;
use qkdn_yang::YangContext;
use qkdn_yang::datastore::Datastore;
use qkdn_yang::restconf::{NotificationPublisher, RestconfOptions, RestconfServer};

use crate::core::CoreHandle;

/// Shortest time between two writes of the tree.
pub const SYNC_PERIOD: Duration = Duration::from_millis(100);

/// Longest time key rates in the tree may trail the controller's (a link starting or stopping to
/// produce keys, and changes of anything else, are written within [`SYNC_PERIOD`]); rewriting
/// and revalidating the whole tree for every performance update of a large network would cost
/// more than the updates are worth.
pub const PERFORMANCE_SYNC_PERIOD: Duration = Duration::from_secs(5);

/// The event stream of the northbound.
pub const STREAM: &str = "qkd-network";

/// Why the northbound could not start.
#[derive(Debug, thiserror::Error)]
#[error("ETSI 018 northbound: {0}")]
pub struct NorthboundError(String);

/// The RESTCONF router of the northbound, with its tasks running.
pub async fn start(core: CoreHandle, base_url: String) -> Result<Router, NorthboundError> {
    let ctx = YangContext::northbound().map_err(|e| NorthboundError(e.to_string()))?;
    let ds = Datastore::builder(ctx).build().map_err(|e| NorthboundError(e.message))?;
    let builder = RestconfServer::builder(ds.clone())
        .options(RestconfOptions { base_url, ..RestconfOptions::default() })
        .stream(STREAM, "ETSI GS QKD 018 notifications of this controller's network");
    let server = operations::register(builder, core.clone())
        .build()
        .await
        .map_err(|e| NorthboundError(e.message))?;
    let publisher = server.publisher(STREAM).expect("stream registered above");
    tokio::spawn(sync_tree(core.clone(), ds));
    tokio::spawn(forward_events(core, publisher));
    Ok(server.router())
}

/// Writes the tree from each new view (coalescing views that arrive within the period).
async fn sync_tree(core: CoreHandle, ds: Datastore) {
    let mut views = core.watch();
    // What was written: the structure (the network without key rates, but with which links
    // produce keys at all: a link starting or stopping matters to routing at once), the
    // applications, and when the key rates were last written.
    type Written = (serde_json::Value, serde_json::Value, Vec<bool>);
    let mut written: Option<Written> = None;
    let mut rates_written = tokio::time::Instant::now();
    loop {
        let view = views.borrow_and_update().clone();
        let structure = tree::network(&view, false);
        let apps = tree::applications(&view, false);
        let producing: Vec<bool> = view.network.links.values().map(|l| l.skr_bps > 0).collect();
        let now = (structure, apps, producing);
        let same_structure = written.as_ref() == Some(&now);
        if !same_structure || rates_written.elapsed() >= PERFORMANCE_SYNC_PERIOD {
            let a = ds
                .set_state("/etsi-qkd-sdn-topology:qkd_network", tree::network(&view, true))
                .await;
            let b = ds
                .set_state(
                    "/etsi-qkd-sdn-connectivity:qkd_applications",
                    tree::applications(&view, true),
                )
                .await;
            match (a, b) {
                (Ok(_), Ok(_)) => {
                    written = Some(now);
                    rates_written = tokio::time::Instant::now();
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e.message, path = ?e.path, "the ETSI 018 tree was not written")
                }
            }
        }
        tokio::time::sleep(SYNC_PERIOD).await;
        let deadline = rates_written + PERFORMANCE_SYNC_PERIOD;
        tokio::select! {
            changed = views.changed() => if changed.is_err() {
                return;
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The controller's alarms and events as `etsi-qkd-sdn-inventory` notifications.
async fn forward_events(core: CoreHandle, publisher: NotificationPublisher) {
    let mut events = core.events();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Err(e) = publisher.publish(tree::notification(&event)) {
                    tracing::warn!(error = %e.message, "notification not published");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the northbound stream fell behind; events dropped");
            }
            Err(_) => return,
        }
    }
}

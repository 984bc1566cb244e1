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

/// The event stream of the northbound.
pub const STREAM: &str = "qkd-network";

/// Why the northbound could not start.
#[derive(Debug, thiserror::Error)]
#[error("ETSI 018 northbound: {0}")]
pub struct NorthboundError(String);

/// The RESTCONF router of the northbound, with its tasks running.
pub async fn start(core: CoreHandle, base_url: String) -> Result<Router, NorthboundError> {
    let ctx = YangContext::qkdn().map_err(|e| NorthboundError(e.to_string()))?;
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
    let mut written: Option<(serde_json::Value, serde_json::Value)> = None;
    loop {
        let view = views.borrow_and_update().clone();
        let network = tree::network(&view);
        let apps = tree::applications(&view);
        if written.as_ref() != Some(&(network.clone(), apps.clone())) {
            let a = ds.set_state("/etsi-qkd-sdn-topology:qkd_network", network.clone()).await;
            let b = ds.set_state("/etsi-qkd-sdn-connectivity:qkd_applications", apps.clone()).await;
            match (a, b) {
                (Ok(_), Ok(_)) => written = Some((network, apps)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e.message, path = ?e.path, "the ETSI 018 tree was not written")
                }
            }
        }
        tokio::time::sleep(SYNC_PERIOD).await;
        if views.changed().await.is_err() {
            return;
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

//! The merged network over RESTCONF, in the ETSI 018 topology and inventory modules the
//! controllers serve (the connectivity operations are the controllers' own), so
//! orchestrators can be stacked and any RESTCONF client can read the whole network: written as
//! operational state whenever the merged network changes (at most every [`SYNC_PERIOD`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use qkdn_yang::YangContext;
use qkdn_yang::datastore::Datastore;
use qkdn_yang::restconf::{RestconfOptions, RestconfServer};
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::merged::Merged;
use crate::state::Snapshot;

/// Shortest time between two writes of the tree.
pub const SYNC_PERIOD: Duration = Duration::from_millis(200);

/// Why the northbound could not start.
#[derive(Debug, thiserror::Error)]
#[error("ETSI 018 northbound: {0}")]
pub struct NorthboundError(String);

/// The RESTCONF router, with its sync task running.
pub async fn start(
    snapshot: watch::Receiver<Arc<Snapshot>>,
    base_url: String,
) -> Result<Router, NorthboundError> {
    let ctx = YangContext::network_view().map_err(|e| NorthboundError(e.to_string()))?;
    let ds = Datastore::builder(ctx).build().map_err(|e| NorthboundError(e.message))?;
    let server = RestconfServer::builder(ds.clone())
        .options(RestconfOptions { base_url, ..RestconfOptions::default() })
        .build()
        .await
        .map_err(|e| NorthboundError(e.message))?;
    tokio::spawn(sync(snapshot, ds));
    Ok(server.router())
}

async fn sync(mut snapshots: watch::Receiver<Arc<Snapshot>>, ds: Datastore) {
    let mut written: Option<Json> = None;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let doc = tree(&snapshot.merged);
        if written.as_ref() != Some(&doc) {
            match ds.set_state("/etsi-qkd-sdn-topology:qkd_network", doc.clone()).await {
                Ok(_) => written = Some(doc),
                Err(e) => {
                    tracing::error!(error = %e.message, "the merged ETSI 018 tree was not written")
                }
            }
        }
        tokio::time::sleep(SYNC_PERIOD).await;
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// The merged network as `etsi-qkd-sdn-topology:qkd_network` with inventory details.
fn tree(m: &Merged) -> Json {
    const INV: &str = "etsi-qkd-sdn-inventory";
    let nodes: Vec<Json> = m
        .nodes
        .values()
        .map(|n| {
            let mut details = json!({"reachable": n.reachable});
            if let Some(l) = &n.location {
                details["qkdn_location_id"] = json!(l);
            }
            if let Some(k) = &n.kme_url {
                details["kme"] = json!({"kme_url": k});
            }
            json!({"qkdn_id": n.id.to_string(),
                "qkd_interfaces": {"qkd_interface": n.interfaces.iter().map(|i| json!({"qkdi_id": i})).collect::<Vec<_>>()},
                format!("{INV}:qkdn_details"): details})
        })
        .collect();
    let end = |(node, iface): (Uuid, Option<u32>)| {
        let mut e = json!({"qkdn_id": node.to_string()});
        if let Some(i) = iface {
            e["qkdi_id"] = json!(i);
        }
        e
    };
    let links: Vec<Json> = m
        .links
        .values()
        .filter(|l| m.nodes.contains_key(&l.ends[0].0) && m.nodes.contains_key(&l.ends[1].0))
        .map(|l| {
            json!({
                "phys_link_id": l.id.to_string(),
                "phys_link_type": "etsi-qkd-node-types:PHYS",
                "phys_link_local_qkdn": end(l.ends[0]),
                "phys_link_remote_qkdn": end(l.ends[1]),
                format!("{INV}:phys_link_details"): {
                    "enable": l.up,
                    "phys_link_status": if l.up { "etsi-qkd-node-types:ACTIVE" } else { "etsi-qkd-node-types:OFF" },
                    "phys_performance": {"skr": u32::try_from(l.skr_bps).unwrap_or(u32::MAX),
                        "reserved_bandwidth": u32::try_from(l.reserved_bps).unwrap_or(u32::MAX)},
                },
            })
        })
        .collect();
    json!({"etsi-qkd-sdn-topology:qkd_network": {
        "sdqkd_nodes": {"sdqkd_node": nodes},
        "qkd_links": {"qkd_phys_links": {"phys_link": links}},
    }})
}

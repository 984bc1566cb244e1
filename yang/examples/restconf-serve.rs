//! Serves one `qkd_node` (or any data of qkdn's modules) from a JSON file with the full RESTCONF
//! behaviour of qkdn services, over plain HTTP: a server to try RESTCONF clients against.
//!
//! ```text
//! cargo run -p qkdn-yang --example restconf-serve -- [--listen ADDR] [--compat-unprefixed]
//!     [--perf-interval SECS] <data.json>
//! ```
//!
//! The file holds configuration and state together, as a GET of the datastore returns them
//! (tolerant input accepted, e.g. the TeraFlowSDN mock-node files). Configuration changes made
//! through RESTCONF are announced on the `NETCONF` event stream as ETSI 015 `event`
//! notifications; with `--perf-interval`, the key rates of every link drift and each update is
//! published as `sdqkdn_link_perf_update`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use qkdn_kit::server::{ServeOptions, serve};
use qkdn_yang::YangContext;
use qkdn_yang::datastore::{ChangeSet, ContentFilter, Datastore};
use qkdn_yang::path::Selector;
use qkdn_yang::restconf::{NotificationPublisher, RestconfOptions, RestconfServer};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Serve qkdn YANG data over RESTCONF (plain HTTP, for trying clients)")]
struct Args {
    /// Address to listen on (plain HTTP; keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8040")]
    listen: SocketAddr,
    /// Write the outermost member of responses without its module prefix.
    #[arg(long)]
    compat_unprefixed: bool,
    /// Drift link key rates every SECS seconds and publish performance notifications.
    #[arg(long, value_name = "SECS")]
    perf_interval: Option<u64>,
    /// JSON file with the data to serve.
    data: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.data)
        .map_err(|e| format!("cannot read {}: {e}", args.data.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!("{}:{}:{}: not valid JSON: {e}", args.data.display(), e.line(), e.column())
    })?;
    let ctx = YangContext::qkdn()?;
    let ds = Datastore::builder(ctx.clone()).data(doc).build().map_err(|e| {
        format!(
            "{}: {}{}",
            args.data.display(),
            e.message,
            e.path.map(|p| format!(" (at {p})")).unwrap_or_default()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let options = RestconfOptions {
        unprefixed_top_level: args.compat_unprefixed,
        base_url: format!("http://{addr}"),
        ..RestconfOptions::default()
    };
    let server = RestconfServer::builder(ds.clone())
        .options(options)
        .stream("NETCONF", "ETSI GS QKD 015 notifications of this node")
        .build()
        .await?;
    let publisher = server.publisher("NETCONF").expect("stream registered above");
    tokio::spawn(announce_changes(ds.clone(), publisher.clone()));
    if let Some(secs) = args.perf_interval.filter(|s| *s > 0) {
        tokio::spawn(drift_performance(ds.clone(), publisher, Duration::from_secs(secs)));
    }
    tracing::info!(restconf = %addr, data = %args.data.display(), "serving RESTCONF on http://{addr}/restconf");
    serve(listener, server.router(), ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Publishes an ETSI 015 `event` for every configuration change of a link, an interface or an
/// application.
async fn announce_changes(ds: Datastore, publisher: NotificationPublisher) {
    let mut changes = ds.subscribe();
    while let Ok(set) = changes.recv().await {
        for (kind, id, what) in touched_entries(&ds, &set) {
            let message = format!("{what} by RESTCONF (version {})", set.version);
            let body = match kind {
                "qkd_link" => {
                    json!({"link": {"qkdl_id": id, "message": message, "severity": "etsi-qkd-node-types:MINOR"}})
                }
                "qkd_interface" => {
                    json!({"interface": {"qkdi_id": id.parse::<u32>().unwrap_or(0), "message": message, "severity": "etsi-qkd-node-types:MINOR"}})
                }
                _ => {
                    json!({"application": {"app_id": id, "message": message, "severity": "etsi-qkd-node-types:MINOR"}})
                }
            };
            if let Err(e) = publisher.publish(json!({"etsi-qkd-sdn-node:event": body})) {
                tracing::warn!(error = %e, "event not published");
            }
        }
    }
}

/// (list name, key, what happened) for each link, interface or application entry a change set
/// touched.
fn touched_entries(ds: &Datastore, set: &ChangeSet) -> Vec<(&'static str, String, &'static str)> {
    let schema = ds.context().schema();
    let mut out: Vec<(&'static str, String, &'static str)> = Vec::new();
    for change in &set.changes {
        for step in change.path.steps() {
            let name = schema.node(step.node).name.as_str();
            let kind = match name {
                "qkd_link" => "qkd_link",
                "qkd_interface" => "qkd_interface",
                "qkd_app" => "qkd_app",
                _ => continue,
            };
            if let Selector::Key(key) = &step.selector {
                let id = key.values().first().map(|v| v.lexical().into_owned()).unwrap_or_default();
                let what = if change.path.steps().last() == Some(step) {
                    match change.op {
                        qkdn_yang::tree::diff::ChangeOp::Created => "created",
                        qkdn_yang::tree::diff::ChangeOp::Deleted => "deleted",
                        qkdn_yang::tree::diff::ChangeOp::Modified => "modified",
                    }
                } else {
                    "modified"
                };
                if !out.iter().any(|(k, i, _)| *k == kind && *i == id) {
                    out.push((kind, id, what));
                }
            }
        }
    }
    out
}

/// Moves every link's key rates a little and publishes the new performance.
async fn drift_performance(ds: Datastore, publisher: NotificationPublisher, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut step: i64 = 0;
    loop {
        tick.tick().await;
        step += 1;
        let snap = ds.snapshot();
        let links_path = match ds.path("/etsi-qkd-sdn-node:qkd_node/qkd_links") {
            Ok(p) => p,
            Err(_) => return,
        };
        let Some(links) = snap.get_json(ds.context(), &links_path, ContentFilter::Config) else {
            continue;
        };
        let ids: Vec<String> = links["etsi-qkd-sdn-node:qkd_links"]["qkd_link"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["qkdl_id"].as_str().map(str::to_owned))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let skr = 1_000_000 + ((step * 7919 + i as i64 * 104_729) % 200_000);
            let perf =
                json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": skr, "eskr": skr * 9 / 10}});
            let path =
                format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={id}/qkdl_performance");
            if let Err(e) = ds.merge_state(&path, perf).await {
                tracing::warn!(link = %id, error = %e, "performance not updated");
                continue;
            }
            let _ = publisher.publish(json!({"etsi-qkd-sdn-node:sdqkdn_link_perf_update": {
                "qkd_link": {"qkdl_id": id, "performance": {"skr": skr, "eskr": skr * 9 / 10}}}}));
        }
    }
}

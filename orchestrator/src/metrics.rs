//! The orchestrator's `/metrics` (Prometheus text format, on the management port): per domain
//! whether its controller answers and how many nodes and links it reports; the merged
//! network's nodes, gateways and links (up, SKR, reservations, per domain); the services by
//! status. Read at scrape time from the latest snapshot and the service map (see
//! [`qkdn_kit::metrics`]).

use metrics::{describe_gauge, gauge};

use crate::end_to_end::Service;
use crate::state::Snapshot;

/// The text of one scrape.
pub fn render<'a>(
    snapshot: &Snapshot,
    services: impl Iterator<Item = &'a Service>,
    denials: &qkdn_kit::Denials,
) -> String {
    qkdn_kit::metrics::render(|| {
        denials.emit();
        describe_gauge!("qkdn_domain_up", "1 while the domain's controller answers.");
        describe_gauge!("qkdn_domain_nodes", "Nodes the domain reports.");
        describe_gauge!("qkdn_domain_links", "Links the domain reports.");
        for d in &snapshot.domains {
            let name = d.name.clone();
            gauge!("qkdn_domain_up", "domain" => name.clone()).set(f64::from(u8::from(d.up)));
            gauge!("qkdn_domain_nodes", "domain" => name.clone()).set(d.nodes as f64);
            gauge!("qkdn_domain_links", "domain" => name).set(d.links as f64);
        }
        let merged = &snapshot.merged;
        describe_gauge!("qkdn_network_nodes", "Nodes of the merged network.");
        describe_gauge!("qkdn_network_gateways", "Nodes two or more domains report.");
        gauge!("qkdn_network_nodes").set(merged.nodes.len() as f64);
        gauge!("qkdn_network_gateways").set(merged.gateways().len() as f64);
        describe_gauge!("qkdn_link_up", "1 while the link is up in its domain.");
        describe_gauge!("qkdn_link_skr_bps", "Secret key rate, bit/s.");
        describe_gauge!("qkdn_link_reserved_bps", "Rate its domain promised to paths, bit/s.");
        for l in merged.links.values() {
            let labels = [
                ("link", l.id.to_string()),
                ("domain", l.domain.clone().unwrap_or_else(|| "inter-domain".to_owned())),
            ];
            gauge!("qkdn_link_up", &labels).set(f64::from(u8::from(l.up)));
            gauge!("qkdn_link_skr_bps", &labels).set(l.skr_bps as f64);
            gauge!("qkdn_link_reserved_bps", &labels).set(l.reserved_bps as f64);
        }
        describe_gauge!("qkdn_services", "End-to-end services by status.");
        let mut by_status = std::collections::BTreeMap::from([("active", 0), ("degraded", 0)]);
        for s in services {
            *by_status.entry(s.status(snapshot).0).or_insert(0) += 1;
        }
        for (status, n) in by_status {
            gauge!("qkdn_services", "status" => status).set(f64::from(n));
        }
    })
}

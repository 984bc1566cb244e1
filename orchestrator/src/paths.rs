//! End-to-end paths over the merged network: the routing module of the controller (key-aware
//! costs, k shortest loop-free paths) run on the joined domains, and each path cut into its
//! per-domain segments, which meet at gateways (a node two domains share) or cross a configured
//! link between domains. A service is provisioned segment by segment, each by its domain's
//! controller.

use std::collections::HashMap;

use qkdn_controller::routing::{self, Demand, Link, NoPath, Node, Path, Topology};
use serde::Serialize;
use uuid::Uuid;

use crate::merged::Merged;

/// A piece of a path inside one domain (or across a configured link between domains).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    /// The domain that provisions it (none: a configured link between domains).
    pub domain: Option<String>,
    /// Its nodes, ends included.
    pub nodes: Vec<Uuid>,
    /// Its links.
    pub links: Vec<Uuid>,
}

/// A candidate path with its segments.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// Nodes, ends included.
    pub nodes: Vec<Uuid>,
    /// Links.
    pub links: Vec<Uuid>,
    /// Cost.
    pub cost: f64,
    /// The segments, in order.
    pub segments: Vec<Segment>,
    /// Where segments meet.
    pub gateways: Vec<Uuid>,
}

/// The routing graph of the merged network (reservations of the domains' controllers count as
/// expected consumption).
pub fn topology(merged: &Merged) -> Topology {
    let nodes =
        merged.nodes.values().map(|n| Node { id: n.id, location: n.location.clone() }).collect();
    let links = merged
        .links
        .values()
        .filter(|l| {
            l.ends[0].0 != l.ends[1].0
                && merged.nodes.contains_key(&l.ends[0].0)
                && merged.nodes.contains_key(&l.ends[1].0)
        })
        .map(|l| Link {
            id: l.id,
            ends: (l.ends[0].0, l.ends[1].0),
            up: l.up,
            eskr_bps: l.skr_bps,
            expected_bps: l.reserved_bps,
            stock_bits: 0,
        })
        .collect();
    Topology::new(nodes, links).expect("links join known, distinct nodes")
}

/// Cuts `path` where the domain of its links changes.
pub fn segments(merged: &Merged, path: &Path) -> Vec<Segment> {
    let domain: HashMap<Uuid, Option<String>> =
        merged.links.values().map(|l| (l.id, l.domain.clone())).collect();
    let mut out: Vec<Segment> = Vec::new();
    for (i, link) in path.links.iter().enumerate() {
        let d = domain.get(link).cloned().flatten();
        match out.last_mut() {
            Some(s) if s.domain == d && d.is_some() => {
                s.links.push(*link);
                s.nodes.push(path.nodes[i + 1]);
            }
            _ => out.push(Segment {
                domain: d,
                nodes: vec![path.nodes[i], path.nodes[i + 1]],
                links: vec![*link],
            }),
        }
    }
    out
}

/// Up to `k` end-to-end candidates for `demand`, cheapest first, with their segments.
pub fn candidates(merged: &Merged, demand: &Demand, k: usize) -> Result<Vec<Candidate>, NoPath> {
    let found = routing::k_shortest_paths(&topology(merged), demand, k)?;
    Ok(found
        .into_iter()
        .map(|p| {
            let segments = segments(merged, &p);
            let gateways = segments.iter().skip(1).map(|s| s.nodes[0]).collect();
            Candidate { nodes: p.nodes, links: p.links, cost: p.cost, segments, gateways }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InterDomainLink;
    use crate::domain::DomainView;
    use crate::domain::samples::{link, node};
    use crate::merged::Part;

    #[test]
    fn a_path_across_two_domains_is_cut_at_the_gateway_and_at_configured_links() {
        // one: 1-2-3, two: 3-4 (3 is the gateway), three: 5, configured 4-5.
        let one = DomainView {
            nodes: vec![node(1), node(2), node(3)],
            links: vec![link(1, 1, 2), link(2, 2, 3)],
            apps: Default::default(),
        };
        let two = DomainView {
            nodes: vec![node(3), node(4)],
            links: vec![link(3, 3, 4)],
            apps: Default::default(),
        };
        let three = DomainView { nodes: vec![node(5)], links: vec![], apps: Default::default() };
        let c = InterDomainLink {
            id: Uuid::from_u128(200),
            a: ("two".into(), Uuid::from_u128(4)),
            b: ("three".into(), Uuid::from_u128(5)),
            eskr_bps: 10_000,
        };
        let merged = Merged::build(
            [
                Part { name: "one", up: true, view: &one },
                Part { name: "two", up: true, view: &two },
                Part { name: "three", up: true, view: &three },
            ],
            &[c],
        );
        let demand = Demand {
            from: Uuid::from_u128(1),
            to: Uuid::from_u128(5),
            rate_bps: 100,
            ..Demand::default()
        };
        let found = candidates(&merged, &demand, 3).unwrap();
        assert_eq!(found.len(), 1);
        let c = &found[0];
        let domains: Vec<Option<&str>> = c.segments.iter().map(|s| s.domain.as_deref()).collect();
        assert_eq!(domains, [Some("one"), Some("two"), None]);
        assert_eq!(c.segments[0].nodes, [1, 2, 3].map(Uuid::from_u128));
        assert_eq!(c.gateways, [Uuid::from_u128(3), Uuid::from_u128(4)]);
        // A domain that is down takes its links with it.
        let down = Merged::build(
            [
                Part { name: "one", up: true, view: &one },
                Part { name: "two", up: false, view: &two },
            ],
            &[],
        );
        assert!(candidates(&down, &demand, 1).is_err());
    }
}

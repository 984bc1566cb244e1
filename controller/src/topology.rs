//! The network as the agents describe it: nodes, and physical links matched by their `qkdl_id`
//! at both ends (each end naming the other as remote node, with interfaces that agree). A link
//! only one end reports, or whose ends contradict each other, is reported as a problem and not
//! used; a link is up when both ends report it active, both agents are reachable and its QBER
//! is under the threshold. [`Network::routing_topology`] turns the view into the routing
//! module's graph, with the rate the controller has promised on each link.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use uuid::Uuid;

use crate::inventory::{LinkKind, LinkReport, NodeReport};
use crate::routing;

/// A node as the controller knows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    /// `qkdn_id`.
    pub id: Uuid,
    /// `qkdn_location_id`.
    pub location: Option<String>,
    /// Whether its agent answers.
    pub reachable: bool,
}

/// A physical link both ends agree on.
#[derive(Clone, Debug, Serialize)]
pub struct PhysLink {
    /// `qkdl_id`.
    pub id: Uuid,
    /// (node, interface) at each end, the lower node id first.
    pub ends: [(Uuid, Option<u32>); 2],
    /// Usable for key relay.
    pub up: bool,
    /// Why not, when it is not.
    pub down_reasons: Vec<String>,
    /// Secret key rate, the smaller of the two ends' figures, bit/s.
    pub skr_bps: u64,
    /// Effective secret key rate as the ends report it (after relays), bit/s.
    pub eskr_bps: u64,
    /// Expected consumption as the ends report it, bit/s.
    pub expected_bps: u64,
    /// The worse QBER of the two ends.
    pub qber: Option<f64>,
}

/// Something wrong with what agents report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkProblem {
    /// The link.
    pub link: Uuid,
    /// What is wrong.
    pub problem: String,
}

/// The current network.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Network {
    /// Nodes by id.
    pub nodes: BTreeMap<Uuid, NodeView>,
    /// Usable or failed physical links by id.
    pub links: BTreeMap<Uuid, PhysLink>,
    /// Links that are half-configured or contradictory.
    pub problems: Vec<LinkProblem>,
}

/// What the network is built from: each node's last report and whether its agent answers.
pub struct Source<'a> {
    /// The report.
    pub report: &'a NodeReport,
    /// Whether the agent answers.
    pub reachable: bool,
}

impl Network {
    /// Builds the view; links with QBER above `qber_threshold` count as down.
    pub fn build<'a>(
        sources: impl IntoIterator<Item = Source<'a>>,
        qber_threshold: f64,
    ) -> Network {
        let mut network = Network::default();
        let mut phys: BTreeMap<Uuid, Vec<(Uuid, &LinkReport)>> = BTreeMap::new();
        let mut reachable = HashMap::new();
        for s in sources {
            let r = s.report;
            reachable.insert(r.id, s.reachable);
            network.nodes.insert(
                r.id,
                NodeView { id: r.id, location: r.location.clone(), reachable: s.reachable },
            );
            for l in &r.links {
                if l.kind == Some(LinkKind::Phys) {
                    phys.entry(l.id).or_default().push((r.id, l));
                }
            }
        }
        for (id, ends) in phys {
            match Self::matched(&ends, &network.nodes) {
                Err(problem) => network.problems.push(LinkProblem { link: id, problem }),
                Ok(((a, la), (b, lb))) => {
                    let mut reasons = Vec::new();
                    for (node, l) in [(a, la), (b, lb)] {
                        if !reachable.get(&node).copied().unwrap_or(false) {
                            reasons.push(format!("the agent of node {node} is not reachable"));
                        }
                        if !l.enabled {
                            reasons.push(format!("disabled at node {node}"));
                        } else if !l.active() {
                            reasons.push(format!(
                                "node {node} reports it {}",
                                l.status.as_deref().unwrap_or("not active")
                            ));
                        }
                    }
                    let qber = match (la.qber, lb.qber) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        (x, y) => x.or(y),
                    };
                    if let Some(q) = qber.filter(|q| *q > qber_threshold) {
                        reasons.push(format!("QBER {q:.3} above the threshold {qber_threshold}"));
                    }
                    let figure = |f: fn(&LinkReport) -> Option<u64>| match (f(la), f(lb)) {
                        (Some(x), Some(y)) => x.min(y),
                        (x, y) => x.or(y).unwrap_or(0),
                    };
                    let skr = figure(|l| l.skr_bps.or(l.eskr_bps));
                    network.links.insert(
                        id,
                        PhysLink {
                            id,
                            ends: [(a, la.local.1), (b, lb.local.1)],
                            up: reasons.is_empty(),
                            down_reasons: reasons,
                            skr_bps: skr,
                            eskr_bps: figure(|l| l.eskr_bps.or(l.skr_bps)),
                            expected_bps: la.expected_bps.max(lb.expected_bps).unwrap_or(0),
                            qber,
                        },
                    );
                }
            }
        }
        network
    }

    /// The two ends of a link, checked against each other.
    #[allow(clippy::type_complexity)]
    fn matched<'r>(
        ends: &[(Uuid, &'r LinkReport)],
        nodes: &BTreeMap<Uuid, NodeView>,
    ) -> Result<((Uuid, &'r LinkReport), (Uuid, &'r LinkReport)), String> {
        let (node, l) = ends[0];
        let remote = l.remote.0.ok_or_else(|| format!("node {node} gives no remote node"))?;
        if remote == node {
            return Err(format!("node {node} names itself as the remote end"));
        }
        if ends.len() > 2 {
            return Err(format!("{} nodes report a physical link with this id", ends.len()));
        }
        let Some(&(other, ol)) = ends.get(1) else {
            return Err(if nodes.contains_key(&remote) {
                format!(
                    "half-configured: node {node} reports it towards node {remote}, which does not"
                )
            } else {
                format!(
                    "half-configured: node {node} reports it towards node {remote}, which is not known"
                )
            });
        };
        let mut wrong = Vec::new();
        if remote != other {
            wrong.push(format!("node {node} names node {remote} as its remote end"));
        }
        if ol.remote.0 != Some(node) {
            wrong.push(format!(
                "node {other} names {} as its remote end",
                ol.remote.0.map_or("no node".to_owned(), |n| format!("node {n}"))
            ));
        }
        for (n, a, b) in [(node, l, ol), (other, ol, l)] {
            if let (Some(x), Some(y)) = (a.local.0, Some(n))
                && x != y
            {
                wrong.push(format!("node {n} gives node {x} as its local end"));
            }
            if let (Some(mine), Some(theirs)) = (a.local.1, b.remote.1)
                && mine != theirs
            {
                wrong.push(format!(
                    "node {n} uses interface {mine}, the other end names interface {theirs}"
                ));
            }
        }
        if !wrong.is_empty() {
            return Err(format!("contradictory ends: {}", wrong.join("; ")));
        }
        Ok(if node < other { ((node, l), (other, ol)) } else { ((other, ol), (node, l)) })
    }

    /// The routing graph: every node, and every matched link with what is expected of it: the
    /// rate the controller's paths take from it (`promised`, bit/s) plus the demand its ends
    /// report beyond the part of it that is the controller's own applications (`direct`), and
    /// its key stock (`stock`, bits, the smaller of its two stores; none known: 0).
    pub fn routing_topology(
        &self,
        promised: &HashMap<Uuid, u64>,
        direct: &HashMap<Uuid, u64>,
        stock: &HashMap<Uuid, u64>,
    ) -> routing::Topology {
        let nodes = self
            .nodes
            .values()
            .map(|n| routing::Node { id: n.id, location: n.location.clone() })
            .collect();
        let links = self
            .links
            .values()
            .map(|l| routing::Link {
                id: l.id,
                ends: (l.ends[0].0, l.ends[1].0),
                up: l.up,
                eskr_bps: l.skr_bps,
                expected_bps: promised.get(&l.id).copied().unwrap_or(0)
                    + l.expected_bps.saturating_sub(direct.get(&l.id).copied().unwrap_or(0)),
                stock_bits: stock.get(&l.id).copied().unwrap_or(0),
            })
            .collect();
        routing::Topology::new(nodes, links).expect("links of the view join known, distinct nodes")
    }

    /// The link joining `a` and `b` that is up, if any.
    pub fn link_between(&self, a: Uuid, b: Uuid) -> Option<&PhysLink> {
        self.links.values().find(|l| {
            l.up && ((l.ends[0].0 == a && l.ends[1].0 == b)
                || (l.ends[0].0 == b && l.ends[1].0 == a))
        })
    }
}

#[cfg(test)]
mod tests;

//! The multi-domain network: every domain's nodes and physical links joined. A node that
//! appears in two or more domains is a *gateway* (it belongs to each), and links between
//! domains come from the domains themselves (a link whose ends are in different domains) or
//! from the configuration. Links of a domain that is down count as down.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::config::InterDomainLink;
use crate::domain::DomainView;

/// A node of the merged network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// `qkdn_id`.
    pub id: Uuid,
    /// The domains that report it (two or more: a gateway).
    pub domains: Vec<String>,
    /// `qkdn_location_id`.
    pub location: Option<String>,
    /// Whether a domain that is up reaches it.
    pub reachable: bool,
    /// Its KME URL.
    pub kme_url: Option<String>,
    /// Interfaces.
    pub interfaces: Vec<u32>,
}

impl Node {
    /// Whether it joins domains.
    pub fn is_gateway(&self) -> bool {
        self.domains.len() > 1
    }
}

/// A physical link of the merged network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    /// Its id.
    pub id: Uuid,
    /// The domain that reports it (none: configured between domains).
    pub domain: Option<String>,
    /// (node, interface) at each end.
    pub ends: [(Uuid, Option<u32>); 2],
    /// Usable.
    pub up: bool,
    /// Secret key rate, bit/s.
    pub skr_bps: u64,
    /// Rate reserved on it by its domain's controller, bit/s.
    pub reserved_bps: u64,
}

/// The merged network.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Merged {
    /// Nodes by id.
    pub nodes: BTreeMap<Uuid, Node>,
    /// Links by id.
    pub links: BTreeMap<Uuid, Link>,
}

/// A domain's part: its name, whether it is up, and its last view.
pub struct Part<'a> {
    /// Name.
    pub name: &'a str,
    /// Up.
    pub up: bool,
    /// View.
    pub view: &'a DomainView,
}

impl Merged {
    /// Joins `parts` and the configured links between domains.
    pub fn build<'a>(
        parts: impl IntoIterator<Item = Part<'a>>,
        configured: &[InterDomainLink],
    ) -> Merged {
        let mut merged = Merged::default();
        for part in parts {
            for n in &part.view.nodes {
                let node = merged.nodes.entry(n.id).or_insert_with(|| Node {
                    id: n.id,
                    domains: Vec::new(),
                    location: n.location.clone(),
                    reachable: false,
                    kme_url: n.kme_url.clone(),
                    interfaces: Vec::new(),
                });
                node.domains.push(part.name.to_owned());
                node.reachable |= part.up && n.reachable;
                node.kme_url = node.kme_url.clone().or(n.kme_url.clone());
                for i in &n.interfaces {
                    if !node.interfaces.contains(i) {
                        node.interfaces.push(*i);
                    }
                }
            }
            for l in &part.view.links {
                // A link both domains of a gateway report is one link.
                merged.links.entry(l.id).or_insert_with(|| Link {
                    id: l.id,
                    domain: Some(part.name.to_owned()),
                    ends: l.ends,
                    up: part.up && l.up,
                    skr_bps: l.skr_bps,
                    reserved_bps: l.reserved_bps,
                });
            }
        }
        for c in configured {
            let known = merged.nodes.contains_key(&c.a.1) && merged.nodes.contains_key(&c.b.1);
            let reachable = |n: &Uuid| merged.nodes.get(n).is_some_and(|x| x.reachable);
            let up = known && reachable(&c.a.1) && reachable(&c.b.1);
            merged.links.insert(
                c.id,
                Link {
                    id: c.id,
                    domain: None,
                    ends: [(c.a.1, None), (c.b.1, None)],
                    up,
                    skr_bps: c.eskr_bps,
                    reserved_bps: 0,
                },
            );
        }
        merged
    }

    /// The gateways: nodes of two or more domains.
    pub fn gateways(&self) -> Vec<&Node> {
        self.nodes.values().filter(|n| n.is_gateway()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::samples::{link, node};

    #[test]
    fn a_node_in_two_domains_is_a_gateway_and_a_down_domain_takes_its_links_down() {
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
        let merged = Merged::build(
            [
                Part { name: "one", up: true, view: &one },
                Part { name: "two", up: true, view: &two },
            ],
            &[],
        );
        assert_eq!(
            merged.gateways().iter().map(|n| n.id).collect::<Vec<_>>(),
            [Uuid::from_u128(3)]
        );
        assert_eq!(merged.nodes[&Uuid::from_u128(3)].domains, ["one", "two"]);
        assert_eq!(merged.links.len(), 3);
        let down = Merged::build(
            [
                Part { name: "one", up: true, view: &one },
                Part { name: "two", up: false, view: &two },
            ],
            &[],
        );
        assert!(!down.links[&Uuid::from_u128(103)].up);
        assert!(!down.nodes[&Uuid::from_u128(4)].reachable);
        assert!(down.nodes[&Uuid::from_u128(3)].reachable, "still reached through domain one");
    }

    #[test]
    fn configured_links_join_domains() {
        let one = DomainView { nodes: vec![node(1)], links: vec![], apps: Default::default() };
        let two = DomainView { nodes: vec![node(2)], links: vec![], apps: Default::default() };
        let c = InterDomainLink {
            id: Uuid::from_u128(9),
            a: ("one".into(), Uuid::from_u128(1)),
            b: ("two".into(), Uuid::from_u128(2)),
            eskr_bps: 500,
        };
        let merged = Merged::build(
            [
                Part { name: "one", up: true, view: &one },
                Part { name: "two", up: true, view: &two },
            ],
            &[c],
        );
        let l = &merged.links[&Uuid::from_u128(9)];
        assert!(l.up && l.domain.is_none() && l.skr_bps == 500);
    }
}

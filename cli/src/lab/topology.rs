//! Lab topologies: the nodes of a QKD network, the fibres between them, the controllers'
//! domains they belong to and the demo applications to register, read from TOML (see
//! `deploy/topologies/`). The three shipped topologies are compiled in and chosen by name; any
//! other argument is read as a file. Every problem names the file and, where TOML tells it,
//! the line.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// The topologies compiled into `qkdn` (name, TOML).
pub(crate) const BUILT_IN: [(&str, &str); 3] = [
    ("metro-ring", include_str!("../../../deploy/topologies/metro-ring.toml")),
    ("nsfnet", include_str!("../../../deploy/topologies/nsfnet.toml")),
    ("two-domains", include_str!("../../../deploy/topologies/two-domains.toml")),
];

/// A lab network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Topology {
    /// Its name.
    pub(crate) name: String,
    /// One line about it.
    #[serde(default)]
    pub(crate) description: String,
    /// The controllers' domains (none: one domain, `main`).
    #[serde(default)]
    pub(crate) domains: Vec<Domain>,
    /// The QKD nodes.
    pub(crate) nodes: Vec<Node>,
    /// The fibres (each a physical QKD link with simulated devices at both ends).
    pub(crate) links: Vec<Link>,
    /// Demo applications registered once the network is up.
    #[serde(default)]
    pub(crate) apps: Vec<App>,
}

/// A controller's domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Domain {
    /// Its name.
    pub(crate) name: String,
}

/// A QKD node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Node {
    /// A short name (`A`, `Seattle`).
    pub(crate) name: String,
    /// Where it stands.
    #[serde(default)]
    pub(crate) location: Option<String>,
    /// Its domains: the first is the controller it registers with; a gateway lists more, and
    /// their controllers follow it as a static agent.
    #[serde(default)]
    pub(crate) domains: Vec<String>,
}

/// A fibre between two nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Link {
    /// The two nodes' names.
    pub(crate) ends: [String; 2],
    /// Fibre length, km (it sets the simulated key rate).
    pub(crate) length_km: f64,
}

/// A demo application: keys for an SAE at `from` and one at `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct App {
    /// The node of the master SAE.
    pub(crate) from: String,
    /// The node of the slave SAE.
    pub(crate) to: String,
    /// The key rate it asks for, bit/s.
    pub(crate) rate_bps: u64,
}

/// The name of the only domain of a topology that names none.
pub(crate) const DEFAULT_DOMAIN: &str = "main";

impl Topology {
    /// A built-in topology by name, or the file at `arg`.
    pub(crate) fn load(arg: &str) -> Result<Topology, String> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == arg) {
            return Topology::parse(text, &format!("(built-in topology {name})"));
        }
        let path = Path::new(arg);
        let text = std::fs::read_to_string(path).map_err(|e| {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            format!("{arg}: {e} (built-in topologies: {})", names.join(", "))
        })?;
        Topology::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a topology; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Topology, String> {
        let mut topology: Topology = toml::from_str(text).map_err(|e| {
            let at =
                e.span().map(|s| line_of(text, s.start)).map_or(String::new(), |l| format!(":{l}"));
            format!("{origin}{at}: {}", e.message())
        })?;
        if topology.domains.is_empty() {
            topology.domains.push(Domain { name: DEFAULT_DOMAIN.to_owned() });
        }
        topology.check().map_err(|e| format!("{origin}: {e}"))?;
        Ok(topology)
    }

    fn check(&mut self) -> Result<(), String> {
        let domains: BTreeSet<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        if domains.len() != self.domains.len() {
            return Err("two domains have the same name".into());
        }
        let default = self.domains[0].name.clone();
        let mut names = BTreeSet::new();
        for node in &mut self.nodes {
            if !names.insert(node.name.clone()) {
                return Err(format!("node {} is listed twice", node.name));
            }
            if node.domains.is_empty() {
                if self.domains.len() > 1 {
                    return Err(format!("node {}: name its domains (several exist)", node.name));
                }
                node.domains.push(default.clone());
            }
            for d in &node.domains {
                if !domains.contains(d.as_str()) {
                    return Err(format!("node {}: unknown domain {d}", node.name));
                }
            }
        }
        if self.nodes.is_empty() {
            return Err("no nodes".into());
        }
        let mut pairs = BTreeSet::new();
        for link in &self.links {
            let [a, b] = &link.ends;
            for end in [a, b] {
                if !names.contains(end) {
                    return Err(format!("link {a}-{b}: unknown node {end}"));
                }
            }
            if a == b {
                return Err(format!("link {a}-{b}: a link joins two different nodes"));
            }
            if !pairs.insert((a.min(b).clone(), a.max(b).clone())) {
                return Err(format!("link {a}-{b} is listed twice"));
            }
            if !(link.length_km > 0.0 && link.length_km <= 200.0) {
                return Err(format!("link {a}-{b}: length_km must be in (0, 200]"));
            }
            let shared = self.domains_of(a).iter().any(|d| self.domains_of(b).contains(d));
            if !shared {
                return Err(format!("link {a}-{b}: its ends share no domain"));
            }
        }
        for app in &self.apps {
            for end in [&app.from, &app.to] {
                if !names.contains(end) {
                    return Err(format!("app {}-{}: unknown node {end}", app.from, app.to));
                }
            }
            if app.from == app.to || app.rate_bps == 0 {
                return Err(format!(
                    "app {}-{}: it joins two nodes and asks for a rate above 0",
                    app.from, app.to
                ));
            }
        }
        Ok(())
    }

    /// The domains of node `name`.
    pub(crate) fn domains_of(&self, name: &str) -> &[String] {
        self.nodes.iter().find(|n| n.name == name).map_or(&[], |n| &n.domains)
    }

    /// Several domains (and so an orchestrator).
    pub(crate) fn multi_domain(&self) -> bool {
        self.domains.len() > 1
    }

    /// Neighbours of each node.
    #[cfg(test)]
    pub(crate) fn adjacency(&self) -> std::collections::BTreeMap<&str, BTreeSet<&str>> {
        let mut adj: std::collections::BTreeMap<&str, BTreeSet<&str>> =
            std::collections::BTreeMap::new();
        for l in &self.links {
            adj.entry(&l.ends[0]).or_default().insert(&l.ends[1]);
            adj.entry(&l.ends[1]).or_default().insert(&l.ends[0]);
        }
        adj
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_topologies_parse_and_relay_at_least_one_app() {
        for (name, _) in BUILT_IN {
            let t = Topology::load(name).unwrap();
            let adj = t.adjacency();
            assert!(
                t.apps.iter().any(|a| !adj[a.from.as_str()].contains(a.to.as_str())),
                "{name}: an app between non-adjacent nodes"
            );
        }
        assert!(Topology::load("two-domains").unwrap().multi_domain());
        assert_eq!(Topology::load("nsfnet").unwrap().nodes.len(), 14);
        assert_eq!(Topology::load("metro-ring").unwrap().nodes.len(), 6);
    }

    #[test]
    fn problems_name_the_origin_and_line() {
        let bad = "name = \"x\"\n[[nodes]]\nname = \"A\"\nsize = 3\n";
        let e = Topology::parse(bad, "t.toml").unwrap_err();
        assert!(e.starts_with("t.toml:4:"), "{e}");
        let unknown = "name = \"x\"\nnodes = [{ name = \"A\" }]\nlinks = [{ ends = [\"A\", \"B\"], length_km = 5.0 }]\n";
        assert_eq!(
            Topology::parse(unknown, "t.toml").unwrap_err(),
            "t.toml: link A-B: unknown node B"
        );
        let e = Topology::load("/nonexistent/x.toml").unwrap_err();
        assert!(e.contains("built-in topologies: metro-ring, nsfnet, two-domains"), "{e}");
    }
}

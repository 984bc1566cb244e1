//! The lab's plan: from a topology, the identities, ports and files of every service (node
//! ids, link ids and interfaces, the controllers of each domain, the orchestrator when there
//! are several domains, one SAE per application end), then the PKI and the configuration
//! files written into the data directory. Everything is derived from the topology and the base
//! port, so a lab started again in the same directory finds its state (stores, registrations,
//! applications) where it left it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use qkdn_kit::pki::{self, Authority, Usage};
use qkdn_kit::{Identity, Role};

use super::topology::Topology;

/// Ports of one service: its API (HTTPS) and its management endpoints (HTTP).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServicePorts {
    /// REST / RESTCONF.
    pub(crate) api: u16,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub(crate) management: u16,
}

/// A node and its agent.
#[derive(Debug)]
pub(crate) struct PlannedNode {
    /// Topology name.
    pub(crate) name: String,
    /// `qkdn_id`.
    pub(crate) id: String,
    /// Where it stands.
    pub(crate) location: String,
    /// Domains (the first is the controller it registers with).
    pub(crate) domains: Vec<String>,
    /// RESTCONF and management.
    pub(crate) ports: ServicePorts,
    /// ETSI 014.
    pub(crate) kms: u16,
    /// Peer service.
    pub(crate) peer: u16,
    /// SKIP key provider (encryptors with certificates).
    pub(crate) skip: u16,
}

/// A physical link.
#[derive(Debug)]
pub(crate) struct PlannedLink {
    /// `qkdl_id`.
    pub(crate) id: String,
    /// Node names and their interface ids.
    pub(crate) ends: [(String, u32); 2],
    /// Fibre length, km.
    pub(crate) length_km: f64,
}

/// A domain's controller.
#[derive(Debug)]
pub(crate) struct PlannedController {
    /// Domain name.
    pub(crate) domain: String,
    /// Ports.
    pub(crate) ports: ServicePorts,
}

/// An SAE.
#[derive(Debug)]
pub(crate) struct PlannedSae {
    /// SAE ID (the common name of its certificate).
    pub(crate) id: String,
    /// Node name.
    pub(crate) node: String,
}

/// Who registers a demo application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Registrar {
    /// The controller of this domain (both ends in it).
    Controller(String),
    /// The orchestrator (the ends are in different domains).
    Orchestrator,
}

/// A demo application.
#[derive(Debug)]
pub(crate) struct PlannedApp {
    /// `app_id` (or `service_id`).
    pub(crate) id: String,
    /// Master SAE and node name.
    pub(crate) master: (String, String),
    /// Slave SAE and node name.
    pub(crate) slave: (String, String),
    /// Key rate, bit/s.
    pub(crate) rate_bps: u64,
    /// Who registers it.
    pub(crate) registrar: Registrar,
}

/// The whole lab.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Topology name.
    pub(crate) name: String,
    /// The data directory (absolute).
    pub(crate) dir: PathBuf,
    /// Nodes in topology order.
    pub(crate) nodes: Vec<PlannedNode>,
    /// Links in topology order.
    pub(crate) links: Vec<PlannedLink>,
    /// One controller per domain, in topology order.
    pub(crate) controllers: Vec<PlannedController>,
    /// The orchestrator's ports, with several domains.
    pub(crate) orchestrator: Option<ServicePorts>,
    /// SAEs.
    pub(crate) saes: Vec<PlannedSae>,
    /// Demo applications.
    pub(crate) apps: Vec<PlannedApp>,
}

/// Ports after the base: controllers (two each), the orchestrator, then four per node.
const NODE_PORTS_FROM: u16 = 20;
/// Ports of a node: RESTCONF, management, ETSI 014, peer, SKIP.
const PORTS_PER_NODE: usize = 5;

impl Plan {
    /// The plan of `topology` in `dir` (absolute) with ports from `base`.
    pub(crate) fn new(topology: &Topology, dir: &Path, base: u16) -> Result<Plan, String> {
        let needed = NODE_PORTS_FROM as usize + PORTS_PER_NODE * topology.nodes.len();
        if usize::from(base) + needed > 65_535 || topology.domains.len() > 4 {
            return Err(format!(
                "--base-port {base}: the lab needs ports {base}..{}",
                usize::from(base) + needed
            ));
        }
        let port = |offset: usize| base + offset as u16;
        let controllers = topology
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| PlannedController {
                domain: d.name.clone(),
                ports: ServicePorts { api: port(2 * i), management: port(2 * i + 1) },
            })
            .collect();
        let orchestrator =
            topology.multi_domain().then(|| ServicePorts { api: port(8), management: port(9) });
        let nodes: Vec<PlannedNode> = topology
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let at = NODE_PORTS_FROM as usize + PORTS_PER_NODE * i;
                PlannedNode {
                    name: n.name.clone(),
                    id: format!("{:08x}-0000-4000-8000-000000000000", i + 1),
                    location: n
                        .location
                        .clone()
                        .unwrap_or_else(|| format!("site-{}", n.name.to_ascii_lowercase())),
                    domains: n.domains.clone(),
                    ports: ServicePorts { api: port(at), management: port(at + 1) },
                    kms: port(at + 2),
                    peer: port(at + 3),
                    skip: port(at + 4),
                }
            })
            .collect();
        let mut next_interface: BTreeMap<&str, u32> = BTreeMap::new();
        let mut interface = |name: &str| {
            let i = topology.nodes.iter().position(|n| n.name == name).unwrap_or(0) as u32;
            let slot = next_interface
                .entry(topology.nodes[i as usize].name.as_str())
                .or_insert(100 * (i + 1));
            *slot += 1;
            *slot
        };
        let links = topology
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| PlannedLink {
                id: format!("a0000000-0000-4000-8000-{:012x}", i + 1),
                ends: [
                    (l.ends[0].clone(), interface(&l.ends[0])),
                    (l.ends[1].clone(), interface(&l.ends[1])),
                ],
                length_km: l.length_km,
            })
            .collect();
        let mut saes: Vec<PlannedSae> = Vec::new();
        let mut apps = Vec::new();
        for (i, app) in topology.apps.iter().enumerate() {
            let mut sae = |node: &str| {
                let id = format!("sae-{}", node.to_ascii_lowercase());
                if !saes.iter().any(|s| s.id == id) {
                    saes.push(PlannedSae { id: id.clone(), node: node.to_owned() });
                }
                id
            };
            let (master, slave) = (sae(&app.from), sae(&app.to));
            let shared = topology
                .domains_of(&app.from)
                .iter()
                .find(|d| topology.domains_of(&app.to).contains(d));
            apps.push(PlannedApp {
                id: format!("5e1f0000-0000-4000-8000-{:012x}", i + 1),
                master: (master, app.from.clone()),
                slave: (slave, app.to.clone()),
                rate_bps: app.rate_bps,
                registrar: shared
                    .map_or(Registrar::Orchestrator, |d| Registrar::Controller(d.clone())),
            });
        }
        Ok(Plan {
            name: topology.name.clone(),
            dir: dir.to_path_buf(),
            nodes,
            links,
            controllers,
            orchestrator,
            saes,
            apps,
        })
    }

    /// Every port the lab listens on.
    pub(crate) fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> =
            self.controllers.iter().flat_map(|c| [c.ports.api, c.ports.management]).collect();
        ports.extend(self.orchestrator.iter().flat_map(|o| [o.api, o.management]));
        ports.extend(
            self.nodes
                .iter()
                .flat_map(|n| [n.ports.api, n.ports.management, n.kms, n.peer, n.skip]),
        );
        ports
    }

    /// The node named `name`.
    pub(crate) fn node(&self, name: &str) -> &PlannedNode {
        self.nodes.iter().find(|n| n.name == name).expect("planned node")
    }

    /// The PKI folder.
    pub(crate) fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// Certificate and key files of `name` in the PKI folder.
    pub(crate) fn identity(&self, name: &str) -> (PathBuf, PathBuf) {
        (self.pki().join(format!("{name}.crt")), self.pki().join(format!("{name}.key")))
    }

    /// The simulated devices' network secret.
    pub(crate) fn simulator_secret(&self) -> PathBuf {
        self.pki().join("simulator-secret")
    }

    /// The configuration file of service `name`.
    pub(crate) fn config_file(&self, name: &str) -> PathBuf {
        self.dir.join("config").join(format!("{name}.toml"))
    }

    /// The log file of service `name`.
    pub(crate) fn log_file(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// The service name of node `name`'s agent.
    pub(crate) fn agent_name(name: &str) -> String {
        format!("agent-{}", name.to_ascii_lowercase())
    }

    /// The service name of `domain`'s controller.
    pub(crate) fn controller_name(&self, domain: &str) -> String {
        if self.controllers.len() == 1 {
            "controller".to_owned()
        } else {
            format!("controller-{domain}")
        }
    }

    /// Writes the PKI (a CA kept across runs; certificates issued afresh) and every
    /// configuration file.
    pub(crate) fn write(&self) -> Result<(), String> {
        let pki_dir = self.pki();
        for d in [&pki_dir, &self.dir.join("config"), &self.dir.join("logs")] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let ca = load_or_create_ca(&pki_dir)?;
        let hosts = ["localhost", "127.0.0.1"];
        // Every certificate names one typed identity: what the services authorize by.
        let issue = |name: &str, identity: Identity, usage: Usage, hosts: &[&str]| {
            ca.issue_identity(&identity, hosts, usage)
                .and_then(|c| c.write(&pki_dir, name))
                .map_err(|e| format!("{}: {e}", pki_dir.display()))
        };
        let secret = |file: &Path| -> Result<(), String> {
            if file.exists() {
                return Ok(());
            }
            pki::write_new_secret(file).map_err(|e| format!("{}: {e}", file.display()))
        };
        for n in &self.nodes {
            let id =
                n.id.parse().map_err(|_| format!("node {}: {} is not a UUID", n.name, n.id))?;
            issue(
                &format!("node-{}", n.name.to_ascii_lowercase()),
                Identity::Node(id),
                Usage::Service,
                &hosts,
            )?;
            secret(&pki_dir.join(format!("store-{}.key", n.name.to_ascii_lowercase())))?;
        }
        for c in &self.controllers {
            let name = self.controller_name(&c.domain);
            issue(&name, Identity::Controller(c.domain.clone()), Usage::Service, &hosts)?;
        }
        if self.orchestrator.is_some() {
            issue("orchestrator", Identity::Orchestrator("lab".into()), Usage::Service, &hosts)?;
        }
        issue("operator", Identity::operator("operator", Role::Admin), Usage::Client, &[])?;
        issue("viewer", Identity::operator("viewer", Role::Viewer), Usage::Client, &[])?;
        for s in &self.saes {
            issue(&s.id, Identity::Sae(s.id.clone()), Usage::Client, &[])?;
        }
        // The simulated devices' shared secret: generated at the first start, kept out of the
        // configuration files.
        secret(&self.simulator_secret())?;
        let mut files = Vec::new();
        for n in &self.nodes {
            files.push((Self::agent_name(&n.name), self.agent_config(n)));
        }
        for c in &self.controllers {
            files.push((self.controller_name(&c.domain), self.controller_config(c)));
        }
        if let Some(o) = self.orchestrator {
            files.push(("orchestrator".to_owned(), self.orchestrator_config(o)));
        }
        for (name, text) in files {
            let file = self.config_file(&name);
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        Ok(())
    }

    /// `{ cert, key, client_ca }` (server) or `{ cert, key, ca }` (client) of `name`.
    fn tls(&self, name: &str, server: bool) -> String {
        let (cert, key) = self.identity(name);
        let ca = self.pki().join("ca.crt");
        let ca_key = if server { "client_ca" } else { "ca" };
        format!(
            "{{ cert = {:?}, key = {:?}, {ca_key} = {:?} }}",
            cert.display().to_string(),
            key.display().to_string(),
            ca.display().to_string()
        )
    }

    fn agent_config(&self, n: &PlannedNode) -> String {
        let lower = n.name.to_ascii_lowercase();
        let identity = format!("node-{lower}");
        let (server, client) = (self.tls(&identity, true), self.tls(&identity, false));
        let controller =
            self.controllers.iter().find(|c| c.domain == n.domains[0]).expect("domain");
        let store_key = self.pki().join(format!("store-{lower}.key"));
        let location = &n.location;
        let mut text = format!(
            "# qkdn lab: the agent of node {name} (written by `qkdn lab up`; rewritten at each start)\n\
             data_dir = {data:?}\n\n[node]\nid = \"{id}\"\nlocation = {location:?}\n\n\
             [restconf]\nlisten = \"127.0.0.1:{restconf}\"\ntls = {server}\n\n\
             [management]\nlisten = \"127.0.0.1:{management}\"\n\n\
             [controller]\nurls = [\"https://localhost:{controller_port}\"]\ntls = {client}\ndomains = {domains:?}\n\n\
             [notifications]\nperformance_period = \"2s\"\n\n\
             [simulator]\nnetwork_secret_file = {secret:?}\nepoch = \"2026-01-01T00:00:00Z\"\ntime_scale = 1.0\nslot = \"1s\"\n\n\
             [peer]\nlisten = \"127.0.0.1:{peer}\"\ntls = {server}\nclient_tls = {client}\n\n\
             [kms]\nlisten = \"127.0.0.1:{kms}\"\ntls = {server}\nstore_key_file = {store_key:?}\n\n\
             [kms.skip]\nlisten = \"127.0.0.1:{skip}\"\n\n",
            name = n.name,
            data = self.dir.join("data").join(Self::agent_name(&n.name)).display().to_string(),
            id = n.id,
            restconf = n.ports.api,
            management = n.ports.management,
            controller_port = controller.ports.api,
            peer = n.peer,
            kms = n.kms,
            skip = n.skip,
            store_key = store_key.display().to_string(),
            domains = n.domains,
            secret = self.simulator_secret().display().to_string(),
        );
        for l in &self.links {
            let (local, remote) = match &l.ends {
                [a, b] if a.0 == n.name => (a, b),
                [a, b] if b.0 == n.name => (b, a),
                _ => continue,
            };
            let other = self.node(&remote.0);
            let role = if local.0 == l.ends[0].0 { "TRANSMITTER" } else { "RECEIVER" };
            let _ = write!(
                text,
                "[[interfaces]]\nid = {iface}\nmodel = \"qkdn-sim-dv\"\ntechnology = \"DV-QKD\"\nrole = \"TRANSCEIVER\"\n\
                 [interfaces.device]\ndriver = \"simulator\"\npulse_rate_hz = 1.0e7\ndetector_efficiency = 0.1\nkey_size_bits = 256\n\n\
                 [[links]]\nid = \"{link}\"\nlocal_interface = {iface}\nremote_node = \"{remote}\"\nremote_interface = {remote_iface}\n\
                 wavelength = 20\nrole = \"{role}\"\nlength_km = {length:?}\n\n\
                 [[neighbours]]\nnode = \"{remote}\"\nurl = \"https://localhost:{peer}\"\n\n",
                iface = local.1,
                link = l.id,
                remote = other.id,
                remote_iface = remote.1,
                length = l.length_km,
                peer = other.peer,
            );
        }
        text
    }

    fn controller_config(&self, c: &PlannedController) -> String {
        let name = self.controller_name(&c.domain);
        let mut text = format!(
            "# qkdn lab: the controller of domain {domain} (written by `qkdn lab up`)\n\
             data_dir = {data:?}\n\n[api]\nlisten = \"127.0.0.1:{api}\"\ntls = {server}\n\n\
             [management]\nlisten = \"127.0.0.1:{management}\"\n\n\
             [agents]\ntls = {client}\nloss_timeout = \"6s\"\nresync_interval = \"30s\"\nrequest_timeout = \"5s\"\nkms_poll_interval = \"1s\"\n\n",
            domain = c.domain,
            data = self.dir.join("data").join(&name).display().to_string(),
            api = c.ports.api,
            server = self.tls(&name, true),
            management = c.ports.management,
            client = self.tls(&name, false),
        );
        // Gateways registered elsewhere are followed as static agents.
        for n in self.nodes.iter().filter(|n| n.domains[1..].contains(&c.domain)) {
            let _ = write!(
                text,
                "[[static_agents]]\nrestconf_url = \"https://localhost:{}\"\n\n",
                n.ports.api
            );
        }
        text
    }

    fn orchestrator_config(&self, o: ServicePorts) -> String {
        let mut text = format!(
            "# qkdn lab: the orchestrator over every domain (written by `qkdn lab up`)\n\
             data_dir = {data:?}\nmanagement_listen = \"127.0.0.1:{management}\"\nloss_timeout = \"6s\"\n\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\ntls = {server}\n",
            data = self.dir.join("data").join("orchestrator").display().to_string(),
            management = o.management,
            api = o.api,
            server = self.tls("orchestrator", true),
        );
        for c in &self.controllers {
            let _ = write!(
                text,
                "\n[[domains]]\nname = \"{}\"\nurl = \"https://localhost:{}\"\ntls = {}\n",
                c.domain,
                c.ports.api,
                self.tls("orchestrator", false)
            );
        }
        text
    }
}

/// The lab's CA: kept in `dir` (`ca.crt`, `ca.key`) across runs.
fn load_or_create_ca(dir: &Path) -> Result<Authority, String> {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if cert.exists() && key.exists() {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        return Authority::from_pem(&read(&cert)?, &read(&key)?)
            .map_err(|e| format!("{}: {e}", key.display()));
    }
    let ca = Authority::generate("qkdn lab CA").map_err(|e| e.to_string())?;
    ca.issued().write(dir, "ca").map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_topology_gives_configurations_the_services_accept() {
        for (name, _) in super::super::topology::BUILT_IN {
            let topology = Topology::load(name).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let plan = Plan::new(&topology, dir.path(), 20_000).unwrap();
            plan.write().unwrap();
            let mut ports = plan.ports();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), plan.ports().len(), "{name}: ports are distinct");
            for n in &plan.nodes {
                let file = plan.config_file(&Plan::agent_name(&n.name));
                qkdn_agent_config_parses(&file);
            }
            for c in &plan.controllers {
                let file = plan.config_file(&plan.controller_name(&c.domain));
                qkdn_controller::config::load(Some(&file), &Default::default())
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", file.display()));
            }
            if plan.orchestrator.is_some() {
                let file = plan.config_file("orchestrator");
                qkdn_orchestrator::config::load(Some(&file), &Default::default())
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", file.display()));
            }
            // Started again in the same folder: the same CA and store keys.
            let ca = std::fs::read(plan.pki().join("ca.crt")).unwrap();
            plan.write().unwrap();
            assert_eq!(ca, std::fs::read(plan.pki().join("ca.crt")).unwrap());
        }
    }

    fn qkdn_agent_config_parses(file: &Path) {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(parsed["links"].as_array().is_some_and(|l| !l.is_empty()), "{}", file.display());
    }
}

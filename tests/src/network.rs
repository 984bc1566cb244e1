//! A QKD network on one machine for tests: agent processes with simulated devices and KMSs
//! (every interface over mutual TLS with certificates of one test CA), joined by physical
//! links as the test lists them, and a controller process they register with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

use crate::pki::TestPki;
use crate::process::{Process, binary, free_port};

/// The domain of the network's controller.
pub const MAIN_DOMAIN: &str = "main";

/// The simulated devices' shared secret.
const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A node of the test network. The agent binds its RESTCONF, management, ETSI 014 and SKIP
/// listeners where it likes at its first start (port 0) and says where; they are 0 until then,
/// and kept across restarts. Only its peer port is picked in advance: its neighbours name it.
pub struct NodePorts {
    /// `qkdn_id`.
    pub id: String,
    /// RESTCONF (HTTPS).
    pub restconf: u16,
    /// Management (HTTP).
    pub management: u16,
    /// ETSI 014 (HTTPS).
    pub kms: u16,
    /// Peer service (gRPC over TLS).
    pub peer: u16,
    /// SKIP key provider (HTTPS, certificates).
    pub skip: u16,
}

/// The ports a controller said it bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControllerPorts {
    /// REST API and RESTCONF (HTTPS).
    pub api: u16,
    /// Management (HTTP).
    pub management: u16,
}

impl ControllerPorts {
    /// The ports a running controller said it bound.
    pub fn of(controller: &Process) -> ControllerPorts {
        ControllerPorts { api: controller.port("api"), management: controller.port("management") }
    }
}

/// The network.
pub struct TestNetwork {
    /// Where everything lives.
    pub dir: PathBuf,
    /// The CA.
    pub pki: TestPki,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodePorts>,
    /// Links: (id, node name, interface, node name, interface).
    pub links: Vec<(String, String, u32, String, u32)>,
    /// Running agents by name.
    pub agents: BTreeMap<String, Process>,
    /// The controller's ports (0 until it started).
    pub controller_ports: ControllerPorts,
    /// The running controller.
    pub controller: Option<Process>,
    /// The application client of the controller API.
    pub api: reqwest::Client,
    /// The API port of the controller an agent registers with, by name (default: the
    /// network's controller).
    pub agent_controller: BTreeMap<String, u16>,
    /// More TOML for an agent, by name (scripted simulator events, `[[simulator.events]]`,
    /// timed in simulated time from the network's epoch, at 10 simulated seconds per second).
    pub agent_extra: BTreeMap<String, String>,
    /// The controller domains that may write an agent's configuration, by name (default: the
    /// network's controller, domain `main`).
    pub agent_domains: BTreeMap<String, Vec<String>>,
    epoch: String,
}

/// The id of node number `n` (1-based).
pub fn node_id(n: usize) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

impl TestNetwork {
    /// The six-node ring of the relay and reroute tests, with its controller and agents running
    /// and the topology discovered:
    ///
    /// ```text
    ///  a - b - c
    ///  |       |
    ///  d - e - f
    /// ```
    pub async fn ring_of_six(dir: &Path) -> TestNetwork {
        let mut net = TestNetwork::new(
            dir,
            &["a", "b", "c", "d", "e", "f"],
            &[("a", "b"), ("b", "c"), ("a", "d"), ("d", "e"), ("e", "f"), ("f", "c")],
        );
        net.start_controller("");
        net.start_agents();
        net.wait_for_topology(30).await;
        net
    }

    /// Nodes named `names` (ids from [`node_id`] in that order), physical links between the
    /// named pairs; nothing started yet.
    pub fn new(dir: &Path, names: &[&str], links: &[(&str, &str)]) -> TestNetwork {
        let pki = TestPki::new(dir);
        let nodes: BTreeMap<String, NodePorts> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let ports = NodePorts {
                    id: node_id(i + 1),
                    restconf: 0,
                    management: 0,
                    kms: 0,
                    peer: free_port(),
                    skip: 0,
                };
                ((*n).to_owned(), ports)
            })
            .collect();
        let mut next_iface: BTreeMap<&str, u32> = BTreeMap::new();
        let links = links
            .iter()
            .enumerate()
            .map(|(i, (a, b))| {
                let mut iface = |n: &str| {
                    let base = 100 * (names.iter().position(|x| *x == n).unwrap() as u32 + 1);
                    let slot =
                        next_iface.entry(names.iter().find(|x| **x == n).unwrap()).or_insert(base);
                    *slot += 1;
                    *slot
                };
                let (ia, ib) = (iface(a), iface(b));
                (
                    format!("1111{:04x}-0000-4000-8000-000000000000", i + 1),
                    (*a).to_owned(),
                    ia,
                    (*b).to_owned(),
                    ib,
                )
            })
            .collect();
        let api = pki.admin_client("operator");
        let epoch = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(1))
            .to_string();
        TestNetwork {
            dir: dir.to_path_buf(),
            pki,
            nodes,
            links,
            agents: BTreeMap::new(),
            controller_ports: ControllerPorts::default(),
            controller: None,
            api,
            agent_controller: BTreeMap::new(),
            agent_extra: BTreeMap::new(),
            agent_domains: BTreeMap::new(),
            epoch,
        }
    }

    fn tls(cert: &Path, key: &Path, ca: &Path, client: bool) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\", {} = \"{}\" }}",
            cert.display(),
            key.display(),
            if client { "ca" } else { "client_ca" },
            ca.display()
        )
    }

    /// The agent configuration of node `name`.
    fn agent_config(&self, name: &str) -> String {
        let n = &self.nodes[name];
        let (cert, key) = self.pki.node(name, &n.id);
        let ca = self.pki.ca();
        let server = Self::tls(&cert, &key, &ca, false);
        let client = Self::tls(&cert, &key, &ca, true);
        let store_key = self.dir.join(format!("{name}.storekey"));
        if !store_key.exists() {
            let hex: String =
                (0..32).map(|i| format!("{:02x}", (i * 13 + name.len() * 7) as u8)).collect();
            std::fs::write(&store_key, hex).unwrap();
        }
        let mut text = format!(
            "data_dir = \"{}\"\n\n[node]\nid = \"{}\"\nlocation = \"site-{name}\"\n\n[restconf]\nlisten = \"127.0.0.1:{}\"\ntls = {server}\n\n\
             [management]\nlisten = \"127.0.0.1:{}\"\n\n[controller]\nurls = [\"https://localhost:{}\"]\ntls = {client}\nheartbeat = \"1s\"\ndomains = {:?}\n\n\
             [notifications]\nperformance_period = \"300ms\"\n\n\
             [simulator]\nnetwork_secret = \"{SECRET}\"\nepoch = \"{}\"\ntime_scale = 10.0\nslot = \"1s\"\n\n\
             [peer]\nlisten = \"127.0.0.1:{}\"\ntls = {server}\nclient_tls = {client}\n\n\
             [kms]\nlisten = \"127.0.0.1:{}\"\ntls = {server}\nstore_key_file = \"{}\"\nrelay_stock_keys = 256\n\n\
             [kms.skip]\nlisten = \"127.0.0.1:{}\"\n\n",
            self.dir.join(format!("{name}-data")).display(),
            n.id,
            n.restconf,
            n.management,
            self.controller_port_of(name),
            self.agent_domains.get(name).cloned().unwrap_or_else(|| vec![MAIN_DOMAIN.to_owned()]),
            self.epoch,
            n.peer,
            n.kms,
            store_key.display(),
            n.skip,
        );
        for (id, a, ia, b, ib) in &self.links {
            let (iface, remote, remote_iface) = if a == name {
                (*ia, b, *ib)
            } else if b == name {
                (*ib, a, *ia)
            } else {
                continue;
            };
            let r = &self.nodes[remote];
            text.push_str(&format!(
                "[[interfaces]]\nid = {iface}\ntechnology = \"DV-QKD\"\n[interfaces.device]\ndriver = \"simulator\"\npulse_rate_hz = 1.0e7\n\n\
                 [[links]]\nid = \"{id}\"\nlocal_interface = {iface}\nremote_node = \"{}\"\nremote_interface = {remote_iface}\n\
                 wavelength = 20\nrole = \"TRANSMITTER\"\nlength_km = 25.0\n\n\
                 [[neighbours]]\nnode = \"{}\"\nurl = \"https://localhost:{}\"\n\n",
                r.id, r.id, r.peer
            ));
        }
        text.push_str(self.agent_extra.get(name).map_or("", String::as_str));
        text
    }

    /// The API port of the controller the agent of `name` registers with (which must have
    /// started: it picks its port itself).
    fn controller_port_of(&self, name: &str) -> u16 {
        let port = self.agent_controller.get(name).copied().unwrap_or(self.controller_ports.api);
        assert_ne!(port, 0, "start the controller of {name} before its agent");
        port
    }

    /// Starts (or restarts) the agent of node `name` and waits until it is ready; a started
    /// agent's ports are known from then on.
    pub fn start_agent(&mut self, name: &str) {
        let config = self.dir.join(format!("{name}.toml"));
        std::fs::write(&config, self.agent_config(name)).unwrap();
        let log = self.dir.join(format!("{name}.log"));
        let process = Process::start_service(
            &binary("qkdn-agent"),
            &["--config".into(), config.display().to_string()],
            &log,
            "agent started",
        );
        let ports = self.nodes.get_mut(name).expect("a node of the network");
        ports.restconf = process.port("restconf");
        ports.management = process.port("management");
        ports.kms = process.port("kms");
        ports.skip = process.port("skip");
        self.agents.insert(name.to_owned(), process);
    }

    /// Starts every agent.
    pub fn start_agents(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.start_agent(&n);
        }
    }

    /// Writes the controller's configuration (`extra`: more TOML) and starts it.
    pub fn start_controller(&mut self, extra: &str) {
        let controller = self.launch_controller(MAIN_DOMAIN, extra);
        self.controller_ports = ControllerPorts::of(&controller);
        self.controller = Some(controller);
    }

    /// Starts the controller of domain `name` (its configuration, data, log and certificate
    /// named after it; another domain sharing the network's CA), on ports it picks itself
    /// ([`ControllerPorts::of`] reads them).
    pub fn launch_controller(&self, name: &str, extra: &str) -> Process {
        let (cert, key) = self.pki.controller(name);
        let (ccert, ckey) = (cert.clone(), key.clone());
        let ca = self.pki.ca();
        let text = format!(
            "data_dir = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntls = {}\n\n[management]\nlisten = \"127.0.0.1:0\"\n\n\
             [agents]\ntls = {}\nloss_timeout = \"3s\"\nresync_interval = \"5s\"\nrequest_timeout = \"3s\"\nkms_poll_interval = \"300ms\"\n\n{extra}\n",
            self.dir.join(format!("{name}-data")).display(),
            Self::tls(&cert, &key, &ca, false),
            Self::tls(&ccert, &ckey, &ca, true),
        );
        let config = self.dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Process::start_service(
            &binary("qkdn-controller"),
            &["--config".into(), config.display().to_string()],
            &self.dir.join(format!("{name}.log")),
            "controller started",
        )
    }

    /// The controller's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.controller_ports.api)
    }

    /// A request to the controller API: (status, JSON body or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Json>,
    ) -> (u16, Json) {
        let mut request = self.api.request(method, self.url(path));
        if let Some(b) = body {
            request = request.json(b);
        }
        match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Json::Null))
            }
            Err(e) => (0, Json::String(e.to_string())),
        }
    }

    /// GET a resource of the API.
    pub async fn get(&self, path: &str) -> Json {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Polls GET `path` until `what` holds (or panics after `seconds` with the last body).
    pub async fn wait_for(&self, path: &str, seconds: u64, what: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let (status, body) = self.call(reqwest::Method::GET, path, None).await;
            if status == 200 && what(&body) {
                return body;
            }
            if Instant::now() > deadline {
                let log = self.controller.as_ref().map(|c| c.log_tail(3000)).unwrap_or_default();
                panic!(
                    "GET {path}: condition not met in {seconds} s; last answer {status} {body}\ncontroller log:\n{log}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller sees every node reachable and every link up.
    pub async fn wait_for_topology(&self, seconds: u64) {
        let (nodes, links) = (self.nodes.len(), self.links.len());
        self.wait_for("/api/v1/nodes", seconds, |b| {
            b["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == nodes && n.iter().all(|x| x["reachable"] == true))
        })
        .await;
        self.wait_for("/api/v1/links", seconds, |b| {
            b["links"].as_array().is_some_and(|l| {
                l.len() == links
                    && l.iter().all(|x| x["up"] == true && x["skr_bps"].as_u64().unwrap_or(0) > 0)
            })
        })
        .await;
    }

    /// A RESTCONF client of node `name` (an admin operator's certificate).
    pub fn restconf(&self, name: &str) -> qkdn_yang::restconf::RestconfClient {
        qkdn_yang::restconf::RestconfClient::with_client(
            self.pki.admin_client("inspector"),
            &format!("https://127.0.0.1:{}", self.nodes[name].restconf),
        )
    }

    /// The id of the link between nodes `a` and `b`.
    pub fn link_id(&self, a: &str, b: &str) -> String {
        self.links
            .iter()
            .find(|(_, x, _, y, _)| (x == a && y == b) || (x == b && y == a))
            .map(|l| l.0.clone())
            .unwrap()
    }
}

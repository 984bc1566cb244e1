//! Shared parts of the agent process tests: starting agents with generated configurations,
//! waiting for readiness, RESTCONF clients and a notification collector.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use qkdn_yang::restconf::RestconfClient;
use qkdn_yang::restconf::client::{Backoff, StreamEvent};
use serde_json::Value as Json;

pub(crate) const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub(crate) const NODE_A: &str = "00000001-0000-0000-0000-000000000000";
pub(crate) const NODE_B: &str = "00000002-0000-0000-0000-000000000000";
pub(crate) const LINK_AB: &str = "a0b00000-0000-4000-8000-000000000001";

use qkdn_tests::process::Process;
pub(crate) use qkdn_tests::process::{free_port, repo};

/// The agent binary of this build.
pub(crate) fn agent_binary() -> PathBuf {
    qkdn_tests::process::binary("qkdn-agent")
}

/// A running agent process (killed when dropped), with the ports it said it bound.
pub(crate) struct AgentProcess {
    /// The process; [`Process::restart`] starts it again on the same RESTCONF and management
    /// ports, with the configuration file as it is then.
    pub(crate) process: Process,
    pub(crate) restconf: u16,
    pub(crate) management: u16,
    pub(crate) config: PathBuf,
    pub(crate) data: PathBuf,
}

/// Test settings of an agent: directory, name, and the configuration body (without the
/// sections the harness writes: data_dir, restconf, management).
pub(crate) struct Spec<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) body: String,
    /// Extra lines of the `[restconf]` section.
    pub(crate) restconf_extra: &'a str,
}

pub(crate) fn epoch_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(1)).to_string()
}

/// Writes the agent's configuration (RESTCONF and management on ports it picks itself) and
/// starts it.
pub(crate) fn start(spec: &Spec<'_>) -> AgentProcess {
    let data = spec.dir.join(format!("{}-data", spec.name));
    let config = spec.dir.join(format!("{}.toml", spec.name));
    // RESTCONF and the agent's API over plain HTTP on loopback: the development escape hatch
    // (a test that sets restconf.tls with a client CA is authenticated regardless).
    let text = format!(
        "data_dir = \"{}\"\ninsecure_allow_unauthenticated = true\n{}\n[restconf]\nlisten = \"127.0.0.1:0\"\n{}\n[management]\nlisten = \"127.0.0.1:0\"\n",
        data.display(),
        spec.body,
        spec.restconf_extra,
    );
    std::fs::write(&config, text).unwrap();
    launch(config, data)
}

/// Starts an agent with configuration file `config` and data directory `data`, and waits
/// until it is ready. Every agent logs at debug level to `<data>.log` (appended across
/// restarts), so tests can read what it said; nothing it logs may contain key material.
pub(crate) fn launch(config: PathBuf, data: PathBuf) -> AgentProcess {
    let process = Process::start_service(
        &agent_binary(),
        &["--config".into(), config.display().to_string()],
        &log_of(&data),
        "agent started",
    );
    let (restconf, management) = (process.port("restconf"), process.port("management"));
    AgentProcess { process, restconf, management, config, data }
}

/// The log file of the agent whose data directory is `data`.
pub(crate) fn log_of(data: &Path) -> PathBuf {
    data.with_extension("log")
}

/// Kills the agent the way a crash would and starts it again (same ports, the configuration
/// file as it is now).
pub(crate) fn relaunch(mut agent: AgentProcess) -> AgentProcess {
    agent.process.restart();
    agent
}

/// The simulator settings. Both ends of a link must share the epoch: agents of one test share
/// the process's epoch; a scripted test (`extra` holds events, timed from the epoch) gets a
/// fresh one.
pub(crate) fn sim_section(extra: &str) -> String {
    static SHARED_EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let epoch =
        if extra.is_empty() { SHARED_EPOCH.get_or_init(epoch_now).clone() } else { epoch_now() };
    format!(
        "[simulator]\nnetwork_secret = \"{SECRET}\"\nepoch = \"{epoch}\"\ntime_scale = 10.0\nslot = \"1s\"\n{extra}\n"
    )
}

pub(crate) fn node_ab(
    node: &str,
    iface: u32,
    remote: &str,
    remote_iface: u32,
    extra_sim: &str,
    extra: &str,
) -> String {
    format!(
        r#"[node]
id = "{node}"
{extra}
[notifications]
performance_period = "300ms"

{sim}
[[interfaces]]
id = {iface}
technology = "DV-QKD"
[interfaces.device]
driver = "simulator"
pulse_rate_hz = 1.0e7

[[links]]
id = "{LINK_AB}"
local_interface = {iface}
remote_node = "{remote}"
remote_interface = {remote_iface}
wavelength = 20
role = "TRANSMITTER"
length_km = 25.0
"#,
        sim = sim_section(extra_sim)
    )
}

/// An HTTPS client with a preconfigured rustls configuration (the shared TLS policy), whose
/// requests give up after `timeout`.
pub(crate) fn https_client(config: rustls::ClientConfig, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().tls_backend_preconfigured(config).timeout(timeout).build().unwrap()
}

/// A server `tls` table for an agent's configuration, inline.
pub(crate) fn server_tls_toml(cert: &Path, key: &Path, client_ca: &Path) -> String {
    format!(
        "{{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        cert.display(),
        key.display(),
        client_ca.display()
    )
}

/// The key store encryption key of node `name` in `dir` (written once, fixed per name, so a
/// restarted agent reads its stores again).
pub(crate) fn store_key_file(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.storekey"));
    if !file.exists() {
        let hex: String = (0..32).map(|i| format!("{:02x}", (i * 7 + name.len()) as u8)).collect();
        std::fs::write(&file, hex).unwrap();
    }
    file
}

/// A plain HTTP client whose requests give up after 10 s (a test must fail, not hang).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// GETs a resource of `agent`'s API (`/api{path}` on its plain-HTTP RESTCONF listener) as
/// JSON (null when the body is not JSON).
pub(crate) async fn api_json(agent: &AgentProcess, path: &str) -> Json {
    get_json(&http_client(), &format!("http://127.0.0.1:{}/api{path}", agent.restconf)).await
}

/// GETs `url` with `client` as JSON (null when the body is not JSON).
pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Json {
    client.get(url).send().await.unwrap().json().await.unwrap_or(Json::Null)
}

/// The key ledger of the link A-B.
pub(crate) async fn ledger(agent: &AgentProcess) -> Json {
    api_json(agent, &format!("/v1/links/{LINK_AB}/keys")).await
}

/// A test PKI: a CA (its certificate in `ca.crt`) issuing certificate files into one folder.
pub(crate) struct TestPki {
    pub(crate) dir: PathBuf,
    ca: qkdn_kit::pki::Authority,
}

impl TestPki {
    pub(crate) fn new(dir: &Path) -> TestPki {
        let ca = qkdn_kit::pki::Authority::generate("qkdn test CA").unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        TestPki { dir: dir.to_path_buf(), ca }
    }

    /// Issues `name.crt` and `name.key` naming no qkdn identity (a third party's certificate):
    /// services get 127.0.0.1 and localhost as names.
    pub(crate) fn issue(&self, name: &str, usage: qkdn_kit::pki::Usage) -> (PathBuf, PathBuf) {
        let hosts: &[&str] =
            if usage == qkdn_kit::pki::Usage::Service { &["127.0.0.1", "localhost"] } else { &[] };
        self.ca.issue(name, hosts, None, usage).unwrap().write(&self.dir, name).unwrap()
    }

    /// Issues `file.crt` and `file.key` naming `identity`.
    pub(crate) fn issue_identity(
        &self,
        file: &str,
        identity: &qkdn_kit::Identity,
        usage: qkdn_kit::pki::Usage,
    ) -> (PathBuf, PathBuf) {
        let hosts: &[&str] =
            if usage == qkdn_kit::pki::Usage::Service { &["127.0.0.1", "localhost"] } else { &[] };
        self.ca.issue_identity(identity, hosts, usage).unwrap().write(&self.dir, file).unwrap()
    }

    /// Issues the certificate of node `node` (`urn:qkdn:node:<id>`), as `node-<name>.crt`
    /// and `.key`.
    pub(crate) fn issue_node(&self, name: &str, node: &str) -> (PathBuf, PathBuf) {
        let identity = qkdn_kit::Identity::Node(node.parse().unwrap());
        self.issue_identity(&format!("node-{name}"), &identity, qkdn_kit::pki::Usage::Service)
    }

    /// Issues the client certificate of SAE `id` (`urn:qkdn:sae:<id>`), as `id.crt`, `.key`.
    pub(crate) fn issue_sae(&self, id: &str) -> (PathBuf, PathBuf) {
        self.issue_identity(id, &qkdn_kit::Identity::Sae(id.into()), qkdn_kit::pki::Usage::Client)
    }

    /// The CA certificate file.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

pub(crate) fn restconf(agent: &AgentProcess) -> RestconfClient {
    RestconfClient::new(&format!("http://127.0.0.1:{}", agent.restconf))
}

pub(crate) const NODE_PATH: &str = "/etsi-qkd-sdn-node:qkd_node";
pub(crate) const VIRT: &str = "c0c00000-0000-4000-8000-000000000009";
pub(crate) const APP: &str = "aaaa0000-0000-4000-8000-000000000001";

pub(crate) fn collect(
    agent: &AgentProcess,
) -> (Arc<Mutex<Vec<Json>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = restconf(agent);
    let store = seen.clone();
    let task = tokio::spawn(async move {
        let mut sub = client.subscribe(
            "NETCONF",
            Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(200) },
        );
        while let Some(event) = sub.next().await {
            if let StreamEvent::Notification(n) = event {
                store.lock().unwrap().push(n);
            }
        }
    });
    (seen, task)
}

pub(crate) fn names(seen: &[Json]) -> Vec<String> {
    seen.iter().filter_map(|n| n.as_object()?.keys().find(|k| *k != "eventTime").cloned()).collect()
}

pub(crate) async fn wait_for(
    seen: &Arc<Mutex<Vec<Json>>>,
    what: impl Fn(&[Json]) -> bool,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out; notifications so far: {:?}", names(&seen.lock().unwrap()));
}

/// Asserts that no agent log under `dir` holds any of `keys` (raw key bytes), in base64 or in
/// hex, while the logs do name the keys (`ids`): debug logging was on and saw them.
pub(crate) fn assert_logs_hold_no_keys(dir: &Path, keys: &[Vec<u8>], ids: &[String]) {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(
        ids.iter().any(|id| logs.contains(id.as_str())),
        "the logs name none of the keys: was debug logging on?"
    );
    let lower = logs.to_lowercase();
    for key in keys {
        assert!(!key.is_empty());
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!lower.contains(&hex), "a key appears in hex in the logs");
        for engine in &engines {
            let b64 = engine.encode(key);
            assert!(!logs.contains(&b64), "a key appears in base64 in the logs");
        }
        // Also no long fragment (a 16-byte window) in hex.
        for window in key.windows(16) {
            let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!lower.contains(&hex), "a fragment of a key appears in the logs");
        }
    }
}

#[test]
#[should_panic(expected = "a key appears in base64 in the logs")]
fn the_log_search_finds_a_logged_key() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = vec![0x5au8; 32];
    let line = format!(
        "{}\nkey_ID=k-1 key={}\n",
        "x".repeat(2000),
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    std::fs::write(dir.path().join("a-data.log"), line).unwrap();
    assert_logs_hold_no_keys(dir.path(), &[key], &["k-1".to_string()]);
}

//! KMS benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-agent --bench kms [-- --seconds N] [--only enc|restconf|hops|chain]
//!     [--agent PATH [--legacy] [--without-skip]]
//! ```
//!
//! `--agent` runs the agents from another build of `qkdn-agent` (to measure two builds with the
//! same load, one after the other); `--legacy` for builds from before typed identities and
//! quotas (their configuration has no quota settings), `--without-skip` for builds from before
//! the SKIP key provider (no `[kms.skip]`, no SKIP loads). Every agent serves RESTCONF, ETSI 014
//! and the peer service over mutual TLS, with the certificates of one CA.
//!
//! * `enc`: two `qkdn-agent` processes (bench profile) with their KMSs, A pinned to core 0 and
//!   B (the other end of the link, which records every delivery A makes) to core 1 with the
//!   load. The link's simulated device fills the stores first and is then switched off over
//!   RESTCONF, so that the measurement sees the KMS alone. SAE clients (HTTP/1.1 keep-alive over
//!   mutual TLS with their own certificates) call `enc_keys` back to back from 1, 16 and 64
//!   connections with one 256-bit key per request, then with `number=16`; then encryptors
//!   (the same SAE) call SKIP's `GET /key?remoteSystemID=sae-b` (TLS 1.3, certificates) from 16
//!   and 64 connections, the same delivery over another interface: requests/s, keys/s, p50 and
//!   p99, and the CPU each agent used.
//! * `restconf`: one agent (pinned to core 0); GETs of its `qkd_node` over RESTCONF (mutual TLS,
//!   an operator's certificate, HTTP/1.1 keep-alive) from 1 and 16 connections on core 1.
//! * `hops`: the work of a trusted node on one relayed key, in process on one core: take the
//!   pads of the incoming hop (the keys the previous node used), remove them, pad again with
//!   keys of the outgoing hop erased durably first: key-hops/s for relay blocks of 64 and 1024
//!   keys.
//! * `chain`: chains of 8 and 32 agent processes on loopback, each linked to the next by a
//!   simulated device, and a virtual link from the first to the last relayed through every
//!   node; the end-to-end latency of a relay (keys generated, padded hop by hop, stored at the
//!   far end, committed at both ends) as the source reports it on `/api/v1/kms/relays`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use qkdn_agent::device::KeyBlock;
use qkdn_agent::kms::ownership;
use qkdn_agent::kms::store::{Delivery, KeyStores, LinkSettings, StoreSettings};
use qkdn_kit::pki::{Authority, Usage};
use qkdn_kms::owner::{PeerRefusal, ReserveFuture, Reserver};
use qkdn_kms::seal::StoreKey;
use serde_json::{Value as Json, json};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Which agent binary the runs start, and whether it predates typed identities and quotas.
struct Build {
    agent: PathBuf,
    legacy: bool,
    /// Whether the build has the SKIP key provider.
    skip: bool,
}

static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();

fn build() -> &'static Build {
    BUILD.get_or_init(|| Build {
        agent: env!("CARGO_BIN_EXE_qkdn-agent").into(),
        legacy: false,
        skip: true,
    })
}

/// The agent's allocator, so that the in-process part measures what the agent runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NODE_PATH: &str = "/restconf/data/etsi-qkd-sdn-node:qkd_node";

/// A free port below the kernel's ephemeral range, so that no agent's outgoing connection can
/// take it before the agent listens on it; each port is handed out once per run.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 100) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "no free port left");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn node_id(i: usize) -> String {
    format!("{:08x}-0000-0000-0000-000000000000", i + 1)
}

/// The physical link between node `i` and node `i + 1`.
fn link_id(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-00000000000c", i + 1)
}

/// Certificates of the run: a CA, node certificates, SAE certificates.
struct Pki {
    dir: PathBuf,
    ca: Authority,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Authority::generate("qkdn bench CA").unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        Pki { dir: dir.to_path_buf(), ca }
    }

    fn node(&self, node: &str) -> (PathBuf, PathBuf) {
        let identity = qkdn_kit::Identity::Node(node.parse().unwrap());
        let name = format!("node-{node}");
        let issued =
            self.ca.issue_identity(&identity, &["127.0.0.1", "localhost"], Usage::Service).unwrap();
        issued.write(&self.dir, &name).unwrap()
    }

    fn sae(&self, name: &str) -> (PathBuf, PathBuf) {
        let identity = qkdn_kit::Identity::Sae(name.into());
        self.ca
            .issue_identity(&identity, &[], Usage::Client)
            .unwrap()
            .write(&self.dir, name)
            .unwrap()
    }

    /// An operator admin's client certificate (RESTCONF and the agents' API).
    fn admin(&self) -> (PathBuf, PathBuf) {
        let identity = qkdn_kit::Identity::operator("bench", qkdn_kit::Role::Admin);
        let issued = self.ca.issue_identity(&identity, &[], Usage::Client).unwrap();
        issued.write(&self.dir, "operator-bench").unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// One agent of a run.
struct NodeSpec {
    index: usize,
    /// (link, local interface, remote node index, remote interface).
    links: Vec<(String, u32, usize, u32)>,
    pulse_rate_hz: f64,
    time_scale: f64,
    kms_extra: String,
    core: &'static str,
}

struct Agent {
    child: Child,
    restconf: u16,
    management: u16,
    kms: u16,
    /// An operator admin's HTTPS client, for RESTCONF and the agent's API.
    admin: reqwest::Client,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the agents of `specs` (peer ports known to each other); `epoch` is shared.
fn start_agents(dir: &Path, pki: &Pki, specs: &[NodeSpec]) -> Vec<Agent> {
    let epoch = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let peers: Vec<u16> = specs.iter().map(|_| free_port()).collect();
    let mut agents: Vec<Agent> = Vec::new();
    let (admin_cert, admin_key) = pki.admin();
    let admin_tls =
        qkdn_kit::tls::client_config(&pki.ca(), Some((&admin_cert, &admin_key))).unwrap();
    for spec in specs {
        let node = node_id(spec.index);
        let (cert, key) = pki.node(&node);
        let ca = pki.ca();
        let (restconf, management, kms) = (free_port(), free_port(), free_port());
        let data = dir.join(format!("data-{}", spec.index));
        let store_key = dir.join(format!("store-{}.key", spec.index));
        qkdn_kit::pki::write_new_secret(&store_key).unwrap();
        let tls = format!(
            "{{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
            cert.display(),
            key.display(),
            ca.display()
        );
        let mut text = format!(
            "data_dir = \"{data}\"\n[node]\nid = \"{node}\"\n[restconf]\nlisten = \"127.0.0.1:{restconf}\"\ntls = {tls}\n\
             [management]\nlisten = \"127.0.0.1:{management}\"\n[notifications]\nperformance_period = \"1h\"\n\
             [simulator]\nnetwork_secret = \"{SECRET}\"\nepoch = \"{epoch}\"\ntime_scale = {scale}\nslot = \"1s\"\n\
             [peer]\nlisten = \"127.0.0.1:{peer}\"\ntls = {tls}\nclient_tls = {{ cert = \"{cert}\", key = \"{key}\", ca = \"{ca}\" }}\n",
            data = data.display(),
            scale = spec.time_scale,
            peer = peers[spec.index],
            cert = cert.display(),
            key = key.display(),
            ca = ca.display(),
        );
        for (link, iface, remote, remote_iface) in &spec.links {
            text.push_str(&format!(
                "[[interfaces]]\nid = {iface}\ntechnology = \"DV-QKD\"\n[interfaces.device]\ndriver = \"simulator\"\n\
                 pulse_rate_hz = {rate:e}\n[[links]]\nid = \"{link}\"\nlocal_interface = {iface}\nremote_node = \"{remote_node}\"\n\
                 remote_interface = {remote_iface}\nwavelength = 20\nrole = \"TRANSMITTER\"\nlength_km = 25.0\n\
                 [[neighbours]]\nnode = \"{remote_node}\"\nurl = \"https://localhost:{remote_peer}\"\n",
                rate = spec.pulse_rate_hz,
                remote_node = node_id(*remote),
                remote_peer = peers[*remote],
            ));
        }
        text.push_str(&format!(
            "[kms]\nlisten = \"127.0.0.1:{kms}\"\ntls = {tls}\nstore_key_file = \"{}\"\n{}\n",
            store_key.display(),
            spec.kms_extra
        ));
        let file = dir.join(format!("agent-{}.toml", spec.index));
        std::fs::write(&file, text).unwrap();
        let log = std::fs::File::create(dir.join(format!("agent-{}.log", spec.index))).unwrap();
        let child = Command::new("taskset")
            .args(["-c", spec.core])
            .arg(&build().agent)
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("taskset and qkdn-agent");
        let admin = reqwest::Client::builder()
            .tls_backend_preconfigured(admin_tls.clone())
            .build()
            .unwrap();
        agents.push(Agent { child, restconf, management, kms, admin });
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", agent.management)).is_err() {
            let exited = agent.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join(format!("agent-{i}.log")));
                panic!("agent {i} did not start ({exited:?}): {}", log.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    agents
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn restconf_write(agent: &Agent, method: reqwest::Method, path: &str, body: Json) {
    let url = format!("https://localhost:{}{NODE_PATH}{path}", agent.restconf);
    let response = agent
        .admin
        .request(method, url)
        .header("content-type", "application/yang-data+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(status.is_success(), "{status}: {}", response.text().await.unwrap());
}

/// A resource of the agent's API (beside RESTCONF), read by the operator.
async fn agent_api(agent: &Agent, path: &str) -> Json {
    let url = format!("https://localhost:{}/api{path}", agent.restconf);
    agent.admin.get(url).send().await.unwrap().json().await.unwrap()
}

/// CPU time (user + system) of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// Resident memory of process `pid`, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

// ---------------------------------------------------------------------------------------------
// enc_keys

struct Load {
    requests: u64,
    failed: u64,
    keys: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

/// `connections` SAE clients calling `path` back to back for `seconds`, on core 1; an answer's
/// keys are the occurrences of `key_name` in it.
fn enc_load(
    tls: Arc<rustls::ClientConfig>,
    (port, path): (u16, &'static str),
    key_name: &'static [u8],
    connections: usize,
    seconds: f64,
) -> Load {
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        runtime().block_on(async move {
            let connector = tokio_rustls::TlsConnector::from(tls);
            let start = Instant::now() + Duration::from_millis(500);
            let deadline = start + Duration::from_secs_f64(seconds);
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let connector = connector.clone();
                tasks.push(tokio::spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let stream = connector.connect(name, tcp).await.unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    let mut hist = Histogram::<u64>::new(3).unwrap();
                    let (mut ok, mut failed, mut keys) = (0u64, 0u64, 0u64);
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        let request = http::Request::get(path)
                            .header("host", "localhost")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        let status = response.status();
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        if now < start {
                            continue;
                        }
                        hist.record(now.elapsed().as_micros() as u64).unwrap();
                        if status == 200 {
                            ok += 1;
                            keys += memchr_count(&body, key_name);
                        } else {
                            failed += 1;
                        }
                    }
                    (hist, ok, failed, keys)
                }));
            }
            let mut load = Load {
                requests: 0,
                failed: 0,
                keys: 0,
                seconds,
                latency: Histogram::new(3).unwrap(),
            };
            for task in tasks {
                let (hist, ok, failed, keys) = task.await.unwrap();
                load.latency.add(hist).unwrap();
                load.requests += ok;
                load.failed += failed;
                load.keys += keys;
            }
            load
        })
    })
    .join()
    .unwrap()
}

fn memchr_count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

async fn stored_key_count(http: &reqwest::Client, kms: u16) -> u64 {
    let url = format!("https://localhost:{kms}/api/v1/keys/sae-b/status");
    let status: Json = http.get(url).send().await.unwrap().json().await.unwrap();
    status["stored_key_count"].as_u64().unwrap_or(0)
}

/// A load of `bench_enc`: its name, (port, path), the name of a key in its answers, and how
/// many connections.
type Phase = (&'static str, (u16, &'static str), &'static [u8], usize);

fn bench_enc(dir: &Path, seconds: f64) {
    let pki = Pki::new(dir);
    let (sae_cert, sae_key) = pki.sae("sae-a");
    // SKIP's listener at A, for builds that have one.
    let skip = (!build().legacy && build().skip).then(free_port);
    let pairs = |local: &str, remote: &str, skip: Option<u16>| {
        // The pair's quota (a rate limit every pair has) set beyond what is measured.
        let quota = if build().legacy { "" } else { "default_max_bandwidth_bps = 4000000000\n" };
        let skip =
            skip.map_or(String::new(), |p| format!("[kms.skip]\nlisten = \"127.0.0.1:{p}\"\n"));
        format!(
            "store_capacity = 6000000\n{quota}\
             pairs = [{{ local_sae = \"{local}\", remote_sae = \"{remote}\", link = \"{}\" }}]\n{skip}",
            link_id(0)
        )
    };
    let specs = [
        NodeSpec {
            index: 0,
            links: vec![(link_id(0), 1, 1, 2)],
            pulse_rate_hz: 1e9,
            time_scale: 50.0,
            kms_extra: pairs("sae-a", "sae-b", skip),
            core: "0",
        },
        NodeSpec {
            index: 1,
            links: vec![(link_id(0), 2, 0, 1)],
            pulse_rate_hz: 1e9,
            time_scale: 50.0,
            kms_extra: pairs("sae-b", "sae-a", None),
            core: "1",
        },
    ];
    let agents = start_agents(dir, &pki, &specs);
    let (a, b) = (&agents[0], &agents[1]);
    let rss_before = rss_bytes(a.child.id());
    let tls =
        Arc::new(qkdn_kit::tls::client_config(&pki.ca(), Some((&sae_cert, &sae_key))).unwrap());
    let rt = runtime();
    // Enough keys for every phase, then the devices stop.
    let needed = (seconds * 2_500_000.0).min(2_800_000.0) as u64;
    let filled_in = rt.block_on(async {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .unwrap();
        let t0 = Instant::now();
        while stored_key_count(&http, a.kms).await < needed {
            assert!(t0.elapsed() < Duration::from_secs(300), "the stores did not fill");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let took = t0.elapsed().as_secs_f64();
        for agent in [a, b] {
            let body = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": link_id(0), "qkdl_enable": false}]});
            let path = format!("/qkd_links/qkd_link={}", link_id(0));
            restconf_write(agent, reqwest::Method::PATCH, &path, body).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        took
    });
    println!(
        "stores filled with {needed} keys for A in {filled_in:.1} s ({:.0} keys/s stored at each end, \
         both halves, while serving nothing)",
        needed as f64 * 2.0 / filled_in
    );
    let grown = rss_bytes(a.child.id()).saturating_sub(rss_before);
    println!(
        "agent A's resident memory grew by {:.1} MiB while its store took {} keys of 256 bits \
         (both halves): {:.0} bytes per stored key",
        grown as f64 / 1048576.0,
        needed * 2,
        grown as f64 / (needed * 2) as f64
    );
    println!();
    println!("| load | requests/s | keys/s | p50 | p99 | refused | CPU A (core 0) | CPU B |");
    println!("|---|---|---|---|---|---|---|---|");
    let enc = |path| (a.kms, path);
    let mut phases: Vec<Phase> = vec![
        ("1 key, 1 connection", enc("/api/v1/keys/sae-b/enc_keys"), b"key_ID", 1),
        ("1 key, 16 connections", enc("/api/v1/keys/sae-b/enc_keys"), b"key_ID", 16),
        ("1 key, 64 connections", enc("/api/v1/keys/sae-b/enc_keys"), b"key_ID", 64),
        ("number=16, 16 connections", enc("/api/v1/keys/sae-b/enc_keys?number=16"), b"key_ID", 16),
        ("number=16, 64 connections", enc("/api/v1/keys/sae-b/enc_keys?number=16"), b"key_ID", 64),
    ];
    if let Some(port) = skip {
        let key = (port, "/key?remoteSystemID=sae-b");
        phases.push(("SKIP /key, 16 connections", key, b"keyId", 16));
        phases.push(("SKIP /key, 64 connections", key, b"keyId", 64));
    }
    for (name, target, key_name, connections) in phases {
        let (pa, pb) = (a.child.id(), b.child.id());
        let (ca0, cb0, t0) = (cpu_seconds(pa), cpu_seconds(pb), Instant::now());
        let load = enc_load(tls.clone(), target, key_name, connections, seconds);
        let wall = t0.elapsed().as_secs_f64();
        let (cpu_a, cpu_b) =
            ((cpu_seconds(pa) - ca0) / wall * 100.0, (cpu_seconds(pb) - cb0) / wall * 100.0);
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {} | {cpu_a:.0} % | {cpu_b:.0} % |",
            load.requests as f64 / load.seconds,
            load.keys as f64 / load.seconds,
            load.latency.value_at_quantile(0.5) as f64 / 1000.0,
            load.latency.value_at_quantile(0.99) as f64 / 1000.0,
            load.failed,
        );
    }
    println!();
}

/// GETs of one agent's `qkd_node` over RESTCONF (mutual TLS, an operator's certificate).
fn bench_restconf(dir: &Path, seconds: f64) {
    let pki = Pki::new(dir);
    let specs = [NodeSpec {
        index: 0,
        links: Vec::new(),
        pulse_rate_hz: 1e6,
        time_scale: 1.0,
        kms_extra: String::new(),
        core: "0",
    }];
    let agents = start_agents(dir, &pki, &specs);
    let a = &agents[0];
    let (admin_cert, admin_key) = pki.admin();
    let admin =
        Arc::new(qkdn_kit::tls::client_config(&pki.ca(), Some((&admin_cert, &admin_key))).unwrap());
    println!("| GETs of the qkd_node | requests/s | p50 | p99 | CPU of the agent |");
    println!("|---|---|---|---|---|");
    for connections in [1usize, 16] {
        let pa = a.child.id();
        let (ca0, t0) = (cpu_seconds(pa), Instant::now());
        let load =
            enc_load(admin.clone(), (a.restconf, NODE_PATH), b"key_ID", connections, seconds);
        let cpu_a = (cpu_seconds(pa) - ca0) / t0.elapsed().as_secs_f64() * 100.0;
        assert_eq!(load.failed, 0, "RESTCONF GETs failed");
        println!(
            "| {connections} connection(s) | {:.0} | {:.2} ms | {:.2} ms | {cpu_a:.0} % |",
            load.requests as f64 / load.seconds,
            load.latency.value_at_quantile(0.5) as f64 / 1000.0,
            load.latency.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// hops

/// The hops run reserves nothing at other nodes.
struct NoReservations;

impl Reserver for NoReservations {
    fn reserve(&self, _link: Uuid, _remote: Uuid, _deliveries: Vec<Delivery>) -> ReserveFuture {
        Box::pin(async { Err(PeerRefusal::Failed("no peer in this run".into())) })
    }
}

fn bench_hops(dir: &Path, seconds: f64) {
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let (me, prev, next) = (Uuid::from_u128(2), Uuid::from_u128(1), Uuid::from_u128(3));
    let (link_in, link_out) = (Uuid::from_u128(0x12), Uuid::from_u128(0x23));
    let rt = runtime();
    println!("| relay block | key-hops/s (one core) | per key-hop |");
    println!("|---|---|---|");
    for batch in [64usize, 1024] {
        let data = dir.join(format!("hops-{batch}"));
        std::fs::create_dir_all(&data).unwrap();
        let seal = StoreKey::from_hex(&qkdn_kit::pki::random_key_hex().unwrap()).unwrap();
        let settings = StoreSettings { capacity: 50_000_000, ..StoreSettings::default() };
        let _runtime = rt.enter();
        let ring = qkdn_kms::seal::Keyring::new(seal);
        let stores = KeyStores::open(me, ring, &data, settings, Arc::new(NoReservations)).unwrap();
        let links = [(link_in, prev), (link_out, next)]
            .into_iter()
            .map(|(l, r)| (l, LinkSettings { remote: r, max_age: None, relay_reserve: 0 }))
            .collect();
        stores.set_links(&links);
        // Keys for the run: the previous node's half of the incoming link, this node's half of
        // the outgoing one; both halves are stored, as a device delivers them.
        let per_block = 65_536usize;
        let blocks = 24u64;
        let mut incoming: Vec<Uuid> = Vec::new();
        let mut counter = 0u128;
        rt.block_on(async {
            for (link, remote) in [(link_in, prev), (link_out, next)] {
                for sequence in 0..blocks {
                    let ids: Vec<Uuid> = (0..per_block)
                        .map(|_| {
                            counter += 1;
                            Uuid::from_u128(counter << 64 | 0x4000_8000_0000_0000)
                        })
                        .collect();
                    if link == link_in {
                        for (i, id) in ids.iter().enumerate() {
                            let position = ownership::position(sequence, i);
                            if ownership::owned_by(remote, me, position) {
                                incoming.push(*id);
                            }
                        }
                    }
                    let material = Zeroizing::new(vec![0x5au8; per_block * 32]);
                    stores.ingest(KeyBlock::new(link, sequence, 32, ids, material)).await.unwrap();
                }
            }
        });
        let ciphertext = vec![0xa5u8; batch * 32];
        let mut out = vec![0u8; batch * 32];
        let (mut hops, t0) = (0usize, Instant::now());
        rt.block_on(async {
            for chunk in incoming.chunks_exact(batch) {
                if t0.elapsed().as_secs_f64() >= seconds {
                    break;
                }
                let ids: Vec<Vec<Uuid>> = chunk.iter().map(|id| vec![*id]).collect();
                let pads_in = stores.use_pads(link_in, prev, &ids).await.unwrap();
                let pads_out = stores.take_pads(link_out, batch, 256).await.unwrap();
                for (i, (a, b)) in pads_in.iter().zip(&pads_out).enumerate() {
                    let slot = &mut out[i * 32..(i + 1) * 32];
                    for (j, o) in slot.iter_mut().enumerate() {
                        *o = ciphertext[i * 32 + j] ^ a[j] ^ b.bytes[j];
                    }
                }
                std::hint::black_box(&out);
                hops += batch;
            }
        });
        let took = t0.elapsed().as_secs_f64();
        println!(
            "| {batch} keys | {:.0} | {:.2} µs |",
            hops as f64 / took,
            took * 1e6 / hops as f64
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// chain

fn bench_chain(dir: &Path, length: usize, seconds: f64) -> Json {
    let pki = Pki::new(dir);
    let virt = "7e000000-0000-4000-8000-000000000001";
    let specs: Vec<NodeSpec> = (0..length)
        .map(|i| {
            let mut links = Vec::new();
            if i > 0 {
                links.push((link_id(i - 1), 1, i - 1, 2));
            }
            if i + 1 < length {
                links.push((link_id(i), 2, i + 1, 1));
            }
            NodeSpec {
                index: i,
                links,
                pulse_rate_hz: 2e8,
                time_scale: 1.0,
                kms_extra: "relay_stock_keys = 100000000".into(),
                core: "0,1",
            }
        })
        .collect();
    let agents = start_agents(dir, &pki, &specs);
    let rt = runtime();
    rt.block_on(async {
        // Let the hop stores fill, then provision the path from the far end back to the source.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for i in (0..length).rev() {
            let mut entry = json!({"qkdl_id": virt, "qkdl_type": "etsi-qkd-node-types:VIRT",
                "qkdl_remote": {"qkdn_id": node_id(if i == length - 1 { 0 } else { length - 1 })},
                "virt_bandwidth": 80_000});
            if i > 0 {
                entry["virt_prev_hop"] = json!(node_id(i - 1));
            }
            if i + 1 < length {
                entry["virt_next_hop"] = json!([node_id(i + 1)]);
            }
            let body = json!({"etsi-qkd-sdn-node:qkd_link": [entry]});
            let path = format!("/qkd_links/qkd_link={virt}");
            restconf_write(&agents[i], reqwest::Method::PUT, &path, body).await;
        }
        // Pads build up (the links make about four times what the relay takes); then every
        // device stops, so that the measurement sees the relay alone.
        tokio::time::sleep(Duration::from_secs(10)).await;
        for (i, agent) in agents.iter().enumerate() {
            for link in [i.checked_sub(1).map(link_id), (i + 1 < length).then(|| link_id(i))]
                .into_iter()
                .flatten()
            {
                let body = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": link, "qkdl_enable": false}]});
                let path = format!("/qkd_links/qkd_link={link}");
                restconf_write(agent, reqwest::Method::PATCH, &path, body).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let url = format!("https://localhost:{}/api/v1/kms/relays", agents[0].restconf);
        agents[0].admin.delete(url).send().await.unwrap();
        let cpu0: f64 = agents.iter().map(|a| cpu_seconds(a.child.id())).sum();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        let cpu = (agents.iter().map(|a| cpu_seconds(a.child.id())).sum::<f64>() - cpu0)
            / t0.elapsed().as_secs_f64();
        let mut report = agent_api(&agents[0], "/v1/kms/relays").await["relays"][0].clone();
        report["cpu_cores"] = json!(cpu);
        report
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut only) = (5.0f64, None::<String>);
    let (mut agent, mut legacy, mut skip) = (None::<PathBuf>, false, true);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            "--only" => only = args.next(),
            "--agent" => agent = Some(args.next().expect("--agent PATH").into()),
            "--legacy" => legacy = true,
            "--without-skip" => skip = false,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let agent = agent.unwrap_or_else(|| env!("CARGO_BIN_EXE_qkdn-agent").into());
    println!("agent: {} ({})\n", agent.display(), if legacy { "legacy" } else { "current" });
    let _ = BUILD.set(Build { agent, legacy, skip });
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("QKDN_BENCH_KEEP").is_some() {
        eprintln!("keeping the agents' files in {}", dir.path().display());
    }
    if runs("enc") {
        println!("## enc_keys over mutual TLS ({seconds} s per load)\n");
        let sub = dir.path().join("enc");
        std::fs::create_dir_all(&sub).unwrap();
        bench_enc(&sub, seconds);
    }
    if runs("restconf") {
        println!("## RESTCONF over mutual TLS ({seconds} s per load)\n");
        let sub = dir.path().join("restconf");
        std::fs::create_dir_all(&sub).unwrap();
        bench_restconf(&sub, seconds);
    }
    if runs("hops") {
        println!("## relay hops in process ({seconds} s per block size)\n");
        bench_hops(dir.path(), seconds);
    }
    if runs("chain") {
        println!("## end-to-end relay latency ({} s per chain)\n", seconds * 6.0);
        println!("| chain | relays | keys | p50 | p99 | max | failures | CPU of all agents |");
        println!("|---|---|---|---|---|---|---|---|");
        for length in [8usize, 32] {
            let sub = dir.path().join(format!("chain-{length}"));
            std::fs::create_dir_all(&sub).unwrap();
            let r = bench_chain(&sub, length, seconds * 6.0);
            println!(
                "| {length} nodes ({} hops) | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {:.2} cores |",
                length - 1,
                r["relays"],
                r["keys"],
                r["latency_p50_ms"].as_f64().unwrap_or(f64::NAN),
                r["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
                r["latency_max_ms"].as_f64().unwrap_or(f64::NAN),
                r["failures"],
                r["cpu_cores"].as_f64().unwrap_or(f64::NAN),
            );
            if let Some(error) = r["last_error"].as_str() {
                eprintln!("{length} nodes: the last failure: {error}");
            }
        }
        println!();
    }
    if std::env::var_os("QKDN_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
}

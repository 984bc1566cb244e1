//! Agent benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-agent --bench agent [-- --seconds N]
//! ```
//!
//! A `qkdn-agent` process (the bench-profile binary) with 16 interfaces, each with a simulated
//! device and a 25 km physical link, pinned to core 0; the measuring side runs on core 1.
//!
//! * Idle: performance updates every hour (so none during the run), keys produced every second
//!   on all 16 links, no client: resident memory and CPU.
//! * 1 Hz: performance updates every second on all 16 links (state written, perf-update
//!   notifications sent to one SSE subscriber): resident memory, CPU, notifications/s.
//! * GET of the live node (`/restconf/data/etsi-qkd-sdn-node:qkd_node`, state included, the
//!   1 Hz configuration) over HTTP/1.1 from 1 and 16 connections: requests/s, p50 and p99.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

const NODE_PATH: &str = "/restconf/data/etsi-qkd-sdn-node:qkd_node";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, restconf: u16, management: u16, period: &str) -> String {
    let mut text = format!(
        r#"data_dir = "{data}"
[node]
id = "00000001-0000-0000-0000-000000000000"
[restconf]
listen = "127.0.0.1:{restconf}"
[management]
listen = "127.0.0.1:{management}"
[notifications]
performance_period = "{period}"
[simulator]
network_secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
slot = "1s"
"#,
        data = dir.join("data").display()
    );
    for i in 1..=16u32 {
        text.push_str(&format!(
            r#"
[[interfaces]]
id = {i}
technology = "DV-QKD"
[interfaces.device]
driver = "simulator"

[[links]]
id = "{i:08x}-0000-4000-8000-000000000000"
local_interface = {i}
remote_node = "{remote:08x}-0000-0000-0000-000000000000"
remote_interface = 1
wavelength = {i}
role = "TRANSMITTER"
length_km = 25.0
"#,
            remote = i + 1
        ));
    }
    text
}

struct Agent {
    child: Child,
    restconf: u16,
    management: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, period: &str) -> Agent {
    let (restconf, management) = (free_port(), free_port());
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let file = dir.join(format!("agent-{period}.toml"));
    std::fs::write(&file, config(dir, restconf, management, period)).unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_qkdn-agent"), "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("taskset and qkdn-agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", restconf)).is_err() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Agent { child, restconf, management }
}

/// The secret key rate of all links together, bit/s (from the management endpoint).
fn total_skr(agent: &Agent) -> u64 {
    let url = format!("http://127.0.0.1:{}/v1/links", agent.management);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let view: serde_json::Value =
        rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() });
    view["links"].as_array().unwrap().iter().filter_map(|l| l["skr_bps"].as_u64()).sum()
}

/// Resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// CPU use of `agent` over `seconds`, percent of one core, and RSS at the end.
fn observe(agent: &Agent, seconds: f64) -> (f64, u64) {
    let pid = agent.child.id();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    (cpu, rss_kib(pid))
}

/// Counts perf-update notifications on the agent's stream for `seconds` (on core 1).
fn count_notifications(agent: &Agent, seconds: f64) -> std::thread::JoinHandle<u64> {
    let url = format!("http://127.0.0.1:{}/restconf/streams/NETCONF", agent.restconf);
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut response = reqwest::Client::new()
                .get(&url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
            let mut count = 0u64;
            let mut pending = String::new();
            while let Ok(Ok(Some(chunk))) =
                tokio::time::timeout_at(deadline, response.chunk()).await
            {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                count += pending.matches("sdqkdn_link_perf_update").count() as u64;
                pending = pending.rsplit('\n').next().unwrap_or_default().to_owned();
            }
            count
        })
    })
}

struct Load {
    requests: u64,
    seconds: f64,
    latency: Histogram<u64>,
    bytes: usize,
}

/// `connections` clients sending GETs of the node back to back for `seconds`, on core 1.
fn get_load(port: u16, connections: usize, seconds: f64) -> Load {
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let warmup = Instant::now() + Duration::from_millis(300);
            let deadline = warmup + Duration::from_secs_f64(seconds);
            let mut tasks = Vec::new();
            for _ in 0..connections {
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    let (mut hist, mut counted, mut bytes) =
                        (Histogram::<u64>::new(3).unwrap(), 0u64, 0usize);
                    while Instant::now() < deadline {
                        let now = Instant::now();
                        let request = http::Request::get(NODE_PATH)
                            .header("host", "bench")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        if now >= warmup {
                            hist.record(now.elapsed().as_micros() as u64).unwrap();
                            counted += 1;
                            bytes = body.len();
                        }
                    }
                    (counted, hist, bytes)
                }));
            }
            let mut load =
                Load { requests: 0, seconds, latency: Histogram::new(3).unwrap(), bytes: 0 };
            for t in tasks {
                let (n, h, b) = t.await.unwrap();
                load.requests += n;
                load.latency.add(h).unwrap();
                load.bytes = load.bytes.max(b);
            }
            load
        })
    })
    .join()
    .unwrap()
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let dir = tempfile::tempdir().unwrap();
    println!("qkdn-agent, 16 interfaces with simulated devices, 16 links, agent pinned to core 0");

    let idle = start(dir.path(), "1h");
    std::thread::sleep(Duration::from_secs(3));
    let (cpu, rss) = observe(&idle, seconds);
    println!(
        "key production of the 16 simulated links together: {:.1} Mbit/s",
        total_skr(&idle) as f64 / 1e6
    );
    println!(
        "idle (keys every second, no perf updates): RSS {:.1} MiB, CPU {cpu:.2}% of a core over {seconds}s",
        rss as f64 / 1024.0
    );
    drop(idle);

    let busy = start(dir.path(), "1s");
    std::thread::sleep(Duration::from_secs(3));
    let counter = count_notifications(&busy, seconds);
    let (cpu, rss) = observe(&busy, seconds);
    let notifications = counter.join().unwrap();
    println!(
        "1 Hz performance updates on 16 links: RSS {:.1} MiB, CPU {cpu:.2}% of a core, {:.1} perf-update notifications/s",
        rss as f64 / 1024.0,
        notifications as f64 / seconds
    );

    for connections in [1, 16] {
        let load = get_load(busy.restconf, connections, seconds.min(10.0));
        println!(
            "GET live qkd_node ({} bytes), {connections:>2} connection(s): {:.0} req/s, p50 {} us, p99 {} us",
            load.bytes,
            load.requests as f64 / load.seconds,
            load.latency.value_at_quantile(0.5),
            load.latency.value_at_quantile(0.99)
        );
    }
    let rss = rss_kib(busy.child.id());
    println!("RSS after the GET load: {:.1} MiB", rss as f64 / 1024.0);
}

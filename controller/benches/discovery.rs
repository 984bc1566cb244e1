//! Discovery benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-controller --bench discovery [-- --agents N --seconds S]
//! ```
//!
//! An emulator serves N ETSI 015 agents from this process (plain HTTP on loopback, each under
//! its own URL prefix: `qkd_node` with two to three physical links in a ring with chords, and a
//! `NETCONF` event stream sending every link's `sdqkdn_link_perf_update` once a second). A
//! `qkdn-controller` process is started; the agents register with it as real agents do
//! (`POST /api/v1/nodes`, 64 at a time), and the time until the controller shows every node
//! reachable and every link up is taken. Then the controller's CPU use is measured from
//! `/proc` over S seconds of 1 Hz performance updates from all agents, and the time of 50
//! Prometheus scrapes of its `/metrics` under that load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use uuid::Uuid;

fn node(i: usize) -> Uuid {
    Uuid::from_u128(0xa9e0_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

fn link(j: usize) -> Uuid {
    Uuid::from_u128(0x11a0_0000_0000_4000_8000_0000_0000_0000 | j as u128)
}

/// Links: a ring, plus a chord from every fifth node; (a, b) by link index.
fn links(n: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    out.extend((0..n).step_by(5).map(|i| (i, (i + n / 3) % n)));
    out
}

struct Emulator {
    n: usize,
    /// Link indexes of each node.
    by_node: Vec<Vec<usize>>,
    links: Vec<(usize, usize)>,
}

impl Emulator {
    fn qkd_node(&self, i: usize) -> Json {
        let list: Vec<Json> = self.by_node[i]
            .iter()
            .map(|j| {
                let (a, b) = self.links[*j];
                let remote = if a == i { b } else { a };
                json!({"qkdl_id": link(*j).to_string(), "qkdl_type": "etsi-qkd-node-types:PHYS",
                    "qkdl_status": "etsi-qkd-node-types:ACTIVE", "qkdl_enable": true,
                    "qkdl_local": {"qkdn_id": node(i).to_string(), "qkdi_id": *j},
                    "qkdl_remote": {"qkdn_id": node(remote).to_string(), "qkdi_id": *j},
                    "qkdl_performance": {"skr": 100000, "eskr": 100000, "expected_consumption": 0}})
            })
            .collect();
        let interfaces: Vec<Json> =
            self.by_node[i].iter().map(|j| json!({"qkdi_id": *j})).collect();
        json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": node(i).to_string(), "qkdn_location_id": format!("site-{i}"),
            "qkd_interfaces": {"qkd_interface": interfaces}, "qkd_links": {"qkd_link": list}}})
    }
}

async fn get_node(State(e): State<Arc<Emulator>>, Path(i): Path<usize>) -> Response {
    if i >= e.n {
        return (axum::http::StatusCode::NOT_FOUND, "{}").into_response();
    }
    ([("content-type", "application/yang-data+json")], e.qkd_node(i).to_string()).into_response()
}

async fn stream(State(e): State<Arc<Emulator>>, Path(i): Path<usize>) -> Response {
    let links: Vec<usize> = e.by_node[i].clone();
    let offset = Duration::from_millis((i as u64 * 997) % 1000);
    let start = tokio::time::Instant::now() + offset;
    let ticks = futures_util::stream::unfold((0u64, links), move |(k, links)| async move {
        tokio::time::sleep_until(start + Duration::from_secs(k)).await;
        let mut chunk = String::new();
        for j in &links {
            let note = json!({"ietf-restconf:notification": {"eventTime": "2026-01-01T00:00:00Z",
                "etsi-qkd-sdn-node:sdqkdn_link_perf_update": {"qkd_link": {"qkdl_id": link(*j).to_string(),
                    "performance": {"skr": 100000 + k % 1000, "eskr": 100000 + k % 1000, "expected_consumption": 0}}}}});
            chunk.push_str(&format!("data: {note}\n\n"));
        }
        Some((Ok::<_, std::convert::Infallible>(chunk), (k + 1, links)))
    });
    ([("content-type", "text/event-stream")], Body::from_stream(ticks)).into_response()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Json {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut seconds) = (1000usize, 10u64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agents" => n = args.next().and_then(|s| s.parse().ok()).expect("--agents N"),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds S"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let all = links(n);
    let mut by_node = vec![Vec::new(); n];
    for (j, (a, b)) in all.iter().enumerate() {
        by_node[*a].push(j);
        by_node[*b].push(j);
    }
    let emulator = Arc::new(Emulator { n, by_node, links: all.clone() });
    let app = Router::new()
        .route("/agent/{i}/restconf/data/etsi-qkd-sdn-node:qkd_node", get(get_node))
        .route("/agent/{i}/restconf/streams/NETCONF", get(stream))
        .with_state(emulator);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agents_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (api, management) = (free(), free());
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n[management]\nlisten = \"127.0.0.1:{management}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut controller = std::process::Command::new(env!("CARGO_BIN_EXE_qkdn-controller"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    while http.get(format!("http://127.0.0.1:{management}/readyz")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let mut registering = Vec::new();
    for i in 0..n {
        let (http, base, permit) =
            (http.clone(), base.clone(), semaphore.clone().acquire_owned().await.unwrap());
        registering.push(tokio::spawn(async move {
            let body = json!({"node_id": node(i), "restconf_url": format!("http://{agents_addr}/agent/{i}/restconf"),
                "kms": {}, "agent_version": "emulated"});
            let r = http.post(format!("{base}/api/v1/nodes")).header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
            assert!(r.status().is_success(), "registration {i}: {}", r.status());
            drop(permit);
        }));
    }
    for r in registering {
        r.await.unwrap();
    }
    let registered = started.elapsed();
    loop {
        let nodes = get_json(&http, &format!("{base}/api/v1/nodes")).await;
        let reachable = nodes["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["reachable"] == true).count());
        if reachable == n {
            let links = get_json(&http, &format!("{base}/api/v1/links")).await;
            let up = links["links"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|x| x["up"] == true).count());
            if up == all.len() {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "discovery did not finish: {reachable} of {n} nodes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let discovered = started.elapsed();
    println!("| agents | links | all registered | all nodes reachable and links up |");
    println!("|---|---|---|---|");
    println!(
        "| {n} | {} | {:.2} s | {:.2} s |",
        all.len(),
        registered.as_secs_f64(),
        discovered.as_secs_f64()
    );

    // Steady state: 1 Hz performance updates from every agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let (before, t0) = (cpu_ticks(controller.id()), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = (cpu_ticks(controller.id()) - before) as f64 / ticks_per_s;
    let wall = t0.elapsed().as_secs_f64();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", controller.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024)
        .unwrap_or(0);
    println!(
        "\nsteady state over {wall:.0} s: {} performance updates/s in; controller CPU {:.1} % of one core, RSS {rss} MiB",
        all.len() * 2,
        used / wall * 100.0
    );

    // Prometheus scrapes of the whole network (sequential, as a scraper does), under the same load.
    let url = format!("http://127.0.0.1:{management}/metrics");
    let mut latencies = Vec::new();
    let mut last = String::new();
    for _ in 0..50 {
        let t = Instant::now();
        last = http.get(&url).send().await.unwrap().text().await.unwrap();
        latencies.push(t.elapsed());
        assert!(last.contains(&format!("qkdn_controller_agents_reachable {n}")), "a full scrape");
    }
    latencies.sort();
    let samples = last.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    let ms = |i: usize| latencies[i].as_secs_f64() * 1e3;
    println!(
        "\n/metrics scrape ({samples} samples, {} KiB): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        last.len() / 1024,
        ms(latencies.len() / 2),
        ms(latencies.len() * 9 / 10),
        ms(latencies.len() - 1),
    );
    let _ = controller.kill();
    let _ = controller.wait();
}

//! RESTCONF benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-yang --bench restconf [-- --seconds N]
//! ```
//!
//! * GET of a `qkd_node` with 16 interfaces, 64 links (with state) and 64 applications, over
//!   HTTP/1.1 from 1 and 16 connections: requests/s, p50 and p99. The server (its async runtime
//!   and the datastore thread) is pinned to core 0, the load generator to core 1.
//! * The same server on a 53-byte resource (`yang-library-version`): the floor that the HTTP
//!   exchange itself sets, for comparison.
//! * The same server on a 53-byte resource (`yang-library-version`): the floor that the HTTP
//!   exchange itself sets, for comparison.
//! * The same document rendered by qkdn's renderer and printed by libyang, in one process, as a
//!   ratio (what a GET would cost without the response cache).
//! * Sequential single-entry POSTs creating links, one connection, with 1,000 and 50,000 links
//!   already present: transactions/s and latency, next to the cost of one full libyang
//!   validation of the same datastore (what each write would cost without validation units).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use qkdn_kit::server::{ServeOptions, serve};
use qkdn_yang::datastore::{ContentFilter, Datastore};
use qkdn_yang::restconf::{RestconfOptions, RestconfServer};
use qkdn_yang::{DataPath, YangContext};
use serde_json::{Value as Json, json};
use yang5::data::{
    Data, DataFormat, DataParserFlags, DataPrinterFlags, DataTree, DataValidationFlags,
};

const NODE: &str = "00000001-0000-0000-0000-000000000000";

fn link(i: u32) -> Json {
    json!({"qkdl_id": format!("{i:08x}-1111-4000-8000-000000000000"), "qkdl_status": "etsi-qkd-node-types:ACTIVE",
        "qkdl_local": {"qkdn_id": NODE, "qkdi_id": 1 + i % 16},
        "qkdl_remote": {"qkdn_id": format!("{:08x}-0000-0000-0000-000000000000", i + 2), "qkdi_id": 7},
        "qkdl_type": "etsi-qkd-node-types:PHYS", "qkdl_applications": [format!("{i:08x}-2222-4000-8000-000000000000")],
        "phys_channel_att": "6.5", "phys_wavelength": format!("{}", 1 + i % 40),
        "phys_qkd_role": "etsi-qkd-node-types:TRANSMITTER"})
}

fn node_doc(interfaces: u32, links: u32, apps: u32, with_state: bool) -> Json {
    let ifaces: Vec<Json> = (1..=interfaces)
        .map(|i| json!({"qkdi_id": i, "qkdi_model": "sim-dv-1", "qkdi_type": "etsi-qkd-node-types:DV-QKD",
            "qkdi_att_point": {"device": "oxc-a", "port": i}, "qkdi_capabilities": {"role_support": "etsi-qkd-node-types:TRANSCEIVER", "wavelength_range": "1-40"}}))
        .collect();
    let links: Vec<Json> = (0..links)
        .map(|i| {
            let mut l = link(i);
            if with_state {
                l["qkdl_performance"] = json!({"expected_consumption": 256000, "skr": 1_000_000 + i, "eskr": 900_000 + i,
                    "phys_perf": [{"perf_type": "etsi-qkd-node-types:QBER", "value": "0.021"}, {"perf_type": "etsi-qkd-node-types:SNR", "value": "14.2"}]});
            }
            l
        })
        .collect();
    let apps: Vec<Json> = (0..apps)
        .map(|i| json!({"app_id": format!("{i:08x}-2222-4000-8000-000000000000"), "app_type": "etsi-qkd-node-types:CLIENT",
            "server_app_id": format!("sae-{i}"), "client_app_id": [format!("sae-{}", i + 1000)], "app_priority": i,
            "app_qos": {"max_bandwidth": 256000, "min_bandwidth": 64000, "ttl": 3600},
            "backing_qkdl_id": [format!("{i:08x}-1111-4000-8000-000000000000")], "local_qkdn_id": NODE,
            "remote_qkdn_id": "00000002-0000-0000-0000-000000000000"}))
        .collect();
    json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": NODE, "qkdn_version": "bench", "qkd_interfaces": {"qkd_interface": ifaces},
        "qkd_links": {"qkd_link": links}, "qkd_applications": {"qkd_app": apps}}})
}

/// Starts a server for `ds` on a thread of its own (current-thread runtime) pinned to core 0.
fn start_server(ds: Datastore) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = RestconfServer::builder(ds)
                .options(RestconfOptions {
                    base_url: format!("http://{addr}"),
                    ..RestconfOptions::default()
                })
                .build()
                .await
                .unwrap();
            tx.send(addr).unwrap();
            serve(listener, server.router(), ServeOptions::default(), std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

struct Load {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// `connections` clients each sending GETs back to back for `seconds`, on core 1.
fn get_load(addr: SocketAddr, path: &'static str, connections: usize, seconds: f64) -> Load {
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            let warmup = Instant::now() + Duration::from_millis(300);
            let mut tasks = Vec::new();
            for _ in 0..connections {
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    let mut hist = Histogram::<u64>::new(3).unwrap();
                    let mut counted = 0u64;
                    let mut first = None;
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        let request = http::Request::get(path)
                            .header("host", "bench")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert!(!body.is_empty());
                        if now >= warmup {
                            first.get_or_insert(now);
                            hist.record(now.elapsed().as_micros() as u64).unwrap();
                            counted += 1;
                        }
                    }
                    (counted, hist, first)
                }));
            }
            let mut total = 0;
            let mut latency = Histogram::<u64>::new(3).unwrap();
            for t in tasks {
                let (n, h, _) = t.await.unwrap();
                total += n;
                latency.add(h).unwrap();
            }
            Load { requests: total, elapsed: deadline - warmup, latency }
        })
    })
    .join()
    .unwrap()
}

/// Sequential POSTs of new links over one connection.
fn post_load(addr: SocketAddr, first_id: u32, count: u32) -> Load {
    std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let bodies: Vec<String> = (first_id..first_id + count)
                .map(|i| json!({"etsi-qkd-sdn-node:qkd_link": [link(i)]}).to_string())
                .collect();
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let start = Instant::now();
            for body in bodies {
                let t = Instant::now();
                let request =
                    http::Request::post("/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_links")
                        .header("host", "bench")
                        .header("content-type", "application/yang-data+json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let _ = response.into_body().collect().await.unwrap();
                assert_eq!(status, 201);
                latency.record(t.elapsed().as_micros() as u64).unwrap();
            }
            Load { requests: u64::from(count), elapsed: start.elapsed(), latency }
        })
    })
    .join()
    .unwrap()
}

fn report(label: &str, load: &Load) {
    println!(
        "{label:<58} {:>9.0} /s   p50 {:>6} µs   p99 {:>6} µs   ({} in {:.1} s)",
        load.requests as f64 / load.elapsed.as_secs_f64(),
        load.latency.value_at_quantile(0.5),
        load.latency.value_at_quantile(0.99),
        load.requests,
        load.elapsed.as_secs_f64()
    );
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let ctx = YangContext::qkdn().unwrap();
    println!(
        "qkdn-yang RESTCONF benchmark ({cores} cores; server pinned to core 0, load to core 1)"
    );

    // GET
    let doc = node_doc(16, 64, 64, true);
    let ds = Datastore::builder(ctx.clone()).data(doc.clone()).build().unwrap();
    let size = ds
        .snapshot()
        .render(
            &ctx,
            &ds.path("/etsi-qkd-sdn-node:qkd_node").unwrap(),
            ContentFilter::All,
            &Default::default(),
        )
        .unwrap()
        .len();
    println!(
        "\nGET /restconf/data/etsi-qkd-sdn-node:qkd_node (16 interfaces, 64 links with state, 64 apps; {size} bytes)"
    );
    let addr = start_server(ds.clone());
    for connections in [1, 16] {
        let load =
            get_load(addr, "/restconf/data/etsi-qkd-sdn-node:qkd_node", connections, seconds);
        report(&format!("  {connections:>2} connection(s), server on 1 core"), &load);
    }
    // The transport floor: the same server and client on a 53-byte resource.
    for connections in [1, 16] {
        let load = get_load(addr, "/restconf/yang-library-version", connections, seconds);
        report(
            &format!("  {connections:>2} connection(s), GET yang-library-version (53 bytes)"),
            &load,
        );
    }

    // Rendering without the cache, against libyang's printer, same data, same thread.
    let snap = ds.snapshot();
    let path = ds.path("/etsi-qkd-sdn-node:qkd_node").unwrap();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            snap.render(&ctx, &path, ContentFilter::All, &Default::default()).unwrap(),
        );
    }
    let ours = t.elapsed() / n;
    let tree = DataTree::parse_string(
        ctx.ly(),
        doc.to_string(),
        DataFormat::JSON,
        DataParserFlags::STRICT,
        DataValidationFlags::PRESENT,
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            tree.print_string(
                DataFormat::JSON,
                DataPrinterFlags::WITH_SIBLINGS | DataPrinterFlags::SHRINK,
            )
            .unwrap(),
        );
    }
    let libyang = t.elapsed() / n;
    println!(
        "  render of the node, no cache: qkdn {:.1} µs, libyang lyd_print {:.1} µs (ratio {:.2})",
        ours.as_secs_f64() * 1e6,
        libyang.as_secs_f64() * 1e6,
        libyang.as_secs_f64() / ours.as_secs_f64()
    );

    // Writes
    println!("\nPOST one new qkd_link per request, sequential, 1 connection");
    for existing in [1_000u32, 50_000] {
        let doc = node_doc(16, existing, 0, false);
        let t = Instant::now();
        let ds = Datastore::builder(ctx.clone()).config(doc.clone()).build().unwrap();
        let load_time = t.elapsed();
        let addr = start_server(ds.clone());
        let count = 3000;
        let load = post_load(addr, 10_000_000, count);
        report(&format!("  {existing:>6} links present"), &load);
        assert_eq!(ds.snapshot().running_version(), 1 + u64::from(count));
        // One full validation of the same datastore, for comparison.
        let full = ds.snapshot().get_json(&ctx, &DataPath::root(), ContentFilter::Config).unwrap();
        let text = full["ietf-restconf:data"].to_string();
        let t = Instant::now();
        qkdn_yang::ly::validate_data(&ctx, &text, qkdn_yang::ly::Content::Config).unwrap();
        let validation = t.elapsed();
        println!(
            "      full libyang validation of that datastore: {:.1} ms (= {:.0} tx/s if every write revalidated it); initial load {:.2} s",
            validation.as_secs_f64() * 1e3,
            1.0 / validation.as_secs_f64(),
            load_time.as_secs_f64()
        );
    }
}

//! Rerouting benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-controller --bench reroute [-- --failures N]
//! ```
//!
//! A 1,000-node, 2,000-link network (a 25 x 40 grid plus random long links; ESKR 50-150
//! kbit/s) carries 10,000 paths between random node pairs (100-500 bit/s each, placed one
//! after the other with their rate reserved). Then one link fails, and the time is taken for
//! what the controller does: find the paths that use it (a scan of all paths) and move them,
//! in one batch over the topology ([`routing::reroute`]). Repeated for the most loaded link
//! and for random links (each failure on a fresh copy of the loaded network).

use std::time::Instant;

use qkdn_controller::routing::{self, Demand, Link, Node, Placed, Topology};
use uuid::Uuid;

#[path = "common/random.rs"]
mod random;
use random::Random;

const ROWS: usize = 25;
const COLS: usize = 40;
const LINKS: usize = 2_000;
const PATHS: usize = 10_000;

fn node_id(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

fn network(random: &mut Random) -> Topology {
    let n = ROWS * COLS;
    let nodes = (0..n).map(|i| Node { id: node_id(i), location: None }).collect();
    let mut links = Vec::new();
    let add = |links: &mut Vec<Link>, a: usize, b: usize, random: &mut Random| {
        let id = Uuid::from_u128(((links.len() as u128) << 64) | 1);
        links.push(Link {
            id,
            ends: (node_id(a), node_id(b)),
            up: true,
            eskr_bps: 50_000 + random.below(100_000),
            expected_bps: 0,
            stock_bits: random.below(10_000_000),
        });
    };
    for i in 0..n {
        let (r, c) = (i / COLS, i % COLS);
        if c + 1 < COLS {
            add(&mut links, i, i + 1, random);
        }
        if r + 1 < ROWS {
            add(&mut links, i, i + COLS, random);
        }
    }
    while links.len() < LINKS {
        let (a, b) = (random.below(n as u64) as usize, random.below(n as u64) as usize);
        if a != b {
            add(&mut links, a, b, random);
        }
    }
    Topology::new(nodes, links).unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut failures = 30usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--failures" => {
                failures = args.next().and_then(|s| s.parse().ok()).expect("--failures N")
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let mut topology = network(&mut random);
    let n = (ROWS * COLS) as u64;
    let started = Instant::now();
    let mut placed: Vec<Placed> = Vec::with_capacity(PATHS);
    while placed.len() < PATHS {
        let (a, b) = (random.below(n) as usize, random.below(n) as usize);
        if a == b {
            continue;
        }
        let demand = Demand {
            from: node_id(a),
            to: node_id(b),
            rate_bps: 100 + random.below(400),
            ..Demand::default()
        };
        if let Ok(path) = routing::shortest_path(&topology, &demand) {
            topology.reserve(&path.links, demand.rate_bps, true);
            placed.push(Placed { demand, via: Vec::new(), links: path.links });
        }
    }
    let placing = started.elapsed();
    let mut load: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for p in &placed {
        for l in &p.links {
            *load.entry(*l).or_default() += 1;
        }
    }
    let mean_hops = placed.iter().map(|p| p.links.len()).sum::<usize>() as f64 / PATHS as f64;
    println!(
        "network: {} nodes, {LINKS} links, {PATHS} paths placed in {:.2} s (mean {mean_hops:.1} hops)",
        ROWS * COLS,
        placing.as_secs_f64()
    );
    let mut by_load: Vec<(Uuid, usize)> = load.into_iter().collect();
    by_load.sort_by_key(|(l, c)| (std::cmp::Reverse(*c), *l));
    let mut cases: Vec<(String, Uuid)> = vec![("most loaded link".into(), by_load[0].0)];
    for _ in 0..failures {
        let (l, _) = by_load[random.below(by_load.len() as u64) as usize];
        cases.push(("random link".into(), l));
    }
    println!();
    println!("| failed link | paths on it | find affected | recompute | total | moved | no path |");
    println!("|---|---|---|---|---|---|---|");
    let mut random_totals = Vec::new();
    for (what, failed) in &cases {
        let mut t = topology.clone();
        t.link_mut(*failed).unwrap().up = false;
        let start = Instant::now();
        let affected: Vec<Placed> =
            placed.iter().filter(|p| p.links.contains(failed)).cloned().collect();
        let found = start.elapsed();
        let results = routing::reroute(&mut t, &affected);
        let total = start.elapsed();
        let moved = results.iter().filter(|r| r.is_ok()).count();
        if what == "random link" {
            random_totals.push(total.as_secs_f64() * 1e3);
        }
        if what != "random link" || random_totals.len() <= 3 {
            println!(
                "| {what} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {moved} | {} |",
                affected.len(),
                found.as_secs_f64() * 1e3,
                (total - found).as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                results.len() - moved
            );
        }
    }
    random_totals.sort_by(f64::total_cmp);
    let pct = |q: f64| random_totals[((random_totals.len() - 1) as f64 * q).round() as usize];
    println!(
        "\n{} random link failures: total p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        random_totals.len(),
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
}

//! Routing benchmark: prints figures for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-controller --bench routing [-- --pairs N]
//! ```
//!
//! Path computation (`routing::shortest_path`, and `k_shortest_paths` with k = 4) between
//! random node pairs of grid-like metro networks of 10^3, 10^4 and 10^5 nodes (each node linked
//! to its right and lower neighbours, plus a random long link per 10 nodes; random ESKR,
//! consumption and stock), with a rate demand and without constraints, then with a hop limit.

use std::time::Instant;

use qkdn_controller::routing::{self, Demand, Link, Node, Topology};
use uuid::Uuid;

#[path = "common/random.rs"]
mod random;
use random::Random;

fn network(side: usize, random: &mut Random) -> (Topology, usize) {
    let n = side * side;
    let id = |i: usize| Uuid::from_u128(i as u128 + 1);
    let nodes =
        (0..n).map(|i| Node { id: id(i), location: Some(format!("site-{}", i % 97)) }).collect();
    let mut links = Vec::new();
    let mut link = |a: usize, b: usize, random: &mut Random| {
        let eskr = 50_000 + random.below(2_000_000);
        links.push(Link {
            id: Uuid::from_u128(((links.len() as u128) << 64) | 1),
            ends: (id(a), id(b)),
            up: random.below(50) != 0,
            eskr_bps: eskr,
            expected_bps: random.below(eskr),
            stock_bits: random.below(100_000_000),
        });
    };
    for i in 0..n {
        let (row, col) = (i / side, i % side);
        if col + 1 < side {
            link(i, i + 1, random);
        }
        if row + 1 < side {
            link(i, i + side, random);
        }
        if i % 10 == 0 {
            let other = random.below(n as u64) as usize;
            if other != i {
                link(i, other, random);
            }
        }
    }
    let count = links.len();
    (Topology::new(nodes, links).unwrap(), count)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut pairs = 200usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pairs" => pairs = args.next().and_then(|s| s.parse().ok()).expect("--pairs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    println!("| nodes | links | query | mean per pair | p99 | found |");
    println!("|---|---|---|---|---|---|");
    for side in [32usize, 100, 317] {
        let (topology, links) = network(side, &mut random);
        let n = topology.node_count();
        let queries = if n > 50_000 { pairs / 4 } else { pairs };
        for (name, max_hops, k) in [
            ("shortest, 10 kbit/s", None, 1),
            ("shortest, 10 kbit/s, at most 2·side hops", Some(2 * side), 1),
            ("4 shortest, 10 kbit/s", None, 4),
        ] {
            let mut times = Vec::with_capacity(queries);
            let mut found = 0usize;
            for _ in 0..queries {
                let from = Uuid::from_u128(random.below(n as u64) as u128 + 1);
                let to = Uuid::from_u128(random.below(n as u64) as u128 + 1);
                let demand = Demand { from, to, rate_bps: 10_000, max_hops, ..Demand::default() };
                let t0 = Instant::now();
                let ok = if k == 1 {
                    routing::shortest_path(&topology, &demand).is_ok()
                } else {
                    routing::k_shortest_paths(&topology, &demand, k).is_ok()
                };
                times.push(t0.elapsed().as_secs_f64() * 1e3);
                found += usize::from(ok);
            }
            times.sort_by(f64::total_cmp);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
            println!("| {n} | {links} | {name} | {mean:.2} ms | {p99:.2} ms | {found}/{queries} |");
        }
    }
}

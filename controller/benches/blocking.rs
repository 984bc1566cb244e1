//! Routing quality: blocking probability of key-aware routing against hop-count routing on the
//! standard topologies (NSFNET-14, COST239-11, USNET-24), printed for BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p qkdn-controller --bench blocking [-- --demands N]
//! ```
//!
//! Every link has the same effective key rate (40 kbit/s); demands of 1 kbit/s arrive as a
//! Poisson process between uniformly random node pairs and hold their rate for an
//! exponentially distributed time (mean 1). A demand is blocked when the policy finds no path
//! with its rate spare. Policies:
//!
//! * hop-count: the fixed minimum-hop path of the idle network (classic shortest-path routing);
//! * adaptive hop-count: the minimum-hop path among links that have the rate spare;
//! * key-aware: `routing::shortest_path` (cost grows as a link's spare rate shrinks).
//!
//! The load is first set (by bisection on the arrival rate) to where hop-count blocks 10 %,
//! then each policy sees the same demand sequence.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use qkdn_controller::routing::{self, Demand, Link, Node, Topology};
use uuid::Uuid;

#[path = "common/random.rs"]
mod random;
use random::Random;

const CAPACITY_BPS: u64 = 40_000;
const RATE_BPS: u64 = 1_000;

/// NSFNET T1 backbone (14 nodes, 21 links).
const NSFNET: &[(usize, usize)] = &[
    (0, 1),
    (0, 2),
    (0, 7),
    (1, 2),
    (1, 3),
    (2, 5),
    (3, 4),
    (3, 10),
    (4, 5),
    (4, 6),
    (5, 9),
    (5, 12),
    (6, 7),
    (7, 8),
    (8, 9),
    (8, 11),
    (8, 13),
    (10, 11),
    (10, 13),
    (11, 12),
    (12, 13),
];

/// COST239 pan-European network (11 nodes, 26 links): Copenhagen 0, London 1, Amsterdam 2,
/// Berlin 3, Brussels 4, Luxembourg 5, Prague 6, Paris 7, Vienna 8, Zurich 9, Milan 10.
const COST239: &[(usize, usize)] = &[
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 6),
    (1, 2),
    (1, 4),
    (1, 7),
    (2, 3),
    (2, 4),
    (2, 5),
    (3, 6),
    (3, 7),
    (3, 8),
    (4, 5),
    (4, 7),
    (4, 10),
    (5, 6),
    (5, 7),
    (5, 9),
    (6, 8),
    (6, 9),
    (7, 9),
    (7, 10),
    (8, 9),
    (8, 10),
    (9, 10),
];

/// USNET (24 nodes, 43 links), 1-based as usually drawn, shifted to 0-based below.
const USNET: &[(usize, usize)] = &[
    (1, 2),
    (1, 6),
    (2, 3),
    (2, 6),
    (3, 4),
    (3, 7),
    (4, 5),
    (4, 7),
    (5, 8),
    (6, 7),
    (6, 9),
    (6, 11),
    (7, 8),
    (7, 9),
    (8, 10),
    (9, 10),
    (9, 11),
    (9, 12),
    (10, 13),
    (10, 14),
    (11, 12),
    (11, 15),
    (11, 19),
    (12, 13),
    (12, 16),
    (13, 14),
    (13, 17),
    (14, 18),
    (15, 16),
    (15, 20),
    (16, 17),
    (16, 21),
    (16, 22),
    (17, 18),
    (17, 22),
    (17, 23),
    (18, 23),
    (18, 24),
    (19, 20),
    (20, 21),
    (21, 22),
    (22, 23),
    (23, 24),
];

/// A topology: name, node count, links.
type Network<'a> = (&'a str, usize, &'a [(usize, usize)]);

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    HopCount,
    AdaptiveHops,
    KeyAware,
}

fn id(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

fn link_id(i: usize) -> Uuid {
    Uuid::from_u128(((i as u128) << 64) | 7)
}

fn topology(n: usize, edges: &[(usize, usize)], used: &[u64], spare_only: bool) -> Topology {
    let nodes = (0..n).map(|i| Node { id: id(i), location: None }).collect();
    let links = edges
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let room = CAPACITY_BPS - used[i] >= RATE_BPS;
            Link {
                id: link_id(i),
                ends: (id(*a), id(*b)),
                up: !spare_only || room,
                // For hop counting: every usable link looks idle and stocked, so costs are ~1.
                eskr_bps: if spare_only { u64::MAX / 4 } else { CAPACITY_BPS },
                expected_bps: if spare_only { 0 } else { used[i] },
                stock_bits: if spare_only { u64::MAX / 4 } else { 0 },
            }
        })
        .collect();
    Topology::new(nodes, links).unwrap()
}

/// Blocking ratio of `policy` for `demands` arrivals at `load` (arrivals per holding time).
fn simulate(
    n: usize,
    edges: &[(usize, usize)],
    policy: Policy,
    load: f64,
    demands: usize,
    seed: u64,
) -> f64 {
    let mut random = Random(seed);
    let index = |l: &Uuid| (l.as_u128() >> 64) as usize;
    let idle = vec![0u64; edges.len()];
    let fixed: Vec<Vec<Option<Vec<usize>>>> = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| {
                    (a != b).then(|| {
                        let d = Demand {
                            from: id(a),
                            to: id(b),
                            rate_bps: RATE_BPS,
                            ..Demand::default()
                        };
                        routing::shortest_path(&topology(n, edges, &idle, true), &d)
                            .unwrap()
                            .links
                            .iter()
                            .map(index)
                            .collect()
                    })
                })
                .collect()
        })
        .collect();
    let mut used = vec![0u64; edges.len()];
    let mut departures: BinaryHeap<Reverse<(u64, Vec<usize>)>> = BinaryHeap::new();
    let mut now = 0.0f64;
    let (mut blocked, mut counted) = (0usize, 0usize);
    let warmup = demands / 10;
    for k in 0..demands + warmup {
        now += random.exp(1.0 / load);
        while departures.peek().is_some_and(|Reverse((t, _))| (*t as f64) / 1e9 <= now) {
            let Reverse((_, links)) = departures.pop().unwrap();
            for l in links {
                used[l] -= RATE_BPS;
            }
        }
        let a = (random.next() % n as u64) as usize;
        let mut b = (random.next() % (n as u64 - 1)) as usize;
        if b >= a {
            b += 1;
        }
        let path: Option<Vec<usize>> = match policy {
            Policy::HopCount => fixed[a][b]
                .clone()
                .filter(|p| p.iter().all(|l| CAPACITY_BPS - used[*l] >= RATE_BPS)),
            Policy::AdaptiveHops | Policy::KeyAware => {
                let t = topology(n, edges, &used, policy == Policy::AdaptiveHops);
                let d = Demand { from: id(a), to: id(b), rate_bps: RATE_BPS, ..Demand::default() };
                routing::shortest_path(&t, &d).ok().map(|p| p.links.iter().map(index).collect())
            }
        };
        let hold = random.exp(1.0);
        if k >= warmup {
            counted += 1;
        }
        match path {
            Some(links) => {
                for l in &links {
                    used[*l] += RATE_BPS;
                }
                departures.push(Reverse((((now + hold) * 1e9) as u64, links)));
            }
            None if k >= warmup => blocked += 1,
            None => {}
        }
    }
    blocked as f64 / counted as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut demands = 60_000usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demands" => demands = args.next().and_then(|s| s.parse().ok()).expect("--demands N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let usnet: Vec<(usize, usize)> = USNET.iter().map(|(a, b)| (a - 1, b - 1)).collect();
    let networks: [Network<'_>; 3] =
        [("NSFNET-14", 14, NSFNET), ("COST239-11", 11, COST239), ("USNET-24", 24, &usnet)];
    println!(
        "| network | links | load (Erlang) | hop-count | adaptive hop-count | key-aware | key-aware / hop-count |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, n, edges) in networks {
        // The load where fixed hop-count routing blocks 10 %.
        let (mut low, mut high) = (1.0f64, 2_000.0f64);
        for _ in 0..14 {
            let mid = (low * high).sqrt();
            if simulate(n, edges, Policy::HopCount, mid, demands / 4, 7) < 0.10 {
                low = mid;
            } else {
                high = mid;
            }
        }
        let load = (low * high).sqrt();
        let hop = simulate(n, edges, Policy::HopCount, load, demands, 11);
        let adaptive = simulate(n, edges, Policy::AdaptiveHops, load, demands, 11);
        let aware = simulate(n, edges, Policy::KeyAware, load, demands, 11);
        println!(
            "| {name} | {} | {load:.0} | {:.2} % | {:.2} % | {:.2} % | {:.2} |",
            edges.len(),
            hop * 100.0,
            adaptive * 100.0,
            aware * 100.0,
            aware / hop
        );
    }
}

//! Routing against brute force on small random graphs: every path is valid, loop-free and
//! within the constraints, the cheapest is the cheapest of all simple paths, and the k
//! candidates are the k cheapest.

use proptest::prelude::*;

use super::*;

fn id(n: usize) -> Uuid {
    Uuid::from_u128(n as u128 + 1)
}

/// Every simple path from `from` to `to`, by DFS: (nodes, links, cost).
fn all_paths(nodes: &[Node], links: &[Link], demand: &Demand) -> Vec<(Vec<Uuid>, Vec<Uuid>, f64)> {
    let location = |n: Uuid| nodes.iter().find(|x| x.id == n).and_then(|x| x.location.clone());
    let allowed = |n: Uuid| {
        !demand.exclude_nodes.contains(&n)
            && location(n).is_none_or(|l| !demand.exclude_locations.contains(&l))
    };
    let mut out = Vec::new();
    let mut stack = vec![(vec![demand.from], Vec::<Uuid>::new(), 0.0)];
    while let Some((path, used, cost)) = stack.pop() {
        let here = *path.last().unwrap();
        if here == demand.to {
            out.push((path, used, cost));
            continue;
        }
        if demand.max_hops.is_some_and(|h| used.len() >= h) {
            continue;
        }
        for link in links {
            let next = if link.ends.0 == here {
                link.ends.1
            } else if link.ends.1 == here {
                link.ends.0
            } else {
                continue;
            };
            let Some(c) = link_cost(link, demand.rate_bps) else { continue };
            if path.contains(&next) || !allowed(next) {
                continue;
            }
            let mut p = path.clone();
            p.push(next);
            let mut u = used.clone();
            u.push(link.id);
            stack.push((p, u, cost + c));
        }
    }
    out
}

fn graph() -> impl Strategy<Value = (Vec<Node>, Vec<Link>, Demand)> {
    (3usize..8)
        .prop_flat_map(|n| {
            let link = (0..n, 0..n, any::<bool>(), 0u64..4000, 0u64..2000, 0u64..100_000);
            (
                Just(n),
                prop::collection::vec(0u8..3, n),
                prop::collection::vec(link, 0..(n * 3)),
                (0..n, 0..n, 0u64..1500, prop::option::of(1usize..5)),
                prop::collection::vec(0..n, 0..2),
                prop::option::of(0u8..3),
            )
        })
        .prop_map(|(n, locations, raw, (from, to, rate, max_hops), excluded, excluded_location)| {
            let nodes: Vec<Node> = (0..n)
                .map(|i| Node { id: id(i), location: Some(format!("site-{}", locations[i])) })
                .collect();
            let links = raw
                .into_iter()
                .enumerate()
                .filter(|(_, (a, b, ..))| a != b)
                .map(|(i, (a, b, up, eskr, expected, stock))| Link {
                    id: Uuid::from_u128(1000 + i as u128),
                    ends: (id(a), id(b)),
                    // Mostly up, so that paths exist.
                    up: up || i % 3 != 0,
                    eskr_bps: eskr,
                    expected_bps: expected,
                    stock_bits: stock,
                })
                .collect();
            let demand = Demand {
                from: id(from),
                to: id(to),
                rate_bps: rate,
                max_hops,
                exclude_nodes: excluded
                    .into_iter()
                    .map(id)
                    .filter(|x| *x != id(from) && *x != id(to))
                    .collect(),
                exclude_locations: excluded_location
                    .map(|l| format!("site-{l}"))
                    .filter(|l| {
                        Some(l) != nodes[from].location.as_ref()
                            && Some(l) != nodes[to].location.as_ref()
                    })
                    .into_iter()
                    .collect(),
            };
            (nodes, links, demand)
        })
}

fn check_valid(path: &Path, links: &[Link], nodes: &[Node], demand: &Demand) {
    assert_eq!(path.nodes.first(), Some(&demand.from));
    assert_eq!(path.nodes.last(), Some(&demand.to));
    assert_eq!(path.links.len() + 1, path.nodes.len());
    let distinct: HashSet<&Uuid> = path.nodes.iter().collect();
    assert_eq!(distinct.len(), path.nodes.len(), "a loop: {path:?}");
    if let Some(h) = demand.max_hops {
        assert!(path.links.len() <= h);
    }
    let mut cost = 0.0;
    for (i, link_id) in path.links.iter().enumerate() {
        let link = links.iter().find(|l| l.id == *link_id).unwrap();
        let (a, b) = (path.nodes[i], path.nodes[i + 1]);
        assert!(
            link.ends == (a, b) || link.ends == (b, a),
            "link {link_id} does not join {a} and {b}"
        );
        cost += link_cost(link, demand.rate_bps).expect("a usable link");
    }
    assert!((cost - path.cost).abs() < 1e-9);
    for n in &path.nodes {
        assert!(!demand.exclude_nodes.contains(n));
        let location = nodes.iter().find(|x| x.id == *n).unwrap().location.clone().unwrap();
        assert!(!demand.exclude_locations.contains(&location));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_shortest_path_is_valid_and_optimal((nodes, links, demand) in graph()) {
        let topology = Topology::new(nodes.clone(), links.clone()).unwrap();
        let brute = all_paths(&nodes, &links, &demand);
        let best = brute.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
        match shortest_path(&topology, &demand) {
            Ok(path) => {
                check_valid(&path, &links, &nodes, &demand);
                prop_assert!((path.cost - best).abs() < 1e-9, "{} vs brute force {}", path.cost, best);
            }
            Err(why) => {
                prop_assert!(brute.is_empty(), "missed a path: {why}");
                if demand.from == demand.to {
                    prop_assert!(false, "a node always reaches itself");
                }
            }
        }
    }

    #[test]
    fn k_shortest_paths_are_the_k_cheapest((nodes, links, demand) in graph(), k in 1usize..5) {
        let topology = Topology::new(nodes.clone(), links.clone()).unwrap();
        let mut brute: Vec<f64> = all_paths(&nodes, &links, &demand).iter().map(|p| p.2).collect();
        brute.sort_by(f64::total_cmp);
        match k_shortest_paths(&topology, &demand, k) {
            Ok(paths) => {
                prop_assert_eq!(paths.len(), k.min(brute.len()));
                let mut seen = HashSet::new();
                for (path, expected) in paths.iter().zip(&brute) {
                    check_valid(path, &links, &nodes, &demand);
                    prop_assert!(seen.insert(path.links.clone()), "a path twice");
                    prop_assert!((path.cost - expected).abs() < 1e-9, "{} vs {}", path.cost, expected);
                }
            }
            Err(_) => prop_assert!(brute.is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_path_via_waypoints_crosses_them_in_order_and_is_the_cheapest_such_join(
        (nodes, links, demand) in graph(), pick in 0usize..8,
    ) {
        let topology = Topology::new(nodes.clone(), links.clone()).unwrap();
        let waypoint = nodes[pick % nodes.len()].id;
        prop_assume!(waypoint != demand.from && waypoint != demand.to);
        match shortest_path_via(&topology, &demand, &[waypoint]) {
            Ok(path) => {
                check_valid(&path, &links, &nodes, &demand);
                prop_assert!(path.nodes.contains(&waypoint));
                let unique: HashSet<&Uuid> = path.nodes.iter().collect();
                prop_assert_eq!(unique.len(), path.nodes.len(), "loop-free");
                // No simple path through the waypoint that respects the limits is missed.
                if demand.max_hops.is_none() {
                    let brute = all_paths(&nodes, &links, &demand);
                    prop_assert!(brute.iter().any(|p| p.0.contains(&waypoint)));
                }
            }
            Err(_) => {
                let brute = all_paths(&nodes, &links, &demand);
                // Greedy joining may miss a path only when the first segment's choice blocks
                // the second; a path through the waypoint whose first part is the cheapest
                // first segment would have been found.
                let first = Demand { to: waypoint, ..demand.clone() };
                if let Ok(seg) = shortest_path(&topology, &first) {
                    let rest: HashSet<Uuid> = seg.nodes[..seg.nodes.len() - 1].iter().copied().collect();
                    let missed = demand.max_hops.is_none()
                        && brute.iter().any(|p| {
                            p.0.starts_with(&seg.nodes)
                                && p.0[seg.nodes.len()..].iter().all(|n| !rest.contains(n))
                        });
                    prop_assert!(!missed, "a path continuing the first segment exists");
                }
            }
        }
    }

    #[test]
    fn rerouting_keeps_every_reservation_where_its_path_is(
        (nodes, links, demand) in graph(), rates in prop::collection::vec(1u64..300, 1..6),
    ) {
        let mut topology = Topology::new(nodes.clone(), links.clone()).unwrap();
        let base: HashMap<Uuid, u64> = links.iter().map(|l| (l.id, l.expected_bps)).collect();
        let mut placed: Vec<Placed> = Vec::new();
        for r in &rates {
            let d = Demand { rate_bps: *r, max_hops: None, ..demand.clone() };
            if let Ok(p) = shortest_path(&topology, &d) {
                topology.reserve(&p.links, *r, true);
                placed.push(Placed { demand: d, via: Vec::new(), links: p.links });
            }
        }
        // Take the first link of the first path down, and move everything.
        if let Some(l) = placed.first().and_then(|p| p.links.first()).copied() {
            topology.link_mut(l).unwrap().up = false;
        }
        let results = reroute(&mut topology, &placed);
        let mut expected = base.clone();
        for (p, r) in placed.iter().zip(&results) {
            let held = match r { Ok(path) => &path.links, Err(_) => &p.links };
            for l in held {
                *expected.get_mut(l).unwrap() += p.demand.rate_bps;
            }
            if let Ok(path) = r {
                prop_assert!(path.links.iter().all(|l| topology.link(*l).unwrap().up));
            }
        }
        for l in &links {
            prop_assert_eq!(topology.link(l.id).unwrap().expected_bps, expected[&l.id]);
        }
    }
}

#[test]
fn no_path_says_what_the_best_offers() {
    // A -- B -- C with 1000 bit/s spare on A-B and 600 on B-C; a direct A-C link is down.
    let nodes: Vec<Node> = (0..3).map(|i| Node { id: id(i), location: None }).collect();
    let link = |n: u128, a, b, eskr, up| Link {
        id: Uuid::from_u128(n),
        ends: (id(a), id(b)),
        up,
        eskr_bps: eskr,
        expected_bps: 0,
        stock_bits: 0,
    };
    let links =
        vec![link(1, 0, 1, 1000, true), link(2, 1, 2, 600, true), link(3, 0, 2, 5000, false)];
    let topology = Topology::new(nodes, links).unwrap();
    let demand = Demand { from: id(0), to: id(2), rate_bps: 800, ..Demand::default() };
    let why = shortest_path(&topology, &demand).unwrap_err();
    assert_eq!(
        why,
        NoPath::NotEnoughRate {
            from: id(0),
            to: id(2),
            wanted_bps: 800,
            best_bps: 600,
            via: vec![id(1)]
        }
    );
    assert!(why.to_string().contains("the best offers 600 bit/s"), "{why}");
    let short = Demand { max_hops: Some(1), ..demand };
    assert!(matches!(shortest_path(&topology, &short), Err(NoPath::Disconnected { .. })));
}

#[test]
fn links_to_unknown_nodes_are_refused() {
    let nodes = vec![Node { id: id(0), location: None }];
    let link = Link {
        id: Uuid::from_u128(9),
        ends: (id(0), id(5)),
        up: true,
        eskr_bps: 1,
        expected_bps: 0,
        stock_bits: 0,
    };
    assert_eq!(
        Topology::new(nodes, vec![link]).unwrap_err(),
        TopologyError::UnknownNode { link: Uuid::from_u128(9), node: id(5) }
    );
}

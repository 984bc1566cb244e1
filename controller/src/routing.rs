//! Key-relay routing (DESIGN.md §8), as pure functions over a snapshot of the topology.
//!
//! A physical link's cost grows as its spare key rate (ESKR minus expected consumption) and its
//! key stock shrink, relative to the demand; links that are down or cannot carry the requested
//! rate are not used. Constraints come from the application's QoS: rate, maximum hops, nodes and
//! locations to avoid. [`shortest_path`] finds the cheapest path (Dijkstra, or a hop-indexed
//! search when hops are limited), [`k_shortest_paths`] the cheapest loop-free candidates (Yen),
//! and when nothing fits, [`NoPath`] says what the best path would offer.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use petgraph::graph::{EdgeIndex, NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;
use uuid::Uuid;

/// A QKD node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// `qkdn_id`.
    pub id: Uuid,
    /// `qkdn_location_id`.
    pub location: Option<String>,
}

/// A physical QKD link, as the controller last saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// `qkdl_id`.
    pub id: Uuid,
    /// The two nodes it joins.
    pub ends: (Uuid, Uuid),
    /// Producing keys.
    pub up: bool,
    /// Effective secret key rate, bit/s.
    pub eskr_bps: u64,
    /// Rate already promised to applications and virtual links, bit/s.
    pub expected_bps: u64,
    /// Key bits in stock.
    pub stock_bits: u64,
}

impl Link {
    /// Rate left for new demand, bit/s.
    pub fn spare_bps(&self) -> u64 {
        self.eskr_bps.saturating_sub(self.expected_bps)
    }
}

/// Why a topology was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopologyError {
    /// A link names a node the topology does not have.
    #[error("link {link} ends at node {node}, which is not in the topology")]
    UnknownNode {
        /// The link.
        link: Uuid,
        /// The node.
        node: Uuid,
    },
    /// A link joins a node to itself.
    #[error("link {0} joins a node to itself")]
    Loop(Uuid),
}

/// The network the routes run over.
#[derive(Clone, Debug)]
pub struct Topology {
    graph: UnGraph<Node, Link>,
    index: HashMap<Uuid, NodeIndex>,
    links: HashMap<Uuid, EdgeIndex>,
}

impl Topology {
    /// The topology of `nodes` joined by `links`.
    pub fn new(nodes: Vec<Node>, links: Vec<Link>) -> Result<Topology, TopologyError> {
        let mut graph = UnGraph::with_capacity(nodes.len(), links.len());
        let mut index = HashMap::with_capacity(nodes.len());
        let mut by_id = HashMap::with_capacity(links.len());
        for node in nodes {
            let id = node.id;
            index.insert(id, graph.add_node(node));
        }
        for link in links {
            let end = |node: Uuid| {
                index.get(&node).copied().ok_or(TopologyError::UnknownNode { link: link.id, node })
            };
            let (a, b) = (end(link.ends.0)?, end(link.ends.1)?);
            if a == b {
                return Err(TopologyError::Loop(link.id));
            }
            let id = link.id;
            by_id.insert(id, graph.add_edge(a, b, link));
        }
        Ok(Topology { graph, index, links: by_id })
    }

    /// Link `id`, if the topology has it.
    pub fn link(&self, id: Uuid) -> Option<&Link> {
        self.links.get(&id).map(|e| &self.graph[*e])
    }

    /// Link `id` to change (its state, its expected consumption), if the topology has it.
    pub fn link_mut(&mut self, id: Uuid) -> Option<&mut Link> {
        self.links.get(&id).map(|e| &mut self.graph[*e])
    }

    /// Adds `rate_bps` to the expected consumption of each of `links` (`take`), or removes it.
    pub fn reserve(&mut self, links: &[Uuid], rate_bps: u64, take: bool) {
        for l in links {
            if let Some(link) = self.link_mut(*l) {
                link.expected_bps = if take {
                    link.expected_bps.saturating_add(rate_bps)
                } else {
                    link.expected_bps.saturating_sub(rate_bps)
                };
            }
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }
}

/// What an application asks of a path.
#[derive(Clone, Debug, Default)]
pub struct Demand {
    /// One end.
    pub from: Uuid,
    /// The other end.
    pub to: Uuid,
    /// Key rate, bit/s.
    pub rate_bps: u64,
    /// Most links on the path.
    pub max_hops: Option<usize>,
    /// Nodes the path must not cross.
    pub exclude_nodes: HashSet<Uuid>,
    /// Locations the path must not cross.
    pub exclude_locations: HashSet<String>,
}

/// A path: its nodes from `from` to `to`, the links between them, and its cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    /// Nodes, ends included.
    pub nodes: Vec<Uuid>,
    /// Links, one fewer than nodes.
    pub links: Vec<Uuid>,
    /// Sum of the links' costs.
    pub cost: f64,
}

/// Why no path fits.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NoPath {
    /// An end is not in the topology.
    #[error("node {0} is not in the topology")]
    UnknownNode(Uuid),
    /// An end is excluded by the demand itself.
    #[error("node {0} is an end of the demand and excluded by it")]
    EndExcluded(Uuid),
    /// No path at all between the ends (links up, exclusions and hop limit respected).
    #[error("no path between {from} and {to} within the constraints")]
    Disconnected {
        /// One end.
        from: Uuid,
        /// The other end.
        to: Uuid,
    },
    /// Paths exist, but none with the rate spare.
    #[error(
        "no path with {wanted_bps} bit/s spare between {from} and {to}; the best offers \
         {best_bps} bit/s via {via:?}"
    )]
    NotEnoughRate {
        /// One end.
        from: Uuid,
        /// The other end.
        to: Uuid,
        /// The rate asked for.
        wanted_bps: u64,
        /// The largest spare rate of a path.
        best_bps: u64,
        /// That path's intermediate nodes.
        via: Vec<Uuid>,
    },
}

/// Cost of carrying `rate_bps` over `link`, or `None` when it cannot: down, or less spare rate
/// than asked. One per hop, plus up to 4 as the demand takes more of the spare rate, plus up
/// to 1 as the stock covers fewer seconds of the demand.
pub fn link_cost(link: &Link, rate_bps: u64) -> Option<f64> {
    let spare = link.spare_bps();
    if !link.up || spare < rate_bps || spare == 0 {
        return None;
    }
    let rate = rate_bps.max(1) as f64;
    let load = 4.0 * rate_bps as f64 / spare as f64;
    let stock_seconds = link.stock_bits as f64 / rate;
    Some(1.0 + load + 1.0 / (1.0 + stock_seconds))
}

/// Links and nodes a search may not use, besides the demand's own exclusions.
#[derive(Default)]
struct Bans {
    nodes: HashSet<NodeIndex>,
    links: HashSet<EdgeIndex>,
}

struct Search<'a> {
    topology: &'a Topology,
    demand: &'a Demand,
    /// Link costs (`None`: unusable), by edge index.
    costs: Vec<Option<f64>>,
}

/// A search state: a node and the hops used to reach it (0 when hops are not limited).
type State = (NodeIndex, usize);

/// How a state was reached: the previous state and the link taken.
type Step = (NodeIndex, usize, EdgeIndex);

/// Best known cost and step per state: a vector by node when hops are not limited (one state
/// per node), a map otherwise (node and hops used).
enum Table {
    Dense(Vec<(f64, Option<Step>)>),
    Sparse(HashMap<State, (f64, Option<Step>)>),
}

impl Table {
    fn get(&self, state: State) -> Option<&(f64, Option<Step>)> {
        match self {
            Table::Dense(v) => v.get(state.0.index()).filter(|(c, _)| c.is_finite()),
            Table::Sparse(m) => m.get(&state),
        }
    }

    fn insert(&mut self, state: State, value: (f64, Option<Step>)) {
        match self {
            Table::Dense(v) => v[state.0.index()] = value,
            Table::Sparse(m) => {
                m.insert(state, value);
            }
        }
    }
}

/// A state waiting in the queue: cost so far, node, hops used.
#[derive(PartialEq)]
struct Queued(f64, NodeIndex, usize);

impl Eq for Queued {}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then_with(|| other.2.cmp(&self.2))
    }
}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> Search<'a> {
    fn new(
        topology: &'a Topology,
        demand: &'a Demand,
        cost: impl Fn(&Link) -> Option<f64>,
    ) -> Self {
        let costs = topology.graph.edge_weights().map(cost).collect();
        Search { topology, demand, costs }
    }

    fn node_allowed(&self, node: NodeIndex, bans: &Bans) -> bool {
        let n = &self.topology.graph[node];
        !bans.nodes.contains(&node)
            && !self.demand.exclude_nodes.contains(&n.id)
            && n.location.as_ref().is_none_or(|l| !self.demand.exclude_locations.contains(l))
    }

    /// The cheapest path from `source` to `target` with at most `hops` links (Dijkstra over
    /// (node, hops used) states, so that a hop limit is exact); nodes and links in `bans` and
    /// the demand's exclusions are not used.
    fn cheapest(
        &self,
        source: NodeIndex,
        target: NodeIndex,
        hops: usize,
        bans: &Bans,
    ) -> Option<(Vec<NodeIndex>, Vec<EdgeIndex>, f64)> {
        let graph = &self.topology.graph;
        // Without a binding hop limit, one state per node suffices.
        let layered = hops < graph.node_count().saturating_sub(1);
        let layer = |h: usize| if layered { h } else { 0 };
        let mut best = if layered {
            Table::Sparse(HashMap::new())
        } else {
            Table::Dense(vec![(f64::INFINITY, None); graph.node_count()])
        };
        let mut queue = BinaryHeap::new();
        best.insert((source, 0), (0.0, None));
        queue.push(Queued(0.0, source, 0));
        let mut reached = None;
        while let Some(Queued(cost, node, used)) = queue.pop() {
            if best.get((node, layer(used))).is_some_and(|(c, _)| *c < cost) {
                continue;
            }
            if node == target {
                reached = Some((node, layer(used), cost));
                break;
            }
            if used == hops {
                continue;
            }
            for edge in graph.edges(node) {
                let Some(link_cost) = self.costs[edge.id().index()] else {
                    continue;
                };
                let next = edge.target();
                if bans.links.contains(&edge.id()) || !self.node_allowed(next, bans) {
                    continue;
                }
                let state = (next, layer(used + 1));
                let total = cost + link_cost;
                if best.get(state).is_none_or(|(c, _)| total < *c) {
                    best.insert(state, (total, Some((node, layer(used), edge.id()))));
                    queue.push(Queued(total, next, used + 1));
                }
            }
        }
        let (node, used, cost) = reached?;
        let (mut nodes, mut edges) = (vec![node], Vec::new());
        let mut state = (node, used);
        while let Some((_, Some((prev, prev_used, edge)))) = best.get(state) {
            nodes.push(*prev);
            edges.push(*edge);
            state = (*prev, *prev_used);
        }
        nodes.reverse();
        edges.reverse();
        Some((nodes, edges, cost))
    }

    fn path(&self, nodes: &[NodeIndex], edges: &[EdgeIndex], cost: f64) -> Path {
        let graph = &self.topology.graph;
        Path {
            nodes: nodes.iter().map(|n| graph[*n].id).collect(),
            links: edges.iter().map(|e| graph[*e].id).collect(),
            cost,
        }
    }
}

fn ends(topology: &Topology, demand: &Demand) -> Result<(NodeIndex, NodeIndex), NoPath> {
    let index = |id: Uuid| topology.index.get(&id).copied().ok_or(NoPath::UnknownNode(id));
    let (from, to) = (index(demand.from)?, index(demand.to)?);
    for (end, id) in [(from, demand.from), (to, demand.to)] {
        let node = &topology.graph[end];
        let excluded = demand.exclude_nodes.contains(&id)
            || node.location.as_ref().is_some_and(|l| demand.exclude_locations.contains(l));
        if excluded {
            return Err(NoPath::EndExcluded(id));
        }
    }
    Ok((from, to))
}

fn hop_limit(topology: &Topology, demand: &Demand) -> usize {
    let most = topology.node_count().saturating_sub(1);
    demand.max_hops.map_or(most, |h| h.min(most))
}

/// The cheapest path for `demand`, or why there is none.
pub fn shortest_path(topology: &Topology, demand: &Demand) -> Result<Path, NoPath> {
    let (from, to) = ends(topology, demand)?;
    let hops = hop_limit(topology, demand);
    let search = Search::new(topology, demand, |l| link_cost(l, demand.rate_bps));
    if let Some((nodes, edges, cost)) = search.cheapest(from, to, hops, &Bans::default()) {
        return Ok(search.path(&nodes, &edges, cost));
    }
    Err(why_not(topology, demand, from, to, hops))
}

/// The cheapest path for `demand` that crosses the nodes `via` in order, joined from the
/// cheapest segment between each pair of waypoints; a segment avoids the nodes of the earlier
/// ones and the later waypoints, so the whole path stays loop-free, and the hop limit is
/// shared by the segments.
pub fn shortest_path_via(
    topology: &Topology,
    demand: &Demand,
    via: &[Uuid],
) -> Result<Path, NoPath> {
    if via.is_empty() {
        return shortest_path(topology, demand);
    }
    let points: Vec<Uuid> =
        std::iter::once(demand.from).chain(via.iter().copied()).chain([demand.to]).collect();
    let mut whole = Path { nodes: vec![demand.from], links: Vec::new(), cost: 0.0 };
    for (i, pair) in points.windows(2).enumerate() {
        let mut segment = demand.clone();
        segment.from = pair[0];
        segment.to = pair[1];
        segment.exclude_nodes.extend(whole.nodes[..whole.nodes.len() - 1].iter().copied());
        segment.exclude_nodes.extend(points[i + 2..].iter().copied());
        segment.max_hops = match demand.max_hops {
            Some(h) if h <= whole.links.len() => {
                return Err(NoPath::Disconnected { from: demand.from, to: demand.to });
            }
            Some(h) => Some(h - whole.links.len()),
            None => None,
        };
        let part = shortest_path(topology, &segment)?;
        whole.nodes.extend_from_slice(&part.nodes[1..]);
        whole.links.extend_from_slice(&part.links);
        whole.cost += part.cost;
    }
    Ok(whole)
}

/// A path in place: what it asks for (its rate is reserved on `links`) and the nodes it must
/// cross, in order.
#[derive(Clone, Debug)]
pub struct Placed {
    /// The demand.
    pub demand: Demand,
    /// Nodes to cross, in order.
    pub via: Vec<Uuid>,
    /// The links it holds now.
    pub links: Vec<Uuid>,
}

/// Moves paths after a change (DESIGN.md §8: only the affected ones are given): one after the
/// other, each releases its rate, takes the cheapest path on the topology as it stands
/// (reserving its rate there, so later ones see it), or, when none fits, keeps its old
/// reservation and reports why.
pub fn reroute(topology: &mut Topology, placed: &[Placed]) -> Vec<Result<Path, NoPath>> {
    placed
        .iter()
        .map(|p| {
            topology.reserve(&p.links, p.demand.rate_bps, false);
            let found = shortest_path_via(topology, &p.demand, &p.via);
            match &found {
                Ok(path) => topology.reserve(&path.links, p.demand.rate_bps, true),
                Err(_) => topology.reserve(&p.links, p.demand.rate_bps, true),
            }
            found
        })
        .collect()
}

/// Why `shortest_path` found nothing: the path with the most spare rate, if any path is up.
fn why_not(
    topology: &Topology,
    demand: &Demand,
    from: NodeIndex,
    to: NodeIndex,
    hops: usize,
) -> NoPath {
    let disconnected = NoPath::Disconnected { from: demand.from, to: demand.to };
    let up = Search::new(topology, demand, |l| (l.up && l.spare_bps() > 0).then_some(1.0));
    if up.cheapest(from, to, hops, &Bans::default()).is_none() {
        return disconnected;
    }
    // The widest path: raise the rate while a path remains (binary search over the spare
    // rates of the links that are up).
    let mut rates: Vec<u64> = topology
        .graph
        .edge_weights()
        .filter(|l| l.up)
        .map(Link::spare_bps)
        .filter(|r| *r > 0)
        .collect();
    rates.sort_unstable();
    rates.dedup();
    let fits = |rate: u64| {
        let search =
            Search::new(topology, demand, |l| (l.up && l.spare_bps() >= rate).then_some(1.0));
        search.cheapest(from, to, hops, &Bans::default()).map(|(n, e, c)| search.path(&n, &e, c))
    };
    let (mut low, mut high) = (0usize, rates.len());
    while high - low > 1 {
        let mid = (low + high) / 2;
        if fits(rates[mid]).is_some() {
            low = mid;
        } else {
            high = mid;
        }
    }
    match rates.get(low).and_then(|r| fits(*r).map(|p| (*r, p))) {
        Some((best_bps, path)) => NoPath::NotEnoughRate {
            from: demand.from,
            to: demand.to,
            wanted_bps: demand.rate_bps,
            best_bps,
            via: path.nodes[1..path.nodes.len() - 1].to_vec(),
        },
        None => disconnected,
    }
}

/// Up to `k` loop-free paths for `demand`, cheapest first (Yen's algorithm).
pub fn k_shortest_paths(
    topology: &Topology,
    demand: &Demand,
    k: usize,
) -> Result<Vec<Path>, NoPath> {
    let (from, to) = ends(topology, demand)?;
    let hops = hop_limit(topology, demand);
    let search = Search::new(topology, demand, |l| link_cost(l, demand.rate_bps));
    let Some(first) = search.cheapest(from, to, hops, &Bans::default()) else {
        return Err(why_not(topology, demand, from, to, hops));
    };
    let mut found = vec![first];
    let mut candidates: Vec<(Vec<NodeIndex>, Vec<EdgeIndex>, f64)> = Vec::new();
    while found.len() < k {
        let (last_nodes, last_edges, _) = found.last().expect("one path at least").clone();
        for spur in 0..last_edges.len() {
            let root_nodes = &last_nodes[..=spur];
            let root_edges = &last_edges[..spur];
            let mut bans = Bans::default();
            // Parallel links make the root a sequence of links, not only of nodes.
            for (nodes, edges, _) in &found {
                if edges.len() > spur
                    && edges[..spur] == *root_edges
                    && nodes[..=spur] == *root_nodes
                {
                    bans.links.insert(edges[spur]);
                }
            }
            bans.nodes.extend(root_nodes[..spur].iter().copied());
            let root_cost: f64 =
                root_edges.iter().map(|e| search.costs[e.index()].unwrap_or(0.0)).sum();
            // Without a hop limit the spur needs none: it is loop-free and avoids the root.
            let budget = if demand.max_hops.is_some() { hops.saturating_sub(spur) } else { hops };
            if let Some((spur_nodes, spur_edges, spur_cost)) =
                search.cheapest(root_nodes[spur], to, budget, &bans)
            {
                let mut nodes = root_nodes.to_vec();
                nodes.extend_from_slice(&spur_nodes[1..]);
                let mut edges = root_edges.to_vec();
                edges.extend(spur_edges);
                let candidate = (nodes, edges, root_cost + spur_cost);
                let known = |p: &(Vec<NodeIndex>, Vec<EdgeIndex>, f64)| p.1 == candidate.1;
                if !found.iter().any(known) && !candidates.iter().any(known) {
                    candidates.push(candidate);
                }
            }
        }
        let Some(best) =
            candidates.iter().enumerate().min_by(|a, b| a.1.2.total_cmp(&b.1.2)).map(|(i, _)| i)
        else {
            break;
        };
        found.push(candidates.swap_remove(best));
    }
    Ok(found.iter().map(|(n, e, c)| search.path(n, e, *c)).collect())
}

#[cfg(test)]
mod tests;

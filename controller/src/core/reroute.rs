//! Failure handling: after the network changes, the applications whose paths use a link that
//! is no longer up (down, QBER over threshold, an agent lost) are routed again, and only those,
//! in one batch over one topology ([`routing::reroute`]); applications without a path are
//! marked and reported (their entries stay, so keys already stored remain usable), and restored
//! when a path returns.

use serde_json::json;
use uuid::Uuid;

use super::{Core, Pending};
use crate::apps::{AppState, Application, Leg, virtual_link_id};
use crate::records::{Op, Table};
use crate::routing::{self, Demand, Placed};
use crate::topology::Source;

impl Core {
    /// Whether `app` needs another path: a leg crosses a link that is not up, or it has none.
    fn needs_path(&self, app: &Application) -> bool {
        match app.state {
            AppState::Registered | AppState::Provisioning => false,
            AppState::NoPath => true,
            AppState::Active => app.legs.iter().any(|leg| {
                leg.links.iter().any(|l| !self.network.links.get(l).is_some_and(|pl| pl.up))
            }),
        }
    }

    /// Rebuilds the network, moves the applications it affects, and starts waiting jobs.
    pub(super) async fn after_topology_change(&mut self) {
        self.network = std::sync::Arc::new(crate::topology::Network::build(
            self.nodes.values().map(|(report, reachable)| Source { report, reachable: *reachable }),
            self.config.links.qber_threshold,
        ));
        self.dirty = true;
        if !self.settled {
            return;
        }
        let needing: Vec<Uuid> =
            self.apps.values().filter(|a| self.needs_path(a)).map(|a| a.spec.app_id).collect();
        let mut affected = Vec::new();
        for id in needing {
            if self.busy.contains_key(&id) {
                self.again.insert(id);
            } else {
                affected.push(id);
            }
        }
        self.place_again(&affected).await;
        self.start_waiting_jobs().await;
    }

    /// Routes applications `ids` again: new paths are provisioned, the others are marked
    /// without one.
    pub(super) async fn place_again(&mut self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        let (promised, direct) = self.reservations(None);
        let mut topology = self.network.routing_topology(&promised, &direct, &self.stock());
        let mut placed = Vec::new();
        for id in ids {
            let app = &self.apps[id];
            let q = &app.spec.qos;
            for leg in &app.legs {
                // A segment keeps its ends (they meet the neighbouring domains); what lies
                // between them is this domain's to repair.
                let (from, to, via) = match &app.segment {
                    Some(_) => {
                        (leg.nodes[0], *leg.nodes.last().expect("a segment has nodes"), Vec::new())
                    }
                    None => (app.spec.server.node, leg.client_node, q.include_nodes.clone()),
                };
                placed.push(Placed {
                    demand: Demand {
                        from,
                        to,
                        rate_bps: q.demand_bps(),
                        max_hops: q.max_hops,
                        exclude_nodes: q.exclude_nodes.iter().copied().collect(),
                        exclude_locations: q.exclude_locations.iter().cloned().collect(),
                    },
                    via,
                    links: leg.links.clone(),
                });
            }
        }
        let mut results = routing::reroute(&mut topology, &placed).into_iter();
        for id in ids {
            let legs = self.apps[id].legs.clone();
            let mut new_legs = Vec::with_capacity(legs.len());
            let mut failure = None;
            for leg in &legs {
                match results.next().expect("one result per leg") {
                    Ok(path) if self.apps[id].segment.is_some() => {
                        let segment = self.apps[id].segment.clone().expect("a segment");
                        match self.segment_path(&segment, leg, path) {
                            Ok(l) => new_legs.push(l),
                            Err(e) => failure = failure.or(Some(e)),
                        }
                    }
                    Ok(path) => {
                        let link = if path.links.len() == 1 {
                            path.links[0]
                        } else {
                            virtual_link_id(*id, leg.client_node)
                        };
                        new_legs.push(Leg {
                            client_node: leg.client_node,
                            link,
                            nodes: path.nodes,
                            links: path.links,
                        });
                    }
                    Err(e) => failure = failure.or(Some(e.to_string())),
                }
            }
            match failure {
                None => self.moved(*id, new_legs).await,
                Some(reason) => self.unplaced(*id, reason).await,
            }
        }
    }

    /// A segment's leg over the repaired `path`, with the hops to the neighbouring domains
    /// (which must be up when they are this domain's links).
    fn segment_path(
        &self,
        segment: &crate::apps::Segment,
        leg: &Leg,
        path: routing::Path,
    ) -> Result<Leg, String> {
        let mut links = Vec::new();
        let hop = |a: Uuid, b: Uuid| -> Result<Option<Uuid>, String> {
            if !(self.network.nodes.contains_key(&a) && self.network.nodes.contains_key(&b)) {
                return Ok(None);
            }
            self.network.link_between(a, b).map(|l| Some(l.id)).ok_or_else(|| {
                format!(
                    "the link between {a} and {b}, where the segment meets the next domain, is down"
                )
            })
        };
        let (first, last) = (path.nodes[0], *path.nodes.last().expect("a path has nodes"));
        if let Some(u) = segment.upstream {
            links.extend(hop(u, first)?);
        }
        links.extend(path.links.iter().copied());
        if let Some(d) = segment.downstream {
            links.extend(hop(last, d)?);
        }
        Ok(Leg { client_node: leg.client_node, link: leg.link, nodes: path.nodes, links })
    }

    async fn moved(&mut self, id: Uuid, legs: Vec<Leg>) {
        let app = self.apps.get_mut(&id).expect("present");
        let was = app.state.clone();
        let moved = app.legs != legs;
        if !moved && was == AppState::Active {
            return;
        }
        app.legs = legs;
        app.state = AppState::Active;
        app.reason = None;
        if moved {
            app.reroutes += 1;
        }
        let ops = vec![Op::put(Table::Applications, id.to_string(), &*app)];
        let path: Vec<String> = app.legs.iter().map(|l| format!("{:?}", l.nodes)).collect();
        if was == AppState::NoPath {
            tracing::info!(app = %id, "a path returned; application restored");
            self.raise(
                "app-restored",
                "INFO",
                json!({"app": id}),
                format!("application {id} restored over {}", path.join(", ")),
            );
        } else {
            tracing::info!(app = %id, "application moved to another path");
            self.raise(
                "app-rerouted",
                "MINOR",
                json!({"app": id}),
                format!("application {id} moved to {}", path.join(", ")),
            );
        }
        self.converge(id, Pending::Background, ops).await;
    }

    async fn unplaced(&mut self, id: Uuid, reason: String) {
        let app = self.apps.get_mut(&id).expect("present");
        if app.state == AppState::NoPath {
            return;
        }
        app.state = AppState::NoPath;
        app.reason = Some(reason.clone());
        let ops = vec![Op::put(Table::Applications, id.to_string(), &*app)];
        tracing::warn!(app = %id, %reason, "application without a path");
        self.raise(
            "app-no-path",
            "MAJOR",
            json!({"app": id}),
            format!("application {id} has no path: {reason}"),
        );
        self.persist(ops).await;
    }

    /// Periodically: applications without a path or whose provisioning failed are tried again.
    pub(super) async fn retry_unplaced(&mut self) {
        let mut unplaced = Vec::new();
        let mut failed = Vec::new();
        for a in self.apps.values().filter(|a| !self.busy.contains_key(&a.spec.app_id)) {
            match (&a.state, &a.reason) {
                (AppState::NoPath, _) => unplaced.push(a.spec.app_id),
                (AppState::Active, Some(_)) => failed.push(a.spec.app_id),
                _ => {}
            }
        }
        self.place_again(&unplaced).await;
        for id in failed {
            self.converge(id, Pending::Background, Vec::new()).await;
        }
        self.start_waiting_jobs().await;
    }
}

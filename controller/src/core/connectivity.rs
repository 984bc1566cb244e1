//! The ETSI 018 connectivity steps in the core: an application registered without a path,
//! candidate paths computed and kept with it, and one of them deployed (provisioned like a
//! QoS change, so a failure restores the registered state).

use std::collections::HashSet;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Core, Pending};
use crate::apps::{AppSpec, AppState, Application, Candidate, Leg, virtual_link_id};
use crate::error::ApiError;
use crate::records::{Op, Table};
use crate::routing::{self, Demand};

impl Core {
    /// Registers `spec` with no path (idempotent for the same content).
    pub(super) async fn register_only(
        &mut self,
        spec: AppSpec,
        reply: oneshot::Sender<Result<(Application, bool), ApiError>>,
    ) {
        let id = spec.app_id;
        if let Some(existing) = self.apps.get(&id) {
            let answer = if existing.spec == spec {
                Ok((existing.clone(), false))
            } else {
                Err(ApiError::Conflict(format!(
                    "application {id} is registered with other content"
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        if let Err(e) = self.pair_free(&spec) {
            let _ = reply.send(Err(e));
            return;
        }
        for node in std::iter::once(spec.server.node).chain(spec.clients.iter().map(|c| c.node)) {
            if !self.network.nodes.contains_key(&node) {
                let _ = reply.send(Err(ApiError::NotFound(format!(
                    "node {node} is not known to the controller"
                ))));
                return;
            }
        }
        let app = Application {
            spec,
            state: AppState::Registered,
            reason: None,
            legs: Vec::new(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reroutes: 0,
            candidates: Vec::new(),
            segment: None,
        };
        let result =
            self.store.write(vec![Op::put(Table::Applications, id.to_string(), &app)]).await;
        let answer = match result {
            Ok(()) => {
                self.apps.insert(id, app.clone());
                self.dirty = true;
                self.raise(
                    "app-registered",
                    "INFO",
                    serde_json::json!({"app": id}),
                    format!("application {id} registered"),
                );
                Ok((app, true))
            }
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        };
        let _ = reply.send(answer);
    }

    /// Computes up to `k` candidate paths for application `id` and keeps them with it.
    pub(super) async fn candidates(
        &mut self,
        id: Uuid,
        exclude: HashSet<Uuid>,
        max_hops: Option<usize>,
        k: usize,
        reply: oneshot::Sender<Result<Vec<Candidate>, ApiError>>,
    ) {
        let Some(app) = self.apps.get(&id) else {
            let _ = reply.send(Err(ApiError::NotFound(format!("no application {id}"))));
            return;
        };
        let spec = &app.spec;
        let (promised, direct) = self.reservations(Some(id));
        let topology = self.network.routing_topology(&promised, &direct, &self.stock());
        let mut exclude_nodes: HashSet<Uuid> = spec.qos.exclude_nodes.iter().copied().collect();
        exclude_nodes.extend(exclude);
        let demand = Demand {
            from: spec.server.node,
            to: spec.clients[0].node,
            rate_bps: spec.qos.demand_bps(),
            max_hops: max_hops.or(spec.qos.max_hops),
            exclude_nodes,
            exclude_locations: spec.qos.exclude_locations.iter().cloned().collect(),
        };
        let found = match routing::k_shortest_paths(&topology, &demand, k) {
            Ok(paths) => paths
                .into_iter()
                .map(|p| Candidate { nodes: p.nodes, links: p.links })
                .collect::<Vec<_>>(),
            Err(e) => {
                let _ = reply.send(Err(ApiError::Conflict(e.to_string())));
                return;
            }
        };
        let app = self.apps.get_mut(&id).expect("present");
        app.candidates = found.clone();
        let op = Op::put(Table::Applications, id.to_string(), &*app);
        self.dirty = true;
        self.persist(vec![op]).await;
        let _ = reply.send(Ok(found));
    }

    /// Provisions application `id` over its candidate `path_id` (1-based).
    pub(super) async fn deploy(
        &mut self,
        id: Uuid,
        path_id: usize,
        reply: oneshot::Sender<Result<Application, ApiError>>,
    ) {
        let app = match self.changeable(id) {
            Ok(app) => app,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(candidate) = path_id.checked_sub(1).and_then(|i| app.candidates.get(i)).cloned()
        else {
            let _ = reply.send(Err(ApiError::NotFound(format!(
                "application {id} has no candidate path {path_id} ({} computed)",
                app.candidates.len()
            ))));
            return;
        };
        // The candidate must still be usable with every other application's rate reserved.
        let (promised, _) = self.reservations(Some(id));
        let rate = app.spec.qos.demand_bps();
        for l in &candidate.links {
            let usable = self.network.links.get(l).filter(|pl| pl.up);
            let spare =
                usable.map(|pl| pl.skr_bps.saturating_sub(promised.get(l).copied().unwrap_or(0)));
            if spare.is_none_or(|s| s < rate) {
                let _ = reply.send(Err(ApiError::Conflict(format!(
                    "candidate path {path_id} no longer fits: physical link {l} is down or has less than {rate} bit/s spare"
                ))));
                return;
            }
        }
        let previous = app.clone();
        let client = app.spec.clients[0].node;
        let link = if candidate.links.len() == 1 {
            candidate.links[0]
        } else {
            virtual_link_id(id, client)
        };
        let mut app = previous.clone();
        app.legs =
            vec![Leg { client_node: client, link, nodes: candidate.nodes, links: candidate.links }];
        app.state = AppState::Active;
        app.reason = None;
        let ops = vec![Op::put(Table::Applications, id.to_string(), &app)];
        self.apps.insert(id, app);
        self.dirty = true;
        self.converge(id, Pending::Update(reply, Box::new(previous)), ops).await;
    }
}

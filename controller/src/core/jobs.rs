//! Applications in the core: registering (route, record, write the entries, answer), changing
//! QoS, removing, and the provisioning jobs that bring the nodes to what the applications need
//! (rolled back when a create or update fails part way).

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Core, Pending, Recorded};
use crate::apps::{
    AppSpec, AppState, Application, Entry, EntryBody, Leg, Qos, desired_entries, virtual_link_id,
};
use crate::error::ApiError;
use crate::provision::{self, Job, Outcome, WriteFailure};
use crate::records::{Op, Table};
use crate::routing::{self, Demand};

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The API error for a write a node refused.
fn refused(f: &WriteFailure) -> ApiError {
    let message = format!("provisioning failed, nothing was kept: {f}");
    match f.status {
        Some(409) | Some(400) => ApiError::Conflict(message),
        _ => ApiError::Agent(message),
    }
}

impl Core {
    /// The legs of `spec` over the current network, with every other application's rate
    /// reserved (`except`: the application being moved, whose own rate is free to reuse).
    pub(super) fn route_app(
        &self,
        spec: &AppSpec,
        except: Option<Uuid>,
    ) -> Result<Vec<Leg>, ApiError> {
        for (at, node) in std::iter::once(("/server/node".to_owned(), spec.server.node)).chain(
            spec.clients.iter().enumerate().map(|(i, c)| (format!("/clients/{i}/node"), c.node)),
        ) {
            if !self.network.nodes.contains_key(&node) {
                return Err(ApiError::NotFound(format!(
                    "node {node} ({at}) is not known to the controller: no agent of that node has registered"
                )));
            }
        }
        let (mut promised, direct) = self.reservations(except);
        let rate = spec.qos.demand_bps();
        let mut legs = Vec::new();
        for client in spec.client_nodes() {
            let topology = self.network.routing_topology(&promised, &direct, &self.stock());
            let demand = Demand {
                from: spec.server.node,
                to: client,
                rate_bps: rate,
                max_hops: spec.qos.max_hops,
                exclude_nodes: spec.qos.exclude_nodes.iter().copied().collect(),
                exclude_locations: spec.qos.exclude_locations.iter().cloned().collect(),
            };
            let path = routing::shortest_path_via(&topology, &demand, &spec.qos.include_nodes)
                .map_err(|e| ApiError::Conflict(e.to_string()))?;
            for l in &path.links {
                *promised.entry(*l).or_insert(0) += rate;
            }
            let link = if path.links.len() == 1 {
                path.links[0]
            } else {
                virtual_link_id(spec.app_id, client)
            };
            legs.push(Leg { client_node: client, link, nodes: path.nodes, links: path.links });
        }
        Ok(legs)
    }

    pub(super) async fn create_app(
        &mut self,
        spec: AppSpec,
        reply: oneshot::Sender<Result<(Application, bool), ApiError>>,
    ) {
        let id = spec.app_id;
        if !self.settled {
            let _ = reply.send(Err(ApiError::Unavailable(
                "the controller is starting and has not heard from every agent yet; retry".into(),
            )));
            return;
        }
        if let Some(existing) = self.apps.get(&id) {
            let answer = if existing.spec != spec {
                Err(ApiError::Conflict(format!(
                    "application {id} is registered with other content"
                )))
            } else if existing.state == AppState::Provisioning {
                Err(ApiError::Unavailable(format!("application {id} is being provisioned; retry")))
            } else {
                Ok((existing.clone(), false))
            };
            let _ = reply.send(answer);
            return;
        }
        if self.busy.contains_key(&id) {
            let _ = reply.send(Err(ApiError::Unavailable(format!(
                "entries of an earlier application {id} are being removed; retry"
            ))));
            return;
        }
        if let Err(e) = self.pair_free(&spec) {
            let _ = reply.send(Err(e));
            return;
        }
        let legs = match self.route_app(&spec, None) {
            Ok(legs) => legs,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let app = Application {
            spec,
            state: AppState::Provisioning,
            reason: None,
            legs,
            created: now(),
            reroutes: 0,
            candidates: Vec::new(),
            segment: None,
        };
        let ops = vec![Op::put(Table::Applications, id.to_string(), &app)];
        self.apps.insert(id, app);
        self.dirty = true;
        self.converge(id, Pending::Create(reply), ops).await;
    }

    /// Refuses `spec` when another application serves one of its SAE pairs (master, slave):
    /// one application per pair, so no application id a client chooses can change which
    /// application serves a pair.
    pub(super) fn pair_free(&self, spec: &AppSpec) -> Result<(), ApiError> {
        let master = &spec.server.sae_id;
        for client in &spec.clients {
            let holder = self.apps.values().find(|a| {
                a.spec.app_id != spec.app_id
                    && a.spec.server.sae_id == *master
                    && a.spec.clients.iter().any(|c| c.sae_id == client.sae_id)
            });
            if let Some(holder) = holder {
                return Err(ApiError::Conflict(format!(
                    "the SAE pair {master} -> {} is served by application {}; an admin may replace it (POST with ?replace=true) or delete it first",
                    client.sae_id, holder.spec.app_id
                )));
            }
        }
        Ok(())
    }

    pub(super) async fn update_qos(
        &mut self,
        id: Uuid,
        qos: Qos,
        reply: oneshot::Sender<Result<Application, ApiError>>,
    ) {
        let app = match self.changeable(id) {
            Ok(app) => app,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let previous = app.clone();
        let mut spec = app.spec.clone();
        spec.qos = qos;
        let legs = match self.route_app(&spec, Some(id)) {
            Ok(legs) => legs,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut app = previous.clone();
        app.spec = spec;
        app.legs = legs;
        app.state = AppState::Active;
        app.reason = None;
        let ops = vec![Op::put(Table::Applications, id.to_string(), &app)];
        self.apps.insert(id, app);
        self.dirty = true;
        self.converge(id, Pending::Update(reply, Box::new(previous)), ops).await;
    }

    pub(super) async fn delete_app(
        &mut self,
        id: Uuid,
        reply: oneshot::Sender<Result<bool, ApiError>>,
    ) {
        if !self.apps.contains_key(&id) {
            let _ = reply.send(Err(ApiError::NotFound(format!("no application {id}"))));
            return;
        }
        if self.busy.contains_key(&id) {
            let _ = reply.send(Err(ApiError::Unavailable(format!(
                "application {id} is being changed; retry"
            ))));
            return;
        }
        self.apps.remove(&id);
        self.dirty = true;
        self.raise(
            "app-removed",
            "INFO",
            serde_json::json!({"app": id}),
            format!("application {id} removed"),
        );
        self.converge(
            id,
            Pending::Delete(reply),
            vec![Op::Delete(Table::Applications, id.to_string())],
        )
        .await;
    }

    /// Application `id`, when it exists and no change of it is under way.
    pub(super) fn changeable(&self, id: Uuid) -> Result<Application, ApiError> {
        let app =
            self.apps.get(&id).ok_or_else(|| ApiError::NotFound(format!("no application {id}")))?;
        if self.busy.contains_key(&id) || app.state == AppState::Provisioning {
            return Err(ApiError::Unavailable(format!("application {id} is being changed; retry")));
        }
        Ok(app.clone())
    }

    /// Whether `node` holds `entry` as its last report shows.
    fn present(&self, entry: &Entry) -> bool {
        let Some((report, _)) = self.nodes.get(&entry.node) else {
            return false;
        };
        match &entry.body {
            EntryBody::Link(link) => report.links.iter().any(|l| {
                l.id == entry.id
                    && l.prev_hop == link.virt_prev_hop
                    && l.next_hops == link.virt_next_hop
            }),
            EntryBody::App(app) => report
                .apps
                .iter()
                .any(|a| a.id == entry.id && a.backing_links == app.backing_qkdl_id),
        }
    }

    /// Starts the job that brings the nodes to what application `id` needs (nothing, when it
    /// no longer exists), after storing `ops` and the entries about to be written.
    pub(super) async fn converge(&mut self, id: Uuid, pending: Pending, mut ops: Vec<Op>) {
        let desired = self.apps.get(&id).map(desired_entries).unwrap_or_default();
        let recorded: BTreeMap<String, Entry> = self
            .entries
            .iter()
            .filter(|(_, r)| r.app == id)
            .map(|(k, r)| (k.clone(), r.entry.clone()))
            .collect();
        let desired_keys: std::collections::HashSet<String> =
            desired.iter().map(Entry::key).collect();
        let puts: Vec<Entry> = desired
            .into_iter()
            .filter(|e| {
                !(recorded.get(&e.key()).is_some_and(|r| r.body == e.body) && self.present(e))
            })
            .collect();
        let deletes: Vec<Entry> = recorded
            .iter()
            .filter(|(k, _)| !desired_keys.contains(*k))
            .map(|(_, e)| e.clone())
            .collect();
        for e in &puts {
            let r = Recorded { app: id, entry: e.clone() };
            ops.push(Op::put(Table::Entries, e.key(), &r));
            self.entries.insert(e.key(), r);
        }
        if let Err(e) = self.store.write(ops).await {
            tracing::error!(app = %id, error = %e, "state not stored; nothing written to nodes");
            self.fail_pending(pending, ApiError::Unavailable(e.to_string()));
            return;
        }
        self.busy.insert(id, pending);
        let clients: HashMap<Uuid, _> = self.clients();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let outcome = if puts.is_empty() && deletes.is_empty() {
                Outcome::default()
            } else {
                provision::run(Job { puts, deletes }, &clients).await
            };
            let _ = commands.send(super::Command::JobDone(id, outcome)).await;
        });
    }

    fn fail_pending(&mut self, pending: Pending, error: ApiError) {
        match pending {
            Pending::Create(r) => drop(r.send(Err(error))),
            Pending::Update(r, _) => drop(r.send(Err(error))),
            Pending::Delete(r) => drop(r.send(Err(error))),
            Pending::Rollback(answer, original) => answer(original),
            Pending::Background => {}
        }
    }

    pub(super) async fn job_done(&mut self, id: Uuid, outcome: Outcome) {
        let mut ops = Vec::new();
        for key in &outcome.removed {
            self.entries.remove(key);
            ops.push(Op::Delete(Table::Entries, key.clone()));
        }
        for f in &outcome.failed_removals {
            tracing::warn!(app = %id, failure = %f, "an entry could not be removed; retried when the node is back");
        }
        let pending = self.busy.remove(&id).unwrap_or(Pending::Background);
        self.dirty = true;
        match (pending, outcome.failure) {
            (Pending::Create(reply), Some(f)) => {
                tracing::warn!(app = %id, failure = %f, "registration failed; rolling back");
                self.apps.remove(&id);
                ops.push(Op::Delete(Table::Applications, id.to_string()));
                let answer = Box::new(move |e| drop(reply.send(Err(e))));
                self.converge(id, Pending::Rollback(answer, refused(&f)), ops).await;
            }
            (Pending::Create(reply), None) => {
                let answer = self.activate(id, &mut ops);
                self.persist(ops).await;
                if let Some(app) = answer {
                    self.raise(
                        "app-provisioned",
                        "INFO",
                        serde_json::json!({"app": id}),
                        format!("application {id} provisioned"),
                    );
                    let _ = reply.send(Ok((app, true)));
                }
            }
            (Pending::Update(reply, previous), Some(f)) => {
                tracing::warn!(app = %id, failure = %f, "QoS change failed; restoring");
                ops.push(Op::put(Table::Applications, id.to_string(), &previous));
                self.apps.insert(id, *previous);
                let answer = Box::new(move |e| drop(reply.send(Err(e))));
                self.converge(id, Pending::Rollback(answer, refused(&f)), ops).await;
            }
            (Pending::Update(reply, _), None) => {
                self.persist(ops).await;
                if let Some(app) = self.apps.get(&id) {
                    let _ = reply.send(Ok(app.clone()));
                }
            }
            (Pending::Delete(reply), _) => {
                self.persist(ops).await;
                let _ = reply.send(Ok(outcome.failed_removals.is_empty()));
            }
            (Pending::Rollback(answer, error), _) => {
                self.persist(ops).await;
                answer(error);
            }
            (Pending::Background, failure) => {
                if let Some(app) = self.apps.get_mut(&id) {
                    app.reason = failure.as_ref().map(|f| format!("provisioning failed: {f}"));
                    ops.push(Op::put(Table::Applications, id.to_string(), &*app));
                }
                self.persist(ops).await;
                if let Some(f) = failure {
                    self.raise(
                        "app-provisioning-failed",
                        "MAJOR",
                        serde_json::json!({"app": id, "node": f.node}),
                        format!("application {id}: {f}; retried"),
                    );
                }
            }
        }
    }

    /// Marks a provisioned application active; returns it.
    fn activate(&mut self, id: Uuid, ops: &mut Vec<Op>) -> Option<Application> {
        let app = self.apps.get_mut(&id)?;
        app.state = AppState::Active;
        app.reason = None;
        ops.push(Op::put(Table::Applications, id.to_string(), &*app));
        Some(app.clone())
    }

    pub(super) async fn persist(&mut self, ops: Vec<Op>) {
        if let Err(e) = self.store.write(ops).await {
            tracing::error!(error = %e, "state not stored");
        }
    }

    /// Every application with entries on `node`, recorded or needed, is checked again.
    pub(super) fn reconcile_node(&mut self, node: Uuid) {
        let recorded = self.entries.values().filter(|r| r.entry.node == node).map(|r| r.app);
        let needed = self
            .apps
            .values()
            .filter(|a| {
                a.spec.server.node == node
                    || a.spec.clients.iter().any(|c| c.node == node)
                    || a.legs.iter().any(|l| l.nodes.contains(&node))
            })
            .map(|a| a.spec.app_id);
        let ids: Vec<Uuid> = recorded.chain(needed).collect();
        self.again.extend(ids);
    }

    /// Starts the jobs asked for while their applications were busy.
    pub(super) async fn start_waiting_jobs(&mut self) {
        let ready: Vec<Uuid> =
            self.again.iter().filter(|id| !self.busy.contains_key(id)).copied().collect();
        for id in ready {
            self.again.remove(&id);
            if self.apps.get(&id).is_some_and(|a| a.state == AppState::Provisioning) {
                continue;
            }
            self.converge(id, Pending::Background, Vec::new()).await;
        }
    }
}

//! Failure handling: after the network changes, the applications whose paths use a link that
//! is no longer up (down, QBER over threshold, an agent lost) are routed again, and only those;
//! applications without a path are marked and reported, and restored when a path returns.

use serde_json::json;
use uuid::Uuid;

use super::{Core, Pending};
use crate::apps::{AppState, Application};
use crate::store::{Op, Table};
use crate::topology::Source;

impl Core {
    /// Whether `app` needs another path: a leg crosses a link that is not up, or has none.
    fn needs_path(&self, app: &Application) -> bool {
        app.state == AppState::NoPath
            || app.legs.iter().any(|leg| {
                leg.links.iter().any(|l| !self.network.links.get(l).is_some_and(|pl| pl.up))
            })
    }

    /// Rebuilds the network, moves the applications it affects, and starts waiting jobs.
    pub(super) async fn after_topology_change(&mut self) {
        self.network = crate::topology::Network::build(
            self.nodes.values().map(|(report, reachable)| Source { report, reachable: *reachable }),
            self.config.links.qber_threshold,
        );
        self.dirty = true;
        if !self.settled {
            return;
        }
        let affected: Vec<Uuid> = self
            .apps
            .values()
            .filter(|a| a.state != AppState::Provisioning && self.needs_path(a))
            .map(|a| a.spec.app_id)
            .collect();
        for id in affected {
            if self.busy.contains_key(&id) {
                self.again.insert(id);
                continue;
            }
            self.place_again(id).await;
        }
        self.start_waiting_jobs().await;
        self.dirty = true;
    }

    /// Routes application `id` again: a new path is provisioned, or it is marked without one.
    async fn place_again(&mut self, id: Uuid) {
        let Some(app) = self.apps.get(&id) else {
            return;
        };
        let spec = app.spec.clone();
        match self.route_app(&spec, Some(id)) {
            Ok(legs) => {
                let app = self.apps.get_mut(&id).expect("present");
                let was = app.state.clone();
                let moved = app.legs != legs;
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
            Err(e) => {
                let app = self.apps.get_mut(&id).expect("present");
                if app.state == AppState::NoPath {
                    return;
                }
                app.state = AppState::NoPath;
                app.reason = Some(e.to_string());
                let ops = vec![Op::put(Table::Applications, id.to_string(), &*app)];
                tracing::warn!(app = %id, reason = %e, "application without a path");
                self.raise(
                    "app-no-path",
                    "MAJOR",
                    json!({"app": id}),
                    format!("application {id} has no path: {e}"),
                );
                self.persist(ops).await;
            }
        }
    }

    /// Periodically: applications without a path or whose provisioning failed are tried again.
    pub(super) async fn retry_unplaced(&mut self) {
        let ids: Vec<Uuid> = self
            .apps
            .values()
            .filter(|a| {
                a.state == AppState::NoPath || (a.state == AppState::Active && a.reason.is_some())
            })
            .map(|a| a.spec.app_id)
            .collect();
        for id in ids {
            if self.busy.contains_key(&id) {
                continue;
            }
            if self.apps.get(&id).is_some_and(|a| a.state == AppState::NoPath) {
                self.place_again(id).await;
            } else {
                self.converge(id, Pending::Background, Vec::new()).await;
            }
        }
        self.start_waiting_jobs().await;
    }
}

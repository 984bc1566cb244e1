//! The owner of the orchestrator's end-to-end services: one task holds them and decides every
//! change. Readers (list, get, `/metrics`) read the map it publishes without waiting for
//! anything; the slow part of a change (the durable records and the domains' segments) runs in
//! a task of its own, so that one service's multi-domain provisioning holds up neither the
//! readers nor the other services. A service being created or removed refuses another change
//! (409) until that one is done. The work in flight stops with the owner; a creation cut short
//! is rolled back at the next start (its record says it was never answered).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use qkdn_controller::apps::AppSpec;
use qkdn_controller::error::ApiError;
use qkdn_yang::restconf::RestconfClient;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::end_to_end::{self as services, Service};
use crate::records::{Op, Store, Table};
use crate::state::Snapshot;

/// The services by id, as last published.
pub type Services = Arc<BTreeMap<Uuid, Service>>;

/// How a creation ended: the service, and whether it was made now (else it existed already
/// with the same content).
pub type Created = Result<(Service, bool), ApiError>;

enum Command {
    Create(AppSpec, oneshot::Sender<Created>),
    Provisioned(Service, Result<(), ApiError>, oneshot::Sender<Created>),
    Delete(Uuid, oneshot::Sender<Result<(), ApiError>>),
    Removed(Uuid, Result<(), ApiError>, oneshot::Sender<Result<(), ApiError>>),
}

/// A handle on the services' owner.
#[derive(Clone)]
pub struct ServiceBook {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Services>,
}

/// What the owner needs besides the services.
pub struct BookParts {
    /// The network as last merged (services are planned on it).
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The domains' controllers.
    pub domains: Arc<BTreeMap<String, RestconfClient>>,
    /// Where services are kept.
    pub store: Store,
}

impl ServiceBook {
    /// Starts the owner of `services` (those answered before); it stops when the returned task
    /// is aborted or every handle is gone.
    pub fn start(
        services: BTreeMap<Uuid, Service>,
        parts: BookParts,
    ) -> (ServiceBook, tokio::task::JoinHandle<()>) {
        let (commands, incoming) = mpsc::channel(256);
        let (publish, view) = watch::channel(Arc::new(services.clone()));
        let owner = Owner {
            services,
            busy: BTreeSet::new(),
            parts,
            publish,
            back: commands.downgrade(),
            work: JoinSet::new(),
        };
        let task = tokio::spawn(owner.run(incoming));
        (ServiceBook { commands, view }, task)
    }

    /// The services now.
    pub fn services(&self) -> Services {
        self.view.borrow().clone()
    }

    /// Creates the service `spec` asks for (idempotent for the same content).
    pub async fn create(&self, spec: AppSpec) -> Created {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Create(spec, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Removes service `id` from its domains and forgets it.
    pub async fn delete(&self, id: Uuid) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Delete(id, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, command: Command) -> Result<(), ApiError> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> ApiError {
    ApiError::Unavailable("the orchestrator is stopping".into())
}

struct Owner {
    services: BTreeMap<Uuid, Service>,
    /// Services being created or removed.
    busy: BTreeSet<Uuid>,
    parts: BookParts,
    publish: watch::Sender<Services>,
    back: mpsc::WeakSender<Command>,
    /// The changes in flight (aborted with the owner).
    work: JoinSet<()>,
}

impl Owner {
    async fn run(mut self, mut incoming: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                command = incoming.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                Some(_) = self.work.join_next(), if !self.work.is_empty() => {}
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Create(spec, reply) => self.create(spec, reply),
            Command::Provisioned(service, outcome, reply) => {
                self.busy.remove(&service.service_id);
                let _ = reply.send(outcome.map(|()| {
                    self.services.insert(service.service_id, service.clone());
                    self.publish();
                    (service, true)
                }));
            }
            Command::Delete(id, reply) => self.delete(id, reply),
            Command::Removed(id, outcome, reply) => {
                self.busy.remove(&id);
                if outcome.is_ok() {
                    self.services.remove(&id);
                    self.publish();
                }
                let _ = reply.send(outcome);
            }
        }
    }

    fn publish(&self) {
        self.publish.send_replace(Arc::new(self.services.clone()));
    }

    fn being_changed(id: Uuid) -> ApiError {
        ApiError::Conflict(format!("service {id} is being changed; retry when that is done"))
    }

    fn create(&mut self, spec: AppSpec, reply: oneshot::Sender<Created>) {
        let id = spec.app_id;
        if self.busy.contains(&id) {
            let _ = reply.send(Err(Self::being_changed(id)));
            return;
        }
        if let Some(existing) = self.services.get(&id) {
            let answer = if existing.spec == spec {
                Ok((existing.clone(), false))
            } else {
                Err(ApiError::Conflict(format!("service {id} exists with other content")))
            };
            let _ = reply.send(answer);
            return;
        }
        let merged = self.parts.snapshot.borrow().merged.clone();
        let service = match services::plan(&merged, &spec) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.busy.insert(id);
        let (store, domains, back) =
            (self.parts.store.clone(), self.parts.domains.clone(), self.back.clone());
        self.work.spawn(async move {
            let (service, outcome) = provisioned(service, &store, &domains).await;
            if let Some(back) = back.upgrade() {
                let _ = back.send(Command::Provisioned(service, outcome, reply)).await;
            }
        });
    }

    fn delete(&mut self, id: Uuid, reply: oneshot::Sender<Result<(), ApiError>>) {
        if self.busy.contains(&id) {
            let _ = reply.send(Err(Self::being_changed(id)));
            return;
        }
        let Some(service) = self.services.get(&id).cloned() else {
            let _ = reply.send(Err(ApiError::NotFound(format!("no service {id}"))));
            return;
        };
        self.busy.insert(id);
        let (store, domains, back) =
            (self.parts.store.clone(), self.parts.domains.clone(), self.back.clone());
        self.work.spawn(async move {
            services::remove(&service.parts.iter().collect::<Vec<_>>(), &domains).await;
            let outcome = persist(&store, vec![Op::Delete(Table::Services, id.to_string())]).await;
            if let Some(back) = back.upgrade() {
                let _ = back.send(Command::Removed(id, outcome, reply)).await;
            }
        });
    }
}

/// Records `service`, asks its domains for their segments, and records it answered; on a
/// refusal the record is removed again.
async fn provisioned(
    mut service: Service,
    store: &Store,
    domains: &BTreeMap<String, RestconfClient>,
) -> (Service, Result<(), ApiError>) {
    let key = service.service_id.to_string();
    // Recorded before any domain is asked, so a crash leaves something to roll back.
    if let Err(e) = persist(store, vec![Op::put(Table::Services, key.clone(), &service)]).await {
        return (service, Err(e));
    }
    if let Err(e) = services::provision(&service, domains).await {
        let removed = persist(store, vec![Op::Delete(Table::Services, key)]).await;
        return (service, removed.and(Err(e)));
    }
    service.provisioned = true;
    let outcome = persist(store, vec![Op::put(Table::Services, key, &service)]).await;
    (service, outcome)
}

async fn persist(store: &Store, ops: Vec<Op>) -> Result<(), ApiError> {
    store.write(ops).await.map_err(|e| ApiError::Unavailable(e.to_string()))
}

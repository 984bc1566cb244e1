//! The validated datastore: running configuration plus operational state, owned by one thread,
//! read through lock-free snapshots.
//!
//! * Readers call [`Datastore::snapshot`] and render from it; they never wait for writers.
//! * Writers prepare an [`Edit`] on their own thread (parsing and type checks by libyang), then
//!   [`Datastore::apply`] hands it to the owner thread, which revalidates what the edit touched,
//!   asks the [`CommitHook`] (the application owning the data), commits atomically and tells
//!   subscribers ([`Datastore::subscribe`]) what changed.
//! * The application publishes operational state with [`Datastore::set_state`] and friends; state
//!   is validated against the schema (and the configuration it hangs under) like configuration.
//!
//! The datastore is in memory. Applications that must survive restarts persist from their hook
//! or from the change stream, and load the data back at start-up ([`DatastoreBuilder`]).

mod change;
mod edit;
mod owner;
mod snapshot;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, oneshot};

pub use change::{ChangeSet, Commit, CommitHook, Layer, Transaction, change_content_json};
pub use edit::{Edit, EditOp, Precondition};
pub use snapshot::{ContentFilter, ResourceMeta, Snapshot};

use crate::context::YangContext;
use crate::error::DataError;
use crate::input::InputPolicy;
use crate::path::DataPath;
use owner::Owner;

enum Command {
    Apply { edit: Edit, state: bool, reply: oneshot::Sender<Result<Commit, DataError>> },
}

struct Shared {
    ctx: YangContext,
    published: Arc<ArcSwap<Snapshot>>,
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<Arc<ChangeSet>>,
}

/// Loads a start-up document in one pass: normalised, parsed and fully validated by libyang
/// once, then split into configuration and state.
fn load(
    ctx: &YangContext,
    doc: serde_json::Value,
    policy: InputPolicy,
) -> Result<Snapshot, DataError> {
    use crate::tree::edit::{split_config, split_state};
    let members = serde_json::Value::Object(crate::input::normalize_datastore(ctx, doc, policy)?);
    let content =
        if policy.allow_state { crate::ly::Content::All } else { crate::ly::Content::Config };
    let meta = crate::tree::Meta::now(1);
    let tree = crate::ly::parse_data(ctx, &members.to_string(), content, true, meta)
        .map_err(|err| crate::input::first_invalid_value(ctx, &members).unwrap_or(err))?;
    let schema = ctx.schema();
    let mut snapshot = Snapshot::empty();
    snapshot.running = split_config(schema, &tree);
    snapshot.running.set_meta(meta);
    snapshot.running_version = 1;
    if policy.allow_state
        && let Some(mut state) = split_state(schema, &tree, &[])
    {
        state.set_meta(meta);
        snapshot.state = state;
        snapshot.state_version = 1;
    }
    Ok(snapshot)
}

/// A handle on a datastore (cheap to clone; the owner thread stops when the last handle goes).
#[derive(Clone)]
pub struct Datastore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snap = self.snapshot();
        f.debug_struct("Datastore")
            .field("running_version", &snap.running_version)
            .field("state_version", &snap.state_version)
            .finish()
    }
}

/// Sets up a [`Datastore`].
pub struct DatastoreBuilder {
    ctx: YangContext,
    hook: Option<Arc<dyn CommitHook>>,
    initial: Option<(serde_json::Value, InputPolicy)>,
    state: Option<serde_json::Value>,
}

impl DatastoreBuilder {
    /// The owner's hook, asked before each configuration commit.
    pub fn hook(mut self, hook: impl CommitHook) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Initial configuration, a datastore document (tolerant input accepted).
    pub fn config(mut self, doc: serde_json::Value) -> Self {
        self.initial = Some((doc, InputPolicy::CONFIG));
        self
    }

    /// Initial operational state, a datastore document, applied over the initial configuration.
    pub fn state(mut self, doc: serde_json::Value) -> Self {
        self.state = Some(doc);
        self
    }

    /// Initial configuration and state from one document holding both (such as a RESTCONF GET
    /// of the whole datastore); it is split into the two. Top-level members that are not YANG
    /// data (settings of other tools in their start-up files) are skipped with a warning.
    pub fn data(mut self, doc: serde_json::Value) -> Self {
        self.initial = Some((doc, InputPolicy::STARTUP));
        self
    }

    /// Validates the initial data, starts the owner thread and returns the handle.
    pub fn build(self) -> Result<Datastore, DataError> {
        let initial = match self.initial {
            Some((doc, policy)) => load(&self.ctx, doc, policy)?,
            None => Snapshot::empty(),
        };
        let published = Arc::new(ArcSwap::from_pointee(initial));
        let (changes, _) = broadcast::channel(1024);
        let mut owner = Owner {
            ctx: self.ctx.clone(),
            published: published.clone(),
            hook: None,
            changes: changes.clone(),
        };
        if let Some(doc) = self.state {
            let edit = Edit::prepare(
                &self.ctx,
                EditOp::Merge,
                &DataPath::root(),
                Some(doc),
                InputPolicy::ALL,
            )?;
            owner.apply_state(edit)?;
        }
        owner.hook = self.hook;
        let (commands, receiver) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("qkdn-datastore".into())
            .spawn(move || {
                while let Ok(command) = receiver.recv() {
                    match command {
                        Command::Apply { edit, state, reply } => {
                            // A panic (in an application's hook, or a bug here) refuses this
                            // edit; nothing was published, and the thread goes on serving.
                            let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                if state {
                                    owner.apply_state(edit)
                                } else {
                                    owner.apply_running(edit)
                                }
                            }));
                            let result = attempt.unwrap_or_else(|panic| {
                                let what = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| (*s).to_owned())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_default();
                                tracing::error!(panic = %what, "an edit panicked and was refused");
                                Err(DataError::internal(format!(
                                    "the edit failed inside the server: {what}"
                                )))
                            });
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|e| DataError::internal(format!("cannot start the datastore thread: {e}")))?;
        Ok(Datastore { shared: Arc::new(Shared { ctx: self.ctx, published, commands, changes }) })
    }
}

impl Datastore {
    /// Starts setting up a datastore over `ctx`.
    pub fn builder(ctx: YangContext) -> DatastoreBuilder {
        DatastoreBuilder { ctx, hook: None, initial: None, state: None }
    }

    /// The context.
    pub fn context(&self) -> &YangContext {
        &self.shared.ctx
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.published.load_full()
    }

    /// Committed configuration changes, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeSet>> {
        self.shared.changes.subscribe()
    }

    /// Applies a configuration edit.
    pub async fn apply(&self, edit: Edit) -> Result<Commit, DataError> {
        self.send(edit, false).await
    }

    /// Applies a state edit.
    pub async fn apply_state(&self, edit: Edit) -> Result<Commit, DataError> {
        self.send(edit, true).await
    }

    /// Parses `path` (RESTCONF URI form, as after `/restconf/data`).
    pub fn path(&self, path: &str) -> Result<DataPath, DataError> {
        DataPath::parse_restconf(&self.shared.ctx, path)
    }

    /// Creates or replaces the configuration at `path` with `body` (`{"module:name": ...}`).
    pub async fn put_config(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Commit, DataError> {
        self.edit_json(EditOp::Replace, path, body, false).await
    }

    /// Merges `body` into the configuration at `path`.
    pub async fn merge_config(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Commit, DataError> {
        self.edit_json(EditOp::Merge, path, body, false).await
    }

    /// Deletes the configuration at `path` if present.
    pub async fn remove_config(&self, path: &str) -> Result<Commit, DataError> {
        self.apply(Edit::remove(self.path(path)?)).await
    }

    /// Creates or replaces the state at `path` with `body` (`{"module:name": ...}`).
    pub async fn set_state(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Commit, DataError> {
        self.edit_json(EditOp::Replace, path, body, true).await
    }

    /// Merges `body` into the state at `path`.
    pub async fn merge_state(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<Commit, DataError> {
        self.edit_json(EditOp::Merge, path, body, true).await
    }

    /// Deletes the state at `path` if present.
    pub async fn remove_state(&self, path: &str) -> Result<Commit, DataError> {
        self.apply_state(Edit::remove(self.path(path)?)).await
    }

    /// Prepares and applies a JSON edit of the configuration or (`state`) the state.
    async fn edit_json(
        &self,
        op: EditOp,
        path: &str,
        body: serde_json::Value,
        state: bool,
    ) -> Result<Commit, DataError> {
        let policy = if state { InputPolicy::ALL } else { InputPolicy::CONFIG };
        let edit = Edit::prepare(self.context(), op, &self.path(path)?, Some(body), policy)?;
        self.send(edit, state).await
    }

    async fn send(&self, edit: Edit, state: bool) -> Result<Commit, DataError> {
        let (reply, response) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Apply { edit, state, reply })
            .map_err(|_| DataError::internal("the datastore thread has stopped"))?;
        response.await.map_err(|_| DataError::internal("the datastore thread has stopped"))?
    }
}

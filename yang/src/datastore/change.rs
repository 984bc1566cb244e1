//! What a commit changed, and the hook through which the datastore's owner accepts or refuses a
//! change before it is committed.

use std::sync::Arc;
use std::time::SystemTime;

use super::snapshot::{ContentFilter, Snapshot};
use crate::context::YangContext;
use crate::error::DataError;
use crate::path::DataPath;
use crate::tree::diff::{Change, ChangeOp};
use crate::tree::render::{Layers, RenderOptions, WithDefaults, render_resource};
use crate::tree::{Child, Inner, Meta};

/// Which tree a change set is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The running configuration.
    Running,
    /// The operational state.
    State,
}

/// The changes of one commit.
#[derive(Clone, Debug)]
pub struct ChangeSet {
    /// Tree changed.
    pub layer: Layer,
    /// Version after the commit.
    pub version: u64,
    /// When it was committed.
    pub time: SystemTime,
    /// The changes, created and deleted subtrees reported at their roots.
    pub changes: Vec<Change>,
    /// Who made the edit (see [`super::Edit::with_origin`]).
    pub origin: Option<Arc<str>>,
}

impl ChangeSet {
    pub(crate) fn empty(layer: Layer, version: u64) -> ChangeSet {
        ChangeSet { layer, version, time: SystemTime::now(), changes: Vec::new(), origin: None }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The outcome of a successful edit.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The target did not exist before.
    pub created: bool,
    /// What changed (empty when the edit changed nothing; the version then stays).
    pub changes: Arc<ChangeSet>,
}

/// Renders the content of a change (`old` or `new`) as RFC 7951 JSON, with explicit values only.
pub fn change_content_json(
    ctx: &YangContext,
    change: &Change,
    content: Option<&Child>,
) -> Option<serde_json::Value> {
    let child = content?;
    let schema = ctx.schema();
    let mut root = Inner::empty(Meta::now(0));
    let path = &change.path;
    crate::tree::edit::put(schema, &mut root, path, Some(child.clone()), Meta::now(0));
    let text = render_resource(
        schema,
        Layers { config: Some(&root), state: None },
        path,
        &RenderOptions { defaults: WithDefaults::ReportAll, ..RenderOptions::default() },
    )?;
    serde_json::from_str(&text).ok()
}

/// A change about to be committed, as shown to a [`CommitHook`].
pub struct Transaction<'a> {
    pub(crate) ctx: &'a YangContext,
    pub(crate) candidate: &'a Snapshot,
    pub(crate) changes: &'a [Change],
    pub(crate) origin: Option<&'a str>,
}

impl Transaction<'_> {
    /// The changes.
    pub fn changes(&self) -> &[Change] {
        self.changes
    }

    /// The datastore as it will be if the change is accepted.
    pub fn candidate(&self) -> &Snapshot {
        self.candidate
    }

    /// Who makes the edit (see [`super::Edit::with_origin`]); `None` for RESTCONF clients.
    pub fn origin(&self) -> Option<&str> {
        self.origin
    }

    /// The context.
    pub fn context(&self) -> &YangContext {
        self.ctx
    }

    /// The candidate's resource at `path` as JSON (configuration only).
    pub fn candidate_json(&self, path: &DataPath) -> Option<serde_json::Value> {
        self.candidate.get_json(self.ctx, path, ContentFilter::Config)
    }

    /// Changes of one kind.
    pub fn changes_of(&self, op: ChangeOp) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.op == op)
    }
}

/// The datastore owner's say on a configuration change. It runs on the datastore's own thread
/// after libyang validated the change and before anything is committed; an error refuses the
/// whole change and is reported to the client as given.
pub trait CommitHook: Send + Sync + 'static {
    /// Accepts or refuses a change.
    fn prepare(&self, tx: &Transaction<'_>) -> Result<(), DataError>;
}

impl<F> CommitHook for F
where
    F: Fn(&Transaction<'_>) -> Result<(), DataError> + Send + Sync + 'static,
{
    fn prepare(&self, tx: &Transaction<'_>) -> Result<(), DataError> {
        self(tx)
    }
}

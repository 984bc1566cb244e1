//! The datastore owner: the single thread that applies edits.
//!
//! For each edit it copies the current tree (cheap: structure is shared), applies the edit,
//! revalidates with libyang exactly the validation units the edit touched (or the whole tree when
//! that is cheaper), compares old and new along the touched paths to produce the change set,
//! asks the application's [`CommitHook`], and publishes the result as the new snapshot. Nothing
//! is published unless every step succeeded, so a refused edit leaves no trace.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;

use super::change::{ChangeSet, Commit, CommitHook, Layer, Transaction};
use super::edit::{Edit, EditOp};
use super::snapshot::Snapshot;
use crate::context::YangContext;
use crate::error::DataError;
use crate::ly::{Content, parse_data};
use crate::path::{DataPath, Selector};
use crate::schema::NodeKind;
use crate::tree::diff::{ChangeOp, Dirty, reconcile};
use crate::tree::edit::{graft_unit_lists, merge, put, split_state};
use crate::tree::render::{Layers, Prune, exists, render_document, render_unit_document};
use crate::tree::{Child, Inner, Meta, NodeRef, lookup};

/// Above this many units, one validation of the whole tree is cheaper than unit by unit.
const FULL_VALIDATION_THRESHOLD: usize = 64;

/// What an edit must have revalidated: unit entries (in path order) and the root unit.
#[derive(Debug, Default)]
struct Units {
    entries: BTreeSet<DataPath>,
    root: bool,
}

/// The state owned by the datastore thread.
pub(crate) struct Owner {
    pub(crate) ctx: YangContext,
    pub(crate) published: Arc<ArcSwap<Snapshot>>,
    pub(crate) hook: Option<Arc<dyn CommitHook>>,
    pub(crate) changes: broadcast::Sender<Arc<ChangeSet>>,
}

impl Owner {
    /// Applies a configuration edit.
    pub(crate) fn apply_running(&mut self, edit: Edit) -> Result<Commit, DataError> {
        let snap = self.published.load_full();
        let version = snap.running_version + 1;
        let meta = Meta::now(version);
        let old = &snap.running;
        if let Some(precondition) = &edit.precondition {
            precondition.check(&snap)?;
        }
        let existed = check_existence(&self.ctx, old, &edit)?;
        let mut cand = old.clone();
        let touched = apply_edit(&self.ctx, &mut cand, &edit, meta);
        let (cand, dirty) = self.revalidate(cand, None, &touched, meta)?;
        let mut changes = Vec::new();
        let cand = reconcile(old, &cand, &dirty, meta, &mut changes);
        if changes.is_empty() {
            return Ok(Commit {
                created: false,
                changes: Arc::new(ChangeSet::empty(Layer::Running, snap.running_version)),
            });
        }
        let mut candidate = Snapshot {
            running: cand,
            state: snap.state.clone(),
            running_version: version,
            state_version: snap.state_version,
        };
        if let Some(hook) = &self.hook {
            hook.prepare(&Transaction {
                ctx: &self.ctx,
                candidate: &candidate,
                changes: &changes,
                origin: edit.origin.as_deref(),
            })?;
        }
        self.follow_configuration(&mut candidate, &snap.state, &changes, meta);
        let set = Arc::new(ChangeSet {
            layer: Layer::Running,
            version,
            time: meta.modified,
            changes,
            origin: edit.origin.clone(),
        });
        self.published.store(Arc::new(candidate));
        let _ = self.changes.send(set.clone());
        Ok(Commit { created: !existed, changes: set })
    }

    /// Brings the state of `candidate` in line with its new configuration: state below deleted
    /// configuration goes with it, and state below changed configuration is revalidated (and
    /// dropped, with a warning, when no longer valid: its provider writes it again).
    fn follow_configuration(
        &self,
        candidate: &mut Snapshot,
        previous_state: &Inner,
        changes: &[crate::tree::diff::Change],
        meta: Meta,
    ) {
        let schema = self.ctx.schema();
        let state_before = candidate.state.clone();
        for change in changes {
            if change.op == ChangeOp::Deleted && schema.node(change.path.schema_node()).is_inner() {
                put(schema, &mut candidate.state, &change.path, None, meta);
            }
        }
        let mut checked: BTreeSet<DataPath> = BTreeSet::new();
        for change in changes {
            let Some(unit) = enclosing_unit(&self.ctx, &change.path) else {
                continue;
            };
            if lookup(&candidate.state, &unit).is_none() || !checked.insert(unit.clone()) {
                continue;
            }
            let mut state = candidate.state.clone();
            match self.validate_unit(&candidate.running, &mut state, &unit, Layer::State, meta) {
                Ok(()) => candidate.state = state,
                Err(err) => {
                    tracing::warn!(
                        unit = %unit.to_instance_identifier(schema),
                        error = %err,
                        "state no longer valid after a configuration change; dropped until its \
                         provider writes it again"
                    );
                    put(schema, &mut candidate.state, &unit, None, meta);
                }
            }
        }
        if !candidate.state.ptr_eq(&state_before) {
            candidate.state_version += 1;
            let state_meta = Meta::now(candidate.state_version);
            let mut dirty = Dirty::default();
            dirty.insert(&DataPath::root());
            let mut ignored = Vec::new();
            candidate.state =
                reconcile(previous_state, &candidate.state, &dirty, state_meta, &mut ignored);
        }
    }

    /// Applies a state edit (from the datastore's owner, never from clients).
    pub(crate) fn apply_state(&mut self, edit: Edit) -> Result<Commit, DataError> {
        let snap = self.published.load_full();
        let version = snap.state_version + 1;
        let meta = Meta::now(version);
        require_configured(&self.ctx, &snap.running, &edit.target)?;
        let old = &snap.state;
        if let Some(precondition) = &edit.precondition {
            precondition.check(&snap)?;
        }
        // The owner's state merges create what is missing (a configuration PATCH does not).
        let existed = check_existence(&self.ctx, old, &edit).or_else(|e| match edit.op {
            EditOp::Merge => Ok(false),
            _ => Err(e),
        })?;
        let mut cand = old.clone();
        let touched = apply_edit(&self.ctx, &mut cand, &edit, meta);
        for path in &touched {
            require_configured(&self.ctx, &snap.running, path)?;
        }
        let (cand, dirty) = self.revalidate(cand, Some(&snap.running), &touched, meta)?;
        let mut changes = Vec::new();
        let cand = reconcile(old, &cand, &dirty, meta, &mut changes);
        if changes.is_empty() {
            return Ok(Commit {
                created: false,
                changes: Arc::new(ChangeSet::empty(Layer::State, snap.state_version)),
            });
        }
        let set = Arc::new(ChangeSet {
            layer: Layer::State,
            version,
            time: meta.modified,
            changes,
            origin: edit.origin.clone(),
        });
        self.published.store(Arc::new(Snapshot {
            running: snap.running.clone(),
            state: cand,
            running_version: snap.running_version,
            state_version: version,
        }));
        Ok(Commit { created: !existed, changes: set })
    }

    /// Revalidates what `touched` affects in `cand` (the running tree, or the state tree when
    /// `running` is given). Returns the validated tree and the paths to compare.
    fn revalidate(
        &self,
        mut cand: Inner,
        running: Option<&Inner>,
        touched: &[DataPath],
        meta: Meta,
    ) -> Result<(Inner, Dirty), DataError> {
        let layer = if running.is_some() { Layer::State } else { Layer::Running };
        let units = self.units_of(&cand, touched);
        let mut dirty = Dirty::default();
        for path in touched {
            dirty.insert(path);
        }
        if units.entries.len() + usize::from(units.root) > FULL_VALIDATION_THRESHOLD {
            cand = self.validate_whole(running, &cand, layer, meta, Prune::Nothing)?;
            dirty.insert(&DataPath::root());
            return Ok((cand, dirty));
        }
        for unit in &units.entries {
            let base = running.cloned().unwrap_or_else(|| cand.clone());
            self.validate_unit(&base, &mut cand, unit, layer, meta)?;
            dirty.insert(unit);
        }
        if units.root {
            cand = self.validate_whole(running, &cand, layer, meta, Prune::UnitLists)?;
            dirty.insert(&DataPath::root());
        }
        Ok((cand, dirty))
    }

    /// The validation units `touched` affects: the unit enclosing each touched path (or the
    /// root unit) and every unit entry inside the new content.
    fn units_of(&self, cand: &Inner, touched: &[DataPath]) -> Units {
        let schema = self.ctx.schema();
        let mut units = Units::default();
        for path in touched {
            let exists = lookup(cand, path).is_some();
            match enclosing_unit(&self.ctx, path) {
                Some(unit) if unit == *path => {
                    if exists {
                        units.entries.insert(unit);
                    }
                }
                Some(unit) => {
                    if lookup(cand, &unit).is_some() {
                        units.entries.insert(unit);
                    }
                }
                None => units.root = true,
            }
            if let Some(NodeRef::Inner(node)) = lookup(cand, path) {
                collect_unit_entries(schema, node, path, &mut units);
            } else if let Some(NodeRef::List(list)) = lookup(cand, path) {
                let id = path.schema_node();
                for (key, entry) in list.iter() {
                    let entry_path =
                        path.parent().unwrap_or_default().child(id, Selector::Key(key.clone()));
                    if schema.node(id).unit {
                        units.entries.insert(entry_path.clone());
                    }
                    collect_unit_entries(schema, entry, &entry_path, &mut units);
                }
            }
        }
        units
    }

    /// Validates one unit entry of `tree` and writes the validated entry (with defaults) back.
    /// For the state layer, `base` is the running tree and `tree` the state tree.
    fn validate_unit(
        &self,
        base: &Inner,
        tree: &mut Inner,
        unit: &DataPath,
        layer: Layer,
        meta: Meta,
    ) -> Result<(), DataError> {
        let schema = self.ctx.schema();
        let (layers, content) = match layer {
            Layer::Running => (Layers { config: Some(tree), state: None }, Content::Config),
            Layer::State => (Layers { config: Some(base), state: Some(tree) }, Content::All),
        };
        let doc = render_unit_document(schema, layers, unit);
        let parsed = parse_data(&self.ctx, &doc, content, true, meta)?;
        let Some(NodeRef::Inner(entry)) = lookup(&parsed, unit) else {
            return Err(DataError::internal(format!(
                "validated document lost {}",
                unit.to_instance_identifier(schema)
            )));
        };
        let list = schema.node(unit.schema_node());
        let mut entry = match layer {
            Layer::Running => entry.clone(),
            Layer::State => match split_state(schema, entry, &list.keys) {
                Some(state) => state,
                None => {
                    put(schema, tree, unit, None, meta);
                    return Ok(());
                }
            },
        };
        if let Some(NodeRef::Inner(previous)) = lookup(tree, unit) {
            graft_unit_lists(schema, previous, &mut entry, meta);
        }
        put(schema, tree, unit, Some(Child::Container(entry)), meta);
        Ok(())
    }

    /// Validates `tree` as one document (leaving out unit lists with [`Prune::UnitLists`]) and
    /// returns the validated tree with the unit lists put back.
    fn validate_whole(
        &self,
        running: Option<&Inner>,
        tree: &Inner,
        layer: Layer,
        meta: Meta,
        prune: Prune,
    ) -> Result<Inner, DataError> {
        let schema = self.ctx.schema();
        let (layers, content) = match layer {
            Layer::Running => (Layers { config: Some(tree), state: None }, Content::Config),
            Layer::State => (Layers { config: running, state: Some(tree) }, Content::All),
        };
        let doc = render_document(schema, layers, prune);
        let parsed = parse_data(&self.ctx, &doc, content, true, meta)?;
        let mut out = match layer {
            Layer::Running => parsed,
            Layer::State => split_state(schema, &parsed, &[]).unwrap_or_else(|| Inner::empty(meta)),
        };
        if prune == Prune::UnitLists {
            graft_unit_lists(schema, tree, &mut out, meta);
        }
        Ok(out)
    }
}

/// State below an entry of a configuration list needs that entry in the running configuration.
fn require_configured(
    ctx: &YangContext,
    running: &Inner,
    path: &DataPath,
) -> Result<(), DataError> {
    let schema = ctx.schema();
    let mut prefix = DataPath::root();
    for step in path.steps() {
        prefix.push(step.node, step.selector.clone());
        let def = schema.node(step.node);
        if def.kind == NodeKind::List
            && def.config
            && matches!(step.selector, Selector::Key(_))
            && lookup(running, &prefix).is_none()
        {
            return Err(DataError::invalid_value(format!(
                "there is no configured {} entry {} to hold this state",
                def.name,
                prefix.to_instance_identifier(schema)
            ))
            .at(prefix.to_instance_identifier(schema))
            .with_status(404));
        }
    }
    Ok(())
}

/// Applies `edit` to `tree`; returns the touched paths.
fn apply_edit(ctx: &YangContext, tree: &mut Inner, edit: &Edit, meta: Meta) -> Vec<DataPath> {
    let schema = ctx.schema();
    let mut touched = Vec::new();
    match edit.op {
        EditOp::Create | EditOp::Replace => {
            put(schema, tree, &edit.target, edit.content.clone(), meta);
            touched.push(edit.target.clone());
        }
        EditOp::Merge => {
            if let Some(content) = edit.content.clone() {
                merge(schema, tree, &edit.target, content, meta, &mut touched);
            }
        }
        EditOp::Delete | EditOp::Remove => {
            put(schema, tree, &edit.target, None, meta);
            touched.push(edit.target.clone());
        }
    }
    touched
}

/// Checks the edit's precondition on the target's existence; returns whether it existed.
fn check_existence(ctx: &YangContext, tree: &Inner, edit: &Edit) -> Result<bool, DataError> {
    let schema = ctx.schema();
    let existed =
        if edit.target.is_root() { !tree.is_empty() } else { lookup(tree, &edit.target).is_some() };
    let at = || edit.target.to_instance_identifier(schema);
    match edit.op {
        EditOp::Create if existed => Err(DataError::exists(at())),
        EditOp::Delete if !existed => Err(DataError::not_found(at())),
        // A non-presence container is there whenever its parent is, so a merge into an empty
        // one is a merge, as a read of it is a read.
        EditOp::Merge
            if !existed
                && !edit.target.is_root()
                && !exists(schema, Layers { config: Some(tree), state: None }, &edit.target) =>
        {
            Err(DataError::not_found(at()))
        }
        _ => Ok(existed),
    }
}

/// The innermost entry of a unit list on `path` (the path itself when it names one).
pub(crate) fn enclosing_unit(ctx: &YangContext, path: &DataPath) -> Option<DataPath> {
    let schema = ctx.schema();
    let steps = path.steps();
    (0..steps.len())
        .rev()
        .find(|i| {
            schema.node(steps[*i].node).unit && matches!(steps[*i].selector, Selector::Key(_))
        })
        .map(|i| DataPath::from_steps(steps[..=i].to_vec()))
}

/// Adds every unit entry found below `node` (at `path`).
fn collect_unit_entries(
    schema: &crate::schema::Schema,
    node: &Inner,
    path: &DataPath,
    units: &mut Units,
) {
    for (id, child) in node.children() {
        match child {
            Child::Container(inner) => {
                collect_unit_entries(schema, inner, &path.child(*id, Selector::None), units);
            }
            Child::List(list) => {
                for (key, entry) in list.iter() {
                    let entry_path = path.child(*id, Selector::Key(key.clone()));
                    if schema.node(*id).unit {
                        units.entries.insert(entry_path.clone());
                    }
                    collect_unit_entries(schema, entry, &entry_path, units);
                }
            }
            _ => {}
        }
    }
}

//! Change detection between two versions of a tree, restricted to the paths an edit touched.
//!
//! `reconcile` walks the old and new roots together, following only the *dirty* paths (and
//! everything below them). It reports each difference as a [`Change`] and returns the new root
//! with unchanged subtrees replaced by the old ones (so structure stays shared and their
//! metadata keeps its version) and changed interior nodes stamped with the commit's [`Meta`].

use std::collections::HashMap;

use super::{Child, Inner, ListNode, Meta};
use crate::path::{DataPath, Selector};
use crate::schema::SchemaId;

/// What happened to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOp {
    /// It did not exist and now does.
    Created,
    /// It existed and now does not.
    Deleted,
    /// Its value changed (leaves and leaf-lists).
    Modified,
}

/// One difference between two trees. Created and deleted subtrees are reported once, at their
/// root; list entries are reported as `Child::Container` holding the entry.
#[derive(Clone, Debug)]
pub struct Change {
    /// Kind of change.
    pub op: ChangeOp,
    /// Where.
    pub path: DataPath,
    /// Content before (deleted and modified).
    pub old: Option<Child>,
    /// Content after (created and modified).
    pub new: Option<Child>,
}

/// The paths an edit touched, as a trie.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    whole: bool,
    children: HashMap<(SchemaId, Selector), Dirty>,
}

impl Dirty {
    /// Marks `path` and everything below it.
    pub(crate) fn insert(&mut self, path: &DataPath) {
        let mut node = self;
        for step in path.steps() {
            if node.whole {
                return;
            }
            node = node.children.entry((step.node, step.selector.clone())).or_default();
        }
        node.whole = true;
    }
}

/// Compares `old` and `new` along `dirty`; see the module documentation.
pub(crate) fn reconcile(
    old: &Inner,
    new: &Inner,
    dirty: &Dirty,
    meta: Meta,
    changes: &mut Vec<Change>,
) -> Inner {
    let (out, _) = walk_inner(old, new, &DataPath::root(), Some(dirty), false, meta, changes);
    out
}

fn walk_inner(
    old: &Inner,
    new: &Inner,
    path: &DataPath,
    dirty: Option<&Dirty>,
    whole: bool,
    meta: Meta,
    changes: &mut Vec<Change>,
) -> (Inner, bool) {
    if old.ptr_eq(new) {
        return (old.clone(), false);
    }
    let whole = whole || dirty.is_some_and(|d| d.whole);
    let ids: Vec<SchemaId> = if whole {
        let mut ids: Vec<SchemaId> =
            old.children().iter().chain(new.children()).map(|(id, _)| *id).collect();
        ids.sort();
        ids.dedup();
        ids
    } else {
        let mut ids: Vec<SchemaId> =
            dirty.map(|d| d.children.keys().map(|(id, _)| *id).collect()).unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut result = new.clone();
    let mut changed = false;
    for id in ids {
        let here = path.child(id, Selector::None);
        match (old.child(id), new.child(id)) {
            (None, None) => {}
            (Some(o), None) => {
                changed = true;
                report_removed(o, &here, id, path, changes);
            }
            (None, Some(n)) => {
                changed = true;
                report_added(n, &here, id, path, changes);
            }
            (Some(o), Some(n)) => {
                let sub = dirty.and_then(|d| d.children.get(&(id, Selector::None)));
                let (merged, child_changed) = match (o, n) {
                    (Child::Container(oc), Child::Container(nc)) => {
                        let (r, c) = walk_inner(oc, nc, &here, sub, whole, meta, changes);
                        (Child::Container(r), c)
                    }
                    (Child::List(ol), Child::List(nl)) => walk_list(
                        ol,
                        nl,
                        id,
                        path,
                        dirty,
                        whole || sub.is_some_and(|s| s.whole),
                        meta,
                        changes,
                    ),
                    (o, n) if o.same_content(n) => (o.clone(), false),
                    (o, n) => {
                        changes.push(Change {
                            op: ChangeOp::Modified,
                            path: here.clone(),
                            old: Some(o.clone()),
                            new: Some(n.clone()),
                        });
                        (n.clone(), true)
                    }
                };
                if child_changed {
                    changed = true;
                }
                result.set_child(id, merged);
            }
        }
    }
    if changed {
        result.set_meta(meta);
        (result, true)
    } else {
        (old.clone(), false)
    }
}

#[allow(clippy::too_many_arguments)]
fn walk_list(
    old: &ListNode,
    new: &ListNode,
    id: SchemaId,
    parent: &DataPath,
    dirty: Option<&Dirty>,
    whole: bool,
    meta: Meta,
    changes: &mut Vec<Change>,
) -> (Child, bool) {
    if old.entries.ptr_eq(&new.entries) && old.order == new.order {
        return (Child::List(old.clone()), false);
    }
    let keys: Vec<super::Key> = if whole {
        let mut keys: Vec<super::Key> =
            old.entries.keys().chain(new.entries.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys
    } else {
        dirty
            .map(|d| {
                d.children
                    .keys()
                    .filter_map(|(n, sel)| match sel {
                        Selector::Key(k) if *n == id => Some(k.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut result = new.clone();
    let mut changed = false;
    for key in keys {
        let here = parent.child(id, Selector::Key(key.clone()));
        let sub = dirty.and_then(|d| d.children.get(&(id, Selector::Key(key.clone()))));
        match (old.get(&key), new.get(&key)) {
            (None, None) => {}
            (Some(o), None) => {
                changed = true;
                changes.push(Change {
                    op: ChangeOp::Deleted,
                    path: here,
                    old: Some(Child::Container(o.clone())),
                    new: None,
                });
            }
            (None, Some(n)) => {
                changed = true;
                changes.push(Change {
                    op: ChangeOp::Created,
                    path: here,
                    old: None,
                    new: Some(Child::Container(n.clone())),
                });
            }
            (Some(o), Some(n)) => {
                let (entry, c) = walk_inner(o, n, &here, sub, whole, meta, changes);
                if c {
                    changed = true;
                }
                result.insert(key, entry);
            }
        }
    }
    if !changed && old.order != new.order {
        changed = true;
    }
    if changed { (Child::List(result), true) } else { (Child::List(old.clone()), false) }
}

fn report_removed(
    old: &Child,
    here: &DataPath,
    id: SchemaId,
    parent: &DataPath,
    changes: &mut Vec<Change>,
) {
    match old {
        Child::List(list) => {
            for (key, entry) in list.iter() {
                changes.push(Change {
                    op: ChangeOp::Deleted,
                    path: parent.child(id, Selector::Key(key.clone())),
                    old: Some(Child::Container(entry.clone())),
                    new: None,
                });
            }
        }
        other => changes.push(Change {
            op: ChangeOp::Deleted,
            path: here.clone(),
            old: Some(other.clone()),
            new: None,
        }),
    }
}

fn report_added(
    new: &Child,
    here: &DataPath,
    id: SchemaId,
    parent: &DataPath,
    changes: &mut Vec<Change>,
) {
    match new {
        Child::List(list) => {
            for (key, entry) in list.iter() {
                changes.push(Change {
                    op: ChangeOp::Created,
                    path: parent.child(id, Selector::Key(key.clone())),
                    old: None,
                    new: Some(Child::Container(entry.clone())),
                });
            }
        }
        other => changes.push(Change {
            op: ChangeOp::Created,
            path: here.clone(),
            old: None,
            new: Some(other.clone()),
        }),
    }
}

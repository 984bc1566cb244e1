//! Edits on trees: replacing, merging and deleting subtrees with path copying, and the helpers
//! that move content between trees during validation (grafting unit lists, splitting state off a
//! merged tree).
//!
//! Every function takes the root by `&mut Inner` and copies only the interior nodes on the way
//! to the change ([`Inner`] is copy-on-write), so the caller's previous root stays untouched.

use std::sync::Arc;

use super::{Child, Inner, Key, Leaf, ListNode, Meta};
use crate::path::{DataPath, PathStep, Selector};
use crate::schema::{NodeKind, Schema, SchemaId};

/// Sets the node at `path` to `content` (creating missing containers and list entries on the
/// way; list entries are created with their key leaves), or deletes it when `content` is `None`.
/// Returns whether something existed there before.
pub(crate) fn put(
    schema: &Schema,
    root: &mut Inner,
    path: &DataPath,
    content: Option<Child>,
    meta: Meta,
) -> bool {
    let Some((last, ancestors)) = path.steps().split_last() else {
        let existed = !root.is_empty();
        *root = match content {
            Some(Child::Container(new_root)) => new_root,
            _ => Inner::empty(meta),
        };
        return existed;
    };
    let Some(parent) = descend_mut(schema, root, ancestors, meta, content.is_some()) else {
        return false;
    };
    put_child(schema, parent, last, content)
}

/// Walks to the node at `steps`, copying on the way; creates missing nodes when `create`.
fn descend_mut<'a>(
    schema: &Schema,
    mut node: &'a mut Inner,
    steps: &[PathStep],
    meta: Meta,
    create: bool,
) -> Option<&'a mut Inner> {
    for step in steps {
        let def = schema.node(step.node);
        if node.child(step.node).is_none() {
            if !create {
                return None;
            }
            let fresh = match def.kind {
                NodeKind::List => Child::List(ListNode::new(def.user_ordered)),
                _ => Child::Container(Inner::empty(meta)),
            };
            node.set_child(step.node, fresh);
        }
        node = match (node.child_mut(step.node)?, &step.selector) {
            (Child::Container(c), Selector::None) => c,
            (Child::List(list), Selector::Key(key)) => {
                if list.get(key).is_none() {
                    if !create {
                        return None;
                    }
                    list.insert(key.clone(), entry_with_keys(schema, step.node, key, meta));
                }
                list.entries.get_mut(key)?
            }
            _ => return None,
        };
    }
    Some(node)
}

/// A list entry holding only its key leaves.
pub(crate) fn entry_with_keys(schema: &Schema, list: SchemaId, key: &Key, meta: Meta) -> Inner {
    let def = schema.node(list);
    let children = def
        .keys
        .iter()
        .zip(key.values())
        .map(|(id, v)| (*id, Child::Leaf(Leaf { value: v.clone(), default: false })))
        .collect();
    Inner::from_children(children, meta)
}

fn put_child(schema: &Schema, parent: &mut Inner, step: &PathStep, content: Option<Child>) -> bool {
    let def = schema.node(step.node);
    match &step.selector {
        Selector::None => match content {
            Some(child) => {
                let existed = parent.child(step.node).is_some();
                parent.set_child(step.node, child);
                existed
            }
            None => parent.remove_child(step.node).is_some(),
        },
        Selector::Key(key) => {
            let existed =
                matches!(parent.child(step.node), Some(Child::List(l)) if l.get(key).is_some());
            match content {
                Some(Child::Container(entry)) => {
                    if !matches!(parent.child(step.node), Some(Child::List(_))) {
                        parent.set_child(step.node, Child::List(ListNode::new(def.user_ordered)));
                    }
                    if let Some(Child::List(list)) = parent.child_mut(step.node) {
                        list.insert(key.clone(), entry);
                    }
                }
                Some(_) => {}
                None => {
                    let now_empty = match parent.child_mut(step.node) {
                        Some(Child::List(list)) => {
                            list.remove(key);
                            list.is_empty()
                        }
                        _ => false,
                    };
                    if now_empty {
                        parent.remove_child(step.node);
                    }
                }
            }
            existed
        }
        Selector::Value(value) => {
            let current: Vec<Leaf> = match parent.child(step.node) {
                Some(Child::LeafList(l)) => l.to_vec(),
                _ => Vec::new(),
            };
            let existed = current.iter().any(|l| &l.value == value);
            let mut next: Vec<Leaf> = current.into_iter().filter(|l| &l.value != value).collect();
            if let Some(Child::Leaf(leaf)) = content {
                next.push(leaf);
            }
            if next.is_empty() {
                parent.remove_child(step.node);
            } else {
                parent.set_child(step.node, Child::LeafList(next.into()));
            }
            existed
        }
    }
}

/// Merges `patch` into the node at `path` (YANG merge: leaves replaced, leaf-lists united,
/// containers and list entries merged member by member). Records in `touched` the path of every
/// subtree the patch created or replaced wholesale, and of every leaf it set.
pub(crate) fn merge(
    schema: &Schema,
    root: &mut Inner,
    path: &DataPath,
    patch: Child,
    meta: Meta,
    touched: &mut Vec<DataPath>,
) {
    match path.steps().split_last() {
        None => {
            if let Child::Container(patch_root) = patch {
                merge_inner(schema, root, &patch_root, path, meta, touched);
            }
        }
        Some((last, ancestors)) => {
            let Some(parent) = descend_mut(schema, root, ancestors, meta, true) else {
                return;
            };
            let parent_path = DataPath::from_steps(ancestors.to_vec());
            merge_child(
                schema,
                parent,
                last.node,
                &last.selector,
                patch,
                &parent_path,
                meta,
                touched,
            );
        }
    }
}

fn merge_inner(
    schema: &Schema,
    target: &mut Inner,
    patch: &Inner,
    at: &DataPath,
    meta: Meta,
    touched: &mut Vec<DataPath>,
) {
    for (id, child) in patch.children() {
        match child {
            Child::List(list) => {
                for (key, entry) in list.iter() {
                    merge_child(
                        schema,
                        target,
                        *id,
                        &Selector::Key(key.clone()),
                        Child::Container(entry.clone()),
                        at,
                        meta,
                        touched,
                    );
                }
            }
            other => {
                merge_child(schema, target, *id, &Selector::None, other.clone(), at, meta, touched)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn merge_child(
    schema: &Schema,
    parent: &mut Inner,
    id: SchemaId,
    selector: &Selector,
    patch: Child,
    parent_path: &DataPath,
    meta: Meta,
    touched: &mut Vec<DataPath>,
) {
    let here = parent_path.child(id, selector.clone());
    match (selector, patch) {
        (Selector::Key(key), Child::Container(entry)) => {
            let existing = match parent.child(id) {
                Some(Child::List(l)) => l.get(key).cloned(),
                _ => None,
            };
            match existing {
                Some(mut current) => {
                    merge_inner(schema, &mut current, &entry, &here, meta, touched);
                    put_child(
                        schema,
                        parent,
                        &PathStep { node: id, selector: selector.clone() },
                        Some(Child::Container(current)),
                    );
                }
                None => {
                    touched.push(here);
                    put_child(
                        schema,
                        parent,
                        &PathStep { node: id, selector: selector.clone() },
                        Some(Child::Container(entry)),
                    );
                }
            }
        }
        (Selector::None, Child::List(list)) => {
            for (key, entry) in list.iter() {
                merge_child(
                    schema,
                    parent,
                    id,
                    &Selector::Key(key.clone()),
                    Child::Container(entry.clone()),
                    parent_path,
                    meta,
                    touched,
                );
            }
        }
        (Selector::None, Child::Container(patch_inner)) => match parent.child(id) {
            Some(Child::Container(current)) => {
                let mut current = current.clone();
                merge_inner(schema, &mut current, &patch_inner, &here, meta, touched);
                parent.set_child(id, Child::Container(current));
            }
            _ => {
                touched.push(here);
                parent.set_child(id, Child::Container(patch_inner));
            }
        },
        (Selector::None, Child::LeafList(new)) => {
            let mut all: Vec<Leaf> = match parent.child(id) {
                Some(Child::LeafList(old)) => old.to_vec(),
                _ => Vec::new(),
            };
            for leaf in new.iter() {
                if !all.iter().any(|l| l.value == leaf.value) {
                    all.push(leaf.clone());
                }
            }
            touched.push(here);
            parent.set_child(id, Child::LeafList(Arc::from(all)));
        }
        (Selector::Value(_), leaf @ Child::Leaf(_)) => {
            touched.push(here.clone());
            put_child(schema, parent, here.last().expect("non-empty path"), Some(leaf));
        }
        (_, other) => {
            touched.push(here);
            parent.set_child(id, other);
        }
    }
}

/// Copies into `into` every unit-list (see [`crate::schema::units`]) found below `from`, so that
/// a validated document, from which unit entries were pruned, gets them back. Recurses through
/// containers and through entries of non-unit lists present on both sides.
pub(crate) fn graft_unit_lists(schema: &Schema, from: &Inner, into: &mut Inner, meta: Meta) {
    for (id, child) in from.children() {
        let def = schema.node(*id);
        match child {
            Child::List(list) if def.unit => into.set_child(*id, Child::List(list.clone())),
            Child::List(list) => {
                if let Some(Child::List(target)) = into.child_mut(*id) {
                    for (key, entry) in list.iter() {
                        if let Some(t) = target.entries.get_mut(key) {
                            graft_unit_lists(schema, entry, t, meta);
                        }
                    }
                }
            }
            Child::Container(inner) => {
                if !has_unit_lists(schema, inner) {
                    continue;
                }
                if into.child(*id).is_none() {
                    into.set_child(*id, Child::Container(Inner::empty(meta)));
                }
                if let Some(Child::Container(target)) = into.child_mut(*id) {
                    graft_unit_lists(schema, inner, target, meta);
                }
            }
            _ => {}
        }
    }
}

fn has_unit_lists(schema: &Schema, node: &Inner) -> bool {
    node.children().iter().any(|(id, child)| match child {
        Child::List(list) => {
            schema.node(*id).unit || list.iter().any(|(_, e)| has_unit_lists(schema, e))
        }
        Child::Container(c) => has_unit_lists(schema, c),
        _ => false,
    })
}

/// The state part of a merged tree: state nodes, with the containers, list entries and keys
/// needed to reach them. `None` when there is no state below `node`.
pub(crate) fn split_state(schema: &Schema, node: &Inner, keys: &[SchemaId]) -> Option<Inner> {
    let mut children = Vec::new();
    for (id, child) in node.children() {
        let def = schema.node(*id);
        if !def.config {
            children.push((*id, child.clone()));
            continue;
        }
        match child {
            Child::Container(inner) => {
                if let Some(sub) = split_state(schema, inner, &[]) {
                    children.push((*id, Child::Container(sub)));
                }
            }
            Child::List(list) => {
                let mut out = ListNode::new(def.user_ordered);
                for (key, entry) in list.iter() {
                    if let Some(sub) = split_state(schema, entry, &def.keys) {
                        out.insert(key.clone(), sub);
                    }
                }
                if !out.is_empty() {
                    children.push((*id, Child::List(out)));
                }
            }
            _ => {}
        }
    }
    if children.is_empty() {
        return None;
    }
    for key in keys {
        if let Some(leaf) = node.child(*key) {
            children.push((*key, leaf.clone()));
        }
    }
    Some(Inner::from_children(children, node.meta()))
}

/// The configuration part of a merged tree: everything except state nodes (and containers or
/// list entries left empty without them, keys aside).
pub(crate) fn split_config(schema: &Schema, node: &Inner) -> Inner {
    let mut children = Vec::new();
    for (id, child) in node.children() {
        let def = schema.node(*id);
        if !def.config {
            continue;
        }
        match child {
            Child::Container(inner) => {
                let sub = split_config(schema, inner);
                if !sub.is_empty() || def.presence {
                    children.push((*id, Child::Container(sub)));
                }
            }
            Child::List(list) => {
                let mut out = ListNode::new(def.user_ordered);
                for (key, entry) in list.iter() {
                    out.insert(key.clone(), split_config(schema, entry));
                }
                children.push((*id, Child::List(out)));
            }
            other => children.push((*id, other.clone())),
        }
    }
    Inner::from_children(children, node.meta())
}

//! Validation units: which lists can have their entries validated one at a time.
//!
//! Validating a whole datastore with libyang costs time in proportion to its size (about 0.6 s
//! for 50,000 ETSI 015 links), far too slow to repeat on every write. Most writes touch one list
//! entry, and for most YANG lists an entry's validity depends only on the entry itself and on the
//! small part of the tree above it. A list `L` is a *unit list* when:
//!
//! 1. `L` has no `min-elements`, `max-elements` or `unique` (constraints across its entries);
//! 2. every `when`, `must` and leafref defined inside `L` reads only nodes inside `L`;
//! 3. no `when`, `must`, leafref or `unique` defined outside `L` reads a node inside `L`, and no
//!    instance-identifier that requires its target exists anywhere (it could read anything);
//! 4. `L` is configuration, or state below a configuration list entry (other state-only lists
//!    are validated with the tree that holds them);
//! 5. the *skeleton* of `L` (its ancestors, the non-list content hanging off them, and the
//!    top-level nodes of the same module) carries no constraint that reads outside the skeleton,
//!    and every list pruned from it allows zero entries.
//!
//! Then an entry of `L` is valid in the whole tree exactly when the document made of the skeleton
//! and that entry (with entries of nested unit lists pruned) is valid, because nothing outside
//! the entry can change its verdict and nothing inside it can change anyone else's. The rest of
//! the tree (everything outside unit entries) forms the *root unit*, validated as one document.
//! The XPath atoms come from libyang's own expression analysis (`lys_find_expr_atoms`).

use std::collections::HashSet;

use super::{NodeKind, Schema, SchemaId};
use crate::libyang_ffi::ConstraintAtoms;

/// One constraint with its atoms mapped into the schema model.
struct Constraint {
    at: SchemaId,
    /// Atoms; `None` for nodes outside the data model (other trees, operations).
    atoms: Vec<Option<SchemaId>>,
    unbounded: bool,
    unique: bool,
}

/// Sets [`super::NodeDef::unit`] on every list that satisfies the five conditions above.
pub(crate) fn mark_units(schema: &mut Schema, raw: &[(SchemaId, ConstraintAtoms)]) {
    let constraints: Vec<Constraint> = raw
        .iter()
        .map(|(at, atoms)| Constraint {
            at: *at,
            atoms: atoms.nodes.iter().map(|addr| schema.by_addr(*addr)).collect(),
            unbounded: atoms.unbounded,
            unique: atoms.unique,
        })
        .collect();
    let lists: Vec<SchemaId> = (0..schema.nodes.len())
        .map(|i| SchemaId(i as u32))
        .filter(|id| schema.node(*id).kind == NodeKind::List && in_data_tree(schema, *id))
        .collect();
    for list in lists {
        if is_unit_list(schema, list, &constraints) {
            schema.nodes[list.index()].unit = true;
        }
    }
}

/// Whether `id` belongs to the datastore tree (not to an operation or notification).
fn in_data_tree(schema: &Schema, id: SchemaId) -> bool {
    let mut cur = Some(id);
    while let Some(n) = cur {
        match schema.node(n).kind {
            NodeKind::Root => return true,
            NodeKind::Rpc | NodeKind::Notification | NodeKind::Input | NodeKind::Output => {
                return false;
            }
            _ => cur = schema.node(n).parent,
        }
    }
    false
}

fn is_unit_list(schema: &Schema, list: SchemaId, constraints: &[Constraint]) -> bool {
    let def = schema.node(list);
    if def.min_elements > 0 || def.max_elements.is_some() {
        return false;
    }
    // A state-only list outside any configuration list (a tree that is all state, such as the
    // ETSI 018 network) has keys that are state themselves, which the unit split of the state
    // layer (state hanging below configuration entries) does not take apart; such lists are
    // validated with the tree that holds them.
    if !def.config && !below_configuration_list(schema, list) {
        return false;
    }
    let Some(skeleton) = skeleton_of(schema, list) else {
        return false;
    };
    let inside = |n: SchemaId| schema.is_ancestor_or_self(list, n);
    for c in constraints {
        if c.at == list && c.unique {
            return false;
        }
        if inside(c.at) {
            if c.unbounded || c.atoms.iter().any(|a| !matches!(a, Some(n) if inside(*n))) {
                return false;
            }
        } else {
            if c.unbounded || c.atoms.iter().any(|a| matches!(a, Some(n) if inside(*n))) {
                return false;
            }
            if skeleton.contains(&c.at)
                && c.atoms.iter().any(|a| !matches!(a, Some(n) if skeleton.contains(n)))
            {
                return false;
            }
        }
    }
    true
}

/// Whether an ancestor of `id` is a configuration list.
fn below_configuration_list(schema: &Schema, id: SchemaId) -> bool {
    let mut cur = schema.node(id).parent;
    while let Some(n) = cur {
        let def = schema.node(n);
        if def.kind == NodeKind::List && def.config {
            return true;
        }
        cur = def.parent;
    }
    false
}

/// The skeleton of `list`: its ancestors and the non-list content around them, plus the other
/// top-level nodes of its module. `None` if a list pruned from it must have entries.
pub(crate) fn skeleton_of(schema: &Schema, list: SchemaId) -> Option<HashSet<SchemaId>> {
    let mut skeleton = HashSet::new();
    let module = &schema.node(list).module;
    let mut chain = Vec::new();
    let mut cur = schema.node(list).parent;
    while let Some(id) = cur {
        chain.push(id);
        cur = schema.node(id).parent;
    }
    for ancestor in chain {
        let def = schema.node(ancestor);
        if def.kind == NodeKind::List && def.min_elements > 1 {
            return None;
        }
        if def.kind != NodeKind::Root {
            skeleton.insert(ancestor);
        }
        for child in &def.children {
            if schema.is_ancestor_or_self(*child, list) {
                continue;
            }
            if def.kind == NodeKind::Root && schema.node(*child).module != *module {
                continue;
            }
            add_non_list(schema, *child, &mut skeleton)?;
        }
    }
    Some(skeleton)
}

fn add_non_list(schema: &Schema, id: SchemaId, out: &mut HashSet<SchemaId>) -> Option<()> {
    let def = schema.node(id);
    if def.kind == NodeKind::List {
        return (def.min_elements == 0).then_some(());
    }
    out.insert(id);
    for child in &def.children {
        add_non_list(schema, *child, out)?;
    }
    Some(())
}

//! Builds the [`Schema`] model from a compiled libyang context.
//!
//! Walks every implemented module's data nodes, RPCs and notifications depth-first, flattening
//! choice and case nodes, and records for each node what the datastore needs: names, kind,
//! config flag, keys, ordering, defaults and value typing. The validation-unit analysis
//! ([`super::units`]) runs last, over the finished model.

use std::collections::{BTreeMap, HashMap};

use yang5::context::Context;
use yang5::schema::{DataValueType, SchemaNode, SchemaNodeKind};

use super::{ModuleDef, NodeDef, NodeKind, Schema, SchemaId, ValueKind};
use crate::libyang_ffi;

/// Modules libyang compiles in by itself.
const LIBYANG_INTERNAL: &[&str] = &[
    "ietf-yang-metadata",
    "yang",
    "default",
    "ietf-inet-types",
    "ietf-yang-types",
    "ietf-yang-schema-mount",
    "ietf-yang-structure-ext",
    "ietf-datastores",
    "ietf-yang-library",
];

struct Builder {
    nodes: Vec<NodeDef>,
    by_addr: HashMap<usize, SchemaId>,
    constraints: Vec<(SchemaId, libyang_ffi::ConstraintAtoms)>,
}

/// Builds the schema model of every implemented module in `ctx`.
pub(crate) fn build(ctx: &Context) -> Schema {
    let mut builder =
        Builder { nodes: Vec::new(), by_addr: HashMap::new(), constraints: Vec::new() };
    builder.push(blank_def(SchemaId::ROOT, String::new(), String::new(), NodeKind::Root, None, 0));
    let mut modules = Vec::new();
    let mut operations = BTreeMap::new();
    let mut notifications = BTreeMap::new();
    for module in ctx.modules(false) {
        modules.push(ModuleDef {
            name: module.name().to_owned(),
            revision: module.revision().map(str::to_owned),
            namespace: module.namespace().to_owned(),
            internal: LIBYANG_INTERNAL.contains(&module.name()),
            implemented: module.is_implemented(),
        });
        if !module.is_implemented() {
            continue;
        }
        for node in data_nodes(module.data()) {
            builder.add(&node, SchemaId::ROOT);
        }
        for rpc in module.rpcs() {
            let id = builder.add_operation(&rpc);
            operations.insert(builder.nodes[id.index()].qualified_name(), id);
        }
        for notification in module.notifications() {
            let id = builder.add(&notification, SchemaId::ROOT);
            // Notifications are not data children of the root.
            builder.nodes[0].children.retain(|c| *c != id);
            builder.nodes[0].by_name.retain(|_, c| *c != id);
            notifications.insert(builder.nodes[id.index()].qualified_name(), id);
        }
    }
    let mut top_by_bare_name: HashMap<String, Vec<SchemaId>> = HashMap::new();
    for id in builder.nodes[0].children.clone() {
        top_by_bare_name.entry(builder.nodes[id.index()].name.clone()).or_default().push(id);
    }
    let mut schema = Schema {
        nodes: builder.nodes,
        by_addr: builder.by_addr,
        operations,
        notifications,
        modules,
        top_by_bare_name,
    };
    compute_config_state(&mut schema, SchemaId::ROOT);
    super::units::mark_units(&mut schema, &builder.constraints);
    schema
}

/// The data nodes among `siblings`, with choice and case nodes replaced by their data children.
fn data_nodes<'a>(siblings: impl Iterator<Item = SchemaNode<'a>>) -> Vec<SchemaNode<'a>> {
    let mut out = Vec::new();
    for node in siblings {
        match node.kind() {
            SchemaNodeKind::Choice | SchemaNodeKind::Case => {
                out.extend(data_nodes(node.children()))
            }
            SchemaNodeKind::Action | SchemaNodeKind::Notification => {}
            _ => out.push(node),
        }
    }
    out
}

fn blank_def(
    id: SchemaId,
    name: String,
    module: String,
    kind: NodeKind,
    parent: Option<SchemaId>,
    addr: usize,
) -> NodeDef {
    NodeDef {
        id,
        qualified: format!("{module}:{name}"),
        name,
        module,
        kind,
        config: false,
        parent,
        children: Vec::new(),
        keys: Vec::new(),
        user_ordered: false,
        presence: false,
        implicit: false,
        mandatory: false,
        is_key: false,
        default_value: None,
        value_kind: None,
        min_elements: 0,
        max_elements: None,
        unit: false,
        has_config: false,
        has_state: false,
        addr,
        by_name: HashMap::new(),
    }
}

impl Builder {
    fn next_id(&self) -> SchemaId {
        SchemaId(u32::try_from(self.nodes.len()).expect("schema has fewer than 2^32 nodes"))
    }

    fn push(&mut self, def: NodeDef) -> SchemaId {
        let id = def.id;
        if def.addr != 0 {
            self.by_addr.insert(def.addr, id);
        }
        if let Some(parent) = def.parent {
            let qualified = def.qualified_name();
            let parent_def = &mut self.nodes[parent.index()];
            parent_def.children.push(id);
            parent_def.by_name.insert(qualified, id);
        }
        self.nodes.push(def);
        id
    }

    fn add(&mut self, node: &SchemaNode<'_>, parent: SchemaId) -> SchemaId {
        let kind = match node.kind() {
            SchemaNodeKind::Container => NodeKind::Container,
            SchemaNodeKind::List => NodeKind::List,
            SchemaNodeKind::Leaf => NodeKind::Leaf,
            SchemaNodeKind::LeafList => NodeKind::LeafList,
            SchemaNodeKind::AnyData | SchemaNodeKind::AnyXml => NodeKind::AnyData,
            SchemaNodeKind::Notification => NodeKind::Notification,
            SchemaNodeKind::Rpc | SchemaNodeKind::Action => NodeKind::Rpc,
            SchemaNodeKind::Input => NodeKind::Input,
            SchemaNodeKind::Output => NodeKind::Output,
            SchemaNodeKind::Choice | SchemaNodeKind::Case => {
                unreachable!("choice and case nodes are flattened before add()")
            }
        };
        let id = self.next_id();
        let mut def = blank_def(
            id,
            node.name().to_owned(),
            node.module().name().to_owned(),
            kind,
            Some(parent),
            node.as_raw() as usize,
        );
        let in_operation = node.is_within_input()
            || node.is_within_output()
            || node.is_within_notification()
            || kind == NodeKind::Notification;
        def.config = !in_operation && node.is_config();
        def.mandatory = node.is_mandatory() || node.is_list_key();
        def.is_key = node.is_list_key();
        def.presence = kind == NodeKind::Container && !node.is_np_container();
        def.implicit = kind == NodeKind::Container
            && !def.presence
            && !in_operation
            && !libyang_ffi::has_when(node)
            && !node.ancestors().next().is_some_and(|p| p.kind() == SchemaNodeKind::Case);
        if matches!(kind, NodeKind::List | NodeKind::LeafList) {
            def.user_ordered = node.is_user_ordered();
            def.min_elements = node.min_elements().unwrap_or(0);
            def.max_elements = node.max_elements().filter(|m| *m != u32::MAX);
        }
        if matches!(kind, NodeKind::Leaf | NodeKind::LeafList) {
            def.value_kind = Some(value_kind(node));
            if kind == NodeKind::Leaf && node.has_default() {
                def.default_value = node.default_value_canonical().ok().flatten();
            }
        }
        self.push(def);
        if !in_operation {
            let atoms = libyang_ffi::constraint_atoms(node);
            if atoms.any {
                self.constraints.push((id, atoms));
            }
        }
        for child in data_nodes(node.children()) {
            self.add(&child, id);
        }
        if kind == NodeKind::List {
            let keys: Vec<SchemaId> = self.nodes[id.index()]
                .children
                .iter()
                .copied()
                .filter(|c| self.nodes[c.index()].is_key)
                .collect();
            self.nodes[id.index()].keys = keys;
        }
        id
    }

    fn add_operation(&mut self, rpc: &SchemaNode<'_>) -> SchemaId {
        let id = self.next_id();
        let module = rpc.module().name().to_owned();
        let def = blank_def(
            id,
            rpc.name().to_owned(),
            module.clone(),
            NodeKind::Rpc,
            None,
            rpc.as_raw() as usize,
        );
        self.push(def);
        for (name, kind, children) in [
            ("input", NodeKind::Input, rpc.input().map(|(c, _)| data_nodes(c))),
            ("output", NodeKind::Output, rpc.output().map(|(c, _)| data_nodes(c))),
        ] {
            let io = self.next_id();
            self.push(blank_def(io, name.to_owned(), module.clone(), kind, Some(id), 0));
            for child in children.unwrap_or_default() {
                self.add(&child, io);
            }
        }
        id
    }
}

fn value_kind(node: &SchemaNode<'_>) -> ValueKind {
    let Some(leaf_type) = node.leaf_type() else {
        return ValueKind::Text;
    };
    let base = match leaf_type.base_type() {
        DataValueType::LeafRef => {
            leaf_type.leafref_real_type().map(|t| t.base_type()).unwrap_or(DataValueType::String)
        }
        other => other,
    };
    if base == DataValueType::Union {
        let members = libyang_ffi::union_member_types(node);
        return ValueKind::Union(members.into_iter().map(kind_of_base).collect());
    }
    kind_of_base(base)
}

fn kind_of_base(base: DataValueType) -> ValueKind {
    match base {
        DataValueType::Int8 => ValueKind::Integer { bits: 8, signed: true },
        DataValueType::Int16 => ValueKind::Integer { bits: 16, signed: true },
        DataValueType::Int32 => ValueKind::Integer { bits: 32, signed: true },
        DataValueType::Int64 => ValueKind::Integer { bits: 64, signed: true },
        DataValueType::Uint8 => ValueKind::Integer { bits: 8, signed: false },
        DataValueType::Uint16 => ValueKind::Integer { bits: 16, signed: false },
        DataValueType::Uint32 => ValueKind::Integer { bits: 32, signed: false },
        DataValueType::Uint64 => ValueKind::Integer { bits: 64, signed: false },
        DataValueType::Dec64 => ValueKind::Decimal64,
        DataValueType::Bool => ValueKind::Boolean,
        DataValueType::Empty => ValueKind::Empty,
        DataValueType::IdentityRef => ValueKind::IdentityRef,
        _ => ValueKind::Text,
    }
}

/// Fills `has_config` and `has_state` bottom-up.
fn compute_config_state(schema: &mut Schema, id: SchemaId) -> (bool, bool) {
    let children = schema.nodes[id.index()].children.clone();
    let def = &schema.nodes[id.index()];
    let is_data = !matches!(
        def.kind,
        NodeKind::Root
            | NodeKind::Rpc
            | NodeKind::Input
            | NodeKind::Output
            | NodeKind::Notification
    );
    let (mut has_config, mut has_state) = (is_data && def.config, is_data && !def.config);
    for child in children {
        let (c, s) = compute_config_state(schema, child);
        has_config |= c;
        has_state |= s;
    }
    let def = &mut schema.nodes[id.index()];
    def.has_config = has_config;
    def.has_state = has_state;
    (has_config, has_state)
}

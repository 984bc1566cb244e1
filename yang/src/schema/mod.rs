//! qkdn's model of the compiled YANG schema: every data node of every implemented module, as
//! plain Rust data that can be shared between threads and walked without calling libyang.
//!
//! [`Schema`] is built once from the libyang context (`build`), then answers the questions the
//! datastore and the RESTCONF server ask on every request: which child has this JSON member name,
//! which nodes are list keys, how a leaf's values are written in RFC 7951 JSON, which nodes are
//! configuration, and which lists are *validation units* (`units`): lists whose entries can be
//! validated one at a time because no YANG constraint reaches in or out of an entry.
//!
//! Choice and case nodes do not appear in data (RFC 7951 §4), so the model flattens them: the
//! children of a node are the data nodes it can contain, in schema order. The numeric
//! [`SchemaId`]s are assigned in that order, so sorting siblings by id gives schema order.

pub(crate) mod build;
pub(crate) mod units;

use std::collections::{BTreeMap, HashMap};

use crate::libyang_ffi::SchemaAddr;

/// Index of a node in the [`Schema`]. Ids are assigned depth-first in schema order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaId(u32);

impl SchemaId {
    /// The pseudo node whose children are the top-level data nodes of all modules.
    pub const ROOT: SchemaId = SchemaId(0);

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// What kind of schema node a [`NodeDef`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// The datastore root (not a YANG node).
    Root,
    /// A container.
    Container,
    /// A list.
    List,
    /// A leaf.
    Leaf,
    /// A leaf-list.
    LeafList,
    /// An anydata or anyxml node.
    AnyData,
    /// An RPC.
    Rpc,
    /// The input of an RPC.
    Input,
    /// The output of an RPC.
    Output,
    /// A notification.
    Notification,
}

/// How values of a leaf or leaf-list are typed, as far as RFC 7951 encoding and tolerant input
/// care. Leafrefs appear as the type of their target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer type with the given width in bits (8, 16, 32 or 64) and sign.
    Integer {
        /// Width in bits.
        bits: u8,
        /// Signed or unsigned.
        signed: bool,
    },
    /// `decimal64`, written as a JSON string.
    Decimal64,
    /// `boolean`.
    Boolean,
    /// `empty`, written as `[null]`.
    Empty,
    /// An identityref, written as `"module:identity"`.
    IdentityRef,
    /// Every other type written as a JSON string (string, enumeration, bits, binary,
    /// instance-identifier).
    Text,
    /// A union of the given member kinds (flattened, in declaration order).
    Union(Vec<ValueKind>),
}

impl ValueKind {
    /// Whether RFC 7951 writes values of this kind as JSON numbers (integers of at most 32 bits).
    pub fn is_json_number(&self) -> bool {
        matches!(self, ValueKind::Integer { bits, .. } if *bits <= 32)
    }
}

/// One schema node.
#[derive(Clone, Debug)]
pub struct NodeDef {
    /// Its id.
    pub id: SchemaId,
    /// YANG identifier.
    pub name: String,
    /// Name of the module that defines the node (the JSON namespace qualifier).
    pub module: String,
    /// Node kind.
    pub kind: NodeKind,
    /// `config true` (false for state data and for nodes inside operations and notifications).
    pub config: bool,
    /// Parent node (`None` only for the root).
    pub parent: Option<SchemaId>,
    /// Data children in schema order (choice and case flattened).
    pub children: Vec<SchemaId>,
    /// List keys in key order (lists only).
    pub keys: Vec<SchemaId>,
    /// `ordered-by user` (lists and leaf-lists).
    pub user_ordered: bool,
    /// Presence container.
    pub presence: bool,
    /// A non-presence container that exists whenever its parent does (RFC 7950 §7.5.1): no
    /// `when` on it and not inside a case. A read finds it, empty, even when nothing was set
    /// below it.
    pub implicit: bool,
    /// `mandatory true` (or a list key).
    pub mandatory: bool,
    /// This leaf is a key of its parent list.
    pub is_key: bool,
    /// Canonical default value of a leaf, if it has one.
    pub default_value: Option<String>,
    /// Value typing of a leaf or leaf-list.
    pub value_kind: Option<ValueKind>,
    /// `min-elements` of a list or leaf-list.
    pub min_elements: u32,
    /// `max-elements` of a list or leaf-list, if bounded.
    pub max_elements: Option<u32>,
    /// Entries of this list are validation units (see `units`).
    pub unit: bool,
    /// The subtree (this node included) contains configuration nodes.
    pub has_config: bool,
    /// The subtree (this node included) contains state nodes.
    pub has_state: bool,
    pub(crate) addr: SchemaAddr,
    pub(crate) qualified: String,
    by_name: HashMap<String, SchemaId>,
}

impl NodeDef {
    /// `module:name`.
    pub fn qualified_name(&self) -> String {
        self.qualified.clone()
    }

    /// Whether this is an interior node (container, list, root, operation or notification).
    pub fn is_inner(&self) -> bool {
        !matches!(self.kind, NodeKind::Leaf | NodeKind::LeafList | NodeKind::AnyData)
    }
}

/// One implemented YANG module.
#[derive(Clone, Debug)]
pub struct ModuleDef {
    /// Module name.
    pub name: String,
    /// Newest revision, if any.
    pub revision: Option<String>,
    /// XML namespace.
    pub namespace: String,
    /// Whether libyang built it in (ietf-yang-library and friends).
    pub internal: bool,
    /// Implemented (its data nodes are in the datastore), rather than only imported.
    pub implemented: bool,
}

/// The compiled schema of a context.
#[derive(Debug)]
pub struct Schema {
    nodes: Vec<NodeDef>,
    by_addr: HashMap<SchemaAddr, SchemaId>,
    operations: BTreeMap<String, SchemaId>,
    notifications: BTreeMap<String, SchemaId>,
    modules: Vec<ModuleDef>,
    top_by_bare_name: HashMap<String, Vec<SchemaId>>,
}

impl Schema {
    /// The node with id `id`.
    ///
    /// Ids only come from this schema, so the lookup cannot fail.
    pub fn node(&self, id: SchemaId) -> &NodeDef {
        &self.nodes[id.index()]
    }

    /// The datastore root.
    pub fn root(&self) -> &NodeDef {
        &self.nodes[0]
    }

    /// Number of nodes in the model.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the model holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// The child of `parent` with JSON member name `name`: `module:name`, or a bare name that
    /// inherits the parent's module (RFC 7951 §4). Under the root a bare name is not resolved
    /// here; see [`Schema::top_level_by_bare_name`].
    pub fn child(&self, parent: SchemaId, name: &str) -> Option<SchemaId> {
        let parent_def = self.node(parent);
        if name.contains(':') {
            parent_def.by_name.get(name).copied()
        } else if parent_def.kind == NodeKind::Root {
            None
        } else {
            parent_def.by_name.get(&format!("{}:{}", parent_def.module, name)).copied()
        }
    }

    /// Top-level data nodes called `name` in any module (for input without module prefixes).
    pub fn top_level_by_bare_name(&self, name: &str) -> &[SchemaId] {
        self.top_by_bare_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Maps a libyang schema node address to its id.
    pub(crate) fn by_addr(&self, addr: SchemaAddr) -> Option<SchemaId> {
        self.by_addr.get(&addr).copied()
    }

    /// RPCs by `module:name`.
    pub fn operations(&self) -> &BTreeMap<String, SchemaId> {
        &self.operations
    }

    /// Top-level notifications by `module:name`.
    pub fn notifications(&self) -> &BTreeMap<String, SchemaId> {
        &self.notifications
    }

    /// Every module of the context, implemented or import-only.
    pub fn modules(&self) -> &[ModuleDef] {
        &self.modules
    }

    /// Whether `ancestor` is `node` or one of its ancestors.
    pub fn is_ancestor_or_self(&self, ancestor: SchemaId, node: SchemaId) -> bool {
        let mut cur = Some(node);
        while let Some(id) = cur {
            if id == ancestor {
                return true;
            }
            cur = self.node(id).parent;
        }
        false
    }

    /// The name under which `id` appears in JSON below a parent of module `parent_module`
    /// (`None` at the top level): qualified when the module changes (RFC 7951 §4).
    pub fn json_member_name(&self, id: SchemaId, parent_module: Option<&str>) -> String {
        self.member_name(id, parent_module).to_owned()
    }

    /// Like [`Schema::json_member_name`], borrowed.
    pub fn member_name(&self, id: SchemaId, parent_module: Option<&str>) -> &str {
        let def = self.node(id);
        match parent_module {
            Some(m) if m == def.module => &def.name,
            _ => &def.qualified,
        }
    }

    /// The schema path of a node, for messages: `/module:a/b/c`.
    pub fn schema_path(&self, id: SchemaId) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id);
        while let Some(n) = cur {
            let def = self.node(n);
            if def.kind == NodeKind::Root {
                break;
            }
            let parent_module = def
                .parent
                .map(|p| self.node(p))
                .and_then(|p| (p.kind != NodeKind::Root).then_some(p.module.as_str()));
            parts.push(self.json_member_name(n, parent_module));
            cur = def.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

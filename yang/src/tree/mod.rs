//! The datastore's data tree: immutable, structurally shared, ordered by schema.
//!
//! A tree is an [`Inner`] node (the datastore root) whose children are keyed by [`SchemaId`].
//! Interior nodes are reference-counted; a change copies only the nodes on the path from the
//! root to what changed, so an older version stays valid for readers while the writer prepares
//! the next one (a snapshot is just a clone of the root). Lists keep their entries in a
//! persistent ordered map ([`imbl::OrdMap`]), so inserting into a list of 50,000 entries copies a
//! few map nodes rather than the list.
//!
//! Every interior node carries [`Meta`]: the datastore version and time of its last change (its
//! own or a descendant's), which give each RESTCONF resource its `ETag` and `Last-Modified`.
//!
//! Values are stored canonical, as libyang produced them; [`Value`] also remembers how RFC 7951
//! writes them (number, string, boolean or `[null]`).

pub(crate) mod convert;
pub mod diff;
pub(crate) mod edit;
pub mod render;

use std::sync::Arc;
use std::time::SystemTime;

use crate::path::{DataPath, Selector};
use crate::schema::SchemaId;
pub use crate::value::{Key, Value};

/// A leaf or leaf-list instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Its value.
    pub value: Value,
    /// The value was not set by anyone: libyang filled in the schema default.
    pub default: bool,
}

/// When an interior node (or something below it) last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Datastore version of the change.
    pub version: u64,
    /// Wall-clock time of the change.
    pub modified: SystemTime,
}

impl Meta {
    /// Meta for a change made now at `version`.
    pub fn now(version: u64) -> Meta {
        Meta { version, modified: SystemTime::now() }
    }
}

/// The content of an interior node.
#[derive(Clone, Debug)]
pub struct InnerData {
    pub(crate) children: Vec<(SchemaId, Child)>,
    pub(crate) meta: Meta,
}

/// A container, list entry, or the datastore root (shared, copy on write).
#[derive(Clone, Debug)]
pub struct Inner(Arc<InnerData>);

/// A child of an interior node.
#[derive(Clone, Debug)]
pub enum Child {
    /// A leaf.
    Leaf(Leaf),
    /// All instances of a leaf-list, in order.
    LeafList(Arc<[Leaf]>),
    /// A container.
    Container(Inner),
    /// All entries of a list.
    List(ListNode),
    /// An anydata or anyxml value.
    Any(Arc<serde_json::Value>),
}

/// The entries of a list.
#[derive(Clone, Debug, Default)]
pub struct ListNode {
    pub(crate) entries: imbl::OrdMap<Key, Inner>,
    /// Insertion order, for `ordered-by user` lists; `None` means key order.
    pub(crate) order: Option<imbl::Vector<Key>>,
}

impl ListNode {
    /// An empty list; `user_ordered` keeps entries in insertion order.
    pub fn new(user_ordered: bool) -> ListNode {
        ListNode { entries: imbl::OrdMap::new(), order: user_ordered.then(imbl::Vector::new) }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with key `key`.
    pub fn get(&self, key: &Key) -> Option<&Inner> {
        self.entries.get(key)
    }

    /// Inserts or replaces an entry (a new entry goes last in a user-ordered list).
    pub fn insert(&mut self, key: Key, entry: Inner) {
        if self.entries.insert(key.clone(), entry).is_none()
            && let Some(order) = &mut self.order
        {
            order.push_back(key);
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, key: &Key) -> Option<Inner> {
        let removed = self.entries.remove(key);
        if removed.is_some()
            && let Some(order) = &mut self.order
            && let Some(pos) = order.index_of(key)
        {
            order.remove(pos);
        }
        removed
    }

    /// Entries in document order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Key, &Inner)> + '_> {
        match &self.order {
            None => Box::new(self.entries.iter()),
            Some(order) => Box::new(order.iter().filter_map(|k| self.entries.get_key_value(k))),
        }
    }
}

impl Inner {
    /// An empty interior node.
    pub fn empty(meta: Meta) -> Inner {
        Inner(Arc::new(InnerData { children: Vec::new(), meta }))
    }

    /// A node with the given children (sorted here by schema id).
    pub fn from_children(mut children: Vec<(SchemaId, Child)>, meta: Meta) -> Inner {
        children.sort_by_key(|(id, _)| *id);
        Inner(Arc::new(InnerData { children, meta }))
    }

    /// Its meta.
    pub fn meta(&self) -> Meta {
        self.0.meta
    }

    /// Children in schema order.
    pub fn children(&self) -> &[(SchemaId, Child)] {
        &self.0.children
    }

    /// Whether it has no children.
    pub fn is_empty(&self) -> bool {
        self.0.children.is_empty()
    }

    /// The child for schema node `id`.
    pub fn child(&self, id: SchemaId) -> Option<&Child> {
        self.0.children.binary_search_by_key(&id, |(c, _)| *c).ok().map(|i| &self.0.children[i].1)
    }

    /// Whether two handles share the same node.
    pub fn ptr_eq(&self, other: &Inner) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn data_mut(&mut self) -> &mut InnerData {
        Arc::make_mut(&mut self.0)
    }

    /// Sets the meta.
    pub fn set_meta(&mut self, meta: Meta) {
        self.data_mut().meta = meta;
    }

    /// Mutable access to the child for `id`.
    pub fn child_mut(&mut self, id: SchemaId) -> Option<&mut Child> {
        let data = self.data_mut();
        match data.children.binary_search_by_key(&id, |(c, _)| *c) {
            Ok(i) => Some(&mut data.children[i].1),
            Err(_) => None,
        }
    }

    /// Sets (inserts or replaces) the child for `id`.
    pub fn set_child(&mut self, id: SchemaId, child: Child) {
        let data = self.data_mut();
        match data.children.binary_search_by_key(&id, |(c, _)| *c) {
            Ok(i) => data.children[i].1 = child,
            Err(i) => data.children.insert(i, (id, child)),
        }
    }

    /// Removes the child for `id`.
    pub fn remove_child(&mut self, id: SchemaId) -> Option<Child> {
        let data = self.data_mut();
        match data.children.binary_search_by_key(&id, |(c, _)| *c) {
            Ok(i) => Some(data.children.remove(i).1),
            Err(_) => None,
        }
    }

    /// Structural equality of content (meta ignored).
    pub fn same_content(&self, other: &Inner) -> bool {
        if self.ptr_eq(other) {
            return true;
        }
        let (a, b) = (&self.0.children, &other.0.children);
        a.len() == b.len()
            && a.iter().zip(b.iter()).all(|((ia, ca), (ib, cb))| ia == ib && ca.same_content(cb))
    }
}

impl Child {
    /// Structural equality of content (meta ignored).
    pub fn same_content(&self, other: &Child) -> bool {
        match (self, other) {
            (Child::Leaf(a), Child::Leaf(b)) => a == b,
            (Child::LeafList(a), Child::LeafList(b)) => a == b,
            (Child::Container(a), Child::Container(b)) => a.same_content(b),
            (Child::List(a), Child::List(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|((ka, ea), (kb, eb))| ka == kb && ea.same_content(eb))
            }
            (Child::Any(a), Child::Any(b)) => a == b,
            _ => false,
        }
    }
}

/// What a path points at.
#[derive(Clone, Copy, Debug)]
pub enum NodeRef<'a> {
    /// A container, list entry or the root.
    Inner(&'a Inner),
    /// A whole list (path ends at a list without keys).
    List(&'a ListNode),
    /// A leaf.
    Leaf(&'a Leaf),
    /// A whole leaf-list.
    LeafList(&'a [Leaf]),
    /// One leaf-list instance.
    LeafListEntry(&'a Leaf),
    /// An anydata value.
    Any(&'a serde_json::Value),
}

/// Finds the node `path` points at, below `root`.
pub fn lookup<'a>(root: &'a Inner, path: &DataPath) -> Option<NodeRef<'a>> {
    let mut cur = NodeRef::Inner(root);
    for step in path.steps() {
        let NodeRef::Inner(inner) = cur else {
            return None;
        };
        let child = inner.child(step.node)?;
        cur = match (child, &step.selector) {
            (Child::Container(c), Selector::None) => NodeRef::Inner(c),
            (Child::List(l), Selector::None) => NodeRef::List(l),
            (Child::List(l), Selector::Key(k)) => NodeRef::Inner(l.get(k)?),
            (Child::Leaf(l), Selector::None) => NodeRef::Leaf(l),
            (Child::LeafList(ls), Selector::None) => NodeRef::LeafList(ls),
            (Child::LeafList(ls), Selector::Value(v)) => {
                NodeRef::LeafListEntry(ls.iter().find(|l| &l.value == v)?)
            }
            (Child::Any(a), Selector::None) => NodeRef::Any(a),
            _ => return None,
        };
    }
    Some(cur)
}

/// The interior node at `path`, or the nearest interior ancestor when `path` ends at a leaf,
/// leaf-list or whole list (whose metadata stands for theirs).
pub fn meta_holder<'a>(root: &'a Inner, path: &DataPath) -> Option<&'a Inner> {
    let mut cur = root;
    for step in path.steps() {
        match (cur.child(step.node)?, &step.selector) {
            (Child::Container(c), Selector::None) => cur = c,
            (Child::List(l), Selector::Key(k)) => cur = l.get(k)?,
            (_, _) => return Some(cur),
        }
    }
    Some(cur)
}

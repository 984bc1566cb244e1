//! Renders trees as RFC 7951 JSON, for RESTCONF responses and for libyang validation documents.
//!
//! The datastore keeps configuration and state in two trees; a rendering walks both at once
//! ([`Layers`]) and merges them by schema id, so `content=all` costs no copy. Response rendering
//! applies the RESTCONF query parameters (`depth`, `fields`, `with-defaults`); validation
//! rendering writes only explicitly set values and can prune lists, to build the small documents
//! libyang validates for one validation unit.

use std::fmt::Write as _;

use super::{Child, Inner, Leaf, ListNode, Value};
use crate::path::{DataPath, Selector};
use crate::schema::{NodeKind, Schema, SchemaId};

/// The RESTCONF `with-defaults` modes (RFC 8040 §4.8.9, RFC 6243).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WithDefaults {
    /// Only values someone set (the server's basic mode).
    #[default]
    Explicit,
    /// Omit every value equal to its schema default.
    Trim,
    /// Include schema defaults.
    ReportAll,
    /// Include schema defaults, marked with the `ietf-netconf-with-defaults:default` annotation.
    ReportAllTagged,
}

/// A `fields` selection (RFC 8040 §4.8.3): which descendants to include.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelection {
    /// Selected children; `None` selects the child's whole subtree.
    pub(crate) nodes: Vec<(SchemaId, Option<FieldSelection>)>,
}

impl FieldSelection {
    /// Adds `path` (schema nodes from the current level down) with an optional sub-selection
    /// at its end, merging with what is already selected.
    pub(crate) fn add_path(&mut self, path: &[SchemaId], tail: Option<FieldSelection>) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let pos = match self.nodes.iter().position(|(id, _)| id == first) {
            Some(pos) => pos,
            None => {
                self.nodes.push((*first, Some(FieldSelection::default())));
                self.nodes.len() - 1
            }
        };
        let slot = &mut self.nodes[pos].1;
        if rest.is_empty() {
            match (slot.as_mut(), tail) {
                (_, None) => *slot = None,
                (Some(existing), Some(sub)) => {
                    if existing.nodes.is_empty() && !sub.nodes.is_empty() {
                        *existing = sub;
                    } else {
                        for (id, child) in sub.nodes {
                            existing.add_path(&[id], child);
                        }
                    }
                }
                (None, Some(_)) => {}
            }
        } else if let Some(existing) = slot.as_mut() {
            existing.add_path(rest, tail);
        }
    }

    fn get(&self, id: SchemaId) -> Option<Option<&FieldSelection>> {
        self.nodes.iter().find(|(n, _)| *n == id).map(|(_, sel)| sel.as_ref())
    }
}

/// Options of a response rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions<'a> {
    /// `depth`: the target is at depth 1; `None` is unbounded.
    pub depth: Option<u32>,
    /// `fields`.
    pub fields: Option<&'a FieldSelection>,
    /// `with-defaults`.
    pub defaults: WithDefaults,
    /// Compatibility switch: write the outermost member name without its module prefix.
    pub unprefixed_top_level: bool,
    /// Compatibility shape: a container's members without the object that names it
    /// (`{"qkdn_id": ...}` instead of `{"qkd_node": {"qkdn_id": ...}}`).
    pub members_only: bool,
}

/// The configuration and state trees of one interior node (either may be absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layers<'a> {
    /// Configuration content.
    pub config: Option<&'a Inner>,
    /// State content.
    pub state: Option<&'a Inner>,
}

/// Which lists a validation rendering leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prune {
    /// Nothing: the full document.
    Nothing,
    /// Entries of validation-unit lists (they are validated on their own).
    UnitLists,
    /// Every list (skeleton content around a unit).
    AllLists,
}

#[derive(Clone, Copy)]
enum Mode<'a> {
    Response(&'a RenderOptions<'a>),
    Validation(Prune),
}

struct Writer<'a> {
    schema: &'a Schema,
    out: String,
    mode: Mode<'a>,
}

/// Renders the resource at `path` as a RESTCONF response body, or `None` when nothing exists
/// there. The datastore root is rendered as `{"ietf-restconf:data": {...}}`.
pub fn render_resource(
    schema: &Schema,
    root: Layers<'_>,
    path: &DataPath,
    options: &RenderOptions<'_>,
) -> Option<String> {
    let mut w = Writer { schema, out: String::with_capacity(1024), mode: Mode::Response(options) };
    if path.is_root() {
        w.out.push_str("{\"ietf-restconf:data\":{");
        w.members(root, None, 0, options.fields, &[]);
        w.out.push_str("}}");
        return Some(w.out);
    }
    let target = locate(schema, root, path)?;
    let last = path.last().map(|s| s.node).unwrap_or(SchemaId::ROOT);
    let def = schema.node(last);
    if let (true, NodeKind::Container, Located::Inner(layers)) =
        (options.members_only, def.kind, &target)
    {
        w.out.push('{');
        w.members(*layers, Some(&def.module), 1, options.fields, &[]);
        w.out.push('}');
        return Some(w.out);
    }
    let name = if options.unprefixed_top_level {
        def.name.clone()
    } else {
        schema.json_member_name(last, None)
    };
    w.out.push('{');
    w.string(&name);
    w.out.push(':');
    match target {
        Located::Inner(layers) => {
            if def.kind == NodeKind::List {
                w.out.push('[');
                w.entry(layers, def.id, 1, options.fields);
                w.out.push(']');
            } else {
                w.out.push('{');
                w.members(layers, Some(&def.module), 1, options.fields, &[]);
                w.out.push('}');
            }
        }
        Located::List { config, state } => {
            w.out.push('[');
            w.list_entries(config, state, def.id, 1, options.fields);
            w.out.push(']');
        }
        Located::Leaf(leaf) => w.value(&leaf.value),
        Located::LeafList(leaves) => {
            w.out.push('[');
            for (i, leaf) in leaves.iter().enumerate() {
                if i > 0 {
                    w.out.push(',');
                }
                w.value(&leaf.value);
            }
            w.out.push(']');
        }
        Located::LeafListEntry(leaf) => {
            w.out.push('[');
            w.value(&leaf.value);
            w.out.push(']');
        }
        Located::Any(value) => w.out.push_str(&value.to_string()),
    }
    w.out.push('}');
    Some(w.out)
}

/// Whether anything exists at `path` in either layer (a non-presence container exists as soon
/// as its parent does: see [`crate::schema::NodeDef::implicit`]).
pub fn exists(schema: &Schema, root: Layers<'_>, path: &DataPath) -> bool {
    locate(schema, root, path).is_some()
}

/// Renders a complete datastore document for libyang, leaving out default values and the lists
/// `prune` names.
pub(crate) fn render_document(schema: &Schema, root: Layers<'_>, prune: Prune) -> String {
    let mut w = Writer { schema, out: String::with_capacity(4096), mode: Mode::Validation(prune) };
    w.out.push('{');
    w.members(root, None, 0, None, &[]);
    w.out.push('}');
    w.out
}

/// Renders the validation document of one unit: the skeleton around the list entry at `unit`
/// (its ancestors with their non-list content, and the other top-level nodes of its module) and
/// the entry itself with nested unit lists left out.
pub(crate) fn render_unit_document(schema: &Schema, root: Layers<'_>, unit: &DataPath) -> String {
    let mut w = Writer {
        schema,
        out: String::with_capacity(1024),
        mode: Mode::Validation(Prune::AllLists),
    };
    w.out.push('{');
    if let Some(first) = unit.steps().first() {
        let module = schema.node(first.node).module.clone();
        w.chain(root, None, unit.steps(), Some(&module));
    }
    w.out.push('}');
    w.out
}

enum Located<'a> {
    Inner(Layers<'a>),
    List { config: Option<&'a ListNode>, state: Option<&'a ListNode> },
    Leaf(&'a Leaf),
    LeafList(&'a [Leaf]),
    LeafListEntry(&'a Leaf),
    Any(&'a serde_json::Value),
}

fn locate<'a>(schema: &Schema, root: Layers<'a>, path: &DataPath) -> Option<Located<'a>> {
    let (with_config, with_state) = (root.config.is_some(), root.state.is_some());
    let mut cur = root;
    let steps = path.steps();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        let cc = cur.config.and_then(|n| n.child(step.node));
        let sc = cur.state.and_then(|n| n.child(step.node));
        if cc.is_none() && sc.is_none() {
            // An empty non-presence container is there all the same, if the layers read could
            // hold something below it.
            let def = schema.node(step.node);
            if def.implicit
                && step.selector == Selector::None
                && ((with_config && def.has_config) || (with_state && def.has_state))
            {
                cur = Layers::default();
                continue;
            }
            return None;
        }
        let next = match &step.selector {
            Selector::Key(key) => {
                let c = as_list(cc).and_then(|l| l.get(key));
                let s = as_list(sc).and_then(|l| l.get(key));
                if c.is_none() && s.is_none() {
                    return None;
                }
                Layers { config: c, state: s }
            }
            Selector::Value(v) => {
                let leaves = match cc.or(sc)? {
                    Child::LeafList(l) => l,
                    _ => return None,
                };
                return last
                    .then(|| leaves.iter().find(|l| &l.value == v).map(Located::LeafListEntry))
                    .flatten();
            }
            Selector::None => match cc.or(sc)? {
                Child::Container(_) => Layers { config: as_inner(cc), state: as_inner(sc) },
                Child::List(_) => {
                    return last.then(|| Located::List { config: as_list(cc), state: as_list(sc) });
                }
                Child::Leaf(l) => return last.then_some(Located::Leaf(l)),
                Child::LeafList(l) => return last.then_some(Located::LeafList(l)),
                Child::Any(a) => return last.then_some(Located::Any(a)),
            },
        };
        cur = next;
    }
    Some(Located::Inner(cur))
}

fn as_inner(child: Option<&Child>) -> Option<&Inner> {
    match child {
        Some(Child::Container(c)) => Some(c),
        _ => None,
    }
}

fn as_list(child: Option<&Child>) -> Option<&ListNode> {
    match child {
        Some(Child::List(l)) => Some(l),
        _ => None,
    }
}

/// The children of two layers, merged by schema id (both are sorted by id).
struct Merged<'a> {
    a: &'a [(SchemaId, Child)],
    b: &'a [(SchemaId, Child)],
}

fn merged(layers: Layers<'_>) -> Merged<'_> {
    Merged {
        a: layers.config.map(Inner::children).unwrap_or(&[]),
        b: layers.state.map(Inner::children).unwrap_or(&[]),
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = (SchemaId, Option<&'a Child>, Option<&'a Child>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.first(), self.b.first()) {
            (Some((ia, ca)), Some((ib, cb))) if ia == ib => {
                self.a = &self.a[1..];
                self.b = &self.b[1..];
                Some((*ia, Some(ca), Some(cb)))
            }
            (Some((ia, ca)), Some((ib, _))) if ia < ib => {
                self.a = &self.a[1..];
                Some((*ia, Some(ca), None))
            }
            (Some((ia, ca)), None) => {
                self.a = &self.a[1..];
                Some((*ia, Some(ca), None))
            }
            (_, Some((ib, cb))) => {
                self.b = &self.b[1..];
                Some((*ib, None, Some(cb)))
            }
            (None, None) => None,
        }
    }
}

impl Writer<'_> {
    fn string(&mut self, s: &str) {
        write_json_string(&mut self.out, s);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Value::Text(s) => write_json_string(&mut self.out, s),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Empty => self.out.push_str("[null]"),
        }
    }

    /// Writes `,` unless the object has no member yet, then the member name and `:`.
    fn member_name(&mut self, first: &mut bool, name: &str) {
        if !*first {
            self.out.push(',');
        }
        *first = false;
        self.string(name);
        self.out.push(':');
    }

    fn max_depth(&self) -> Option<u32> {
        match self.mode {
            Mode::Response(o) => o.depth,
            Mode::Validation(_) => None,
        }
    }

    /// Whether a leaf is written, and whether it carries the default annotation.
    fn leaf_visibility(&self, leaf: &Leaf, id: SchemaId) -> (bool, bool) {
        let equals_default =
            || self.schema.node(id).default_value.as_deref() == Some(leaf.value.lexical().as_ref());
        match self.mode {
            Mode::Validation(_) => (!leaf.default, false),
            Mode::Response(o) => match o.defaults {
                WithDefaults::Explicit => (!leaf.default, false),
                WithDefaults::ReportAll => (true, false),
                WithDefaults::Trim => (!leaf.default && !equals_default(), false),
                WithDefaults::ReportAllTagged => (true, leaf.default || equals_default()),
            },
        }
    }

    /// Writes the members of an interior node (without braces). `depth` is the depth of the
    /// node itself; `keys` are written first and always.
    fn members(
        &mut self,
        layers: Layers<'_>,
        module: Option<&str>,
        depth: u32,
        fields: Option<&FieldSelection>,
        keys: &[SchemaId],
    ) -> bool {
        let mut first = true;
        for key in keys {
            let leaf = layers
                .config
                .and_then(|n| n.child(*key))
                .or_else(|| layers.state.and_then(|n| n.child(*key)));
            if let Some(Child::Leaf(leaf)) = leaf {
                let name = self.schema.member_name(*key, module);
                self.member_name(&mut first, name);
                self.value(&leaf.value);
            }
        }
        let child_depth = depth + 1;
        if self.max_depth().is_some_and(|max| child_depth > max) {
            return !first;
        }
        for (id, cc, sc) in merged(layers) {
            if keys.contains(&id) {
                continue;
            }
            let sub = match fields {
                Some(sel) => match sel.get(id) {
                    Some(sub) => sub,
                    None => continue,
                },
                None => None,
            };
            self.member(id, cc, sc, module, child_depth, sub, &mut first);
        }
        !first
    }

    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        id: SchemaId,
        cc: Option<&Child>,
        sc: Option<&Child>,
        module: Option<&str>,
        depth: u32,
        fields: Option<&FieldSelection>,
        first: &mut bool,
    ) {
        let schema = self.schema;
        let def = schema.node(id);
        let name = schema.member_name(id, module);
        let Some(child) = cc.or(sc) else {
            return;
        };
        match child {
            Child::Leaf(leaf) => {
                let (show, tagged) = self.leaf_visibility(leaf, id);
                if !show {
                    return;
                }
                self.member_name(first, name);
                self.value(&leaf.value);
                if tagged {
                    self.out.push(',');
                    self.string(&format!("@{name}"));
                    self.out.push_str(":{\"ietf-netconf-with-defaults:default\":true}");
                }
            }
            Child::LeafList(leaves) => {
                let shown: Vec<(&Leaf, bool)> = leaves
                    .iter()
                    .filter_map(|l| {
                        let (show, tagged) = self.leaf_visibility(l, id);
                        show.then_some((l, tagged))
                    })
                    .collect();
                if shown.is_empty() {
                    return;
                }
                self.member_name(first, name);
                self.out.push('[');
                for (i, (leaf, _)) in shown.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(&leaf.value);
                }
                self.out.push(']');
                if shown.iter().any(|(_, t)| *t) {
                    self.out.push(',');
                    self.string(&format!("@{name}"));
                    self.out.push(':');
                    self.out.push('[');
                    for (i, (_, tagged)) in shown.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.out.push_str(if *tagged {
                            "{\"ietf-netconf-with-defaults:default\":true}"
                        } else {
                            "null"
                        });
                    }
                    self.out.push(']');
                }
            }
            Child::Container(_) => {
                let layers = Layers { config: as_inner(cc), state: as_inner(sc) };
                let mark = self.out.len();
                let was_first = *first;
                self.member_name(first, name);
                self.out.push('{');
                let wrote = self.members(layers, Some(&def.module), depth, fields, &[]);
                self.out.push('}');
                let has_content = layers.config.or(layers.state).is_some_and(|n| !n.is_empty());
                let truncated_by_depth =
                    self.max_depth().is_some_and(|max| depth + 1 > max) && has_content;
                // A validation document keeps a container whose content was pruned, so that
                // libyang still checks what the container requires (mandatory children).
                let keep_for_validation = matches!(self.mode, Mode::Validation(_)) && has_content;
                if !wrote && !def.presence && !truncated_by_depth && !keep_for_validation {
                    self.out.truncate(mark);
                    *first = was_first;
                }
            }
            Child::List(_) => {
                if let Mode::Validation(prune) = self.mode
                    && (prune == Prune::AllLists || (prune == Prune::UnitLists && def.unit))
                {
                    return;
                }
                let mark = self.out.len();
                let was_first = *first;
                self.member_name(first, name);
                self.out.push('[');
                let count = self.list_entries(as_list(cc), as_list(sc), id, depth, fields);
                self.out.push(']');
                if count == 0 {
                    self.out.truncate(mark);
                    *first = was_first;
                }
            }
            Child::Any(value) => {
                self.member_name(first, name);
                self.out.push_str(&value.to_string());
            }
        }
    }

    /// Writes the entries of a list (merging the layers), returning how many were written.
    fn list_entries(
        &mut self,
        config: Option<&ListNode>,
        state: Option<&ListNode>,
        id: SchemaId,
        depth: u32,
        fields: Option<&FieldSelection>,
    ) -> usize {
        let def = self.schema.node(id);
        let mut count = 0;
        match config {
            Some(list) => {
                for (key, entry) in list.iter() {
                    if count > 0 {
                        self.out.push(',');
                    }
                    let layers =
                        Layers { config: Some(entry), state: state.and_then(|s| s.get(key)) };
                    self.entry(layers, id, depth, fields);
                    count += 1;
                }
                if !def.config
                    && let Some(state) = state
                {
                    for (key, entry) in state.iter() {
                        if list.get(key).is_none() {
                            if count > 0 {
                                self.out.push(',');
                            }
                            self.entry(
                                Layers { config: None, state: Some(entry) },
                                id,
                                depth,
                                fields,
                            );
                            count += 1;
                        }
                    }
                }
            }
            None => {
                for (_, entry) in state.into_iter().flat_map(ListNode::iter) {
                    if count > 0 {
                        self.out.push(',');
                    }
                    self.entry(Layers { config: None, state: Some(entry) }, id, depth, fields);
                    count += 1;
                }
            }
        }
        count
    }

    /// Writes one list entry as a JSON object.
    fn entry(
        &mut self,
        layers: Layers<'_>,
        id: SchemaId,
        depth: u32,
        fields: Option<&FieldSelection>,
    ) {
        let def = self.schema.node(id);
        self.out.push('{');
        self.members(layers, Some(&def.module), depth, fields, &def.keys);
        self.out.push('}');
    }

    /// Writes the ancestor chain of a unit document (see [`render_unit_document`]).
    fn chain(
        &mut self,
        layers: Layers<'_>,
        module: Option<&str>,
        steps: &[crate::path::PathStep],
        root_module: Option<&str>,
    ) {
        let Some((step, rest)) = steps.split_first() else {
            return;
        };
        let mut first = true;
        let schema = self.schema;
        for (id, cc, sc) in merged(layers) {
            if let Some(m) = root_module
                && schema.node(id).module != m
            {
                continue;
            }
            if id != step.node {
                self.member(id, cc, sc, module, 0, None, &mut first);
                continue;
            }
            let def = schema.node(id);
            let name = schema.json_member_name(id, module);
            match (&step.selector, cc.or(sc)) {
                (Selector::Key(key), Some(Child::List(_))) => {
                    let c = as_list(cc).and_then(|l| l.get(key));
                    let s = as_list(sc).and_then(|l| l.get(key));
                    let entry = Layers { config: c, state: s };
                    self.member_name(&mut first, &name);
                    self.out.push_str("[{");
                    if rest.is_empty() {
                        let saved = self.mode;
                        self.mode = Mode::Validation(Prune::UnitLists);
                        self.members(entry, Some(&def.module), 0, None, &def.keys);
                        self.mode = saved;
                    } else {
                        self.chain(entry, Some(&def.module), rest, None);
                    }
                    self.out.push_str("}]");
                }
                (Selector::None, Some(Child::Container(_))) => {
                    self.member_name(&mut first, &name);
                    self.out.push('{');
                    self.chain(
                        Layers { config: as_inner(cc), state: as_inner(sc) },
                        Some(&def.module),
                        rest,
                        None,
                    );
                    self.out.push('}');
                }
                _ => {}
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

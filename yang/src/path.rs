//! Paths to data nodes: parsing RESTCONF resource URIs (RFC 8040 §3.5.3) into schema-resolved
//! [`DataPath`]s, and printing them as instance-identifiers (RFC 7951 §6.11, for `error-path`
//! and libyang) or as URIs (for `Location` headers).
//!
//! Key values in a URI are checked and canonicalised by libyang against the key leaf's type, so
//! `qkd_link=AB12...` finds the entry stored as `ab12...`.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use yang5::schema::DataValueType;

use crate::context::YangContext;
use crate::error::DataError;
use crate::libyang_ffi;
use crate::schema::{NodeKind, Schema, SchemaId, ValueKind};
use crate::value::{Key, Value};

/// Which instance of a schema node a path step names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// No selection: a container, a leaf, or a whole list or leaf-list.
    None,
    /// A list entry.
    Key(Key),
    /// A leaf-list instance.
    Value(Value),
}

/// One step of a [`DataPath`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathStep {
    /// Schema node.
    pub node: SchemaId,
    /// Instance selection.
    pub selector: Selector,
}

/// A path from the datastore root to a data node (empty for the root itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataPath {
    steps: Vec<PathStep>,
}

/// Characters percent-encoded in a key value of a RESTCONF URI.
const KEY_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b']')
    .add(b'\'')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

impl DataPath {
    /// The datastore root.
    pub fn root() -> DataPath {
        DataPath::default()
    }

    /// A path of the given steps.
    pub fn from_steps(steps: Vec<PathStep>) -> DataPath {
        DataPath { steps }
    }

    /// The steps.
    pub fn steps(&self) -> &[PathStep] {
        &self.steps
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// The last step.
    pub fn last(&self) -> Option<&PathStep> {
        self.steps.last()
    }

    /// The schema node the path ends at (the root for the root path).
    pub fn schema_node(&self) -> SchemaId {
        self.steps.last().map_or(SchemaId::ROOT, |s| s.node)
    }

    /// This path extended by one step.
    pub fn child(&self, node: SchemaId, selector: Selector) -> DataPath {
        let mut steps = self.steps.clone();
        steps.push(PathStep { node, selector });
        DataPath { steps }
    }

    /// Appends a step.
    pub fn push(&mut self, node: SchemaId, selector: Selector) {
        self.steps.push(PathStep { node, selector });
    }

    /// The parent path (`None` for the root).
    pub fn parent(&self) -> Option<DataPath> {
        if self.steps.is_empty() {
            return None;
        }
        Some(DataPath { steps: self.steps[..self.steps.len() - 1].to_vec() })
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &DataPath) -> bool {
        other.steps.len() >= self.steps.len() && other.steps[..self.steps.len()] == self.steps[..]
    }

    /// Parses the part of a RESTCONF data resource URI after `{+restconf}/data`, still
    /// percent-encoded: `/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=<uuid>`.
    ///
    /// Tolerates a trailing slash and, for the first segment, a missing module prefix when the
    /// name is unique among top-level nodes.
    pub fn parse_restconf(ctx: &YangContext, raw: &str) -> Result<DataPath, DataError> {
        let schema = ctx.schema();
        let trimmed = raw.strip_prefix('/').unwrap_or(raw);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let mut path = DataPath::root();
        if trimmed.is_empty() {
            return Ok(path);
        }
        let mut parent = SchemaId::ROOT;
        let mut stop_at: Option<String> = None;
        for segment in trimmed.split('/') {
            if let Some(at) = &stop_at {
                return Err(DataError::protocol_value(format!(
                    "nothing can follow {at} in a resource path (a leaf, a leaf-list, or a list \
                     without key values)"
                ))
                .at(at.clone()));
            }
            if segment.is_empty() {
                return Err(DataError::protocol_value(format!(
                    "empty segment in resource path \"{raw}\""
                ))
                .with_status(400));
            }
            let (ident_raw, keys_raw) = match segment.split_once('=') {
                Some((i, k)) => (i, Some(k)),
                None => (segment, None),
            };
            let ident = decode(ident_raw)?;
            let node = resolve_segment(schema, parent, &ident).ok_or_else(|| {
                let at = path.to_instance_identifier(schema);
                DataError::protocol_value(format!(
                    "\"{ident}\" is not a data node{}",
                    if path.is_root() { String::new() } else { format!(" under {at}") }
                ))
                .at(format!("{}/{}", if path.is_root() { "" } else { &at }, ident))
                .with_status(404)
            })?;
            let def = schema.node(node);
            let selector = match (def.kind, keys_raw) {
                (NodeKind::List, Some(keys)) => {
                    let parts: Vec<&str> = keys.split(',').collect();
                    if parts.len() != def.keys.len() {
                        return Err(DataError::protocol_value(format!(
                            "list {} has {} key(s) ({}), the path gives {}",
                            def.name,
                            def.keys.len(),
                            def.keys
                                .iter()
                                .map(|k| schema.node(*k).name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            parts.len()
                        ))
                        .at(path.child(node, Selector::None).to_instance_identifier(schema)));
                    }
                    let mut values = Vec::with_capacity(parts.len());
                    for (key_leaf, part) in def.keys.iter().zip(parts) {
                        values.push(canonical_key(ctx, *key_leaf, &decode(part)?).map_err(
                            |e| {
                                e.at(path
                                    .child(node, Selector::None)
                                    .to_instance_identifier(schema))
                            },
                        )?);
                    }
                    Selector::Key(Key::new(values))
                }
                (NodeKind::LeafList, Some(value)) => {
                    Selector::Value(canonical_key(ctx, node, &decode(value)?).map_err(|e| {
                        e.at(path.child(node, Selector::None).to_instance_identifier(schema))
                    })?)
                }
                (NodeKind::List | NodeKind::LeafList, None) => Selector::None,
                (_, Some(_)) => {
                    return Err(DataError::protocol_value(format!(
                        "{} is not a list or leaf-list, so it takes no \"=\" value",
                        def.name
                    ))
                    .at(path.child(node, Selector::None).to_instance_identifier(schema)));
                }
                (_, None) => Selector::None,
            };
            let terminal =
                !def.is_inner() || (def.kind == NodeKind::List && selector == Selector::None);
            path.push(node, selector);
            parent = node;
            if terminal {
                stop_at = Some(path.to_instance_identifier(schema));
            }
        }
        Ok(path)
    }

    /// The instance-identifier of the path in RFC 7951 JSON form, as used in `error-path` and
    /// by libyang: `/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link[qkdl_id='...']`.
    pub fn to_instance_identifier(&self, schema: &Schema) -> String {
        let mut out = String::new();
        let mut parent_module: Option<&str> = None;
        for step in &self.steps {
            let def = schema.node(step.node);
            out.push('/');
            out.push_str(&schema.json_member_name(step.node, parent_module));
            match &step.selector {
                Selector::None => {}
                Selector::Key(key) => {
                    for (leaf, value) in def.keys.iter().zip(key.values()) {
                        let _ = write!(
                            out,
                            "[{}={}]",
                            schema.node(*leaf).name,
                            quote_predicate(&value.lexical())
                        );
                    }
                }
                Selector::Value(value) => {
                    let _ = write!(out, "[.={}]", quote_predicate(&value.lexical()));
                }
            }
            parent_module = Some(&def.module);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// The path as a RESTCONF resource URI relative to `{+restconf}/data` (keys
    /// percent-encoded).
    pub fn to_uri(&self, schema: &Schema) -> String {
        let mut out = String::new();
        let mut parent_module: Option<&str> = None;
        for step in &self.steps {
            let def = schema.node(step.node);
            out.push('/');
            out.push_str(&schema.json_member_name(step.node, parent_module));
            match &step.selector {
                Selector::None => {}
                Selector::Key(key) => {
                    out.push('=');
                    let encoded: Vec<String> = key
                        .values()
                        .iter()
                        .map(|v| utf8_percent_encode(&v.lexical(), KEY_ENCODE).to_string())
                        .collect();
                    out.push_str(&encoded.join(","));
                }
                Selector::Value(value) => {
                    out.push('=');
                    out.push_str(&utf8_percent_encode(&value.lexical(), KEY_ENCODE).to_string());
                }
            }
            parent_module = Some(&def.module);
        }
        out
    }
}

/// Quotes a predicate value for an instance-identifier (single quotes unless the value holds
/// one).
fn quote_predicate(value: &str) -> String {
    if value.contains('\'') { format!("\"{value}\"") } else { format!("'{value}'") }
}

fn decode(raw: &str) -> Result<String, DataError> {
    let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
        DataError::protocol_value(format!("resource path segment \"{raw}\" is not UTF-8"))
    })?;
    if decoded.contains('\0') {
        return Err(DataError::protocol_value("resource path contains a NUL byte"));
    }
    Ok(decoded.into_owned())
}

fn resolve_segment(schema: &Schema, parent: SchemaId, ident: &str) -> Option<SchemaId> {
    if let Some(id) = schema.child(parent, ident) {
        return Some(id);
    }
    if parent == SchemaId::ROOT
        && !ident.contains(':')
        && let [only] = schema.top_level_by_bare_name(ident)
    {
        return Some(*only);
    }
    None
}

/// Checks a key (or leaf-list) value from a URI against the leaf's type and returns it in
/// canonical form.
pub(crate) fn canonical_key(
    ctx: &YangContext,
    leaf: SchemaId,
    text: &str,
) -> Result<Value, DataError> {
    let def = ctx.schema().node(leaf);
    let (canonical, base) =
        libyang_ffi::canonical_value(ctx.ly(), def.addr, text).map_err(|e| {
            DataError::protocol_value(format!(
                "invalid value \"{text}\" for {}: {}",
                def.name, e.message
            ))
        })?;
    Ok(value_of_base(def.value_kind.as_ref(), base, &canonical))
}

/// Builds a [`Value`] from a canonical string whose type resolved to `base`.
pub(crate) fn value_of_base(
    kind: Option<&ValueKind>,
    base: DataValueType,
    canonical: &str,
) -> Value {
    match base {
        DataValueType::Int8
        | DataValueType::Int16
        | DataValueType::Int32
        | DataValueType::Uint8
        | DataValueType::Uint16
        | DataValueType::Uint32 => {
            canonical.parse().map(Value::Int).unwrap_or_else(|_| Value::text(canonical))
        }
        DataValueType::Bool => Value::Bool(canonical == "true"),
        DataValueType::Empty => Value::Empty,
        DataValueType::Union | DataValueType::Unknown => match kind {
            Some(k) if k.is_json_number() => {
                canonical.parse().map(Value::Int).unwrap_or_else(|_| Value::text(canonical))
            }
            Some(ValueKind::Boolean) => Value::Bool(canonical == "true"),
            Some(ValueKind::Empty) => Value::Empty,
            _ => Value::text(canonical),
        },
        _ => Value::text(canonical),
    }
}

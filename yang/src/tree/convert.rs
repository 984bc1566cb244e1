//! Converts libyang data trees (already parsed and validated) into qkdn [`Inner`] trees.
//!
//! Values are taken canonical and typed from libyang; the `default` flag of every leaf records
//! whether libyang filled it in from the schema. Empty non-presence containers are dropped, as
//! they carry nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use yang5::data::{Data, DataFormat, DataNodeRef, DataPrinterFlags};
use yang5::schema::DataValue;

use super::{Child, Inner, Key, Leaf, ListNode, Meta, Value};
use crate::error::DataError;
use crate::libyang_ffi;
use crate::path::value_of_base;
use crate::schema::{NodeDef, NodeKind, Schema, SchemaId, ValueKind};

/// Converts the data nodes `nodes` (siblings) into children of a qkdn interior node.
pub(crate) fn children_from_ly<'a>(
    schema: &Schema,
    nodes: impl Iterator<Item = DataNodeRef<'a>>,
    meta: Meta,
) -> Result<Vec<(SchemaId, Child)>, DataError> {
    let mut out: Vec<(SchemaId, Child)> = Vec::new();
    let mut lists: BTreeMap<SchemaId, ListNode> = BTreeMap::new();
    let mut leaf_lists: BTreeMap<SchemaId, Vec<Leaf>> = BTreeMap::new();
    let mut keyless_counters: BTreeMap<SchemaId, i64> = BTreeMap::new();
    for node in nodes {
        let addr = node.schema().as_raw() as usize;
        let Some(id) = schema.by_addr(addr) else {
            return Err(DataError::internal(format!(
                "libyang returned node {} that is not in the schema model",
                node.path()
            )));
        };
        let def = schema.node(id);
        match def.kind {
            NodeKind::Leaf => out.push((id, Child::Leaf(leaf_of(&node, def)))),
            NodeKind::LeafList => leaf_lists.entry(id).or_default().push(leaf_of(&node, def)),
            NodeKind::Container => {
                let children = children_from_ly(schema, node.children(), meta)?;
                if !children.is_empty() || def.presence {
                    out.push((id, Child::Container(Inner::from_children(children, meta))));
                }
            }
            NodeKind::List => {
                let children = children_from_ly(schema, node.children(), meta)?;
                let entry = Inner::from_children(children, meta);
                let key = if def.keys.is_empty() {
                    let counter = keyless_counters.entry(id).or_insert(0);
                    *counter += 1;
                    Key::new(vec![Value::Int(*counter)])
                } else {
                    key_of(&entry, def).ok_or_else(|| {
                        DataError::internal(format!("list entry {} lacks a key", node.path()))
                    })?
                };
                lists
                    .entry(id)
                    .or_insert_with(|| ListNode::new(def.user_ordered))
                    .insert(key, entry);
            }
            NodeKind::AnyData => out.push((id, Child::Any(Arc::new(any_value(&node)?)))),
            _ => {}
        }
    }
    out.extend(lists.into_iter().map(|(id, l)| (id, Child::List(l))));
    out.extend(leaf_lists.into_iter().map(|(id, l)| (id, Child::LeafList(l.into()))));
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// The key of a list entry, read from its key leaves.
pub(crate) fn key_of(entry: &Inner, def: &NodeDef) -> Option<Key> {
    let mut values = Vec::with_capacity(def.keys.len());
    for key in &def.keys {
        match entry.child(*key)? {
            Child::Leaf(leaf) => values.push(leaf.value.clone()),
            _ => return None,
        }
    }
    Some(Key::new(values))
}

fn leaf_of(node: &DataNodeRef<'_>, def: &NodeDef) -> Leaf {
    let kind = def.value_kind.as_ref();
    let value = match node.value() {
        Some(DataValue::Int8(v)) => Value::Int(v.into()),
        Some(DataValue::Int16(v)) => Value::Int(v.into()),
        Some(DataValue::Int32(v)) => Value::Int(v.into()),
        Some(DataValue::Uint8(v)) => Value::Int(v.into()),
        Some(DataValue::Uint16(v)) => Value::Int(v.into()),
        Some(DataValue::Uint32(v)) => Value::Int(v.into()),
        Some(DataValue::Int64(v)) => Value::text(&v.to_string()),
        Some(DataValue::Uint64(v)) => Value::text(&v.to_string()),
        Some(DataValue::Bool(b)) => Value::Bool(b),
        Some(DataValue::Empty) => Value::Empty,
        Some(DataValue::Other(text)) => match kind {
            Some(ValueKind::Union(_)) => match libyang_ffi::union_value_type(node) {
                Some(base) => value_of_base(kind, base, &text),
                None => Value::text(&text),
            },
            Some(k) if k.is_json_number() || matches!(k, ValueKind::Boolean | ValueKind::Empty) => {
                value_of_base(kind, yang5::schema::DataValueType::Unknown, &text)
            }
            _ => Value::Text(Arc::from(text)),
        },
        None => Value::Empty,
    };
    Leaf { value, default: libyang_ffi::is_implicit_default(node) }
}

fn any_value(node: &DataNodeRef<'_>) -> Result<serde_json::Value, DataError> {
    let printed = node
        .print_string(DataFormat::JSON, DataPrinterFlags::SHRINK)
        .map_err(|e| DataError::internal(format!("cannot print anydata: {e}")))?;
    let parsed: serde_json::Value = serde_json::from_str(&printed)
        .map_err(|e| DataError::internal(format!("libyang printed invalid JSON: {e}")))?;
    Ok(match parsed {
        serde_json::Value::Object(map) => {
            map.into_iter().next().map(|(_, v)| v).unwrap_or_default()
        }
        other => other,
    })
}

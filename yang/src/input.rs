//! JSON input from clients, checked against the schema and made canonical before libyang sees it.
//!
//! Real clients deviate from RFC 7951 in a few predictable ways (DESIGN.md §5), and qkdn accepts
//! them: top-level members without their module prefix, integers sent as strings (and 64-bit
//! integers or decimals sent as numbers), booleans sent as `"true"`/`"false"`, a single list
//! entry sent as an object instead of an array, empty state structure echoed back in a
//! configuration write (`"statistics": []`, dropped), `null` for a leaf that is not of type
//! `empty` (dropped: it is how Python clients say "not set"), a POST body that names the target
//! container instead of the child to create (`{"qkd_links": {"qkd_link": [...]}}` sent to
//! `.../qkd_links`, as TeraFlowSDN does), and documents wrapped in an object named
//! after the module (`{"etsi-qkd-sdn-node": {"qkd_node": ...}}`). Everything else is refused with an
//! error naming the offending path: unknown members, state data in a configuration write,
//! metadata annotations, list entries without their keys, and key values of the wrong type.
//!
//! The output is RFC 7951 as libyang expects it: member names qualified exactly where the module
//! changes.

use serde_json::{Map, Value as Json};

use crate::context::YangContext;
use crate::error::DataError;
use crate::path::{DataPath, Selector, canonical_key};
use crate::schema::{NodeKind, Schema, SchemaId, ValueKind};

/// What a document may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputPolicy {
    /// State (config false) nodes are allowed.
    pub allow_state: bool,
    /// Top-level members that name neither a data node nor a module are skipped (with a
    /// warning) instead of refused: start-up files of other tools carry their own settings
    /// beside the YANG data (TeraFlowSDN's mock node has `fc-restconf`).
    pub skip_foreign: bool,
}

impl InputPolicy {
    /// Configuration only.
    pub const CONFIG: InputPolicy = InputPolicy { allow_state: false, skip_foreign: false };
    /// Configuration and state.
    pub const ALL: InputPolicy = InputPolicy { allow_state: true, skip_foreign: false };
    /// A start-up file: configuration and state, foreign top-level members skipped.
    pub const STARTUP: InputPolicy = InputPolicy { allow_state: true, skip_foreign: true };
}

/// Normalises the members of a datastore document (top-level data nodes) in place. Accepts the
/// RESTCONF form `{"ietf-restconf:data": {...}}` and module-wrapped objects.
pub fn normalize_datastore(
    ctx: &YangContext,
    doc: Json,
    policy: InputPolicy,
) -> Result<Map<String, Json>, DataError> {
    let Json::Object(mut members) = doc else {
        return Err(DataError::malformed("a datastore document must be a JSON object"));
    };
    if members.len() == 1
        && let Some(Json::Object(_)) = members.get("ietf-restconf:data")
        && let Some(Json::Object(inner)) = members.remove("ietf-restconf:data")
    {
        members = inner;
    }
    let schema = ctx.schema();
    let mut flat = Map::new();
    for (name, value) in members {
        let is_module_wrapper = !name.contains(':')
            && schema.top_level_by_bare_name(&name).is_empty()
            && schema.modules().iter().any(|m| m.implemented && m.name == name);
        let is_data = schema.child(SchemaId::ROOT, &name).is_some()
            || (!name.contains(':') && !schema.top_level_by_bare_name(&name).is_empty());
        if policy.skip_foreign && !is_module_wrapper && !is_data {
            tracing::warn!(member = %name, "skipping a top-level member that is not YANG data");
            continue;
        }
        if is_module_wrapper {
            let Json::Object(inner) = value else {
                return Err(DataError::malformed(format!(
                    "\"{name}\" names a module, so its value must be an object of its top-level nodes"
                )));
            };
            for (child, v) in inner {
                let qualified = if child.contains(':') { child } else { format!("{name}:{child}") };
                flat.insert(qualified, v);
            }
        } else {
            flat.insert(name, value);
        }
    }
    let mut out = Map::new();
    normalize_object(ctx, SchemaId::ROOT, flat, "", policy, &mut out)?;
    Ok(out)
}

/// Normalises a notification `{"module:name": {...}}`; returns its qualified name and body.
pub fn normalize_notification(ctx: &YangContext, doc: Json) -> Result<(String, Json), DataError> {
    let schema = ctx.schema();
    let Json::Object(members) = doc else {
        return Err(DataError::malformed("a notification must be a JSON object"));
    };
    let mut iter = members.into_iter();
    let (Some((name, mut value)), None) = (iter.next(), iter.next()) else {
        return Err(DataError::malformed("a notification object holds exactly one member"));
    };
    let Some(id) = schema.notifications().get(&name).copied() else {
        return Err(DataError::unknown_element(format!("\"{name}\" is not a notification")));
    };
    normalize_value(ctx, id, &mut value, &format!("/{name}"), InputPolicy::ALL)?;
    Ok((name, value))
}

/// Reads a body that must hold exactly one member, a child of `parent`: returns the child's id
/// and its normalised value.
pub fn single_member(
    ctx: &YangContext,
    parent: SchemaId,
    parent_path: &DataPath,
    body: Json,
    policy: InputPolicy,
) -> Result<(SchemaId, Json), DataError> {
    let schema = ctx.schema();
    let Json::Object(members) = body else {
        return Err(DataError::malformed("the message body must be a JSON object"));
    };
    if members.len() != 1 {
        return Err(DataError::malformed(format!(
            "the message body must hold exactly one member (the resource), it holds {}",
            members.len()
        )));
    }
    let at = parent_path.to_instance_identifier(schema);
    let at = if parent_path.is_root() { String::new() } else { at };
    let mut out = Map::new();
    normalize_object(ctx, parent, members, &at, policy, &mut out)?;
    let (name, value) = out.into_iter().next().expect("one member");
    let id = resolve_member(schema, parent, &name, &at)?;
    Ok((id, value))
}

/// Resolves a member name under `parent` (tolerating a missing prefix at the top level).
fn resolve_member(
    schema: &Schema,
    parent: SchemaId,
    name: &str,
    at: &str,
) -> Result<SchemaId, DataError> {
    if let Some(id) = schema.child(parent, name) {
        return Ok(id);
    }
    if parent == SchemaId::ROOT && !name.contains(':') {
        match schema.top_level_by_bare_name(name) {
            [only] => return Ok(*only),
            [] => {}
            several => {
                let modules: Vec<&str> =
                    several.iter().map(|id| schema.node(*id).module.as_str()).collect();
                return Err(DataError::unknown_element(format!(
                    "\"{name}\" is ambiguous: it is a top-level node of {}; qualify it as \
                     \"module:{name}\"",
                    modules.join(", ")
                ))
                .at(format!("{at}/{name}")));
            }
        }
    }
    let where_ = if at.is_empty() { "at the top level".to_owned() } else { format!("in {at}") };
    Err(DataError::unknown_element(format!("unknown member \"{name}\" {where_}"))
        .at(format!("{at}/{name}")))
}

fn normalize_object(
    ctx: &YangContext,
    parent: SchemaId,
    members: Map<String, Json>,
    at: &str,
    policy: InputPolicy,
    out: &mut Map<String, Json>,
) -> Result<(), DataError> {
    let schema = ctx.schema();
    let parent_module = match schema.node(parent).kind {
        NodeKind::Root => None,
        _ => Some(schema.node(parent).module.clone()),
    };
    for (name, mut value) in members {
        if name.starts_with('@') {
            return Err(DataError::unknown_element(format!(
                "metadata annotation \"{name}\" is not supported in input"
            ))
            .at(format!("{at}/{}", name.trim_start_matches('@'))));
        }
        if name.contains('\0') {
            return Err(DataError::malformed("a member name contains a NUL character").at(at));
        }
        let id = resolve_member(schema, parent, &name, at)?;
        let def = schema.node(id);
        if value.is_null() && is_valued_leaf(def) {
            // `"virt_prev_hop": null` (Python's None) means "not set"; RFC 7951 reserves null
            // for leaves of type empty.
            continue;
        }
        let canonical = schema.json_member_name(id, parent_module.as_deref());
        let here = format!("{at}/{canonical}");
        if !def.config && !policy.allow_state && !is_operation_data(schema, id) {
            // Clients echo back empty state structure (`"statistics": []`); it says nothing.
            if is_empty_structure(&value) {
                continue;
            }
            return Err(DataError::invalid_value(format!(
                "{} is state data (config false) and cannot be written",
                def.name
            ))
            .at(here));
        }
        normalize_value(ctx, id, &mut value, &here, policy)?;
        if out.insert(canonical, value).is_some() {
            return Err(DataError::malformed(format!("member {name} appears twice")).at(here));
        }
    }
    Ok(())
}

/// A leaf or leaf-list whose type is not `empty`.
fn is_valued_leaf(def: &crate::schema::NodeDef) -> bool {
    matches!(def.kind, NodeKind::Leaf | NodeKind::LeafList)
        && !matches!(def.value_kind, Some(ValueKind::Empty))
}

fn is_empty_structure(value: &Json) -> bool {
    match value {
        Json::Array(items) => items.iter().all(is_empty_structure),
        Json::Object(members) => members.values().all(is_empty_structure),
        _ => false,
    }
}

fn is_operation_data(schema: &Schema, id: SchemaId) -> bool {
    let mut cur = Some(id);
    while let Some(n) = cur {
        if matches!(
            schema.node(n).kind,
            NodeKind::Rpc | NodeKind::Input | NodeKind::Output | NodeKind::Notification
        ) {
            return true;
        }
        cur = schema.node(n).parent;
    }
    false
}

fn normalize_value(
    ctx: &YangContext,
    id: SchemaId,
    value: &mut Json,
    at: &str,
    policy: InputPolicy,
) -> Result<(), DataError> {
    let schema = ctx.schema();
    let def = schema.node(id);
    match def.kind {
        NodeKind::Container | NodeKind::Notification | NodeKind::Input | NodeKind::Output => {
            let Json::Object(members) = std::mem::take(value) else {
                return Err(DataError::invalid_value(format!(
                    "{} must be a JSON object",
                    def.name
                ))
                .at(at));
            };
            let mut out = Map::new();
            normalize_object(ctx, id, members, at, policy, &mut out)?;
            *value = Json::Object(out);
        }
        NodeKind::List => {
            if value.is_object() {
                *value = Json::Array(vec![std::mem::take(value)]);
            }
            let Json::Array(entries) = value else {
                return Err(DataError::invalid_value(format!(
                    "{} is a list, so it must be a JSON array of objects",
                    def.name
                ))
                .at(at));
            };
            for entry in entries.iter_mut() {
                let Json::Object(members) = std::mem::take(entry) else {
                    return Err(DataError::invalid_value(format!(
                        "an entry of list {} must be a JSON object",
                        def.name
                    ))
                    .at(at));
                };
                let entry_at = entry_path(ctx, id, &members, at)?;
                let mut out = Map::new();
                normalize_object(ctx, id, members, &entry_at, policy, &mut out)?;
                *entry = Json::Object(out);
            }
        }
        NodeKind::Leaf => {
            refuse_nul_string(value, at)?;
            coerce_scalar(def.value_kind.as_ref(), value);
        }
        NodeKind::LeafList => {
            if !value.is_array() {
                *value = Json::Array(vec![std::mem::take(value)]);
            }
            if let Json::Array(items) = value {
                for item in items {
                    refuse_nul_string(item, at)?;
                    coerce_scalar(def.value_kind.as_ref(), item);
                }
            }
        }
        NodeKind::AnyData | NodeKind::Root | NodeKind::Rpc => {}
    }
    Ok(())
}

/// The path of a list entry (`.../list[key='v']`), after checking that every key is present
/// and valid for its type.
fn entry_path(
    ctx: &YangContext,
    list: SchemaId,
    members: &Map<String, Json>,
    at: &str,
) -> Result<String, DataError> {
    let schema = ctx.schema();
    let def = schema.node(list);
    let mut path = at.to_owned();
    let mut values = Vec::new();
    for key in &def.keys {
        let key_def = schema.node(*key);
        let raw = members
            .get(&key_def.name)
            .or_else(|| members.get(&key_def.qualified_name()))
            .ok_or_else(|| {
                DataError::invalid_value(format!(
                    "an entry of list {} lacks its key leaf {}",
                    def.name, key_def.name
                ))
                .at(at)
            })?;
        let text = match raw {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            other => {
                return Err(DataError::invalid_value(format!(
                    "key leaf {} of list {} must be a scalar, not {other}",
                    key_def.name, def.name
                ))
                .at(at));
            }
        };
        let _ = write_predicate(&mut path, &key_def.name, &text);
        values.push((key, text));
    }
    for (key, text) in values {
        canonical_key(ctx, *key, &text).map_err(|e| DataError {
            path: Some(format!("{path}/{}", schema.node(*key).name)),
            protocol: false,
            ..e
        })?;
    }
    Ok(path)
}

fn write_predicate(path: &mut String, name: &str, value: &str) -> std::fmt::Result {
    use std::fmt::Write as _;
    if value.contains('\'') {
        write!(path, "[{name}=\"{value}\"]")
    } else {
        write!(path, "[{name}='{value}']")
    }
}

/// Refuses a string value holding a NUL character (a `\\u0000` escape): libyang reads C strings.
fn refuse_nul_string(value: &Json, at: &str) -> Result<(), DataError> {
    match value {
        Json::String(s) if s.contains('\0') => {
            Err(DataError::invalid_value("a value contains a NUL character").at(at))
        }
        _ => Ok(()),
    }
}

/// Applies the tolerant scalar conversions to one leaf value.
fn coerce_scalar(kind: Option<&ValueKind>, value: &mut Json) {
    let Some(kind) = kind else {
        return;
    };
    match (kind, &*value) {
        (ValueKind::Integer { bits, .. }, Json::String(s)) if *bits <= 32 => {
            if let Ok(n) = s.trim().parse::<i64>() {
                *value = Json::from(n);
            }
        }
        (ValueKind::Integer { bits: 64, .. } | ValueKind::Decimal64, Json::Number(n)) => {
            *value = Json::String(n.to_string());
        }
        (ValueKind::Boolean, Json::String(s)) if s == "true" || s == "false" => {
            *value = Json::Bool(s == "true");
        }
        (ValueKind::Empty, Json::Null) => *value = serde_json::json!([null]),
        _ => {}
    }
}

/// Wraps the member `name: value` (a child of the node at `parent`) into a complete datastore
/// document, adding every ancestor with its keys.
pub(crate) fn wrap_in_ancestors(
    schema: &Schema,
    parent: &DataPath,
    member: SchemaId,
    value: Json,
) -> Json {
    let steps = parent.steps();
    let module_of = |i: usize| -> Option<&str> {
        i.checked_sub(1).map(|p| schema.node(steps[p].node).module.as_str())
    };
    let mut inner = Map::new();
    inner.insert(
        schema.json_member_name(member, parent.last().map(|s| schema.node(s.node).module.as_str())),
        value,
    );
    for (i, step) in steps.iter().enumerate().rev() {
        let def = schema.node(step.node);
        let name = schema.json_member_name(step.node, module_of(i));
        let wrapped = match &step.selector {
            Selector::Key(key) => {
                for (leaf, v) in def.keys.iter().zip(key.values()) {
                    inner.insert(schema.node(*leaf).name.clone(), v.to_json());
                }
                Json::Array(vec![Json::Object(inner)])
            }
            _ => Json::Object(inner),
        };
        inner = Map::new();
        inner.insert(name, wrapped);
    }
    Json::Object(inner)
}

/// Finds the first leaf value in a datastore document (already normalised) that its type
/// refuses, with the value's exact path. libyang reports a partial path for some value errors
/// inside list entries; this slower walk runs only after libyang refused a document.
pub(crate) fn first_invalid_value(ctx: &YangContext, doc: &Json) -> Option<DataError> {
    let Json::Object(members) = doc else {
        return None;
    };
    let schema = ctx.schema();
    members.iter().find_map(|(name, value)| {
        let id = schema.child(SchemaId::ROOT, name)?;
        invalid_in(ctx, id, value, &format!("/{name}"))
    })
}

fn invalid_in(ctx: &YangContext, id: SchemaId, value: &Json, at: &str) -> Option<DataError> {
    let schema = ctx.schema();
    let def = schema.node(id);
    let children = |members: &Map<String, Json>, at: &str| {
        members.iter().find_map(|(name, v)| {
            let child = schema.child(id, name)?;
            invalid_in(ctx, child, v, &format!("{at}/{name}"))
        })
    };
    match (def.kind, value) {
        (NodeKind::Container, Json::Object(members)) => children(members, at),
        (NodeKind::List, Json::Array(entries)) => entries.iter().find_map(|entry| {
            let Json::Object(members) = entry else {
                return None;
            };
            let mut path = at.to_owned();
            for key in &def.keys {
                let key_def = schema.node(*key);
                let text = members.get(&key_def.name).map(lexical).unwrap_or_default();
                let _ = write_predicate(&mut path, &key_def.name, &text);
            }
            children(members, &path)
        }),
        (NodeKind::Leaf, v) => check_leaf(ctx, id, v, at),
        (NodeKind::LeafList, Json::Array(items)) => {
            items.iter().find_map(|v| check_leaf(ctx, id, v, at))
        }
        _ => None,
    }
}

fn lexical(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn check_leaf(ctx: &YangContext, id: SchemaId, value: &Json, at: &str) -> Option<DataError> {
    let def = ctx.schema().node(id);
    let text = match value {
        Json::Array(items) if items.len() == 1 && items[0].is_null() => String::new(),
        Json::Object(_) | Json::Array(_) | Json::Null => {
            return Some(
                DataError::invalid_value(format!("{} takes a single value", def.name)).at(at),
            );
        }
        other => lexical(other),
    };
    crate::libyang_ffi::canonical_value(ctx.ly(), def.addr, &text)
        .err()
        .map(|e| DataError::invalid_value(e.message).at(at))
}

//! Canonical leaf values and list keys: what a data path's key predicates and the data
//! tree's leaves hold (shared by [`crate::path`] and [`crate::tree`], depending on neither).

use std::sync::Arc;

/// A canonical leaf value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// An integer of at most 32 bits (a JSON number).
    Int(i64),
    /// Anything RFC 7951 writes as a JSON string (strings, 64-bit integers, decimal64,
    /// identityrefs, enumerations, ...).
    Text(Arc<str>),
    /// A boolean.
    Bool(bool),
    /// The single value of type `empty` (`[null]`).
    Empty,
}

impl Value {
    /// A text value.
    pub fn text(s: &str) -> Value {
        Value::Text(Arc::from(s))
    }

    /// The lexical form (as used in paths and key predicates).
    pub fn lexical(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Int(i) => i.to_string().into(),
            Value::Text(s) => std::borrow::Cow::Borrowed(s),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Empty => "".into(),
        }
    }

    /// The RFC 7951 JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Text(s) => serde_json::Value::String(s.to_string()),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Empty => serde_json::json!([null]),
        }
    }
}

/// The key of a list entry: key leaf values in key order (for a keyless state list, a position).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub Arc<[Value]>);

impl Key {
    /// A key of the given values.
    pub fn new(values: Vec<Value>) -> Key {
        Key(values.into())
    }

    /// The key values.
    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

//! Table cells: how the CLI's tables show a JSON value.

use serde_json::Value as Json;

/// A JSON value as a table cell: strings bare, null as `-`.
pub(crate) fn text(v: &Json) -> String {
    match v {
        Json::Null => "-".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

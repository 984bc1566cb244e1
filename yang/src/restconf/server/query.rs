//! RESTCONF query parameters (RFC 8040 §4.8): parsed and checked per method. A parameter the
//! method does not take, an unknown parameter, a repeated one or a bad value is a 400 error.

use percent_encoding::percent_decode_str;

use super::fields::parse_fields;
use crate::datastore::ContentFilter;
use crate::error::DataError;
use crate::path::DataPath;
use crate::schema::Schema;
use crate::tree::render::{FieldSelection, WithDefaults};

/// The parameters of a GET or HEAD on a data resource.
#[derive(Debug, Default)]
pub(crate) struct ReadQuery {
    pub(crate) depth: Option<u32>,
    pub(crate) fields: Option<FieldSelection>,
    pub(crate) content: ContentFilter,
    pub(crate) defaults: WithDefaults,
}

/// Splits and decodes a query string, refusing repeated parameters.
pub(crate) fn parameters(raw: Option<&str>) -> Result<Vec<(String, String)>, DataError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned()).map_err(
                |_| DataError::protocol_value(format!("query parameter \"{k}\" is not UTF-8")),
            )
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if k.contains('\0') || v.contains('\0') {
            return Err(DataError::protocol_value("query string contains a NUL byte"));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(DataError::protocol_value(format!(
                "query parameter \"{k}\" appears more than once"
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Parses the query of a read.
pub(crate) fn read_query(
    schema: &Schema,
    target: &DataPath,
    raw: Option<&str>,
) -> Result<ReadQuery, DataError> {
    let mut query = ReadQuery::default();
    for (name, value) in parameters(raw)? {
        match name.as_str() {
            "depth" => {
                query.depth = match value.as_str() {
                    "unbounded" => None,
                    v => match v.parse::<u32>() {
                        Ok(d) if (1..=65535).contains(&d) => Some(d),
                        _ => {
                            return Err(DataError::protocol_value(format!(
                                "depth must be \"unbounded\" or 1 to 65535, not \"{v}\""
                            )));
                        }
                    },
                }
            }
            "content" => {
                query.content = match value.as_str() {
                    "config" => ContentFilter::Config,
                    "nonconfig" => ContentFilter::NonConfig,
                    "all" => ContentFilter::All,
                    v => {
                        return Err(DataError::protocol_value(format!(
                            "content must be config, nonconfig or all, not \"{v}\""
                        )));
                    }
                }
            }
            "with-defaults" => {
                query.defaults = match value.as_str() {
                    "explicit" => WithDefaults::Explicit,
                    "trim" => WithDefaults::Trim,
                    "report-all" => WithDefaults::ReportAll,
                    "report-all-tagged" => WithDefaults::ReportAllTagged,
                    v => {
                        return Err(DataError::protocol_value(format!(
                            "with-defaults must be report-all, report-all-tagged, trim or \
                             explicit, not \"{v}\""
                        )));
                    }
                }
            }
            "fields" => {
                if value.is_empty() {
                    return Err(DataError::protocol_value("fields needs an expression"));
                }
                query.fields = Some(parse_fields(schema, target.schema_node(), &value)?);
            }
            other => return Err(unsupported(other, "GET")),
        }
    }
    Ok(query)
}

/// Checks the query of a write: none of the read parameters; `insert` and `point` are not
/// supported (qkdn's models have no user-ordered lists).
pub(crate) fn check_write_query(raw: Option<&str>, method: &str) -> Result<(), DataError> {
    match parameters(raw)?.into_iter().next() {
        None => Ok(()),
        Some((name, _)) if name == "insert" || name == "point" => Err(DataError::protocol_value(
            format!("query parameter \"{name}\" is not supported by this server"),
        )),
        Some((name, _)) => Err(unsupported(&name, method)),
    }
}

fn unsupported(name: &str, method: &str) -> DataError {
    let known = [
        "content",
        "depth",
        "fields",
        "with-defaults",
        "insert",
        "point",
        "filter",
        "start-time",
        "stop-time",
    ];
    if known.contains(&name) {
        DataError::protocol_value(format!(
            "query parameter \"{name}\" is not allowed with {method}"
        ))
    } else {
        DataError::protocol_value(format!("unknown query parameter \"{name}\""))
    }
}

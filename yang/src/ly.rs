//! The datastore's door to libyang: parse (and optionally validate) RFC 7951 JSON documents,
//! RPC inputs and outputs, and notifications, and turn libyang's errors into [`DataError`]s
//! with the offending node's path.
//!
//! Nothing reaches libyang without passing here. Input is refused before the call if it holds a
//! NUL byte (libyang reads C strings, and the yang5 binding would abort on one).

use yang5::data::{
    Data, DataFormat, DataOperation, DataParserFlags, DataPrinterFlags, DataTree,
    DataValidationFlags,
};

use crate::context::YangContext;
use crate::error::{DataError, ErrorTag};
use crate::tree::convert::children_from_ly;
use crate::tree::{Inner, Meta};

/// Whether a document may carry state (config false) data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Configuration only: state nodes are an error.
    Config,
    /// Configuration and state.
    All,
}

/// Parses a datastore document. With `validate`, libyang checks every YANG constraint (and adds
/// defaults); without, only names, structure and value types are checked.
pub(crate) fn parse_data(
    ctx: &YangContext,
    json: &str,
    content: Content,
    validate: bool,
    meta: Meta,
) -> Result<Inner, DataError> {
    refuse_nul(json)?;
    let mut flags = DataParserFlags::STRICT;
    if content == Content::Config {
        flags |= DataParserFlags::NO_STATE;
    }
    if !validate {
        flags |= DataParserFlags::NO_VALIDATION;
    }
    let tree = DataTree::parse_string(
        ctx.ly(),
        json,
        DataFormat::JSON,
        flags,
        DataValidationFlags::PRESENT,
    )
    .map_err(|e| ly_error(e, "data"))?;
    let children = match tree.reference() {
        Some(first) => children_from_ly(ctx.schema(), first.inclusive_siblings(), meta)?,
        None => Vec::new(),
    };
    Ok(Inner::from_children(children, meta))
}

/// Fully validates a datastore document (RFC 7951 JSON, strict: no tolerance) as libyang sees
/// it, without loading it anywhere.
pub fn validate_data(ctx: &YangContext, json: &str, content: Content) -> Result<(), DataError> {
    parse_data(ctx, json, content, true, Meta::now(0)).map(|_| ())
}

/// Validates an operation message: RPC input (`reply == false`) or output, given in libyang's
/// YANG form (`{"module:rpc": {...}}`).
pub fn validate_rpc(ctx: &YangContext, json: &str, reply: bool) -> Result<(), DataError> {
    refuse_nul(json)?;
    let op = if reply { DataOperation::ReplyYang } else { DataOperation::RpcYang };
    let what = if reply { "output" } else { "input" };
    let tree =
        DataTree::parse_op_string(ctx.ly(), json, DataFormat::JSON, DataParserFlags::STRICT, op)
            .map_err(|e| ly_error(e, what))?;
    crate::libyang_ffi::validate_operation(ctx.ly(), &tree, op).map_err(|e| ly_error(e, what))
}

/// Validates a notification given as `{"module:notification-name": {...}}`.
pub fn validate_notification(ctx: &YangContext, json: &str) -> Result<(), DataError> {
    parse_notification(ctx, json).map(|_| ())
}

/// Validates a notification given as `{"module:notification-name": {...}}` and returns it as
/// libyang writes it: every value in its canonical form (decimal64 `0.01`, not `0.010`), members
/// in schema order, the same text the datastore would hold.
pub fn canonical_notification(ctx: &YangContext, json: &str) -> Result<String, DataError> {
    let tree = parse_notification(ctx, json)?;
    let flags = DataPrinterFlags::WITH_SIBLINGS
        | DataPrinterFlags::SHRINK
        | DataPrinterFlags::KEEP_EMPTY_CONT;
    tree.print_string(DataFormat::JSON, flags).map_err(|e| ly_error(e, "notification"))
}

fn parse_notification<'a>(ctx: &'a YangContext, json: &str) -> Result<DataTree<'a>, DataError> {
    refuse_nul(json)?;
    let op = DataOperation::NotificationYang;
    let tree =
        DataTree::parse_op_string(ctx.ly(), json, DataFormat::JSON, DataParserFlags::STRICT, op)
            .map_err(|e| ly_error(e, "notification"))?;
    crate::libyang_ffi::validate_operation(ctx.ly(), &tree, op)
        .map_err(|e| ly_error(e, "notification"))?;
    Ok(tree)
}

fn refuse_nul(text: &str) -> Result<(), DataError> {
    if text.contains('\0') {
        return Err(DataError::malformed("input contains a NUL byte"));
    }
    Ok(())
}

/// Maps a libyang error to a [`DataError`].
pub(crate) fn ly_error(err: yang5::Error, what: &str) -> DataError {
    let message = err.msg.clone().unwrap_or_else(|| format!("invalid {what}"));
    let tag = if message.contains("not found as a child")
        || message.contains("not found in any")
        || message.starts_with("Unknown element")
        || message.contains("No module named")
        || message.contains("module not found")
    {
        ErrorTag::UnknownElement
    } else if message.contains("JSON") && message.contains("syntax") {
        ErrorTag::MalformedMessage
    } else {
        ErrorTag::InvalidValue
    };
    let message = if message.starts_with("Unexpected data state node") {
        format!("{message} State (config false) data cannot be written.")
    } else {
        message
    };
    let mut out = DataError::new(tag, message);
    if let Some(path) = err.path.filter(|p| !p.is_empty()) {
        out = out.at(path);
    }
    if let Some(app_tag) = err.apptag {
        out = out.with_app_tag(app_tag);
    }
    out
}

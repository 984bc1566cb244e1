//! Errors about data, in the vocabulary of RFC 8040 §7 (`error-tag`, `error-path`), so that
//! every layer (input parsing, validation, datastore, application hooks) reports failures that
//! the RESTCONF server can send unchanged as an `ietf-restconf:errors` body.

/// The RFC 8040 §7 / RFC 6241 Appendix A error tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorTag {
    /// `in-use`
    InUse,
    /// `invalid-value`
    InvalidValue,
    /// `too-big`
    TooBig,
    /// `missing-attribute`
    MissingAttribute,
    /// `bad-attribute`
    BadAttribute,
    /// `unknown-attribute`
    UnknownAttribute,
    /// `bad-element`
    BadElement,
    /// `unknown-element`
    UnknownElement,
    /// `unknown-namespace`
    UnknownNamespace,
    /// `access-denied`
    AccessDenied,
    /// `lock-denied`
    LockDenied,
    /// `resource-denied`
    ResourceDenied,
    /// `rollback-failed`
    RollbackFailed,
    /// `data-exists`
    DataExists,
    /// `data-missing`
    DataMissing,
    /// `operation-not-supported`
    OperationNotSupported,
    /// `operation-failed`
    OperationFailed,
    /// `partial-operation`
    PartialOperation,
    /// `malformed-message`
    MalformedMessage,
}

impl ErrorTag {
    /// The tag as written in `error-tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorTag::InUse => "in-use",
            ErrorTag::InvalidValue => "invalid-value",
            ErrorTag::TooBig => "too-big",
            ErrorTag::MissingAttribute => "missing-attribute",
            ErrorTag::BadAttribute => "bad-attribute",
            ErrorTag::UnknownAttribute => "unknown-attribute",
            ErrorTag::BadElement => "bad-element",
            ErrorTag::UnknownElement => "unknown-element",
            ErrorTag::UnknownNamespace => "unknown-namespace",
            ErrorTag::AccessDenied => "access-denied",
            ErrorTag::LockDenied => "lock-denied",
            ErrorTag::ResourceDenied => "resource-denied",
            ErrorTag::RollbackFailed => "rollback-failed",
            ErrorTag::DataExists => "data-exists",
            ErrorTag::DataMissing => "data-missing",
            ErrorTag::OperationNotSupported => "operation-not-supported",
            ErrorTag::OperationFailed => "operation-failed",
            ErrorTag::PartialOperation => "partial-operation",
            ErrorTag::MalformedMessage => "malformed-message",
        }
    }

    /// Parses an `error-tag` string.
    pub fn parse(tag: &str) -> Option<ErrorTag> {
        const ALL: [ErrorTag; 19] = [
            ErrorTag::InUse,
            ErrorTag::InvalidValue,
            ErrorTag::TooBig,
            ErrorTag::MissingAttribute,
            ErrorTag::BadAttribute,
            ErrorTag::UnknownAttribute,
            ErrorTag::BadElement,
            ErrorTag::UnknownElement,
            ErrorTag::UnknownNamespace,
            ErrorTag::AccessDenied,
            ErrorTag::LockDenied,
            ErrorTag::ResourceDenied,
            ErrorTag::RollbackFailed,
            ErrorTag::DataExists,
            ErrorTag::DataMissing,
            ErrorTag::OperationNotSupported,
            ErrorTag::OperationFailed,
            ErrorTag::PartialOperation,
            ErrorTag::MalformedMessage,
        ];
        ALL.into_iter().find(|t| t.as_str() == tag)
    }

    /// The HTTP status RFC 8040 §7 gives the tag when nothing more specific applies.
    pub fn default_status(self) -> u16 {
        match self {
            ErrorTag::InUse
            | ErrorTag::LockDenied
            | ErrorTag::ResourceDenied
            | ErrorTag::DataExists
            | ErrorTag::DataMissing => 409,
            ErrorTag::TooBig => 413,
            ErrorTag::AccessDenied => 403,
            ErrorTag::OperationNotSupported => 405,
            ErrorTag::RollbackFailed | ErrorTag::OperationFailed | ErrorTag::PartialOperation => {
                500
            }
            ErrorTag::InvalidValue
            | ErrorTag::MissingAttribute
            | ErrorTag::BadAttribute
            | ErrorTag::UnknownAttribute
            | ErrorTag::BadElement
            | ErrorTag::UnknownElement
            | ErrorTag::UnknownNamespace
            | ErrorTag::MalformedMessage => 400,
        }
    }
}

/// A failure concerning data or a request about data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DataError {
    /// RFC 8040 `error-tag`.
    pub tag: ErrorTag,
    /// `error-app-tag`, when a YANG statement or the application names one.
    pub app_tag: Option<String>,
    /// `error-path`: an instance-identifier (RFC 7951 §6.11) of the offending node.
    pub path: Option<String>,
    /// `error-message`.
    pub message: String,
    /// HTTP status, when it is not the tag's default (404 for a missing resource, 412 for a
    /// failed precondition, ...).
    pub status: Option<u16>,
    /// The problem is with the request itself (its URI, query, headers or framing) rather than
    /// with the data: RESTCONF `error-type` `protocol` instead of `application`.
    pub protocol: bool,
}

impl DataError {
    /// An error with `tag` and `message`.
    pub fn new(tag: ErrorTag, message: impl Into<String>) -> DataError {
        DataError {
            tag,
            app_tag: None,
            path: None,
            message: message.into(),
            status: None,
            protocol: false,
        }
    }

    /// `invalid-value` (400).
    pub fn invalid_value(message: impl Into<String>) -> DataError {
        DataError::new(ErrorTag::InvalidValue, message)
    }

    /// `invalid-value` (400) about the request rather than the data (`error-type` protocol).
    pub fn protocol_value(message: impl Into<String>) -> DataError {
        DataError::new(ErrorTag::InvalidValue, message).protocol()
    }

    /// `malformed-message` (400).
    pub fn malformed(message: impl Into<String>) -> DataError {
        DataError::new(ErrorTag::MalformedMessage, message)
    }

    /// `unknown-element` (400).
    pub fn unknown_element(message: impl Into<String>) -> DataError {
        DataError::new(ErrorTag::UnknownElement, message)
    }

    /// The target resource does not exist: `invalid-value` with status 404 (RFC 8040 §7).
    pub fn not_found(path: impl Into<String>) -> DataError {
        let path = path.into();
        DataError::new(ErrorTag::InvalidValue, format!("no data at {path}"))
            .at(path)
            .with_status(404)
    }

    /// `resource-denied` (409): creating something that is already there (the tag RFC 8040
    /// §4.4.1 gives a POST of an existing resource).
    pub fn exists(path: impl Into<String>) -> DataError {
        let path = path.into();
        DataError::new(ErrorTag::ResourceDenied, format!("{path} already exists")).at(path)
    }

    /// `operation-failed` (500).
    pub fn internal(message: impl Into<String>) -> DataError {
        DataError::new(ErrorTag::OperationFailed, message)
    }

    /// Sets `error-path`.
    pub fn at(mut self, path: impl Into<String>) -> DataError {
        self.path = Some(path.into());
        self
    }

    /// Sets `error-path` unless one is set already.
    pub fn at_if_unset(mut self, path: impl Into<String>) -> DataError {
        if self.path.is_none() {
            self.path = Some(path.into());
        }
        self
    }

    /// Sets `error-app-tag`.
    pub fn with_app_tag(mut self, app_tag: impl Into<String>) -> DataError {
        self.app_tag = Some(app_tag.into());
        self
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: u16) -> DataError {
        self.status = Some(status);
        self
    }

    /// Marks the error as a problem with the request rather than the data.
    pub fn protocol(mut self) -> DataError {
        self.protocol = true;
        self
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.tag.default_status())
    }
}

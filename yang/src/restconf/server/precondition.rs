//! Entity tags and modification times of data resources, and the HTTP conditional headers
//! (RFC 7232) evaluated against them.
//!
//! A resource's entity-tag is built from the datastore versions at which its configuration and
//! its state last changed (each interior node of the tree records them), prefixed with a random
//! per-process epoch so tags from before a restart never match. A representation that includes
//! state has a tag covering both; `If-Match` on a write compares the configuration part only, so
//! a client can GET with state and still update safely while counters move.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::datastore::{ContentFilter, Precondition, Snapshot};
use crate::error::{DataError, ErrorTag};
use crate::path::DataPath;
use crate::tree::{NodeRef, lookup};

/// ETag and Last-Modified of one representation.
#[derive(Debug, Clone)]
pub(crate) struct Validators {
    pub(crate) etag: String,
    pub(crate) last_modified: Option<SystemTime>,
}

fn epoch() -> &'static str {
    static EPOCH: OnceLock<String> = OnceLock::new();
    EPOCH.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ ((nanos >> 64) as u64);
        format!("{:x}", mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16)
    })
}

/// The validators of the resource at `path` as rendered with `content`.
pub(crate) fn validators(snap: &Snapshot, path: &DataPath, content: ContentFilter) -> Validators {
    let meta = snap.resource_meta(path);
    let c = meta.config.map_or(0, |m| m.version);
    let s = meta.state.map_or(0, |m| m.version);
    let e = epoch();
    let (etag, times) = match content {
        ContentFilter::Config => (format!("\"{e}-c{c}\""), vec![meta.config]),
        ContentFilter::NonConfig => (format!("\"{e}-s{s}\""), vec![meta.state]),
        ContentFilter::All => (format!("\"{e}-c{c}-s{s}\""), vec![meta.config, meta.state]),
    };
    let last_modified = times.into_iter().flatten().map(|m| m.modified).max();
    Validators { etag, last_modified }
}

/// Entity tags listed in `If-Match` or `If-None-Match`.
#[derive(Debug, Clone)]
enum TagList {
    Any,
    Tags(Vec<(bool, String)>),
}

/// The conditional headers of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_match: Option<TagList>,
    if_none_match: Option<TagList>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, DataError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| DataError::invalid_value(format!("header {name} is not ASCII"))),
    }
}

fn tag_list(text: &str, name: &str) -> Result<TagList, DataError> {
    if text.trim() == "*" {
        return Ok(TagList::Any);
    }
    let mut tags = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (weak, rest) = match item.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let Some(opaque) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return Err(DataError::invalid_value(format!(
                "header {name}: \"{item}\" is not an entity-tag (tags are quoted)"
            )));
        };
        tags.push((weak, opaque.to_owned()));
    }
    Ok(TagList::Tags(tags))
}

fn http_date(text: &str, name: &str) -> Result<SystemTime, DataError> {
    httpdate::parse_http_date(text).map_err(|_| {
        DataError::invalid_value(format!("header {name}: \"{text}\" is not an HTTP-date"))
    })
}

/// Reads the conditional headers.
pub(crate) fn conditions(headers: &HeaderMap) -> Result<Conditions, DataError> {
    Ok(Conditions {
        if_match: header_text(headers, "if-match")?.map(|t| tag_list(t, "If-Match")).transpose()?,
        if_none_match: header_text(headers, "if-none-match")?
            .map(|t| tag_list(t, "If-None-Match"))
            .transpose()?,
        if_modified_since: header_text(headers, "if-modified-since")?
            .map(|t| http_date(t, "If-Modified-Since"))
            .transpose()?,
        if_unmodified_since: header_text(headers, "if-unmodified-since")?
            .map(|t| http_date(t, "If-Unmodified-Since"))
            .transpose()?,
    })
}

/// Whole seconds, as HTTP dates carry.
fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

fn failed(what: &str) -> DataError {
    DataError::new(ErrorTag::OperationFailed, format!("precondition failed: {what}"))
        .with_status(412)
}

impl Conditions {
    /// Whether a GET or HEAD should be answered 304 Not Modified (RFC 7232 §6). `If-Match` and
    /// `If-Unmodified-Since` failures on a read answer 412.
    pub(crate) fn check_read(&self, v: &Validators) -> Result<bool, DataError> {
        let current = v.etag.trim_matches('"');
        if let Some(list) = &self.if_match {
            let ok = match list {
                TagList::Any => true,
                TagList::Tags(tags) => tags.iter().any(|(weak, t)| !weak && t == current),
            };
            if !ok {
                return Err(failed("If-Match does not match the resource's entity-tag"));
            }
        } else if let (Some(since), Some(modified)) = (self.if_unmodified_since, v.last_modified)
            && seconds(modified) > seconds(since)
        {
            return Err(failed("the resource was modified after If-Unmodified-Since"));
        }
        if let Some(list) = &self.if_none_match {
            return Ok(match list {
                TagList::Any => true,
                TagList::Tags(tags) => tags.iter().any(|(_, t)| t == current),
            });
        }
        if let (Some(since), Some(modified)) = (self.if_modified_since, v.last_modified) {
            return Ok(seconds(modified) <= seconds(since));
        }
        Ok(false)
    }

    /// Whether the request carries any condition that applies to writes.
    fn any_for_write(&self) -> bool {
        self.if_match.is_some()
            || self.if_none_match.is_some()
            || self.if_unmodified_since.is_some()
    }

    /// The conditions of a write on the configuration resource at `path`, to be checked by the
    /// datastore owner atomically with the edit.
    pub(crate) fn for_write(self, path: DataPath) -> Option<Precondition> {
        if !self.any_for_write() {
            return None;
        }
        Some(Precondition::new(move |snap: &Snapshot| {
            let exists = path.is_root()
                || lookup(&snap.running, &path).is_some_and(|n| !matches!(n, NodeRef::List(_)));
            let meta = snap.resource_meta(&path).config;
            let config_tag = format!("{}-c{}", epoch(), meta.map_or(0, |m| m.version));
            let matches = |opaque: &str| {
                exists && (opaque == config_tag || opaque.starts_with(&format!("{config_tag}-s")))
            };
            if let Some(list) = &self.if_match {
                let ok = match list {
                    TagList::Any => exists,
                    TagList::Tags(tags) => tags.iter().any(|(weak, t)| !weak && matches(t)),
                };
                if !ok {
                    return Err(failed(if matches!(list, TagList::Any) {
                        "If-Match: * but the resource does not exist"
                    } else {
                        "If-Match does not match the resource's current entity-tag"
                    }));
                }
            }
            if let Some(list) = &self.if_none_match {
                let hit = match list {
                    TagList::Any => exists,
                    TagList::Tags(tags) => tags.iter().any(|(_, t)| matches(t)),
                };
                if hit {
                    return Err(failed(if matches!(list, TagList::Any) {
                        "If-None-Match: * but the resource exists"
                    } else {
                        "If-None-Match matches the resource's current entity-tag"
                    }));
                }
            }
            if let (Some(since), Some(meta)) = (self.if_unmodified_since, meta)
                && exists
                && seconds(meta.modified) > seconds(since)
            {
                return Err(failed("the resource was modified after If-Unmodified-Since"));
            }
            Ok(())
        }))
    }
}

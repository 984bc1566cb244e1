//! The ETSI GS QKD 015 list entries qkdn writes and reads, as typed structs: `qkd_link`,
//! `qkd_app` (with its `app_qos`) and `qkd_interface`, configuration leaves only.
//!
//! Written (serialized) they are RFC 7951 JSON members of `etsi-qkd-sdn-node:qkd_node`, with
//! identities module-qualified (`etsi-qkd-node-types:VIRT`) and absent leaves left out; a test
//! passes each through libyang. Read ([`QkdLink::read`] and the others), they are tolerant, as
//! entries of third-party agents need: unknown members are ignored, members and identities are
//! accepted with or without their module prefix, numbers also as strings, and a member of the
//! wrong type reads as absent instead of losing the whole entry. A QoS field is added here,
//! once.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

/// The module of the identities (`etsi-qkd-node-types:...`).
const TYPES: &str = "etsi-qkd-node-types";

/// `qkdl_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// A physical link (a QKD device pair on a fibre).
    Phys,
    /// A virtual link (keys relayed over trusted nodes).
    Virt,
}

/// `app_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppType {
    /// An application of SAEs.
    Client,
    /// The node's own use of keys.
    Internal,
}

/// Identities written `etsi-qkd-node-types:NAME`, read with or without the prefix.
trait Identity: Sized + Copy + 'static {
    const NAMES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::NAMES.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }

    fn from_name(text: &str) -> Option<Self> {
        let bare = text.rsplit(':').next().unwrap_or(text);
        Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(bare)).map(|(_, v)| *v)
    }
}

impl Identity for LinkType {
    const NAMES: &'static [(&'static str, Self)] =
        &[("PHYS", LinkType::Phys), ("VIRT", LinkType::Virt)];
}

impl Identity for AppType {
    const NAMES: &'static [(&'static str, Self)] =
        &[("CLIENT", AppType::Client), ("INTERNAL", AppType::Internal)];
}

macro_rules! identity_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&format!("{TYPES}:{}", self.name()))
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t>::from_name(&text)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown identity {text:?}")))
            }
        }
    };
}
identity_serde!(LinkType);
identity_serde!(AppType);

/// A member as `T`, or absent (default) when it is missing or of another type: one bad
/// member of a third-party entry does not lose the entry. Numbers and booleans written as
/// strings count.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    let value = Json::deserialize(d)?;
    if let Ok(v) = T::deserialize(&value) {
        return Ok(v);
    }
    let unquoted = match &value {
        Json::String(s) => {
            s.parse::<u64>().ok().map(Json::from).or_else(|| s.parse::<bool>().ok().map(Json::from))
        }
        Json::Array(items) => Some(Json::Array(
            items
                .iter()
                .map(|i| match i.as_str().and_then(|s| s.parse::<u64>().ok()) {
                    Some(n) => Json::from(n),
                    None => i.clone(),
                })
                .collect(),
        )),
        _ => None,
    };
    Ok(unquoted.and_then(|v| T::deserialize(&v).ok()).unwrap_or_default())
}

/// `value` with the module prefixes of its members' names dropped (`etsi-qkd-sdn-node:qkdl_id`
/// is `qkdl_id`), at every depth.
fn unprefixed(value: &Json) -> Json {
    match value {
        Json::Object(members) => Json::Object(
            members
                .iter()
                .map(|(k, v)| (k.rsplit(':').next().unwrap_or(k).to_owned(), unprefixed(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(unprefixed).collect()),
        other => other.clone(),
    }
}

/// Reads an entry tolerantly: `T` from `entry` with its members' prefixes dropped.
fn read_entry<T: DeserializeOwned>(entry: &Json) -> Option<T> {
    if has_prefixed_member(entry) {
        T::deserialize(unprefixed(entry)).ok()
    } else {
        T::deserialize(entry).ok()
    }
}

/// Whether a member name anywhere in `value` has a module prefix (most entries have none, and
/// are read without a copy).
fn has_prefixed_member(value: &Json) -> bool {
    match value {
        Json::Object(members) => {
            members.iter().any(|(k, v)| k.contains(':') || has_prefixed_member(v))
        }
        Json::Array(items) => items.iter().any(has_prefixed_member),
        _ => false,
    }
}

/// `qkdl_local` or `qkdl_remote`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEnd {
    /// `qkdn_id`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdn_id: Option<Uuid>,
    /// `qkdi_id`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdi_id: Option<u32>,
}

/// A `qkd_link` entry (its configuration).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QkdLink {
    /// `qkdl_id`.
    pub qkdl_id: Uuid,
    /// `qkdl_enable` (absent: enabled).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdl_enable: Option<bool>,
    /// `qkdl_local`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdl_local: Option<LinkEnd>,
    /// `qkdl_remote`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdl_remote: Option<LinkEnd>,
    /// `qkdl_type`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdl_type: Option<LinkType>,
    /// `virt_prev_hop`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub virt_prev_hop: Option<Uuid>,
    /// `virt_next_hop`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Vec::is_empty")]
    pub virt_next_hop: Vec<Uuid>,
    /// `virt_bandwidth`, bit/s.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub virt_bandwidth: Option<u32>,
    /// `phys_channel_att`, dB (a decimal64, written as a string).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub phys_channel_att: Option<String>,
}

impl QkdLink {
    /// Reads an entry tolerantly; none without a readable `qkdl_id`.
    pub fn read(entry: &Json) -> Option<QkdLink> {
        read_entry(entry)
    }

    /// Whether it is enabled (`qkdl_enable`, default true).
    pub fn enabled(&self) -> bool {
        self.qkdl_enable.unwrap_or(true)
    }
}

/// `app_qos`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppQos {
    /// `max_bandwidth`, bit/s.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u32>,
    /// `min_bandwidth`, bit/s.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub min_bandwidth: Option<u32>,
    /// `jitter`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u32>,
    /// `ttl`, seconds.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// `clients_shared_path_enable`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub clients_shared_path_enable: Option<bool>,
    /// `clients_shared_keys_required`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub clients_shared_keys_required: Option<bool>,
}

impl AppQos {
    /// Reads an `app_qos` tolerantly (anything but an object: every field absent).
    pub fn read(value: &Json) -> AppQos {
        read_entry(value).unwrap_or_default()
    }
}

/// A `qkd_app` entry (its configuration).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QkdApp {
    /// `app_id`.
    pub app_id: Uuid,
    /// `app_type`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub app_type: Option<AppType>,
    /// `server_app_id`: the SAE at this node.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub server_app_id: Option<String>,
    /// `client_app_id`: the SAEs at the other end.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Vec::is_empty")]
    pub client_app_id: Vec<String>,
    /// `app_priority`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub app_priority: Option<u32>,
    /// `expiration_time` (RFC 3339).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// `app_qos`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub app_qos: Option<AppQos>,
    /// `backing_qkdl_id`: the links whose keys serve it.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Vec::is_empty")]
    pub backing_qkdl_id: Vec<Uuid>,
    /// `local_qkdn_id`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub local_qkdn_id: Option<Uuid>,
    /// `remote_qkdn_id`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub remote_qkdn_id: Option<Uuid>,
}

impl QkdApp {
    /// Reads an entry tolerantly; none without a readable `app_id`.
    pub fn read(entry: &Json) -> Option<QkdApp> {
        read_entry(entry)
    }

    /// Its QoS (absent: every field absent).
    pub fn qos(&self) -> AppQos {
        self.app_qos.clone().unwrap_or_default()
    }
}

/// `qkdi_att_point`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPoint {
    /// `device`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `port`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// A `qkd_interface` entry (its configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QkdInterface {
    /// `qkdi_id`.
    pub qkdi_id: u32,
    /// `qkdi_model`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdi_model: Option<String>,
    /// `qkdi_type` (an identity of `etsi-qkd-node-types`, as written).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdi_type: Option<String>,
    /// `qkdi_att_point`.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub qkdi_att_point: Option<AttachmentPoint>,
}

impl QkdInterface {
    /// Reads an entry tolerantly; none without a readable `qkdi_id`.
    pub fn read(entry: &Json) -> Option<QkdInterface> {
        read_entry(entry)
    }
}

/// The entries of list `list` in container `container` of a `qkd_node` body (either the
/// `etsi-qkd-sdn-node:qkd_node` member or its content), read with `read`; unreadable entries
/// are skipped.
pub fn entries<T>(
    node: &Json,
    container: &str,
    list: &str,
    read: fn(&Json) -> Option<T>,
) -> Vec<T> {
    let node = node.get("etsi-qkd-sdn-node:qkd_node").unwrap_or(node);
    node[container][list].as_array().into_iter().flatten().filter_map(read).collect()
}

#[cfg(test)]
mod tests;

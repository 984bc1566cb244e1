//! `lab.json`: the machine-readable description of a running lab, written by `qkdn lab up` once
//! everything is ready and read by the other `qkdn` commands (and by scripts): every service's
//! endpoints, the certificates of the operator client and of each SAE, the SAEs' nodes and the
//! demo applications. Paths are absolute; URLs carry scheme, host and port.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The endpoints of a controller or of the orchestrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ServiceEndpoints {
    /// Its domain (controllers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) domain: Option<String>,
    /// REST API root (`.../api/v1`).
    pub(crate) rest: String,
    /// RESTCONF root (`.../restconf`).
    pub(crate) restconf: String,
    /// Prometheus metrics.
    pub(crate) metrics: String,
    /// Readiness.
    pub(crate) readyz: String,
}

/// A node's endpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NodeEntry {
    /// `qkdn_id`.
    pub(crate) id: String,
    /// Topology name.
    pub(crate) name: String,
    /// The domains it belongs to.
    pub(crate) domains: Vec<String>,
    /// RESTCONF root of its agent (ETSI 015).
    pub(crate) restconf: String,
    /// Its KMS's ETSI 014 server (`/api/v1/keys/...` below it).
    pub(crate) kms_014: String,
    /// Its KMS's SKIP key provider for encryptors with certificates (`/capabilities`, `/key`,
    /// `/key/{keyId}`, `/entropy` below it).
    pub(crate) kms_skip: String,
    /// The agent's API beside RESTCONF (`/v1/kms/stores`, `/v1/links`, ...; authenticated).
    pub(crate) api: String,
    /// Prometheus metrics.
    pub(crate) metrics: String,
    /// The agent's management root (`/healthz`, `/readyz`, `/metrics`; plain HTTP).
    pub(crate) management: String,
}

/// An SAE.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SaeEntry {
    /// SAE ID.
    pub(crate) id: String,
    /// Its node's `qkdn_id`.
    pub(crate) node: String,
    /// Its node's name.
    pub(crate) node_name: String,
    /// Client certificate.
    pub(crate) cert: PathBuf,
    /// Its key.
    pub(crate) key: PathBuf,
}

/// A demo application.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AppEntry {
    /// `app_id` (`service_id` for orchestrator services).
    pub(crate) id: String,
    /// The SAE that calls `enc_keys`.
    pub(crate) master_sae: String,
    /// The SAE that calls `dec_keys`.
    pub(crate) slave_sae: String,
    /// `application` (a controller's) or `service` (the orchestrator's, across domains).
    pub(crate) kind: String,
    /// Key rate asked for, bit/s.
    pub(crate) rate_bps: u64,
}

/// A certificate and its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// Certificate (PEM).
    pub(crate) cert: PathBuf,
    /// Private key (PEM).
    pub(crate) key: PathBuf,
}

/// The whole file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LabFile {
    /// Topology name.
    pub(crate) topology: String,
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// The process id of `qkdn lab up`.
    pub(crate) pid: u32,
    /// The CA every certificate chains to.
    pub(crate) ca_cert: PathBuf,
    /// The operator's client certificate (accepted by every service).
    pub(crate) client: Identity,
    /// The controller (of the first domain).
    pub(crate) controller: ServiceEndpoints,
    /// Every domain's controller.
    pub(crate) controllers: Vec<ServiceEndpoints>,
    /// The orchestrator (several domains only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) orchestrator: Option<ServiceEndpoints>,
    /// Nodes.
    pub(crate) nodes: Vec<NodeEntry>,
    /// SAEs.
    pub(crate) saes: Vec<SaeEntry>,
    /// Demo applications.
    pub(crate) apps: Vec<AppEntry>,
}

impl LabFile {
    /// Reads `file`.
    pub(crate) fn read(file: &Path) -> Result<LabFile, String> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!("{}: {e} (is a lab running? start one with `qkdn lab up`)", file.display())
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}:{}: not a lab description: {e}", file.display(), e.line()))
    }

    /// The SAE `id`.
    pub(crate) fn sae(&self, id: &str) -> Result<&SaeEntry, String> {
        self.saes.iter().find(|s| s.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.saes.iter().map(|s| s.id.as_str()).collect();
            format!("no SAE {id} in the lab (known: {})", known.join(", "))
        })
    }

    /// The node with `qkdn_id` or name `key`.
    pub(crate) fn node(&self, key: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == key || n.name == key)
    }
}

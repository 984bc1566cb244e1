//! Writing an application's entries to the nodes: one job brings the nodes from what they hold
//! (or may hold) to what the application needs: PUT of every missing or changed entry (links
//! before the applications they back), then DELETE of every entry no longer needed
//! (applications before links). PUTs stop at the first refusal, so the caller can roll back
//! what was written; DELETEs are all tried, and a 404 counts as done.

use std::collections::HashMap;

use qkdn_yang::restconf::client::{ClientError, RestconfClient};
use serde::Serialize;
use uuid::Uuid;

use crate::apps::{Entry, EntryKind};

/// The writes for one application.
#[derive(Debug)]
pub struct Job {
    /// Entries to write, in order.
    pub puts: Vec<Entry>,
    /// Entries to remove.
    pub deletes: Vec<Entry>,
}

/// A write a node refused or could not take.
#[derive(Clone, Debug, Serialize)]
pub struct WriteFailure {
    /// The node.
    pub node: Uuid,
    /// The RESTCONF path written.
    pub path: String,
    /// The agent's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong (the agent's error message when it gave one).
    pub message: String,
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} did not take {}: {}", self.node, self.path, self.message)
    }
}

/// What a job did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Keys of the entries written.
    pub written: Vec<String>,
    /// Keys of the entries removed (or found absent).
    pub removed: Vec<String>,
    /// The first failed write, if any (later PUTs were not tried).
    pub failure: Option<WriteFailure>,
    /// Removals that failed (their entries may still be on the nodes).
    pub failed_removals: Vec<WriteFailure>,
}

fn failure(node: Uuid, path: &str, e: &ClientError) -> WriteFailure {
    let message = match e.first_error() {
        Some(entry) => entry.error_message.clone().unwrap_or_else(|| entry.error_tag.clone()),
        None => e.to_string(),
    };
    WriteFailure { node, path: path.to_owned(), status: e.status(), message }
}

/// Runs `job` against the nodes' RESTCONF servers.
pub async fn run(job: Job, clients: &HashMap<Uuid, RestconfClient>) -> Outcome {
    let mut outcome = Outcome::default();
    for entry in &job.puts {
        let path = entry.path();
        let Some(client) = clients.get(&entry.node) else {
            outcome.failure = Some(WriteFailure {
                node: entry.node,
                path,
                status: None,
                message: "the controller has no session with this node".into(),
            });
            break;
        };
        match client.put(&path, &entry.document()).await {
            Ok(_) => outcome.written.push(entry.key()),
            Err(e) => {
                outcome.failure = Some(failure(entry.node, &path, &e));
                break;
            }
        }
    }
    let mut deletes: Vec<&Entry> = job.deletes.iter().collect();
    deletes.sort_by_key(|e| match e.kind {
        EntryKind::App => 0,
        EntryKind::Link => 1,
    });
    for entry in deletes {
        let path = entry.path();
        let Some(client) = clients.get(&entry.node) else {
            outcome.failed_removals.push(WriteFailure {
                node: entry.node,
                path,
                status: None,
                message: "the controller has no session with this node".into(),
            });
            continue;
        };
        match client.delete(&path).await {
            Ok(()) => outcome.removed.push(entry.key()),
            Err(e) if e.status() == Some(404) => outcome.removed.push(entry.key()),
            Err(e) => outcome.failed_removals.push(failure(entry.node, &path, &e)),
        }
    }
    outcome
}

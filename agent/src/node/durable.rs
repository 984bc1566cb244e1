//! The agent's durable state, in a redb database under the data directory: the running
//! configuration as last committed (so controller-written links and applications survive a
//! restart) and the creation time of each application (`creation_time` is state, but must not
//! change when the agent restarts).

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use uuid::Uuid;

const CONFIG: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("config");
const APP_CREATED: TableDefinition<'_, &str, &str> = TableDefinition::new("app_created");
const RUNNING: &str = "running";

/// A failure of the durable store.
#[derive(Debug, thiserror::Error)]
#[error("agent store {path}: {message}")]
pub struct StoreError {
    path: String,
    message: String,
}

/// The durable store.
pub struct NodeStore {
    db: Database,
    path: String,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore").field("path", &self.path).finish()
    }
}

impl NodeStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<NodeStore, StoreError> {
        let path = dir.join("agent.redb");
        let shown = path.display().to_string();
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError { path: shown.clone(), message: e.to_string() })?;
        let db = Database::create(&path)
            .map_err(|e| StoreError { path: shown.clone(), message: e.to_string() })?;
        Ok(NodeStore { db, path: shown })
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError { path: self.path.clone(), message: e.to_string() }
    }

    /// The running configuration last saved.
    pub fn running(&self) -> Result<Option<serde_json::Value>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match read.open_table(CONFIG) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let Some(bytes) = table.get(RUNNING).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.fail(format!("saved configuration: {e}")))
    }

    /// Saves the running configuration (durably, before returning).
    pub fn save_running(&self, doc: &serde_json::Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(doc).map_err(|e| self.fail(e))?;
        let write = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = write.open_table(CONFIG).map_err(|e| self.fail(e))?;
            table.insert(RUNNING, bytes.as_slice()).map_err(|e| self.fail(e))?;
        }
        write.commit().map_err(|e| self.fail(e))
    }

    /// Creation times of the applications (RFC 3339).
    pub fn app_created(&self) -> Result<HashMap<Uuid, String>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match read.open_table(APP_CREATED) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(self.fail(e)),
        };
        let mut out = HashMap::new();
        for entry in table.iter().map_err(|e| self.fail(e))? {
            let (k, v) = entry.map_err(|e| self.fail(e))?;
            if let Ok(id) = k.value().parse() {
                out.insert(id, v.value().to_owned());
            }
        }
        Ok(out)
    }

    /// Records (`Some`) or forgets (`None`) an application's creation time.
    pub fn set_app_created(&self, app: Uuid, time: Option<&str>) -> Result<(), StoreError> {
        let key = app.to_string();
        let write = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = write.open_table(APP_CREATED).map_err(|e| self.fail(e))?;
            match time {
                Some(t) => {
                    table.insert(key.as_str(), t).map_err(|e| self.fail(e))?;
                }
                None => {
                    table.remove(key.as_str()).map_err(|e| self.fail(e))?;
                }
            }
        }
        write.commit().map_err(|e| self.fail(e))
    }
}

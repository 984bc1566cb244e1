//! The controller's durable state in redb (`<data_dir>/controller.redb`): agent registrations,
//! applications with their paths, and every 015 entry the controller has written (or is about
//! to write) on a node. One writer thread applies batches of puts and deletes; batches that
//! arrive while a commit is running are committed together, and each caller waits until its
//! batch is durable (`Durability::Immediate`) before it answers anyone.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

/// A table of JSON values by string key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Agent registrations by node id.
    Agents,
    /// Applications by id.
    Applications,
    /// Entries written on nodes, by `node/kind/id`.
    Entries,
    /// An orchestrator's end-to-end services, by id (the orchestrator keeps its state in a
    /// store of its own, with this table).
    Services,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Agents => TableDefinition::new("agents"),
            Table::Applications => TableDefinition::new("applications"),
            Table::Entries => TableDefinition::new("entries"),
            Table::Services => TableDefinition::new("services"),
        }
    }
}

/// One change.
#[derive(Clone, Debug)]
pub enum Op {
    /// Store `value` (JSON) under `key`.
    Put(Table, String, Vec<u8>),
    /// Remove `key`.
    Delete(Table, String),
}

impl Op {
    /// A put of `value` serialised as JSON.
    pub fn put(table: Table, key: impl Into<String>, value: &impl Serialize) -> Op {
        Op::Put(table, key.into(), serde_json::to_vec(value).expect("serialisable state"))
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("controller state: {0}")]
pub struct StoreError(String);

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

type Batch = (Vec<Op>, oneshot::Sender<Result<(), StoreError>>);

/// A handle on the store.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    batches: mpsc::UnboundedSender<Batch>,
}

impl Store {
    /// Opens (or creates) `controller.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_file(dir, "controller.redb")
    }

    /// Opens (or creates) `file` in `dir`.
    pub fn open_file(dir: &Path, file: &str) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let path = dir.join(file);
        // A previous owner in this process may still be finishing its last commit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break Arc::new(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(StoreError(format!("{}: {e}", path.display()))),
            }
        };
        let (batches, incoming) = mpsc::unbounded_channel();
        let writer = db.clone();
        std::thread::Builder::new()
            .name("controller-store".into())
            .spawn(move || write_loop(&writer, incoming))
            .map_err(fail)?;
        Ok(Store { db, batches })
    }

    /// Applies `ops` atomically and returns once they are durable.
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.batches.send((ops, done)).map_err(|_| StoreError("the writer stopped".into()))?;
        wait.await.map_err(|_| StoreError("the writer stopped".into()))?
    }

    /// Every value of `table`, decoded, with its key.
    pub fn load<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let read = self.db.begin_read().map_err(fail)?;
        let t = match read.open_table(table.definition()) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(fail(e)),
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            let value = serde_json::from_slice(v.value())
                .map_err(|e| StoreError(format!("{:?} {}: {e}", table, k.value())))?;
            out.push((k.value().to_owned(), value));
        }
        Ok(out)
    }
}

fn write_loop(db: &Database, mut incoming: mpsc::UnboundedReceiver<Batch>) {
    while let Some(first) = incoming.blocking_recv() {
        let mut batches = vec![first];
        while let Ok(more) = incoming.try_recv() {
            batches.push(more);
        }
        let result = commit(db, batches.iter().flat_map(|(ops, _)| ops));
        for (_, done) in batches {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| StoreError(e.0.clone())));
        }
    }
}

fn commit<'a>(db: &Database, ops: impl Iterator<Item = &'a Op>) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(fail)?;
    tx.set_durability(Durability::Immediate).map_err(fail)?;
    {
        let mut tables = [Table::Agents, Table::Applications, Table::Entries, Table::Services]
            .map(|t| tx.open_table(t.definition()));
        for op in ops {
            let (table, key) = match op {
                Op::Put(t, k, _) | Op::Delete(t, k) => (*t, k.as_str()),
            };
            let slot = match table {
                Table::Agents => &mut tables[0],
                Table::Applications => &mut tables[1],
                Table::Entries => &mut tables[2],
                Table::Services => &mut tables[3],
            };
            let t = slot.as_mut().map_err(|e| fail(&*e))?;
            match op {
                Op::Put(_, _, value) => {
                    t.insert(key, value.as_slice()).map_err(fail)?;
                }
                Op::Delete(..) => {
                    t.remove(key).map_err(fail)?;
                }
            }
        }
    }
    tx.commit().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .write(vec![
                    Op::put(Table::Applications, "a", &serde_json::json!({"x": 1})),
                    Op::put(Table::Applications, "b", &serde_json::json!({"x": 2})),
                    Op::put(Table::Entries, "n/link/l", &serde_json::json!(3)),
                ])
                .await
                .unwrap();
            store.write(vec![Op::Delete(Table::Applications, "a".into())]).await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let apps: Vec<(String, serde_json::Value)> = store.load(Table::Applications).unwrap();
        assert_eq!(apps, vec![("b".to_owned(), serde_json::json!({"x": 2}))]);
        assert_eq!(store.load::<u32>(Table::Entries).unwrap(), vec![("n/link/l".to_owned(), 3)]);
        assert!(store.load::<u32>(Table::Agents).unwrap().is_empty());
    }
}

//! A service's durable records in redb: tables of JSON values by string key, named by the
//! service ([`Tables`]). One writer thread applies batches of puts and deletes; batches that
//! arrive while a commit is running are committed together in one transaction (group commit),
//! and each caller waits until its batch is durable (`Durability::Immediate`) before it answers
//! anyone. The controller keeps its agents, applications and node entries here, the
//! orchestrator its services.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

/// The tables of a service's records: each a name in the database.
pub trait Tables: Copy + std::fmt::Debug + Send + Sync + 'static {
    /// The table's name in the database.
    fn name(self) -> &'static str;
}

fn definition(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// One change.
#[derive(Clone, Debug)]
pub enum Op<T> {
    /// Store `value` (JSON) under `key`.
    Put(T, String, Vec<u8>),
    /// Remove `key`.
    Delete(T, String),
}

impl<T: Tables> Op<T> {
    /// A put of `value` serialised as JSON.
    pub fn put(table: T, key: impl Into<String>, value: &impl Serialize) -> Op<T> {
        Op::Put(table, key.into(), serde_json::to_vec(value).expect("serialisable state"))
    }
}

/// Why the records failed.
#[derive(Debug, thiserror::Error)]
#[error("durable state: {0}")]
pub struct StoreError(String);

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

type Batch<T> = (Vec<Op<T>>, oneshot::Sender<Result<(), StoreError>>);

/// A handle on a service's records.
pub struct Records<T> {
    db: Arc<Database>,
    batches: mpsc::UnboundedSender<Batch<T>>,
}

impl<T> Clone for Records<T> {
    fn clone(&self) -> Self {
        Records { db: self.db.clone(), batches: self.batches.clone() }
    }
}

impl<T: Tables> Records<T> {
    /// Opens (or creates) `file` in `dir`.
    pub fn open_file(dir: &Path, file: &str) -> Result<Records<T>, StoreError> {
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
            .name(format!("records-{file}"))
            .spawn(move || write_loop(&writer, incoming))
            .map_err(fail)?;
        Ok(Records { db, batches })
    }

    /// Applies `ops` atomically and returns once they are durable.
    pub async fn write(&self, ops: Vec<Op<T>>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.batches.send((ops, done)).map_err(|_| StoreError("the writer stopped".into()))?;
        wait.await.map_err(|_| StoreError("the writer stopped".into()))?
    }

    /// Every value of `table`, decoded, with its key.
    pub fn load<V: DeserializeOwned>(&self, table: T) -> Result<Vec<(String, V)>, StoreError> {
        let read = self.db.begin_read().map_err(fail)?;
        let t = match read.open_table(definition(table.name())) {
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

fn write_loop<T: Tables>(db: &Database, mut incoming: mpsc::UnboundedReceiver<Batch<T>>) {
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

fn commit<'a, T: Tables>(
    db: &Database,
    ops: impl Iterator<Item = &'a Op<T>> + Clone,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().map_err(fail)?;
    tx.set_durability(Durability::Immediate).map_err(fail)?;
    {
        let mut names: Vec<&'static str> = ops
            .clone()
            .map(|op| match op {
                Op::Put(t, ..) | Op::Delete(t, _) => t.name(),
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut tables = Vec::with_capacity(names.len());
        for name in &names {
            tables.push(tx.open_table(definition(name)).map_err(fail)?);
        }
        for op in ops {
            let (table, key) = match op {
                Op::Put(t, k, _) | Op::Delete(t, k) => (t.name(), k.as_str()),
            };
            let at = names.binary_search(&table).expect("every table of the batch is open");
            let t = &mut tables[at];
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

    #[derive(Clone, Copy, Debug)]
    enum Table {
        Agents,
        Applications,
        Entries,
    }

    impl Tables for Table {
        fn name(self) -> &'static str {
            match self {
                Table::Agents => "agents",
                Table::Applications => "applications",
                Table::Entries => "entries",
            }
        }
    }

    type Store = Records<Table>;

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_file(dir.path(), "t.redb").unwrap();
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
        let store = Store::open_file(dir.path(), "t.redb").unwrap();
        let apps: Vec<(String, serde_json::Value)> = store.load(Table::Applications).unwrap();
        assert_eq!(apps, vec![("b".to_owned(), serde_json::json!({"x": 2}))]);
        assert_eq!(store.load::<u32>(Table::Entries).unwrap(), vec![("n/link/l".to_owned(), 3)]);
        assert!(store.load::<u32>(Table::Agents).unwrap().is_empty());
    }
}

//! The key database's one writer: a thread that owns the [`Disk`] and commits the batches every
//! link's owner sends it. Batches that arrive while a commit runs share the next one (group
//! commit), so many concurrent requests cost one fsync; batches are committed in the order
//! they arrive, so a batch is durable once any later one is.

use tokio::sync::{mpsc, oneshot};

use crate::disk::{Disk, DiskError, DiskOp};
use crate::seal::Keyring;

/// Batches one commit may take.
const MAX_GROUP: usize = 4096;

/// Blocks re-wrapped per transaction during a store key rotation.
const REWRAP_BATCH: usize = 1024;

/// A job of the writer thread.
enum Job {
    /// Ops to commit, and who waits for them.
    Ops(Vec<DiskOp>, Option<oneshot::Sender<Result<(), DiskError>>>),
    /// Re-wrap every block's data key under the keyring's current key (in order with the
    /// writes before it); the number of blocks re-wrapped.
    Rewrap(std::sync::Arc<Keyring>, oneshot::Sender<Result<usize, DiskError>>),
}

/// A handle on the writer thread.
#[derive(Clone)]
pub struct Writer {
    batches: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer(..)")
    }
}

fn stopped() -> DiskError {
    DiskError::Database("the writer stopped".into())
}

impl Writer {
    /// Starts the writer thread over `disk`; it stops when every handle is dropped.
    pub fn start(disk: std::sync::Arc<Disk>) -> Result<Writer, DiskError> {
        let (batches, incoming) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("kms-writer".into())
            .spawn(move || write_loop(&disk, incoming))
            .map_err(|e| DiskError::Database(e.to_string()))?;
        Ok(Writer { batches })
    }

    /// Sends `ops`; the returned future resolves once they are durable (the ops are queued
    /// when this returns, in call order, whether or not the future is awaited; no ops resolve
    /// at once).
    pub fn write(
        &self,
        ops: Vec<DiskOp>,
    ) -> impl Future<Output = Result<(), DiskError>> + Send + 'static {
        // Nothing to write: nothing to wait for (no hand-off to the writer thread).
        let wait = (!ops.is_empty()).then(|| {
            let (done, wait) = oneshot::channel();
            self.batches.send(Job::Ops(ops, Some(done))).ok().map(|()| wait)
        });
        async move {
            match wait {
                None => Ok(()),
                Some(None) => Err(stopped()),
                Some(Some(wait)) => wait.await.map_err(|_| stopped())?,
            }
        }
    }

    /// Queues `ops` without waiting for them.
    pub fn write_detached(&self, ops: Vec<DiskOp>) -> Result<(), DiskError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.batches.send(Job::Ops(ops, None)).map_err(|_| stopped())
    }

    /// Re-wraps every stored block's data key under `ring`'s current key, between the writes
    /// queued before and after; returns how many blocks were re-wrapped.
    pub async fn rewrap(&self, ring: std::sync::Arc<Keyring>) -> Result<usize, DiskError> {
        let (done, wait) = oneshot::channel();
        self.batches.send(Job::Rewrap(ring, done)).map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

fn write_loop(disk: &Disk, mut incoming: mpsc::UnboundedReceiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match incoming.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        let (ops, done) = match first {
            Job::Rewrap(ring, done) => {
                let _ = done.send(disk.rewrap_all(&ring, REWRAP_BATCH));
                continue;
            }
            Job::Ops(ops, done) => (ops, done),
        };
        let mut group = vec![(ops, done)];
        while group.len() < MAX_GROUP {
            match incoming.try_recv() {
                Ok(Job::Ops(ops, done)) => group.push((ops, done)),
                // A rewrap waits for the writes before it.
                Ok(rewrap) => {
                    next = Some(rewrap);
                    break;
                }
                Err(_) => break,
            }
        }
        let ops: Vec<DiskOp> = group.iter_mut().flat_map(|(ops, _)| std::mem::take(ops)).collect();
        let result = if ops.is_empty() { Ok(()) } else { disk.apply(&ops) };
        for (_, done) in group {
            if let Some(done) = done {
                let _ = done.send(result.clone());
            }
        }
    }
}

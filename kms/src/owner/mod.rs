//! The owner of one link's store: a task that holds the [`LinkStore`] and takes its commands
//! one at a time from a [`LinkHandle`]. Nothing else can reach the store, so no step of one
//! request interleaves with another's, and nothing one link does (a sweep, a slow peer) stalls
//! another link: waits (the disk, the other end) happen in tasks the owner spawns, which report
//! back to it with a message.
//!
//! An `enc_keys` take: the owner holds the keys and records the deliveries (written while the
//! other end is asked to reserve them, through [`Reserver`]); when both are done it confirms
//! (keys erased here) and only then answers with the keys, or gives them back when the other
//! end refused or could not be reached. A `dec_keys` fetch or a reservation answers once its
//! write is durable. At start the owner sends again the deliveries a previous run left
//! unconfirmed, and only those: a delivery whose request is waiting is never sent twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::delivery::{Delivery, StreamChunk};
use crate::disk::{DiskError, DiskOp};
use crate::link::{
    Issued, Lacking, LinkStats, LinkStore, NewBlock, ReserveError, StoreError, Take,
};
use crate::seal::SharedKeyring;
use crate::writer::Writer;

mod relay;

pub use relay::{RelayedKeys, Settle};

/// Commands a handle may have waiting before senders wait.
const QUEUE: usize = 1024;

/// How long the owner waits before sending unconfirmed deliveries again.
const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the other end did not reserve deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRefusal {
    /// It lacks (or cannot give) some parts.
    Unusable(Lacking),
    /// Anything else (unreachable, refused): nothing is known to be reserved.
    Failed(String),
}

/// A reservation's future.
pub type ReserveFuture = Pin<Box<dyn Future<Output = Result<(), PeerRefusal>> + Send>>;

/// Asking the other end of a link to reserve deliveries (the agent's peer transport).
pub trait Reserver: Send + Sync + 'static {
    /// Asks `remote`, the other end of `link`, to reserve `deliveries`.
    fn reserve(&self, link: Uuid, remote: Uuid, deliveries: Vec<Delivery>) -> ReserveFuture;
}

/// Why an owner's operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The other end lacked some keys (erased here now); other keys may do.
    #[error("{0} keys were not usable at the other end")]
    Unusable(usize),
    /// Some keys have not reached the other end yet (they are free again here).
    #[error("{0} keys have not reached the other end of the link yet")]
    NotThereYet(usize),
    /// The other end did not reserve the keys.
    #[error("the other end of the link could not reserve the keys: {0}")]
    Peer(String),
    /// The database failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The owner task is gone.
    #[error("the key store of the link stopped")]
    Stopped,
}

/// An `enc_keys` request, owned (it crosses into the owner task).
#[derive(Clone, Debug)]
pub struct TakeRequest {
    /// The master SAE.
    pub master: String,
    /// The slave SAEs.
    pub slaves: Vec<String>,
    /// How many keys.
    pub number: usize,
    /// Their size, bits.
    pub size_bits: u32,
    /// When the slaves' time to fetch them ends, ms since the Unix epoch.
    pub expires_ms: u64,
    /// Keys that must stay for the link's other SAE pairs.
    pub keep_for_others: usize,
    /// The key stream chunk the key is, reserved at both ends (one key, one slave).
    pub chunk: Option<StreamChunk>,
}

type Reply<T> = oneshot::Sender<Result<T, OwnerError>>;

/// Which reserved keys a fetch asks for.
enum Wanted {
    /// By key ID (`dec_keys`).
    Ids(Vec<Uuid>),
    /// A key stream's chunk.
    Chunk(StreamChunk),
}

enum Command {
    Ingest(NewBlock, u64, Reply<()>),
    /// A block's write is done; the keys are usable (or the block forgotten), then the reply.
    Stored(std::ops::Range<u64>, Result<(), DiskError>, Reply<()>),
    Take(TakeRequest, Reply<Vec<Issued>>),
    Settle {
        ids: Vec<Uuid>,
        outcome: Result<(), PeerRefusal>,
        /// The deliveries' record here failed.
        unrecorded: Option<DiskError>,
        issued: Vec<Issued>,
        reply: Reply<Vec<Issued>>,
    },
    Recovered {
        ids: Vec<Uuid>,
        outcome: Result<(), PeerRefusal>,
    },
    RetryRecovery,
    Reserve(Vec<Delivery>, oneshot::Sender<Result<(), ReserveError>>),
    Fetch {
        slave: String,
        master: String,
        wanted: Wanted,
        now_ms: u64,
        reply: Reply<Vec<Issued>>,
    },
    Sweep(u64, oneshot::Sender<()>),
    Stats(oneshot::Sender<LinkStats>),
    Relay(relay::RelayCommand),
    Dropped(usize),
}

/// A handle on a link store's owner.
#[derive(Clone)]
pub struct LinkHandle {
    link: Uuid,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle").field("link", &self.link).finish()
    }
}

impl LinkHandle {
    /// Starts the owner of `store` (on the current tokio runtime); it stops when every handle
    /// is dropped. Deliveries a previous run left unconfirmed are sent again first.
    pub fn spawn(
        store: LinkStore,
        ring: SharedKeyring,
        writer: Writer,
        peer: Arc<dyn Reserver>,
    ) -> LinkHandle {
        let link = store.link();
        let (commands, incoming) = mpsc::channel(QUEUE);
        let owner = Owner { store, ring, writer, peer, to_self: commands.downgrade() };
        tokio::spawn(owner.run(incoming));
        LinkHandle { link, commands }
    }

    /// The link.
    pub fn link(&self) -> Uuid {
        self.link
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, OwnerError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| OwnerError::Stopped)?;
        answer.await.map_err(|_| OwnerError::Stopped)
    }

    /// Stores a block; returns once it is durable and its keys usable.
    pub async fn ingest(&self, block: NewBlock, now_ms: u64) -> Result<(), OwnerError> {
        self.ask(|reply| Command::Ingest(block, now_ms, reply)).await?
    }

    /// `enc_keys` at the owner: keys reserved at the other end, or nothing.
    pub async fn take(&self, request: TakeRequest) -> Result<Vec<Issued>, OwnerError> {
        self.ask(|reply| Command::Take(request, reply)).await?
    }

    /// At the other end: reserves deliveries the owner made; returns once durable.
    pub async fn reserve(&self, deliveries: Vec<Delivery>) -> Result<(), ReserveError> {
        self.ask(|reply| Command::Reserve(deliveries, reply))
            .await
            .map_err(|_| ReserveError::Malformed("the key store of the link stopped"))?
    }

    /// `dec_keys`: the keys `ids` for `slave` of `master`; returns once the fetch is durable.
    pub async fn fetch(
        &self,
        slave: &str,
        master: &str,
        ids: Vec<Uuid>,
        now_ms: u64,
    ) -> Result<Vec<Issued>, OwnerError> {
        let (slave, master, wanted) = (slave.to_owned(), master.to_owned(), Wanted::Ids(ids));
        self.ask(|reply| Command::Fetch { slave, master, wanted, now_ms, reply }).await?
    }

    /// Chunk `chunk` of a key stream for `slave` (the application at this end) whose other
    /// end is `master`; returns once the fetch is durable.
    pub async fn fetch_chunk(
        &self,
        slave: &str,
        master: &str,
        chunk: StreamChunk,
        now_ms: u64,
    ) -> Result<Vec<Issued>, OwnerError> {
        let (slave, master, wanted) = (slave.to_owned(), master.to_owned(), Wanted::Chunk(chunk));
        self.ask(|reply| Command::Fetch { slave, master, wanted, now_ms, reply }).await?
    }

    /// Erases what expired by `now_ms`.
    pub async fn sweep(&self, now_ms: u64) -> Result<(), OwnerError> {
        self.ask(|reply| Command::Sweep(now_ms, reply)).await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<LinkStats, OwnerError> {
        self.ask(Command::Stats).await
    }

    /// Counts `keys` keys lost before they reached the store (the feed could not keep up).
    pub fn count_dropped(&self, keys: usize) {
        self.send_later(Command::Dropped(keys));
    }

    /// Sends a command nobody waits for: at once, or from a task when the owner's queue is
    /// full (never dropped while the owner runs). Must be called within a tokio runtime.
    fn send_later(&self, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }
}

/// Sends a command back to the owner from a task it spawned (nothing when it stopped).
struct Back(mpsc::WeakSender<Command>);

impl Back {
    async fn send(self, command: Command) {
        if let Some(sender) = self.0.upgrade() {
            let _ = sender.send(command).await;
        }
    }
}

struct Owner {
    store: LinkStore,
    ring: SharedKeyring,
    writer: Writer,
    peer: Arc<dyn Reserver>,
    /// For the owner's own tasks to report back (weak: the owner stops with its handles).
    to_self: mpsc::WeakSender<Command>,
}

impl Owner {
    async fn run(mut self, mut incoming: mpsc::Receiver<Command>) {
        self.recover();
        while let Some(command) = incoming.recv().await {
            self.handle(command);
        }
    }

    /// The way back to the owner for a task it spawns.
    fn back(&self) -> Back {
        Back(self.to_self.clone())
    }

    fn recover(&mut self) {
        let pending = self.store.recoverable();
        if pending.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = pending.iter().map(|d| d.parts[0]).collect();
        self.store.resending(&ids);
        let reserve = self.peer.reserve(self.store.link(), self.store.remote(), pending);
        let back = self.back();
        tokio::spawn(async move {
            let outcome = reserve.await;
            back.send(Command::Recovered { ids, outcome }).await;
        });
    }

    /// Queues a write nobody waits for (erasures after an answer: a crash before they are
    /// durable leaves deliveries `Delivering`, confirmed again at the next start). The writer
    /// is gone only when the process is going down.
    fn detached(&self, ops: Vec<DiskOp>) {
        let _ = self.writer.write_detached(ops);
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Ingest(block, now_ms, reply) => {
                match self.store.ingest(&self.ring.load(), block, now_ms) {
                    Ok((block, ops)) => {
                        let durable = self.writer.write(ops);
                        let back = self.back();
                        tokio::spawn(async move {
                            back.send(Command::Stored(block, durable.await, reply)).await;
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Stored(block, result, reply) => {
                match result {
                    Ok(()) => self.store.stored(block),
                    Err(_) => self.store.not_stored(block),
                }
                let _ = reply.send(result.map_err(OwnerError::from));
            }
            Command::Take(request, reply) => {
                let take = Take {
                    master: &request.master,
                    slaves: &request.slaves,
                    number: request.number,
                    size_bits: request.size_bits,
                    expires_ms: request.expires_ms,
                    keep_for_others: request.keep_for_others,
                    chunk: request.chunk,
                };
                let taken = match self.store.take(&take) {
                    Ok(taken) => taken,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let ids: Vec<Uuid> = taken.deliveries.iter().map(|d| d.parts[0]).collect();
                // The record here and the reservation there are made at the same time; nothing
                // is answered before both are durable.
                let durable = self.writer.write(taken.ops);
                let reserve =
                    self.peer.reserve(self.store.link(), self.store.remote(), taken.deliveries);
                let issued = taken.issued;
                let back = self.back();
                tokio::spawn(async move {
                    let (written, outcome) = tokio::join!(durable, reserve);
                    back.send(Command::Settle {
                        ids,
                        outcome,
                        unrecorded: written.err(),
                        issued,
                        reply,
                    })
                    .await;
                });
            }
            Command::Settle { ids, outcome, unrecorded: Some(e), reply, .. } => {
                // Not recorded here: what the other end may have reserved is never offered
                // again (erased here); nothing is answered.
                let parts: Vec<Uuid> = match outcome {
                    Ok(()) => ids
                        .iter()
                        .filter_map(|id| self.store.delivery(*id))
                        .flat_map(|d| d.parts.clone())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                let aborted = self.store.abort(&ids, &Lacking { parts, ..Lacking::default() });
                self.detached(aborted.ops);
                let _ = reply.send(Err(e.into()));
            }
            Command::Settle { ids, outcome, unrecorded: None, issued, reply } => {
                let answer = match outcome {
                    Ok(()) => {
                        let ops = self.store.confirm(&ids);
                        self.detached(ops);
                        Ok(issued)
                    }
                    Err(PeerRefusal::Unusable(lacking)) => {
                        let aborted = self.store.abort(&ids, &lacking);
                        self.detached(aborted.ops);
                        if aborted.not_there_yet > 0 {
                            Err(OwnerError::NotThereYet(aborted.not_there_yet))
                        } else {
                            Err(OwnerError::Unusable(lacking.parts.len()))
                        }
                    }
                    Err(PeerRefusal::Failed(reason)) => {
                        let aborted = self.store.abort(&ids, &Lacking::default());
                        self.detached(aborted.ops);
                        Err(OwnerError::Peer(reason))
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Recovered { ids, outcome } => match outcome {
                // Reserved there, or impossible there: either way never handed out here.
                Ok(()) | Err(PeerRefusal::Unusable(..)) => {
                    let ops = self.store.confirm(&ids);
                    self.detached(ops);
                }
                Err(PeerRefusal::Failed(_)) => {
                    self.store.resend_failed(&ids);
                    let back = self.back();
                    tokio::spawn(async move {
                        tokio::time::sleep(RECOVERY_RETRY).await;
                        back.send(Command::RetryRecovery).await;
                    });
                }
            },
            Command::RetryRecovery => self.recover(),
            Command::Reserve(deliveries, reply) => match self.store.reserve(&deliveries) {
                Ok(ops) => {
                    let durable = self.writer.write(ops);
                    tokio::spawn(async move {
                        let answer = durable.await.map_err(|_| {
                            ReserveError::Malformed("the reservation could not be stored")
                        });
                        let _ = reply.send(answer);
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Fetch { slave, master, wanted, now_ms, reply } => {
                let fetched = match wanted {
                    Wanted::Ids(ids) => self.store.fetch(&slave, &master, &ids, now_ms),
                    Wanted::Chunk(chunk) => self.store.fetch_chunk(&slave, &master, chunk, now_ms),
                };
                match fetched {
                    Ok((issued, ops)) => {
                        let durable = self.writer.write(ops);
                        tokio::spawn(async move {
                            let answer = durable.await.map(|()| issued).map_err(OwnerError::from);
                            let _ = reply.send(answer);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Sweep(now_ms, reply) => {
                let ops = self.store.sweep(now_ms);
                self.detached(ops);
                let _ = reply.send(());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.store.stats());
            }
            Command::Relay(command) => self.handle_relay(command),
            Command::Dropped(keys) => self.store.count_dropped(keys),
        }
    }
}

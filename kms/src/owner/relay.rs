//! The relay's commands to a link store's owner: pads at the sending end of a hop (erased
//! durably before they are returned, from a pool erased ahead), pads at the receiving end,
//! relayed keys stored (pending, or usable at once at the far end of a one-pass relay), then
//! committed, refused or abandoned, and the figures the relay plans with (this end's and the
//! other end's shares).

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Command, LinkHandle, Owner, OwnerError, Reply};
use crate::block::Placement;
use crate::link::{Issued, LinkSettings, Pad, PadBytes, PooledPad, Relayed};

/// How an end settles a relay it is asked to commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settle {
    /// Keep the outcome until then (the far end, so that the source can ask again); else the
    /// record goes with the commit (the source).
    pub keep_until: Option<u64>,
    /// A relay not stored here is refused until then (the far end answering its source: a
    /// copy still under way is turned away).
    pub refuse_until: Option<u64>,
}

/// Relayed keys to store, owned (they cross into the owner task).
#[derive(Debug)]
pub struct RelayedKeys {
    /// The relay that brought them.
    pub relay: Uuid,
    /// Their place in the virtual link's key stream.
    pub placement: Placement,
    /// Their IDs and bytes.
    pub keys: Vec<Issued>,
    /// When they are erased if the relay is not committed, ms since the Unix epoch.
    pub expires_ms: u64,
    /// This end generated them.
    pub source: bool,
    /// Usable at once (the far end of a relay whose source holds its copy already).
    pub usable: bool,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
}

pub(super) enum RelayCommand {
    TakePads(usize, u32, Reply<Vec<Pad>>),
    UsePads(Vec<Vec<Uuid>>, Reply<Vec<PadBytes>>),
    RefillPool,
    PoolWritten(Vec<PooledPad>, bool),
    PutRelayed(RelayedKeys, Reply<bool>),
    Commit(Uuid, Settle, Reply<bool>),
    Abandon(Uuid),
    Unconfirmed(oneshot::Sender<Vec<Uuid>>),
    HasRelay(Uuid, oneshot::Sender<bool>),
    KnowsRelay(Uuid, oneshot::Sender<bool>),
    Shares(oneshot::Sender<(usize, usize)>),
    Available(u32, oneshot::Sender<usize>),
    Settings(LinkSettings),
}

impl LinkHandle {
    async fn relay<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> RelayCommand,
    ) -> Result<T, OwnerError> {
        self.ask(|reply| Command::Relay(command(reply))).await
    }

    fn tell(&self, command: RelayCommand) {
        self.send_later(Command::Relay(command));
    }

    /// Pads for relaying `count` keys of `key_bits`: whole keys this end owns, erased durably
    /// before they are returned.
    pub async fn take_pads(&self, count: usize, key_bits: u32) -> Result<Vec<Pad>, OwnerError> {
        self.relay(|reply| RelayCommand::TakePads(count, key_bits, reply)).await?
    }

    /// At the receiving end of a hop: the material of the pads `pads`, erased.
    pub async fn use_pads(&self, pads: Vec<Vec<Uuid>>) -> Result<Vec<PadBytes>, OwnerError> {
        self.relay(|reply| RelayCommand::UsePads(pads, reply)).await?
    }

    /// Erases pads ahead so that relaying through this node does not wait for the disk.
    pub fn refill_pool(&self) {
        self.tell(RelayCommand::RefillPool);
    }

    /// Stores relayed keys, pending; `false` when the relay was already stored. Returns once
    /// they are durable.
    pub async fn put_relayed(&self, keys: RelayedKeys) -> Result<bool, OwnerError> {
        self.relay(|reply| RelayCommand::PutRelayed(keys, reply)).await?
    }

    /// Makes a pending relay's keys usable, once the commit is durable: `true` when the relay
    /// is committed here (now or before), `false` when it is not stored here (and, with
    /// `settle.refuse_until`, is refused from now on).
    pub async fn commit_relay(&self, relay: Uuid, settle: Settle) -> Result<bool, OwnerError> {
        self.relay(|reply| RelayCommand::Commit(relay, settle, reply)).await?
    }

    /// Erases a relay's keys (it will never be committed).
    pub fn abandon_relay(&self, relay: Uuid) {
        self.tell(RelayCommand::Abandon(relay));
    }

    /// Relays this end generated whose commit is not confirmed yet.
    pub async fn unconfirmed_relays(&self) -> Result<Vec<Uuid>, OwnerError> {
        self.relay(RelayCommand::Unconfirmed).await
    }

    /// Whether relay `relay` is pending here.
    pub async fn has_relay(&self, relay: Uuid) -> Result<bool, OwnerError> {
        self.relay(|reply| RelayCommand::HasRelay(relay, reply)).await
    }

    /// Whether this store holds a record of relay `relay` (pending or settled).
    pub async fn knows_relay(&self, relay: Uuid) -> Result<bool, OwnerError> {
        self.relay(|reply| RelayCommand::KnowsRelay(relay, reply)).await
    }

    /// Keys this end may hand out, and keys of the other end's share nobody holds.
    pub async fn shares(&self) -> Result<(usize, usize), OwnerError> {
        self.relay(RelayCommand::Shares).await
    }

    /// Keys of `size_bits` this end could hand out now.
    pub async fn available(&self, size_bits: u32) -> Result<usize, OwnerError> {
        self.relay(|reply| RelayCommand::Available(size_bits, reply)).await
    }

    /// Changes the store's settings.
    pub fn set_settings(&self, settings: LinkSettings) {
        self.tell(RelayCommand::Settings(settings));
    }
}

impl Owner {
    pub(super) fn handle_relay(&mut self, command: RelayCommand) {
        match command {
            RelayCommand::TakePads(count, key_bits, reply) => {
                match self.store.take_pads(count, key_bits) {
                    // All from the pool, erased already: no write to wait for.
                    Ok((pads, ops)) if ops.is_empty() => {
                        let _ = reply.send(Ok(pads));
                    }
                    Ok((pads, ops)) => {
                        let durable = self.writer.write(ops);
                        tokio::spawn(async move {
                            let answer = durable.await.map(|()| pads).map_err(OwnerError::from);
                            let _ = reply.send(answer);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            RelayCommand::UsePads(pads, reply) => {
                let answer = self.store.use_pads(&pads).map(|(bytes, ops)| {
                    self.detached(ops);
                    bytes
                });
                let _ = reply.send(answer.map_err(OwnerError::from));
            }
            RelayCommand::RefillPool => {
                if let Some((pads, ops)) = self.store.refill_pool() {
                    let durable = self.writer.write(ops);
                    let back = self.back();
                    tokio::spawn(async move {
                        let written = durable.await.is_ok();
                        back.send(Command::Relay(RelayCommand::PoolWritten(pads, written))).await;
                    });
                }
            }
            RelayCommand::PoolWritten(pads, true) => self.store.pool_filled(pads),
            RelayCommand::PoolWritten(pads, false) => self.store.pool_not_filled(pads),
            RelayCommand::PutRelayed(keys, reply) => {
                let relayed = Relayed {
                    relay: keys.relay,
                    placement: keys.placement,
                    keys: &keys.keys,
                    expires_ms: keys.expires_ms,
                    source: keys.source,
                    usable: keys.usable,
                };
                match self.store.put_relayed(&self.ring.load(), relayed, keys.now_ms) {
                    Ok(Some((block, ops))) => {
                        let durable = self.writer.write(ops);
                        let back = self.back();
                        tokio::spawn(async move {
                            let (stored, done) = oneshot::channel();
                            back.send(Command::Stored(block..block + 1, durable.await, stored))
                                .await;
                            let answer = done.await.unwrap_or(Err(OwnerError::Stopped));
                            let _ = reply.send(answer.map(|()| true));
                        });
                    }
                    Ok(None) => {
                        let _ = reply.send(Ok(false));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            RelayCommand::Commit(relay, settle, reply) => {
                let (committed, ops) = match self.store.commit_relay(relay, settle.keep_until) {
                    Some(ops) => (true, ops),
                    None => match settle.refuse_until {
                        Some(until) => (false, self.store.refuse_relay(relay, until)),
                        None => (false, Vec::new()),
                    },
                };
                if ops.is_empty() {
                    let _ = reply.send(Ok(committed));
                } else {
                    // Keys handed out after this commit are recorded by later writes, which
                    // the writer makes durable after this one.
                    let durable = self.writer.write(ops);
                    tokio::spawn(async move {
                        let answer = durable.await.map(|()| committed).map_err(OwnerError::from);
                        let _ = reply.send(answer);
                    });
                }
            }
            RelayCommand::Abandon(relay) => {
                let ops = self.store.abandon_relay(relay);
                self.detached(ops);
            }
            RelayCommand::Unconfirmed(reply) => {
                let _ = reply.send(self.store.unconfirmed_relays());
            }
            RelayCommand::HasRelay(relay, reply) => {
                let _ = reply.send(self.store.has_relay(relay));
            }
            RelayCommand::KnowsRelay(relay, reply) => {
                let _ = reply.send(self.store.knows_relay(relay));
            }
            RelayCommand::Shares(reply) => {
                let _ = reply.send(self.store.shares());
            }
            RelayCommand::Available(size_bits, reply) => {
                let _ = reply.send(self.store.available(size_bits));
            }
            RelayCommand::Settings(settings) => self.store.set_settings(settings),
        }
    }
}

//! The deliveries of a link's store: `enc_keys` takes at the owner (the guarantee to the
//! link's other pairs checked in the same step), their confirmation or abort once the other
//! end answered, reservations at the other end, `dec_keys` fetches, and the recovery of
//! deliveries whose request is gone.

use std::collections::{BTreeSet, HashSet};

use uuid::Uuid;

use super::{Aborted, Issued, KeyAt, Lacking, LinkStore, ReserveError, StoreError, Take, Taken};
use crate::delivery::{Delivery, DeliveryState, StreamChunk};
use crate::disk::DiskOp;

impl LinkStore {
    pub(super) fn parts_per_key(&self, size_bits: u32) -> usize {
        (size_bits as usize).div_ceil(self.key_bits.max(8) as usize).max(1)
    }

    /// Keys of `size_bits` this end could hand out now (the relay's reserve apart).
    pub fn available(&self, size_bits: u32) -> usize {
        self.free.len().saturating_sub(self.reserve_left()) / self.parts_per_key(size_bits)
    }

    /// `enc_keys` at the owner: holds keys for new deliveries (checking the guarantee to the
    /// link's other pairs in the same step). Answer with the keys only after the other end
    /// reserved them and [`confirm`](Self::confirm) ran.
    pub fn take(&mut self, request: &Take<'_>) -> Result<Taken, StoreError> {
        if let Some(chunk) = request.chunk {
            if request.number != 1 || request.slaves.len() != 1 {
                return Err(StoreError::Malformed("a stream chunk is one key for one slave"));
            }
            if self.chunks.contains_key(&chunk) {
                return Err(StoreError::ChunkExists(chunk));
            }
        }
        let per_key = self.parts_per_key(request.size_bits);
        let needed = per_key * request.number;
        let usable = self.free.len().saturating_sub(self.reserve_left());
        if usable < needed {
            return Err(StoreError::NotEnough {
                available: usable / per_key,
                needed: request.number,
            });
        }
        let kept = per_key * request.keep_for_others;
        if usable < needed + kept {
            return Err(StoreError::KeptForOthers {
                available: usable.saturating_sub(kept) / per_key,
                needed: request.number,
            });
        }
        self.load_material(self.free.iter().take(needed).copied().collect::<Vec<_>>())?;
        let mut taken = Taken {
            deliveries: Vec::with_capacity(request.number),
            issued: Vec::with_capacity(request.number),
            ops: Vec::new(),
        };
        for _ in 0..request.number {
            let parts: Vec<KeyAt> = self.free.drain(..per_key).collect();
            let ids: Vec<Uuid> =
                parts.iter().map(|at| self.blocks[&at.block()].ids[at.index() as usize]).collect();
            self.held.extend(parts.iter().copied());
            let bytes = self
                .assemble(&parts, request.size_bits)
                .ok_or(StoreError::Malformed("a free key has no material"))?;
            let delivery = Delivery {
                state: DeliveryState::Delivering,
                master: request.master.to_owned(),
                slaves: request.slaves.to_vec(),
                fetched: Vec::new(),
                parts: ids,
                size_bits: request.size_bits,
                expires_ms: request.expires_ms,
                chunk: request.chunk,
            };
            let id = delivery.parts[0];
            taken.issued.push((id, bytes));
            self.in_flight.insert(id);
            taken.deliveries.push(delivery);
        }
        taken.ops = self.record_deliveries(&taken.deliveries);
        Ok(taken)
    }

    /// The other end reserved deliveries `ids`: their parts are erased here (the answer may go
    /// out once the returned write is durable; a crash before leaves them `Delivering`, and
    /// they are confirmed again after the restart).
    pub fn confirm(&mut self, ids: &[Uuid]) -> Vec<DiskOp> {
        let mut touched = BTreeSet::new();
        let mut mirrors = Vec::new();
        for id in ids {
            self.in_flight.remove(id);
            let Some(delivery) = self.forget_delivery(id) else { continue };
            match delivery.chunk {
                // A stream chunk stays here for the master: a reservation whose slave is the
                // master and whose master is the other end's application (its parts stay held).
                Some(_) => mirrors.push(Delivery {
                    state: DeliveryState::Reserved,
                    master: delivery.slaves[0].clone(),
                    slaves: vec![delivery.master.clone()],
                    fetched: Vec::new(),
                    ..delivery
                }),
                None => self.consume(&delivery, &mut touched),
            }
        }
        let mut erasures = self.flush(touched);
        erasures.extend(self.group_writes());
        erasures.extend(self.record_deliveries(&mirrors));
        erasures
    }

    /// Erases the parts of a delivery that is done (confirmed at the owner, or fetched by every
    /// slave, and forgotten already).
    fn consume(&mut self, delivery: &Delivery, touched: &mut BTreeSet<u64>) {
        for part in &delivery.parts {
            if let Some(at) = self.key_at(part) {
                self.erase(at, touched);
            }
        }
        self.stats.consumed += delivery.parts.len() as u64;
    }

    /// The other end did not reserve deliveries `ids`: their parts are free again, except
    /// the parts it lacks, which are erased with the free keys of their blocks (a store drops
    /// whole blocks, so it lacks the rest too) and, when the other end said where its stream
    /// starts, every free key before it. Lacked parts at or after the end of the other end's
    /// stream may still arrive there: they are free again too, and counted in the answer.
    pub fn abort(&mut self, ids: &[Uuid], lacking: &Lacking) -> Aborted {
        let mut touched = BTreeSet::new();
        let earliest = lacking.earliest;
        let ahead = |store: &LinkStore, at: KeyAt| {
            lacking.end.is_some_and(|end| {
                store
                    .blocks
                    .get(&at.block())
                    .is_some_and(|b| b.placement.position(at.index() as usize) >= end)
            })
        };
        let lacked: HashSet<Uuid> = lacking.parts.iter().copied().collect();
        let mut lacking_blocks = BTreeSet::new();
        let mut not_there_yet = 0;
        for id in ids.iter().rev() {
            self.in_flight.remove(id);
            let Some(delivery) = self.forget_delivery(id) else { continue };
            for part in delivery.parts.iter().rev() {
                let Some(at) = self.key_at(part) else { continue };
                self.held.remove(&at);
                if lacked.contains(part) && ahead(self, at) {
                    not_there_yet += 1;
                    self.free.push_front(at);
                } else if lacked.contains(part) {
                    lacking_blocks.insert(at.block());
                    self.erase(at, &mut touched);
                    self.stats.dropped += 1;
                } else if self.live(at) {
                    self.free.push_front(at);
                }
            }
        }
        if !lacking_blocks.is_empty() || earliest.is_some() {
            let before = |store: &LinkStore, at: &KeyAt| {
                earliest.is_some_and(|e| {
                    store
                        .blocks
                        .get(&at.block())
                        .is_some_and(|b| b.placement.position(at.index() as usize) < e)
                })
            };
            let (gone, kept): (Vec<KeyAt>, Vec<KeyAt>) = std::mem::take(&mut self.free)
                .into_iter()
                .partition(|at| lacking_blocks.contains(&at.block()) || before(self, at));
            self.free = kept.into();
            self.stats.dropped += gone.len() as u64;
            for at in gone {
                self.erase(at, &mut touched);
            }
        }
        let mut ops = self.flush(touched);
        ops.extend(self.group_writes());
        Aborted { ops, not_there_yet }
    }

    /// What this end lacks of `parts`, with the stream positions it holds durably.
    fn lacking(&self, parts: Vec<Uuid>) -> Lacking {
        let earliest = self.blocks.values().map(|b| b.placement.sequence).min();
        let end = self
            .blocks
            .values()
            .filter(|b| !self.unwritten.contains(&b.place.block))
            .map(|b| b.placement.position(b.count() as usize))
            .max()
            .unwrap_or(0);
        Lacking { parts, earliest, end: Some(end) }
    }

    /// Deliveries this end made whose request is gone (a restart), which the other end may
    /// not have reserved: send them again, then [`confirm`](Self::confirm) them.
    pub fn recoverable(&self) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = self
            .deliveries
            .iter()
            .filter(|(id, d)| d.state == DeliveryState::Delivering && !self.in_flight.contains(id))
            .map(|(_, d)| d.clone())
            .collect();
        out.sort_by_key(|d| d.parts[0]);
        out
    }

    /// Marks recoverable deliveries `ids` as in flight again (their resend is under way).
    pub fn resending(&mut self, ids: &[Uuid]) {
        self.in_flight.extend(ids.iter().copied());
    }

    /// A resend of recoverable deliveries `ids` failed: they are recoverable again.
    pub fn resend_failed(&mut self, ids: &[Uuid]) {
        for id in ids {
            self.in_flight.remove(id);
        }
    }

    /// At the other end: records deliveries the owner made, after checking every part (exists
    /// here, belongs to the owner's half, nobody holds it). All or nothing; a retry of a
    /// reservation already made is accepted.
    pub fn reserve(&mut self, deliveries: &[Delivery]) -> Result<Vec<DiskOp>, ReserveError> {
        let mut unusable = Vec::new();
        let mut fresh = Vec::new();
        let mut claimed = HashSet::with_capacity(deliveries.iter().map(|d| d.parts.len()).sum());
        // Keys of a relay this end sourced and has not yet heard back about: the far end
        // reserving them shows it made them usable, so the relay is committed here first.
        // (Looked up only when a part is not plainly usable: the records can be many.)
        let mut sourced = None;
        let mut settled = HashSet::new();
        for delivery in deliveries {
            let Some(id) = delivery.id() else {
                return Err(ReserveError::Malformed("a delivery without parts"));
            };
            if delivery.slaves.is_empty() {
                return Err(ReserveError::Malformed("a delivery without slaves"));
            }
            if let Some(chunk) = &delivery.chunk
                && self.chunks.get(chunk).is_some_and(|held| *held != id)
            {
                return Err(ReserveError::Malformed("a stream chunk this store holds already"));
            }
            if self
                .deliveries
                .get(&id)
                .is_some_and(|d| d.state == DeliveryState::Reserved && d.same_as(delivery))
            {
                continue;
            }
            for part in &delivery.parts {
                let usable = match self.key_at(part) {
                    Some(at) if self.theirs_unheld(at) => true,
                    Some(at) => match sourced
                        .get_or_insert_with(|| self.sourced_pending_blocks())
                        .get(&at.block())
                    {
                        Some(relay) if self.theirs_in_relay(at) => {
                            settled.insert(*relay);
                            true
                        }
                        _ => false,
                    },
                    None => false,
                } && claimed.insert(*part);
                if !usable {
                    unusable.push(*part);
                }
            }
            fresh.push(delivery);
        }
        if !unusable.is_empty() {
            return Err(ReserveError::Unusable(self.lacking(unusable)));
        }
        let mut ops = Vec::with_capacity(settled.len() + 1);
        for relay in settled {
            ops.extend(self.commit_relay(relay, None).unwrap_or_default());
        }
        let mut reserved = Vec::with_capacity(fresh.len());
        for delivery in fresh {
            for part in &delivery.parts {
                let Some(at) = self.key_at(part) else { continue };
                self.theirs -= usize::from(self.theirs_unheld(at));
                self.held.insert(at);
            }
            reserved.push(Delivery {
                state: DeliveryState::Reserved,
                fetched: Vec::new(),
                ..delivery.clone()
            });
        }
        ops.extend(self.record_deliveries(&reserved));
        self.compact_others();
        Ok(ops)
    }

    /// Chunk `chunk` of a key stream for `slave` (the application at this end), whose other
    /// end is `master`'s; once. Like [`fetch`](Self::fetch), anything else is `NotFound`.
    pub fn fetch_chunk(
        &mut self,
        slave: &str,
        master: &str,
        chunk: StreamChunk,
        now_ms: u64,
    ) -> Result<(Vec<Issued>, Vec<DiskOp>), StoreError> {
        let id = *self.chunks.get(&chunk).ok_or(StoreError::NotFound)?;
        self.fetch(slave, master, &[id], now_ms)
    }

    /// `dec_keys`: the keys `ids` for `slave` of `master`, all or nothing, each once per slave.
    /// Unknown, expired, already fetched and not-for-this-slave keys are all `NotFound`.
    pub fn fetch(
        &mut self,
        slave: &str,
        master: &str,
        ids: &[Uuid],
        now_ms: u64,
    ) -> Result<(Vec<Issued>, Vec<DiskOp>), StoreError> {
        let mut seen = HashSet::with_capacity(ids.len());
        let mut places = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(d) = self.deliveries.get(id) else {
                return Err(StoreError::NotFound);
            };
            let fetchable = d.state == DeliveryState::Reserved
                && d.expires_ms > now_ms
                && d.master == master
                && d.slaves.iter().any(|s| s == slave)
                && !d.fetched.iter().any(|s| s == slave)
                && seen.insert(*id);
            if !fetchable {
                return Err(StoreError::NotFound);
            }
            let parts: Option<Vec<KeyAt>> = d.parts.iter().map(|p| self.key_at(p)).collect();
            places.push((parts.ok_or(StoreError::NotFound)?, d.size_bits));
        }
        self.load_material(
            places.iter().flat_map(|(keys, _)| keys.iter().copied()).collect::<Vec<_>>(),
        )?;
        let mut issued = Vec::with_capacity(ids.len());
        for (id, (keys, size_bits)) in ids.iter().zip(&places) {
            issued.push((*id, self.assemble(keys, *size_bits).ok_or(StoreError::NotFound)?));
        }
        let mut touched = BTreeSet::new();
        for id in ids {
            let Some(delivery) = self.deliveries.get_mut(id) else { continue };
            delivery.fetched.push(slave.to_owned());
            if delivery.fetched.len() >= delivery.slaves.len() {
                if let Some(delivery) = self.forget_delivery(id) {
                    self.consume(&delivery, &mut touched);
                }
            } else {
                self.delivery_changed(id);
            }
        }
        let mut all = self.flush(touched);
        all.extend(self.group_writes());
        Ok((issued, all))
    }
}

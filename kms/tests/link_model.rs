//! The two ends of a link's key store against a model: random interleavings of device blocks
//! (some reaching one end only), `enc_keys` takes at either end, reservations at the other end,
//! peer failures, `dec_keys` fetches (by the right and by wrong slaves), sweeps as time passes,
//! and crashes of either end (the store dropped and reopened from its database at any step).
//!
//! After every step the invariants of DESIGN.md §7 that a store keeps are checked:
//!
//! * 1: a fetched key has the bytes its master received;
//! * 2: a key is fetched only by the slaves named for it, once each;
//! * 4: after any crash, every answered key not yet fetched and not expired is still fetchable
//!   (the model predicts each fetch's outcome exactly);
//! * 5: no stored key is used by two answers, at either end, and a peer's claim of a key the
//!   receiving end owns is refused without a change;
//! * 7: expired deliveries and keys older than the largest age are gone after a sweep.
//!
//! And a delivery whose request is still waiting is never offered for recovery.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use qkdn_kms::block::Placement;
use qkdn_kms::delivery::{Delivery, StreamChunk};
use qkdn_kms::disk::{Disk, DiskBlocks, DiskOp};
use qkdn_kms::link::{
    Issued, Lacking, LinkSettings, LinkStore, NewBlock, Relayed, ReserveError, StoreError, Take,
};
use qkdn_kms::seal::{Keyring, StoreKey};
use uuid::Uuid;
use zeroize::Zeroizing;

const LINK: Uuid = Uuid::from_u128(100);
const KEY_BYTES: u32 = 4;
const MAX_AGE_MS: u64 = 2_000;
const SLAVES: [&str; 3] = ["s1", "s2", "s3"];
const RELAY_RESERVE: usize = 4;
const RELAY_TTL_MS: u64 = 5_000;
/// Until when the far end keeps a relay's outcome (longer than any run).
const SETTLED_UNTIL: u64 = u64::MAX / 2;

fn settings() -> LinkSettings {
    LinkSettings { capacity: 48, max_age_ms: Some(MAX_AGE_MS), relay_reserve: RELAY_RESERVE }
}

#[derive(Clone, Debug)]
enum Step {
    /// A device block of `keys` keys reaches both ends (or only one, `lost_at` the other).
    Feed { keys: usize, lost_at: Option<bool> },
    /// `enc_keys` at an end: `number` keys of `parts` stored keys each (less a byte), for
    /// `slaves` slaves, keeping `keep` keys for others.
    Take { at_b: bool, number: usize, parts: u32, slaves: usize, keep: usize, ttl_ms: u64 },
    /// The other end answers a waiting take's reservation.
    Reserve { which: usize },
    /// The other end cannot be reached for a waiting take.
    Fail { which: usize },
    /// A slave (`slave`, or one not named when `wrong`) fetches an answered key.
    Fetch { which: usize, slave: usize, wrong: bool },
    /// Time passes and both ends sweep.
    Sweep { advance_ms: u64 },
    /// An end crashes and restarts.
    Crash { b: bool },
    /// An end asks the other to reserve a key the other end owns (a peer that lies).
    Claim { to_b: bool, which: usize },
    /// An end takes pads for `count` relayed keys of `parts` hop keys each and sends them;
    /// the other end uses them (and a second use is refused).
    Pads { from_b: bool, count: usize, parts: u32 },
    /// An end erases pads ahead into its pool.
    Refill { b: bool },
    /// An end sources a relay of keys owned by one end: its copy is stored, held; the copy
    /// sent reaches the far end (`arrives`), where it is usable at once (`one_pass`) or held
    /// until a commit.
    RelayArrive { keys: usize, owner_b: bool, source_b: bool, one_pass: bool, arrives: bool },
    /// The source settles a relay with the far end: committed at both ends if the far end
    /// holds it, else refused there (and a copy arriving `late` is turned away) and erased at
    /// the source.
    RelaySettle { which: usize, late: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..8, prop_oneof![4 => Just(None), 1 => any::<bool>().prop_map(Some)])
            .prop_map(|(keys, lost_at)| Step::Feed { keys, lost_at }),
        4 => (any::<bool>(), 1usize..4, 1u32..3, 1usize..3, 0usize..3, 100u64..3_000).prop_map(
            |(at_b, number, parts, slaves, keep, ttl_ms)| Step::Take {
                at_b, number, parts, slaves, keep, ttl_ms
            }
        ),
        3 => any::<usize>().prop_map(|which| Step::Reserve { which }),
        1 => any::<usize>().prop_map(|which| Step::Fail { which }),
        4 => (any::<usize>(), 0usize..3, prop::bool::weighted(0.2))
            .prop_map(|(which, slave, wrong)| Step::Fetch { which, slave, wrong }),
        2 => (0u64..1_500).prop_map(|advance_ms| Step::Sweep { advance_ms }),
        1 => any::<bool>().prop_map(|b| Step::Crash { b }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_b, which)| Step::Claim { to_b, which }),
        2 => (any::<bool>(), 1usize..3, 1u32..3)
            .prop_map(|(from_b, count, parts)| Step::Pads { from_b, count, parts }),
        1 => any::<bool>().prop_map(|b| Step::Refill { b }),
        2 => (1usize..4, any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(keys, owner_b, source_b, one_pass, arrives)| Step::RelayArrive {
                keys, owner_b, source_b, one_pass, arrives
            }),
        2 => (any::<usize>(), any::<bool>())
            .prop_map(|(which, late)| Step::RelaySettle { which, late }),
    ]
}

/// One end: its database and its store.
struct End {
    node: Uuid,
    other: Uuid,
    path: PathBuf,
    disk: Option<Arc<Disk>>,
    store: LinkStore,
}

/// Blocks a store keeps loaded: one, so that most steps read material back from disk.
const LOADED_BLOCKS: usize = 1;

impl End {
    fn open(node: Uuid, other: Uuid, path: PathBuf, ring: &Keyring) -> End {
        let disk = Arc::new(Disk::open(&path).unwrap());
        let source = Arc::new(DiskBlocks::new(disk.clone(), qkdn_kms::seal::shared(ring.clone())));
        let mut store =
            LinkStore::new(LINK, node, other, settings(), disk.next_block(LINK).unwrap())
                .with_source(source, LOADED_BLOCKS);
        let blocks = disk.load().unwrap();
        let deliveries = disk.deliveries().unwrap().into_iter().map(|(_, d)| d).collect();
        let relays: Vec<_> = disk.relays().unwrap().into_iter().map(|(_, r)| r).collect();
        let failed = store.restore(ring, blocks, deliveries, relays);
        assert!(failed.is_empty(), "{failed:?}");
        assert!(store.loaded_blocks() <= LOADED_BLOCKS, "a restored store loads few blocks");
        End { node, other, path, disk: Some(disk), store }
    }

    fn write(&self, ops: &[DiskOp]) {
        self.disk.as_ref().unwrap().apply(ops).unwrap();
    }

    fn crash(&mut self, ring: &Keyring) {
        self.disk = None;
        // The old store lets go of the database before it is opened again.
        self.store = LinkStore::new(LINK, self.node, self.other, settings(), 0);
        *self = End::open(self.node, self.other, self.path.clone(), ring);
    }
}

/// A key answered to a master.
struct Answered {
    bytes: Zeroizing<Vec<u8>>,
    master: String,
    slaves: Vec<String>,
    fetched: HashSet<String>,
    expires_ms: u64,
    /// The end that holds it for the slaves.
    at_b: bool,
}

/// A take whose reservation is under way: its end, deliveries and keys.
struct Waiting {
    at_b: bool,
    deliveries: Vec<Delivery>,
    issued: Vec<Issued>,
}

struct World {
    ring: Keyring,
    a: End,
    b: End,
    now: u64,
    position: u64,
    next_id: u128,
    waiting: Vec<Waiting>,
    answered: Vec<(Uuid, Answered)>,
    /// Every stored key an answer used.
    used_parts: HashSet<Uuid>,
    /// Every key fed, with its stream position.
    fed: Vec<(Uuid, u64)>,
    /// Relays not settled yet.
    relays: Vec<ModelRelay>,
}

/// A relay as the model knows it, until its source settles it.
struct ModelRelay {
    id: Uuid,
    ids: Vec<Uuid>,
    issued: Vec<Issued>,
    placement: Placement,
    source_b: bool,
    one_pass: bool,
    arrived: bool,
    /// The far end's pending copy (not one pass) expired there.
    far_expired: bool,
    expires_ms: u64,
}

impl ModelRelay {
    /// Whether its keys are held (not usable) at end `b`.
    fn pending_at(&self, b: bool) -> bool {
        b == self.source_b || (self.arrived && !self.one_pass && !self.far_expired)
    }
}

impl World {
    fn end(&mut self, b: bool) -> &mut End {
        if b { &mut self.b } else { &mut self.a }
    }

    fn ends(&mut self, owner_b: bool) -> (&mut End, &mut End) {
        if owner_b { (&mut self.b, &mut self.a) } else { (&mut self.a, &mut self.b) }
    }

    fn feed(&mut self, keys: usize, lost_at: Option<bool>) {
        let ids: Vec<Uuid> = (0..keys)
            .map(|_| {
                self.next_id += 1;
                Uuid::from_u128(self.next_id)
            })
            .collect();
        let mut material = Vec::new();
        for id in &ids {
            material.extend_from_slice(&(id.as_u128() as u32).to_be_bytes());
        }
        let placement = Placement { sequence: self.position, step: 1 };
        for (i, id) in ids.iter().enumerate() {
            self.fed.push((*id, self.position + i as u64));
        }
        self.position += keys as u64;
        let now = self.now;
        for b in [false, true] {
            if lost_at == Some(b) {
                continue;
            }
            let block = NewBlock {
                ids: ids.clone(),
                material: Zeroizing::new(material.clone()),
                key_bytes: KEY_BYTES,
                placement,
            };
            let ring = &self.ring;
            let end = if b { &mut self.b } else { &mut self.a };
            match end.store.ingest(ring, block, now) {
                Ok((block, ops)) => {
                    end.write(&ops);
                    end.store.stored(block);
                }
                Err(StoreError::Full) => {}
                Err(e) => panic!("ingest: {e}"),
            }
        }
    }

    fn take(
        &mut self,
        at_b: bool,
        number: usize,
        parts: u32,
        slaves: usize,
        keep: usize,
        ttl: u64,
    ) {
        let slaves: Vec<String> = SLAVES[..slaves].iter().map(|s| s.to_string()).collect();
        let master = if at_b { "master-b" } else { "master-a" };
        let request = Take {
            master,
            slaves: &slaves,
            number,
            size_bits: parts * KEY_BYTES * 8 - 8,
            expires_ms: self.now + ttl,
            keep_for_others: keep,
            chunk: None,
        };
        let end = self.end(at_b);
        let stats = end.store.stats();
        let free = stats.free_owned.saturating_sub(RELAY_RESERVE.saturating_sub(stats.pad_pool));
        match end.store.take(&request) {
            Ok(taken) => {
                end.write(&taken.ops);
                self.waiting.push(Waiting {
                    at_b,
                    deliveries: taken.deliveries,
                    issued: taken.issued,
                });
            }
            Err(StoreError::NotEnough { .. }) => {
                assert!(free < number * parts as usize, "refused with {free} free keys");
            }
            Err(StoreError::KeptForOthers { .. }) => {
                assert!(free < (number + keep) * parts as usize);
                assert!(free >= number * parts as usize);
            }
            Err(e) => panic!("take: {e}"),
        }
    }

    fn reserve(&mut self, which: usize) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = self.waiting.remove(which % self.waiting.len());
        let ids: Vec<Uuid> = waiting.deliveries.iter().map(|d| d.parts[0]).collect();
        let (owner, other) = self.ends(waiting.at_b);
        match other.store.reserve(&waiting.deliveries) {
            Ok(ops) => {
                other.write(&ops);
                let ops = owner.store.confirm(&ids);
                owner.write(&ops);
                let pending = self.pending_at(waiting.at_b);
                self.settled_by_reservation(!waiting.at_b, &waiting.deliveries);
                for (delivery, (id, bytes)) in waiting.deliveries.iter().zip(waiting.issued) {
                    assert_eq!(delivery.parts[0], id);
                    assert!(
                        delivery.parts.iter().all(|p| !pending.contains(p)),
                        "a pending relayed key delivered"
                    );
                    for part in &delivery.parts {
                        assert!(self.used_parts.insert(*part), "key {part} answered twice");
                    }
                    self.answered.push((
                        id,
                        Answered {
                            bytes,
                            master: delivery.master.clone(),
                            slaves: delivery.slaves.clone(),
                            fetched: HashSet::new(),
                            expires_ms: delivery.expires_ms,
                            at_b: !waiting.at_b,
                        },
                    ));
                }
            }
            Err(ReserveError::Unusable(lacking)) => {
                assert!(!lacking.parts.is_empty());
                let aborted = owner.store.abort(&ids, &lacking);
                owner.write(&aborted.ops);
            }
            Err(e) => panic!("reserve: {e:?}"),
        }
    }

    fn fail(&mut self, which: usize) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = self.waiting.remove(which % self.waiting.len());
        let ids: Vec<Uuid> = waiting.deliveries.iter().map(|d| d.parts[0]).collect();
        let owner = self.end(waiting.at_b);
        let aborted = owner.store.abort(&ids, &Lacking::default());
        owner.write(&aborted.ops);
    }

    fn fetch(&mut self, which: usize, slave: usize, wrong: bool) {
        if self.answered.is_empty() {
            return;
        }
        let now = self.now;
        let index = which % self.answered.len();
        let (id, at_b, master, slave_name, expected) = {
            let (id, a) = &self.answered[index];
            let name = if wrong {
                "not-named".to_string()
            } else {
                a.slaves[slave % a.slaves.len()].clone()
            };
            let expected = !wrong && !a.fetched.contains(&name) && a.expires_ms > now;
            (*id, a.at_b, a.master.clone(), name, expected)
        };
        let end = self.end(at_b);
        match end.store.fetch(&slave_name, &master, &[id], now) {
            Ok((keys, ops)) => {
                end.write(&ops);
                assert!(expected, "{slave_name} fetched {id} it should not have");
                let answered = &mut self.answered[index].1;
                assert_eq!(keys.len(), 1);
                assert_eq!(keys[0].0, id);
                assert_eq!(keys[0].1.as_slice(), answered.bytes.as_slice(), "same bytes");
                answered.fetched.insert(slave_name);
            }
            Err(StoreError::NotFound) => {
                assert!(!expected, "{slave_name} could not fetch {id}");
            }
            Err(e) => panic!("fetch: {e}"),
        }
    }

    fn sweep(&mut self, advance: u64) {
        self.now += advance;
        let now = self.now;
        for b in [false, true] {
            let end = self.end(b);
            let ops = end.store.sweep(now);
            end.write(&ops);
            if let Some(oldest) = end.store.oldest_unheld_ms() {
                assert!(oldest + MAX_AGE_MS > now, "a key older than the largest age is left");
            }
        }
        for relay in &mut self.relays {
            if relay.arrived && !relay.one_pass && relay.expires_ms <= now {
                relay.far_expired = true;
                let far = if relay.source_b { &self.a } else { &self.b };
                assert!(!far.store.has_relay(relay.id), "an expired relay kept");
            }
        }
        let waiting: HashSet<Uuid> =
            self.waiting.iter().flat_map(|w| w.deliveries.iter().map(|d| d.parts[0])).collect();
        for (id, answered) in &self.answered {
            if answered.expires_ms <= now && !waiting.contains(id) {
                let end = if answered.at_b { &self.b } else { &self.a };
                assert!(end.store.delivery(*id).is_none(), "expired delivery {id} kept");
            }
        }
    }

    /// The end that is not `to_b` claims a delivery of a key `to_b` owns: refused, nothing
    /// changes.
    fn claim(&mut self, to_b: bool, which: usize) {
        // Node 1 (a) < node 2 (b): a owns even positions.
        let owned: Vec<Uuid> = self
            .fed
            .iter()
            .filter(|(_, position)| position.is_multiple_of(2) != to_b)
            .map(|(id, _)| *id)
            .collect();
        if owned.is_empty() {
            return;
        }
        let part = owned[which % owned.len()];
        let delivery = Delivery {
            state: qkdn_kms::delivery::DeliveryState::Delivering,
            master: "liar".into(),
            slaves: vec!["liar-slave".into()],
            fetched: Vec::new(),
            parts: vec![part],
            size_bits: KEY_BYTES * 8,
            expires_ms: self.now + 10_000,
            chunk: None,
        };
        let end = self.end(to_b);
        let before = end.store.stats();
        match end.store.reserve(&[delivery]) {
            Err(ReserveError::Unusable(lacking)) => assert_eq!(lacking.parts, vec![part]),
            other => panic!("a claim of a key the receiver owns was not refused: {other:?}"),
        }
        assert_eq!(end.store.stats(), before);
        assert!(end.store.delivery(part).is_none_or(|d| d.master != "liar"));
    }

    /// Invariant 3: pads are keys the sender owns, used once, never also delivered.
    fn pads(&mut self, from_b: bool, count: usize, parts: u32) {
        let (sender, receiver) = self.ends(from_b);
        let Ok((pads, ops)) = sender.store.take_pads(count, parts * KEY_BYTES * 8) else {
            return;
        };
        // Erased durably before the pads are used.
        sender.write(&ops);
        let ids: Vec<Vec<Uuid>> = pads.iter().map(|p| p.ids.clone()).collect();
        let outcome = receiver.store.use_pads(&ids);
        if let Ok((bytes, ops)) = &outcome {
            receiver.write(ops);
            for (pad, received) in pads.iter().zip(bytes) {
                assert_eq!(pad.bytes.as_slice(), received.as_slice(), "pads differ at the ends");
            }
            assert_eq!(
                receiver.store.use_pads(&ids).unwrap_err(),
                StoreError::NotFound,
                "a pad used twice"
            );
        }
        let pending = self.pending_at(from_b);
        for id in ids.iter().flatten() {
            assert!(!pending.contains(id), "a pending relayed key used as a pad");
            assert!(self.used_parts.insert(*id), "key {id} used as a pad and elsewhere");
            // Node 1 (a) < node 2 (b): a owns even positions.
            if let Some((_, position)) = self.fed.iter().find(|(f, _)| f == id) {
                assert_eq!(position.is_multiple_of(2), !from_b, "a pad the sender does not own");
            }
        }
    }

    fn refill(&mut self, b: bool) {
        let end = self.end(b);
        if let Some((pads, ops)) = end.store.refill_pool() {
            end.write(&ops);
            end.store.pool_filled(pads);
        }
    }

    /// Keys held at end `b` by relays not settled.
    fn pending_at(&self, b: bool) -> HashSet<Uuid> {
        self.relays.iter().filter(|r| r.pending_at(b)).flat_map(|r| r.ids.clone()).collect()
    }

    fn relay_arrive(
        &mut self,
        keys: usize,
        owner_b: bool,
        source_b: bool,
        one_pass: bool,
        arrives: bool,
    ) {
        self.next_id += 1;
        let relay = Uuid::from_u128(self.next_id);
        let ids: Vec<Uuid> = (0..keys)
            .map(|_| {
                self.next_id += 1;
                Uuid::from_u128(self.next_id)
            })
            .collect();
        let issued: Vec<Issued> = ids
            .iter()
            .map(|id| (*id, Zeroizing::new((id.as_u128() as u32).to_be_bytes().to_vec())))
            .collect();
        // Every key of the block at the owner's parity, two positions apart.
        let sequence = if owner_b { 1 } else { 0 } + 2 * self.position;
        self.position += 2 * keys as u64;
        let placement = Placement { sequence, step: 2 };
        let expires_ms = self.now + RELAY_TTL_MS;
        let mut model = ModelRelay {
            id: relay,
            ids: ids.clone(),
            issued,
            placement,
            source_b,
            one_pass,
            arrived: false,
            far_expired: false,
            expires_ms,
        };
        // The source's copy, then (if it gets there) the far end's.
        if !self.put_copy(&model, source_b) {
            return;
        }
        for (i, id) in ids.iter().enumerate() {
            self.fed.push((*id, sequence + 2 * i as u64));
        }
        model.arrived = arrives && self.put_copy(&model, !source_b);
        self.relays.push(model);
    }

    /// Stores a copy of `relay` at end `b` (held at its source, usable at once at the far end
    /// of a one-pass relay); whether it was stored.
    fn put_copy(&mut self, relay: &ModelRelay, b: bool) -> bool {
        let source = b == relay.source_b;
        let usable = !source && relay.one_pass;
        let expires_ms = if usable { SETTLED_UNTIL } else { relay.expires_ms };
        let relayed = Relayed {
            relay: relay.id,
            placement: relay.placement,
            keys: &relay.issued,
            expires_ms,
            source,
            usable,
        };
        let (ring, now) = (&self.ring, self.now);
        let end = if b { &mut self.b } else { &mut self.a };
        match end.store.put_relayed(ring, relayed, now) {
            Ok(Some((block, ops))) => {
                end.write(&ops);
                end.store.stored(block..block + 1);
                assert_eq!(end.store.put_relayed(ring, relayed, now), Ok(None), "stored twice");
                assert_eq!(end.store.has_relay(relay.id), !usable);
                true
            }
            Ok(None) => panic!("a new relay reported as stored"),
            Err(StoreError::Full) => false,
            Err(e) => panic!("put_relayed: {e}"),
        }
    }

    fn relay_settle(&mut self, which: usize, late: bool) {
        if self.relays.is_empty() {
            return;
        }
        let relay = self.relays.remove(which % self.relays.len());
        let now = self.now;
        let ring = self.ring.clone();
        let (source, far) = self.ends(relay.source_b);
        let at_far = match far.store.commit_relay(relay.id, Some(SETTLED_UNTIL)) {
            Some(ops) => {
                far.write(&ops);
                true
            }
            None => {
                let ops = far.store.refuse_relay(relay.id, now + RELAY_TTL_MS);
                far.write(&ops);
                false
            }
        };
        assert_eq!(at_far, relay.arrived && !relay.far_expired, "the far end's answer");
        // Asked again (the answer was lost): the same.
        assert_eq!(far.store.commit_relay(relay.id, Some(SETTLED_UNTIL)).is_some(), at_far);
        let ops = if at_far {
            source.store.commit_relay(relay.id, None).expect("pending at the source")
        } else {
            source.store.abandon_relay(relay.id)
        };
        source.write(&ops);
        assert!(!source.store.has_relay(relay.id) && !far.store.has_relay(relay.id));
        if late && !relay.arrived {
            let relayed = Relayed {
                relay: relay.id,
                placement: relay.placement,
                keys: &relay.issued,
                expires_ms: relay.expires_ms,
                source: false,
                usable: relay.one_pass,
            };
            let before = far.store.stats();
            assert_eq!(
                far.store.put_relayed(&ring, relayed, now).map(|_| ()),
                Err(StoreError::RelayRefused(relay.id)),
                "a copy arriving after the relay was refused"
            );
            assert_eq!(far.store.stats(), before);
        }
    }

    /// A reservation at end `reserving_b` of keys of a relay it sourced commits its copy there
    /// (the far end shows it holds them usable): the model settles those relays.
    fn settled_by_reservation(&mut self, reserving_b: bool, deliveries: &[Delivery]) {
        let parts: HashSet<Uuid> = deliveries.iter().flat_map(|d| d.parts.clone()).collect();
        let (settled, unsettled): (Vec<ModelRelay>, Vec<ModelRelay>) =
            std::mem::take(&mut self.relays).into_iter().partition(|r| {
                r.source_b == reserving_b && r.ids.iter().any(|id| parts.contains(id))
            });
        self.relays = unsettled;
        let end = if reserving_b { &self.b } else { &self.a };
        for r in &settled {
            assert!(r.arrived && !r.far_expired, "a relay the far end lacks was reserved");
            assert!(!end.store.has_relay(r.id), "a reserved relay still pending");
        }
    }

    fn crash(&mut self, b: bool) {
        // The crashed end's waiting requests are gone (never answered).
        self.waiting.retain(|w| w.at_b != b);
        let ring = &self.ring;
        if b {
            self.b.crash(ring)
        } else {
            self.a.crash(ring)
        }
        self.recover(b);
    }

    /// What the agent does after a restart: deliveries the end made whose reservation may not
    /// have been confirmed are sent again, then erased here.
    fn recover(&mut self, owner_b: bool) {
        let (owner, other) = self.ends(owner_b);
        let pending = owner.store.recoverable();
        if pending.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = pending.iter().map(|d| d.parts[0]).collect();
        owner.store.resending(&ids);
        let reserved = match other.store.reserve(&pending) {
            Ok(ops) => {
                other.write(&ops);
                true
            }
            Err(ReserveError::Unusable(..)) => false,
            Err(e) => panic!("recovery: {e:?}"),
        };
        let ops = owner.store.confirm(&ids);
        owner.write(&ops);
        if reserved {
            self.settled_by_reservation(!owner_b, &pending);
        }
    }

    fn check(&self) {
        for end in [&self.a, &self.b] {
            let recoverable: HashSet<Uuid> =
                end.store.recoverable().iter().map(|d| d.parts[0]).collect();
            for w in &self.waiting {
                for d in &w.deliveries {
                    assert!(
                        !recoverable.contains(&d.parts[0]),
                        "a delivery in flight offered for recovery"
                    );
                }
            }
            let stats = end.store.stats();
            assert!(stats.stored <= settings().capacity, "over capacity: {stats:?}");
            if let Err(e) = end.store.audit() {
                panic!("the store's counts are wrong: {e}");
            }
        }
    }

    /// At the end: every answered, unexpired key is still fetchable by each slave that has
    /// not fetched it.
    fn drain(&mut self) {
        for index in 0..self.answered.len() {
            let slaves = self.answered[index].1.slaves.clone();
            for slave in 0..slaves.len() {
                self.fetch(index, slave, false);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn both_ends_keep_the_invariants(steps in proptest::collection::vec(step(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::new(StoreKey::generate());
        let (node_a, node_b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let a = End::open(node_a, node_b, dir.path().join("a.redb"), &ring);
        let b = End::open(node_b, node_a, dir.path().join("b.redb"), &ring);
        let mut world = World {
            ring, a, b, now: 1_000_000, position: 0, next_id: 1_000, waiting: Vec::new(),
            answered: Vec::new(), used_parts: HashSet::new(), fed: Vec::new(), relays: Vec::new(),
        };
        for step in steps {
            match step {
                Step::Feed { keys, lost_at } => world.feed(keys, lost_at),
                Step::Take { at_b, number, parts, slaves, keep, ttl_ms } => {
                    world.take(at_b, number, parts, slaves, keep, ttl_ms)
                }
                Step::Reserve { which } => world.reserve(which),
                Step::Fail { which } => world.fail(which),
                Step::Fetch { which, slave, wrong } => world.fetch(which, slave, wrong),
                Step::Sweep { advance_ms } => world.sweep(advance_ms),
                Step::Crash { b } => world.crash(b),
                Step::Claim { to_b, which } => world.claim(to_b, which),
                Step::Pads { from_b, count, parts } => world.pads(from_b, count, parts),
                Step::Refill { b } => world.refill(b),
                Step::RelayArrive { keys, owner_b, source_b, one_pass, arrives } => {
                    world.relay_arrive(keys, owner_b, source_b, one_pass, arrives)
                }
                Step::RelaySettle { which, late } => world.relay_settle(which, late),
            }
            world.check();
        }
        world.drain();
        let fetched: HashMap<Uuid, usize> =
            world.answered.iter().map(|(id, a)| (*id, a.fetched.len())).collect();
        prop_assert!(fetched.values().all(|n| *n <= SLAVES.len()));
    }
}

#[test]
fn a_repeated_key_id_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::new(StoreKey::generate());
    let mut end =
        End::open(Uuid::from_u128(1), Uuid::from_u128(2), dir.path().join("a.redb"), &ring);
    let block = |ids: &[u128]| NewBlock {
        ids: ids.iter().map(|i| Uuid::from_u128(*i)).collect(),
        material: Zeroizing::new(vec![7; ids.len() * KEY_BYTES as usize]),
        key_bytes: KEY_BYTES,
        placement: Placement { sequence: 0, step: 1 },
    };
    let (id, ops) = end.store.ingest(&ring, block(&[1, 2]), 0).unwrap();
    end.write(&ops);
    end.store.stored(id);
    let before = end.store.stats();
    assert_eq!(
        end.store.ingest(&ring, block(&[3, 2]), 0).unwrap_err(),
        StoreError::DuplicateKeyId(Uuid::from_u128(2))
    );
    assert_eq!(
        end.store.ingest(&ring, block(&[4, 4]), 0).unwrap_err(),
        StoreError::DuplicateKeyId(Uuid::from_u128(4))
    );
    assert_eq!(end.store.stats(), before);
    end.crash(&ring);
    assert_eq!(end.store.stats().stored, 2, "what was stored survives, nothing else");
}

/// The two ends of a link in `dir`, both holding one block of the keys 1 to 40 (key `i`'s
/// bytes all `i`).
fn two_ends_with_one_block(dir: &std::path::Path, ring: &Keyring) -> (End, End, Vec<Uuid>) {
    let (node_a, node_b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut a = End::open(node_a, node_b, dir.join("a.redb"), ring);
    let mut b = End::open(node_b, node_a, dir.join("b.redb"), ring);
    let ids: Vec<Uuid> = (1..=40).map(Uuid::from_u128).collect();
    let material: Vec<u8> =
        (0..ids.len() * KEY_BYTES as usize).map(|i| (i / KEY_BYTES as usize + 1) as u8).collect();
    for end in [&mut a, &mut b] {
        let block = NewBlock {
            ids: ids.clone(),
            material: Zeroizing::new(material.clone()),
            key_bytes: KEY_BYTES,
            placement: Placement { sequence: 0, step: 1 },
        };
        let (blocks, ops) = end.store.ingest(ring, block, 0).unwrap();
        end.write(&ops);
        end.store.stored(blocks);
    }
    (a, b, ids)
}

#[test]
fn the_deliveries_of_one_request_are_one_row_at_each_end() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::new(StoreKey::generate());
    let (mut a, mut b, _) = two_ends_with_one_block(dir.path(), &ring);
    let rows = |ops: &[DiskOp]| {
        let put = ops.iter().filter(|op| matches!(op, DiskOp::PutDeliveries { .. })).count();
        let removed = ops.iter().filter(|op| matches!(op, DiskOp::RemoveDeliveries { .. })).count();
        (put, removed)
    };
    let slaves = vec!["s1".to_string()];
    let request = Take {
        master: "m",
        slaves: &slaves,
        number: 16,
        size_bits: KEY_BYTES * 8,
        expires_ms: 1_000,
        keep_for_others: 0,
        chunk: None,
    };
    let taken = a.store.take(&request).unwrap();
    assert_eq!(rows(&taken.ops), (1, 0), "16 deliveries, one row");
    a.write(&taken.ops);
    a.crash(&ring);
    assert_eq!((a.store.stats().deliveries, a.store.delivery_rows()), (16, 1), "after a crash");
    let reserved = b.store.reserve(&taken.deliveries).unwrap();
    assert_eq!(rows(&reserved), (1, 0));
    b.write(&reserved);
    let confirmed =
        a.store.confirm(&taken.deliveries.iter().map(|d| d.parts[0]).collect::<Vec<_>>());
    assert_eq!(rows(&confirmed), (0, 1));
    a.write(&confirmed);
    // One key fetched: the row is rewritten with the other 15; the rest: the row goes.
    let (first, rest) = taken.issued.split_first().unwrap();
    let (got, ops) = b.store.fetch("s1", "m", &[first.0], 0).unwrap();
    assert_eq!((got.len(), rows(&ops)), (1, (1, 0)));
    b.write(&ops);
    b.crash(&ring);
    assert_eq!((b.store.stats().deliveries, b.store.delivery_rows()), (15, 1));
    let rest: Vec<Uuid> = rest.iter().map(|(id, _)| *id).collect();
    let (got, ops) = b.store.fetch("s1", "m", &rest, 0).unwrap();
    assert_eq!((got.len(), rows(&ops)), (15, (0, 1)));
    b.write(&ops);
    b.crash(&ring);
    a.crash(&ring);
    assert_eq!((b.store.delivery_rows(), a.store.delivery_rows()), (0, 0));
}

#[test]
fn a_stream_chunk_is_reserved_at_both_ends_and_each_end_fetches_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::new(StoreKey::generate());
    let (mut a, mut b, ids) = two_ends_with_one_block(dir.path(), &ring);
    let chunk = StreamChunk { stream: Uuid::from_u128(0x5715), index: 3 };
    let slaves = vec!["dst".to_string()];
    let request = Take {
        master: "src",
        slaves: &slaves,
        number: 1,
        size_bits: KEY_BYTES * 8,
        expires_ms: 1_000,
        keep_for_others: 0,
        chunk: Some(chunk),
    };
    // More than one key, or a chunk twice, is refused before anything changes.
    let two = Take { number: 2, ..request };
    assert!(matches!(a.store.take(&two), Err(StoreError::Malformed(_))));
    let taken = a.store.take(&request).unwrap();
    a.write(&taken.ops);
    assert!(matches!(a.store.take(&request), Err(StoreError::ChunkExists(c)) if c == chunk));
    let key = taken.issued[0].1.clone();
    // The other end reserves it for the destination; a second delivery claiming the same
    // chunk is refused there.
    let reserved = b.store.reserve(&taken.deliveries).unwrap();
    b.write(&reserved);
    let mut other = taken.deliveries[0].clone();
    other.parts = vec![ids[39]];
    assert!(matches!(b.store.reserve(&[other]), Err(ReserveError::Malformed(_))));
    // Confirmed at the owner, the source's copy stays, for the source; across a crash.
    let confirmed = a.store.confirm(&[taken.deliveries[0].parts[0]]);
    a.write(&confirmed);
    a.crash(&ring);
    b.crash(&ring);
    assert_eq!(a.store.stats().deliveries, 1, "held for the source");
    assert!(matches!(a.store.take(&request), Err(StoreError::ChunkExists(c)) if c == chunk));
    // Each end's application fetches it once, by chunk; nobody else, and not twice.
    assert_eq!(a.store.fetch_chunk("dst", "src", chunk, 0).unwrap_err(), StoreError::NotFound);
    let (at_a, ops) = a.store.fetch_chunk("src", "dst", chunk, 0).unwrap();
    a.write(&ops);
    assert_eq!(a.store.stats().consumed, 1, "the source's copy is erased once fetched");
    let (at_b, ops) = b.store.fetch_chunk("dst", "src", chunk, 0).unwrap();
    b.write(&ops);
    assert_eq!((&at_a[0].1, &at_b[0].1), (&key, &key), "the same bytes at both ends");
    for end in [&mut a, &mut b] {
        end.crash(&ring);
        for (local, remote) in [("src", "dst"), ("dst", "src")] {
            let again = end.store.fetch_chunk(local, remote, chunk, 0);
            assert_eq!(again.unwrap_err(), StoreError::NotFound, "once per end");
        }
        end.store.audit().unwrap();
    }
}

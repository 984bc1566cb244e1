//! Migration from the agent's previous key store (`kms.redb`: a row per key sealed under the
//! store key itself, keyed by the sender's block sequence) into blocks with their own data keys.
//!
//! Keys are regrouped by link and sequence into runs of consecutive stream positions (erased
//! keys leave gaps, which split a block); the keys of a pending relay become one block of their
//! own when their positions are evenly spaced (step 1 or 2, as the relay stores them), and are
//! dropped otherwise (the relay is then never committed here, which is safe). Deliveries carry
//! over unchanged. Everything is written in one transaction; the caller deletes the old file
//! afterwards, so its copies of erased keys go with it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::block::{Block, KeySet, MAX_BLOCK_KEYS, Placement};
use crate::delivery::{Delivery, RelayRecord, RelayState};
use crate::disk::{Disk, DiskError, DiskOp};
use crate::seal::{BlockPlace, Keyring};

const KEYS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("keys-by-arrival");
const DELIVERIES: TableDefinition<'_, &[u8; 40], &[u8]> =
    TableDefinition::new("deliveries-by-expiry");
const RELAYS: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("relays");

/// What a migration carried over and what it could not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Keys carried over.
    pub keys: usize,
    /// Blocks they make.
    pub blocks: usize,
    /// Deliveries carried over.
    pub deliveries: usize,
    /// Pending relays carried over.
    pub relays: usize,
    /// Keys that failed authentication under the store key (skipped).
    pub unreadable: usize,
    /// Keys of pending relays whose positions could not make one block (dropped).
    pub dropped: usize,
}

/// A key of the previous format, opened.
struct OldKey {
    id: Uuid,
    position: u64,
    created_ms: u64,
    bytes: Zeroizing<Vec<u8>>,
}

/// The previous format's pending relay.
#[derive(serde::Deserialize)]
struct OldRelay {
    link: Uuid,
    keys: Vec<Uuid>,
    expires_ms: u64,
    source: bool,
}

fn fail(e: impl std::fmt::Display) -> DiskError {
    DiskError::Database(format!("migrating the previous key store: {e}"))
}

fn table<T>(result: Result<T, TableError>) -> Result<Option<T>, DiskError> {
    match result {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// Blocks of keys at consecutive positions (`step` apart) and the same size, in order, of at
/// most [`MAX_BLOCK_KEYS`] keys each.
fn runs(mut keys: Vec<OldKey>, step: u64) -> Vec<Vec<OldKey>> {
    keys.sort_by_key(|k| k.position);
    let mut out: Vec<Vec<OldKey>> = Vec::new();
    for key in keys {
        match out.last_mut() {
            Some(run)
                if run.len() < MAX_BLOCK_KEYS
                    && run.last().is_some_and(|last| {
                        last.position + step == key.position && last.bytes.len() == key.bytes.len()
                    }) =>
            {
                run.push(key)
            }
            _ => out.push(vec![key]),
        }
    }
    out
}

/// Reads the previous store at `old` and writes its keys, deliveries and pending relays into
/// `disk` (in one transaction).
pub fn migrate(old: &Path, disk: &Disk, ring: &Keyring) -> Result<Migrated, DiskError> {
    let db = Database::open(old).map_err(|e| fail(format!("{}: {e}", old.display())))?;
    let read = db.begin_read().map_err(fail)?;
    let mut report = Migrated::default();
    let mut by_link: HashMap<Uuid, Vec<OldKey>> = HashMap::new();
    if let Some(keys) = table(read.open_table(KEYS))? {
        for entry in keys.iter().map_err(fail)? {
            let (row, value) = entry.map_err(fail)?;
            let (row, value) = (row.value(), value.value());
            if value.len() < 28 {
                return Err(fail("a truncated key record"));
            }
            let link = Uuid::from_bytes(row[..16].try_into().expect("16 bytes"));
            let sequence = u64::from_be_bytes(row[16..24].try_into().expect("8 bytes"));
            let index = u32::from_be_bytes(row[24..28].try_into().expect("4 bytes"));
            let id = Uuid::from_bytes(value[..16].try_into().expect("16 bytes"));
            let created_ms = u64::from_le_bytes(value[20..28].try_into().expect("8 bytes"));
            match ring.current().open_legacy(link, id, &value[28..]) {
                Ok(bytes) => by_link.entry(link).or_default().push(OldKey {
                    id,
                    position: sequence.wrapping_add(u64::from(index)),
                    created_ms,
                    bytes,
                }),
                Err(_) => report.unreadable += 1,
            }
        }
    }
    let mut old_relays: Vec<(Uuid, OldRelay)> = Vec::new();
    if let Some(relays) = table(read.open_table(RELAYS))? {
        for entry in relays.iter().map_err(fail)? {
            let (id, value) = entry.map_err(fail)?;
            let relay: OldRelay = serde_json::from_slice(value.value()).map_err(fail)?;
            old_relays.push((Uuid::from_bytes(*id.value()), relay));
        }
    }
    let mut ops = Vec::new();
    let mut next_blocks = disk.next_blocks()?;
    let mut seal_run = |link: Uuid, run: Vec<OldKey>, step: u64, ops: &mut Vec<DiskOp>| {
        let next = next_blocks.entry(link).or_insert(0);
        let block = *next;
        *next += 1;
        let key_bytes = run[0].bytes.len() as u32;
        let mut material = Zeroizing::new(Vec::with_capacity(run.len() * key_bytes as usize));
        for key in &run {
            material.extend_from_slice(&key.bytes);
        }
        let stored = Block {
            place: BlockPlace { link, block },
            placement: Placement { sequence: run[0].position, step },
            key_bytes,
            created_ms: run.iter().map(|k| k.created_ms).min().unwrap_or(0),
            ids: run.iter().map(|k| k.id).collect(),
            material: Some(material),
            erased: KeySet::default(),
        };
        ops.extend(stored.seal(ring).map(DiskOp::Put));
        block
    };
    for (relay_id, relay) in old_relays {
        let Some(keys) = by_link.get_mut(&relay.link) else { continue };
        let (mine, rest): (Vec<OldKey>, Vec<OldKey>) =
            std::mem::take(keys).into_iter().partition(|k| relay.keys.contains(&k.id));
        *keys = rest;
        if mine.is_empty() {
            continue;
        }
        let count = mine.len();
        let positions: BTreeMap<u64, ()> = mine.iter().map(|k| (k.position, ())).collect();
        let first = *positions.keys().next().expect("not empty");
        let step = positions.keys().nth(1).map(|p| p - first).unwrap_or(1);
        let mut pieces = runs(mine, step);
        if (step == 1 || step == 2) && pieces.len() == 1 {
            let block = seal_run(relay.link, pieces.remove(0), step, &mut ops);
            let pending = RelayRecord {
                id: relay_id,
                block,
                expires_ms: relay.expires_ms,
                source: relay.source,
                state: RelayState::Pending,
            };
            ops.push(DiskOp::PutRelay { link: relay.link, relay: pending });
            report.keys += count;
            report.blocks += 1;
            report.relays += 1;
        } else {
            report.dropped += count;
        }
    }
    for (link, keys) in by_link {
        for run in runs(keys, 1) {
            report.keys += run.len();
            report.blocks += 1;
            seal_run(link, run, 1, &mut ops);
        }
    }
    if let Some(deliveries) = table(read.open_table(DELIVERIES))? {
        for entry in deliveries.iter().map_err(fail)? {
            let (row, value) = entry.map_err(fail)?;
            let link = Uuid::from_bytes(row.value()[..16].try_into().expect("16 bytes"));
            let delivery: Delivery = serde_json::from_slice(value.value()).map_err(fail)?;
            if let Some(group) = delivery.id() {
                ops.push(DiskOp::PutDeliveries {
                    link,
                    group,
                    expires_ms: delivery.expires_ms,
                    deliveries: vec![delivery],
                });
                report.deliveries += 1;
            }
        }
    }
    disk.apply(&ops)?;
    Ok(report)
}

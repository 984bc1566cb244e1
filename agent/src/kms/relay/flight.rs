//! What the source of virtual links keeps in memory about its relays: where each block goes
//! in its link's key stream, and which relays are under way (sent and not heard back, or being
//! settled), so that nothing settles a relay whose request may still arrive and the stock a
//! link is refilled to counts the keys already travelling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::kms::store::Placement;

/// A relay under way: its virtual link, the end its keys go to, and how many.
#[derive(Clone, Copy, Debug)]
struct Flying {
    link: Uuid,
    owner: Uuid,
    keys: usize,
}

/// The relays under way from this node.
#[derive(Default)]
pub(super) struct InFlight(Mutex<HashMap<Uuid, Flying>>);

/// A relay marked under way until this is dropped.
pub(super) struct Flight {
    registry: Arc<InFlight>,
    relay: Uuid,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.relay);
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Flying>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `relay` (`keys` keys of `link` for `owner`) under way; `None` when it already is.
    pub(super) fn enter(
        self: &Arc<Self>,
        relay: Uuid,
        link: Uuid,
        owner: Uuid,
        keys: usize,
    ) -> Option<Flight> {
        let mut map = self.lock();
        if map.contains_key(&relay) {
            return None;
        }
        map.insert(relay, Flying { link, owner, keys });
        Some(Flight { registry: self.clone(), relay })
    }

    /// Relays of `link` under way, and their keys for `owner`.
    pub(super) fn of(&self, link: Uuid, owner: Uuid) -> (usize, usize) {
        let map = self.lock();
        let mine = map.values().filter(|f| f.link == link);
        mine.fold((0, 0), |(n, keys), f| (n + 1, keys + if f.owner == owner { f.keys } else { 0 }))
    }
}

/// Where each block of the virtual links this node sources goes in its link's key stream.
/// Every block has one owner, so its keys sit two positions apart on that owner's parity, and
/// blocks never share a position. A link's count starts at the time in microseconds: later than
/// any block of an earlier run, as a link never sources a block per microsecond.
#[derive(Default)]
pub(super) struct LinkSequences(Mutex<HashMap<Uuid, u64>>);

impl LinkSequences {
    /// The placement of a block of `count` keys of `link` on even (else odd) positions.
    pub(super) fn block(&self, link: Uuid, count: usize, even: bool) -> Placement {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = map.entry(link).or_insert_with(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
        });
        let mut sequence = *next;
        if sequence.is_multiple_of(2) != even {
            sequence += 1;
        }
        *next = sequence + 2 * count.max(1) as u64;
        Placement { sequence, step: 2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::ownership;

    #[test]
    fn each_block_belongs_to_its_owner_and_blocks_never_share_a_position() {
        let sequences = LinkSequences::default();
        let (source, far) = (Uuid::from_u128(1), Uuid::from_u128(4));
        let link = Uuid::from_u128(10);
        let mut seen = std::collections::HashSet::new();
        for round in 0..50 {
            // The smaller node ID owns even positions.
            let owner = if round % 3 == 0 { far } else { source };
            let count = 1 + round % 5;
            let placement = sequences.block(link, count, owner == source.min(far));
            for index in 0..count {
                let position = placement.sequence + placement.step * index as u64;
                assert!(seen.insert(position), "position {position} given twice");
                assert_eq!(ownership::owned_by(source, far, position), owner == source);
                assert_eq!(ownership::owned_by(far, source, position), owner == far);
            }
        }
    }
}

//! The rows deliveries are written in. The deliveries one `enc_keys` made (or one reservation
//! recorded) share a row, up to [`GROUP_DELIVERIES`] of one expiry, so that a request of many
//! keys costs one row written and one removed at each end rather than one per key. A row is
//! named by a random ID of the store's (never a key ID, which a later delivery may reuse after
//! an abort); it is rewritten when one of its deliveries changes (a slave fetched it) or goes,
//! and removed with the last.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::LinkStore;
use crate::delivery::{Delivery, DeliveryGroup};
use crate::disk::DiskOp;
use crate::seal::random_id;

/// Deliveries a row holds at most (a row is rewritten whole when one of them changes).
pub const GROUP_DELIVERIES: usize = 64;

/// A row: its deliveries' expiry (part of the row's key) and their IDs (some maybe gone).
struct Group {
    expires_ms: u64,
    members: Vec<Uuid>,
}

/// Which row each delivery is in, and the rows changed since their last write.
#[derive(Default)]
pub(super) struct Groups {
    rows: HashMap<Uuid, Group>,
    row_of: HashMap<Uuid, Uuid>,
    changed: BTreeSet<Uuid>,
}

impl LinkStore {
    /// Records new deliveries: consecutive ones of one expiry share a row. The writes.
    pub(super) fn record_deliveries(&mut self, deliveries: &[Delivery]) -> Vec<DiskOp> {
        let mut ops = Vec::new();
        let mut rest = deliveries;
        while let Some(first) = rest.first() {
            let expires_ms = first.expires_ms;
            let len = rest
                .iter()
                .take(GROUP_DELIVERIES)
                .take_while(|d| d.expires_ms == expires_ms)
                .count();
            let (row, later) = rest.split_at(len);
            rest = later;
            let group = random_id();
            let mut members = Vec::with_capacity(row.len());
            for delivery in row {
                let Some(id) = delivery.id() else { continue };
                members.push(id);
                self.groups.row_of.insert(id, group);
                if let Some(chunk) = delivery.chunk {
                    self.chunks.insert(chunk, id);
                }
                self.deliveries.insert(id, delivery.clone());
            }
            ops.push(DiskOp::PutDeliveries {
                link: self.link,
                group,
                expires_ms,
                deliveries: row.to_vec(),
            });
            self.groups.rows.insert(group, Group { expires_ms, members });
        }
        ops
    }

    /// Takes back a row read from disk.
    pub(super) fn restore_group(&mut self, group: DeliveryGroup) {
        let expires_ms = group.deliveries.first().map_or(0, |d| d.expires_ms);
        let mut members = Vec::with_capacity(group.deliveries.len());
        for delivery in group.deliveries {
            let Some(id) = delivery.id() else { continue };
            members.push(id);
            self.groups.row_of.insert(id, group.id);
            if let Some(chunk) = delivery.chunk {
                self.chunks.insert(chunk, id);
            }
            self.deliveries.insert(id, delivery);
        }
        self.groups.rows.insert(group.id, Group { expires_ms, members });
    }

    /// Forgets delivery `id` (done, aborted or expired); its row is rewritten by the next
    /// [`group_writes`](Self::group_writes).
    pub(super) fn forget_delivery(&mut self, id: &Uuid) -> Option<Delivery> {
        let delivery = self.deliveries.remove(id)?;
        if let Some(chunk) = &delivery.chunk {
            self.chunks.remove(chunk);
        }
        if let Some(group) = self.groups.row_of.remove(id) {
            self.groups.changed.insert(group);
        }
        Some(delivery)
    }

    /// Delivery `id` changed (and stays): its row is rewritten by the next
    /// [`group_writes`](Self::group_writes).
    pub(super) fn delivery_changed(&mut self, id: &Uuid) {
        if let Some(group) = self.groups.row_of.get(id) {
            self.groups.changed.insert(*group);
        }
    }

    /// The writes of the rows whose deliveries changed or went since the last call: each
    /// rewritten with the deliveries it still holds, or removed when it holds none.
    pub(super) fn group_writes(&mut self) -> Vec<DiskOp> {
        let Groups { rows, row_of, changed } = &mut self.groups;
        let mut ops = Vec::with_capacity(changed.len());
        for group in std::mem::take(changed) {
            let Some(row) = rows.get_mut(&group) else { continue };
            row.members.retain(|id| row_of.get(id) == Some(&group));
            let expires_ms = row.expires_ms;
            if row.members.is_empty() {
                rows.remove(&group);
                ops.push(DiskOp::RemoveDeliveries { link: self.link, group, expires_ms });
            } else {
                let deliveries =
                    row.members.iter().filter_map(|id| self.deliveries.get(id).cloned()).collect();
                ops.push(DiskOp::PutDeliveries { link: self.link, group, expires_ms, deliveries });
            }
        }
        ops
    }

    /// Rows of deliveries held (for tests and figures).
    pub fn delivery_rows(&self) -> usize {
        self.groups.rows.len()
    }
}

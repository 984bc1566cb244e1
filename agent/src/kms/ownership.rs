//! Which end of a link may hand out which key (DESIGN.md §7.5), decided without any exchange:
//! the keys of a link's stream are split by position between its two ends. Position `p` of a
//! key is its block's sequence plus its index in the block; the end with the smaller node ID
//! owns even positions, the other end odd ones. Both ends compute the same answer for every
//! key, so they can never hand the same key to two different requests.
//!
//! Only the owner gives a key out (to a master SAE with `enc_keys`, or as a hop key of the
//! relay); the other end keeps its copy for the owner's slaves (`dec_keys`) and for decrypting
//! what the owner relays.

use uuid::Uuid;

/// Position of key `index` of the block `sequence` in the link's key stream.
pub fn position(sequence: u64, index: usize) -> u64 {
    sequence.wrapping_add(index as u64)
}

/// Whether `local` owns the key at `position` of the link between `local` and `remote`.
pub fn owned_by(local: Uuid, remote: Uuid, position: u64) -> bool {
    position.is_multiple_of(2) == (local < remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_exactly_one_owner_and_both_ends_agree() {
        let (a, b) = (Uuid::from_u128(7), Uuid::from_u128(3));
        let mut owned = (0, 0);
        for sequence in [0u64, 1, 41, u64::MAX - 3] {
            for index in 0..8 {
                let p = position(sequence, index);
                assert_ne!(owned_by(a, b, p), owned_by(b, a, p), "one owner at {p}");
                if owned_by(a, b, p) {
                    owned.0 += 1;
                } else {
                    owned.1 += 1;
                }
            }
        }
        assert_eq!(owned.0, owned.1, "half each");
        // One-key blocks alternate with the sequence.
        assert_ne!(owned_by(a, b, position(10, 0)), owned_by(a, b, position(11, 0)));
    }
}

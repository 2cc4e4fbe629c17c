//! Which keys `message_keys` certainly does not hold, without reading it.
//!
//! Real clients send a new random messageId with nearly every event, and each one's
//! dedupe lookup missed the writer's map and read the `message_keys` B-tree for a key
//! that is not there (a sixth of the writer's time under batch ingest). This is a
//! blocked Bloom filter over the keys in the table: all of a key's bits lie in one
//! 64-byte block (one cache line per lookup), and a key it has not seen is told apart
//! from the ones it has in all but about 1 % of cases. Keys are never taken out (a
//! deleted event's key only costs a read until the next rebuild), so it holds a superset
//! of the table: never a key missing, which would let a duplicate through.

use rusqlite::Connection;

use crate::store::StoreError;

/// Bits per key at capacity: with [`PROBES`] bits set per key, about 1 % false positives
/// at capacity (blocks fill unevenly), fewer below it. 1.5 bytes per key.
const BITS_PER_KEY: usize = 12;
/// Bits set per key, each chosen by 9 bits of the mixed key.
const PROBES: u32 = 6;
/// A block's bits: one cache line.
const BLOCK_BITS: usize = 512;
/// The smallest filter, in keys: 96 KB, so that a new store's first keys do not rebuild
/// it again and again.
const MIN_CAPACITY: usize = 65_536;

#[derive(Debug)]
pub(super) struct KeyFilter {
    /// Blocks of `BLOCK_BITS` bits; their number is a power of two.
    blocks: Vec<[u64; BLOCK_BITS / 64]>,
    /// Keys added (with repeats): past `capacity`, false positives grow and the
    /// filter is rebuilt twice as large.
    added: usize,
    capacity: usize,
}

impl KeyFilter {
    /// An empty filter sized for `keys` keys.
    pub(super) fn with_capacity(capacity: usize) -> KeyFilter {
        let blocks = (capacity * BITS_PER_KEY)
            .div_ceil(BLOCK_BITS)
            .next_power_of_two()
            .max(1);
        KeyFilter {
            blocks: vec![[0; BLOCK_BITS / 64]; blocks],
            added: 0,
            capacity,
        }
    }

    /// A filter of every key in `message_keys` (as `conn` sees it), with room for as many
    /// again.
    pub(super) fn of_table(conn: &Connection) -> Result<KeyFilter, StoreError> {
        // Read once, then sized: 8 bytes a key for a moment rather than a second scan.
        let keys = conn
            .prepare("SELECT key FROM message_keys")?
            .query_map([], |row| row.get::<_, i64>(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        let mut filter = KeyFilter::with_capacity((2 * keys.len()).max(MIN_CAPACITY));
        for key in keys {
            filter.insert(key);
        }
        Ok(filter)
    }

    /// The keys inserted, with repeats: about as many as the table holds.
    pub(super) fn len(&self) -> usize {
        self.added
    }

    /// Whether `count` more keys fit before the filter should be rebuilt larger.
    pub(super) fn has_room_for(&self, count: usize) -> bool {
        self.added + count <= self.capacity
    }

    pub(super) fn insert(&mut self, key: i64) {
        let (block, bits) = self.place(key);
        let block = &mut self.blocks[block];
        for bit in bits {
            block[bit / 64] |= 1 << (bit % 64);
        }
        self.added += 1;
    }

    /// False only for a key never inserted.
    pub(super) fn may_hold(&self, key: i64) -> bool {
        let (block, bits) = self.place(key);
        let block = &self.blocks[block];
        bits.into_iter()
            .all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// The key's block and its bits there. Keys are XXH3 hashes: the low bits choose the
    /// block; the bits within it come from the key multiplied by an odd constant (a
    /// bijection whose high bits depend on all of the key's), so they are independent of
    /// the block's choice.
    fn place(&self, key: i64) -> (usize, [usize; PROBES as usize]) {
        let key = key as u64;
        let block = (key as usize) & (self.blocks.len() - 1);
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut bits = [0; PROBES as usize];
        for (i, bit) in bits.iter_mut().enumerate() {
            *bit = ((mixed >> (64 - 9 * (i as u32 + 1))) & (BLOCK_BITS as u64 - 1)) as usize;
        }
        (block, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys as the store makes them.
    fn key(n: u64) -> i64 {
        super::super::message_keys::message_key("web", &format!("m-{n}"))
    }

    #[test]
    fn every_inserted_key_is_held_and_few_others_seem_to_be() {
        let mut filter = KeyFilter::with_capacity(100_000);
        for n in 0..100_000 {
            filter.insert(key(n));
        }
        assert!((0..100_000).all(|n| filter.may_hold(key(n))));
        let false_positives = (100_000..200_000)
            .filter(|&n| filter.may_hold(key(n)))
            .count();
        // About 1 % at capacity; 3 % would mean the bits are not independent.
        assert!(false_positives < 3_000, "{false_positives} of 100000");
        assert!(false_positives > 0, "a filter this full cannot be exact");
    }

    #[test]
    fn a_filter_of_the_table_holds_its_keys_with_room_for_as_many() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE message_keys (key INTEGER NOT NULL, event_id INTEGER NOT NULL,
             PRIMARY KEY (key, event_id)) WITHOUT ROWID",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO message_keys (key, event_id) VALUES (?1, ?2)")
            .unwrap();
        for n in 0..70_000u64 {
            insert.execute((key(n), n as i64)).unwrap();
        }
        let filter = KeyFilter::of_table(&conn).unwrap();
        assert!((0..70_000).all(|n| filter.may_hold(key(n))));
        assert!(filter.has_room_for(70_000));
        assert!(!filter.has_room_for(70_001));
    }
}

//! The set of event id hashes the exact deduplication keeps: about 23 bytes an id.
//!
//! Ids are 128-bit hashes (`xxh3_128` of the `event_id` text), so all their bits are
//! uniform and an id can be its own hash. The set is split into [`PARTS`]
//! open-addressing tables by the id's leading byte. Within a part an id's home slot is
//! its low 64 bits scaled to the part's capacity, and a collision takes the next free
//! slot (linear probing). Each slot has a control byte beside it, in an array of its
//! own: 0 for an empty slot, else a 7-bit tag of the slot's id. A probe scans the
//! control bytes, 16 times denser than the slots and so mostly in cache, and reads a
//! slot only where the tag matches; an insert touches one line of slots, as in a
//! `HashSet`.
//!
//! Why not a `HashSet<u128>`: its capacity is a power of two and doubles when 7/8
//! full, so it is between 44% and 87% full, 28 bytes an id on average with its
//! control bytes. A part here grows by half when 9/10 full, so it is between 60% and
//! 90% full (19 to 28 bytes an id, 23 on average over its cycle), and the parts'
//! capacities are staggered (part `i` starts at `1.5^(i/256)` of the first part's) so
//! that their growths come one after another rather than all at one id count, and
//! the whole set stays near the average. A growth copies one part, 1/256
//! of the ids, so the old table beside the new one costs nothing at the peak.

/// How many tables: one per value of an id's leading byte.
const PARTS: usize = 256;

/// A part's capacity at level 0 (before the staggering).
const FIRST_CAPACITY: f64 = 16.0;

/// How much a part grows at a time.
const GROWTH: f64 = 1.5;

/// A part holds at most `MAX_LOAD.0 / MAX_LOAD.1` of its capacity.
const MAX_LOAD: (usize, usize) = (9, 10);

/// A set of 128-bit id hashes in open-addressing tables (see the module's doc).
pub struct IdSet {
    parts: Vec<Part>,
    len: usize,
}

/// One open-addressing table: `slots` ids, and for each slot a control byte, 0 where
/// the slot is empty and otherwise the slot's [`tag`].
struct Part {
    control: Vec<u8>,
    slots: Vec<u128>,
    len: usize,
    /// How many times the part has grown: its capacity is [`capacity`]`(part, level)`.
    level: i32,
}

impl Default for IdSet {
    fn default() -> IdSet {
        IdSet {
            parts: (0..PARTS).map(|part| Part::new(part, 0)).collect(),
            len: 0,
        }
    }
}

/// The capacity of part `part` at `level`: the parts' capacities are spread evenly
/// over one growth step, so they fill up one after another.
fn capacity(part: usize, level: i32) -> usize {
    let exponent = f64::from(level) + part as f64 / PARTS as f64;
    (FIRST_CAPACITY * GROWTH.powf(exponent)).ceil() as usize
}

/// Whether `len` ids fit in `capacity` slots within the maximum load.
fn fits(len: usize, capacity: usize) -> bool {
    len * MAX_LOAD.1 <= capacity * MAX_LOAD.0
}

/// The home slot of `id` in a table of `capacity` slots: its low 64 bits scaled down.
#[inline]
fn home(id: u128, capacity: usize) -> usize {
    ((u128::from(id as u64) * capacity as u128) >> 64) as usize
}

/// An id's control byte: the high bit set (an occupied slot) and 7 bits of the id
/// that neither its part nor its home depends on.
#[inline]
fn tag(id: u128) -> u8 {
    0x80 | (id >> 64) as u8
}

impl Part {
    /// An empty part `part` at `level`.
    fn new(part: usize, level: i32) -> Part {
        let capacity = capacity(part, level);
        Part {
            control: vec![0; capacity],
            slots: vec![0; capacity],
            len: 0,
            level,
        }
    }

    /// Where `id` is, or else the empty slot where it goes.
    #[inline]
    fn find(&self, id: u128) -> Result<usize, usize> {
        let capacity = self.control.len();
        let tag = tag(id);
        let mut at = home(id, capacity);
        loop {
            let control = self.control[at];
            if control == 0 {
                return Err(at);
            }
            if control == tag && self.slots[at] == id {
                return Ok(at);
            }
            at += 1;
            if at == capacity {
                at = 0;
            }
        }
    }

    /// Records `id` where there is room for it; whether it is new.
    #[inline]
    fn insert(&mut self, id: u128) -> bool {
        match self.find(id) {
            Ok(_) => false,
            Err(at) => {
                self.control[at] = tag(id);
                self.slots[at] = id;
                self.len += 1;
                true
            }
        }
    }

    /// Moves the ids to a table of the smallest level above the present one that holds
    /// `len` ids within the maximum load.
    fn grow_to_hold(&mut self, part: usize, len: usize) {
        if fits(len, self.slots.len()) {
            return;
        }
        let mut level = self.level;
        while !fits(len, capacity(part, level)) {
            level += 1;
        }
        let old = std::mem::replace(self, Part::new(part, level));
        for (control, id) in old.control.into_iter().zip(old.slots) {
            if control != 0 {
                self.insert(id);
            }
        }
    }
}

impl IdSet {
    /// Records `id`; whether it is new.
    #[inline]
    pub fn insert(&mut self, id: u128) -> bool {
        let index = (id >> (u128::BITS - 8)) as usize;
        let part = &mut self.parts[index];
        if !fits(part.len + 1, part.slots.len()) {
            part.grow_to_hold(index, part.len + 1);
        }
        let new = part.insert(id);
        self.len += usize::from(new);
        new
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u128) -> bool {
        self.parts[(id >> (u128::BITS - 8)) as usize]
            .find(id)
            .is_ok()
    }

    /// Room for about `ids` more ids, spread evenly over the parts with a little to
    /// spare: a time's ids then go in with few growths on the way.
    pub fn reserve(&mut self, ids: usize) {
        let each = ids / PARTS;
        let more = each + each / 8 + 2;
        for (index, part) in self.parts.iter_mut().enumerate() {
            part.grow_to_hold(index, part.len + more);
        }
    }

    /// How many ids the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no id.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many slots the parts have (17 bytes each: an id and its control byte).
    pub fn slots(&self) -> usize {
        self.parts.iter().map(|part| part.slots.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashSet;

    #[test]
    fn the_id_set_answers_as_a_hash_set_in_under_twenty_six_bytes_an_id() {
        let mut next = crate::test_numbers(17);
        let mut compact = IdSet::default();
        let mut one = FxHashSet::default();
        let mut earlier: Vec<u128> = Vec::new();
        for round in 0..300_000 {
            if round % 50_000 == 0 {
                compact.reserve(next(60_000) as usize);
            }
            let id = match next(10) {
                // A repeat of an earlier id.
                0 | 1 if !earlier.is_empty() => earlier[next(earlier.len() as u64) as usize],
                // Ids that share a part and a home, the empty slot's value, the ends.
                2 => (u128::from(next(4)) << 120) | u128::from(next(1 << 20)),
                3 => u128::from(next(3)),
                4 => u128::MAX - u128::from(next(8)),
                // 31 random bits a draw: five fill the 128.
                _ => (0..5).fold(0u128, |id, _| id << 31 | u128::from(next(1 << 31))),
            };
            earlier.push(id);
            assert_eq!(compact.insert(id), one.insert(id), "id {id:x}");
        }
        assert_eq!(compact.len(), one.len());
        for &id in earlier.iter().step_by(97) {
            assert!(compact.contains(id), "id {id:x}");
            assert_eq!(
                compact.contains(id ^ 1 << 70),
                one.contains(&(id ^ 1 << 70))
            );
        }
        for part in &compact.parts {
            assert!(fits(part.len, part.slots.len()));
        }
        let per_id = compact.slots() as f64 * 17.0 / compact.len() as f64;
        assert!(per_id < 26.0, "{per_id} bytes an id");
    }

    #[test]
    fn the_parts_grow_one_after_another() {
        // Every part's capacity at one level lies between part 0's at that level and
        // part 0's at the next: their growths are spread over the step.
        for level in 0..30 {
            let (first, next) = (capacity(0, level), capacity(0, level + 1));
            let mut last = first;
            for part in 0..PARTS {
                let here = capacity(part, level);
                assert!(here >= last && here <= next, "part {part} level {level}");
                last = here;
            }
        }
        // Uniform ids fill the set to between 65% and 85% (the parts between 60% and 90%) whatever the count, about the
        // mean load of the cycle once the count is large.
        let mut next = crate::test_numbers(5);
        let mut set = IdSet::default();
        for count in 1..=400_000u32 {
            set.insert((0..5).fold(0u128, |id, _| id << 31 | u128::from(next(1 << 31))));
            if count % 50_000 == 0 {
                let load = set.len() as f64 / set.slots() as f64;
                assert!((0.65..=0.85).contains(&load), "{count} ids: load {load}");
            }
        }
    }
}

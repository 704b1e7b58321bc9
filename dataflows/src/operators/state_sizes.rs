//! A diagnostic: with `TIDEMARK_STATE_SIZES` set, every hash reduce and hash total
//! prints its state once its input has ended (the end of a backfill, when state is
//! largest): its keys and the bytes of its map and of the vectors its keys own. The
//! heap profile (`scripts/heap-profile`) names an allocation's source file, and every
//! reduce shares one file; this names the operator.

use std::sync::OnceLock;

/// Whether `TIDEMARK_STATE_SIZES` is set (read once).
pub fn wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("TIDEMARK_STATE_SIZES").is_some())
}

/// Prints one operator's state on stderr: `keys` keys in a hash map with room for
/// `capacity` entries of `entry_bytes` each (its bytes as [`hash_table_bytes`] counts
/// them), and `owned_bytes` in vectors its entries own, where counted (a hash total's
/// differences may own vectors too, which are not).
pub fn report(
    name: &str,
    keys: usize,
    capacity: usize,
    entry_bytes: usize,
    owned_bytes: Option<usize>,
) {
    let owned = owned_bytes.map_or_else(|| "not counted".to_string(), mb);
    eprintln!(
        "state: {name}: {keys} keys, map {}, owned {owned}",
        mb(hash_table_bytes(capacity, entry_bytes))
    );
}

/// `bytes` as the reports print them.
pub fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The bytes of a hash table (`hashbrown`'s) that holds up to `capacity` entries of
/// `entry_bytes` each: it has about 8/7 as many buckets, each an entry and a control
/// byte.
pub fn hash_table_bytes(capacity: usize, entry_bytes: usize) -> usize {
    capacity * 8 / 7 * (entry_bytes + 1)
}

/// Whether an operator has printed its state: [`ReportOnce::due`] says yes once, when
/// its input has ended and a report is wanted.
#[derive(Default)]
pub struct ReportOnce(bool);

impl ReportOnce {
    /// Whether to print the state now: the first call after `input_ended` with
    /// `TIDEMARK_STATE_SIZES` set.
    pub fn due(&mut self, input_ended: bool) -> bool {
        if self.0 || !input_ended || !wanted() {
            return false;
        }
        self.0 = true;
        true
    }
}

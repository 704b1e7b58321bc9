//! `Name`: an identifier (user id, event type, session id) as a 64-bit integer inside
//! the dataflow, turned back into its text only for output rows.
//!
//! The integer is (64 bits of) the xxh3 hash of the text, so every worker of every process derives
//! the same id for the same text without coordination. The text of every id is kept
//! once per process in a registry; a name crossing to another process travels as text
//! and is registered there, so any worker can write any name. Two texts with the same
//! hash are a collision: it is recorded, never merged, and [`collision`] makes the run
//! fail before it writes anything computed with the merged id.

use std::cell::RefCell;
use std::cmp::Ordering as Order;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_128;

use crate::operators::state_sizes;

/// An interned identifier: 8 bytes, `Copy`, ordered by its id. The id is never 0, so
/// an `Option<Name>` is 8 bytes too (records that carry optional names stay small).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(NonZeroU64);

/// Every text of this process, by id. A text is registered once and kept for the life
/// of the process, so it is held as a `&'static str`: output rows borrow it, with no
/// reference count for every worker and writer thread to write.
fn registry() -> &'static RwLock<FxHashMap<u64, &'static str>> {
    static REGISTRY: OnceLock<RwLock<FxHashMap<u64, &'static str>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The first collision seen in this process, as a message.
static COLLISION: Mutex<Option<String>> = Mutex::new(None);
/// Whether [`COLLISION`] holds one: sinks look at it on every activation, so the usual
/// answer costs an atomic load, not a lock.
static COLLIDED: AtomicBool = AtomicBool::new(false);

/// Test hook: keep only this many low bits of each hash (0 = all 64), to force
/// collisions. Set with [`force_collisions_with_bits`] or `TIDEMARK_ID_BITS`.
static ID_BITS: OnceLock<u32> = OnceLock::new();

fn id_mask() -> u64 {
    let bits = *ID_BITS.get_or_init(|| {
        std::env::var("TIDEMARK_ID_BITS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    });
    match bits {
        1..=63 => (1u64 << bits) - 1,
        _ => u64::MAX,
    }
}

/// Test hook: makes every id keep only `bits` bits, so distinct texts collide. Takes
/// effect only before the first name is made in this process.
pub fn force_collisions_with_bits(bits: u32) {
    let _ = ID_BITS.set(bits);
}

/// The collision seen in this process, if any: two texts that got the same id.
pub fn collision() -> Option<String> {
    if !COLLIDED.load(Ordering::Acquire) {
        return None;
    }
    COLLISION.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Forgets a recorded collision (a new run in the same process starts clean).
pub fn clear_collision() {
    *COLLISION.lock().unwrap_or_else(|e| e.into_inner()) = None;
    COLLIDED.store(false, Ordering::Release);
}

fn record_collision(id: u64, known: &str, text: &str) {
    let mut slot = COLLISION.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(format!(
            "two identifiers got the same 64-bit id {id:#018x}: {known:?} and {text:?}; tidemark refuses to merge them. Report this (with both values); renaming one of them works around it"
        ));
        COLLIDED.store(true, Ordering::Release);
    }
}

thread_local! {
    /// The ids this thread has made, each with the other 64 bits of its text's hash
    /// (which tell two texts of one id apart without reading either text): 16 bytes
    /// an id, so that the table [`Name::new`] probes for every field of every event
    /// stays small enough for the core's own cache.
    static CHECKS: RefCell<FxHashMap<u64, u64>> = RefCell::new(FxHashMap::default());
    /// The texts this thread has written, so that output rows rarely take a lock.
    static TEXTS: RefCell<FxHashMap<u64, &'static str>> = RefCell::new(FxHashMap::default());
}

/// The id of a text (the low 64 bits of its 128-bit xxh3, masked by the test hook;
/// never 0) and the check that tells texts of one id apart (the high 64 bits).
fn id_and_check(text: &str) -> (u64, u64) {
    let hash = xxh3_128(text.as_bytes());
    // A hash of 0 takes id 1: a text that hashes to 1 then collides with it, which is
    // recorded like any other collision.
    (((hash as u64) & id_mask()).max(1), (hash >> 64) as u64)
}

/// Texts a thread remembers before it starts over (the registry keeps them all).
const THREAD_CACHE: usize = 1 << 22;

impl Name {
    /// The name of `text`: its id, with the text registered for output.
    ///
    /// A text this thread has seen is told apart from another text of the same id by
    /// the other half of its 128-bit hash, so the usual case reads neither text; two
    /// texts that agree in all 128 bits are as unlikely as two `event_id`s that
    /// deduplication takes for one.
    pub fn new(text: &str) -> Name {
        let (id, check) = id_and_check(text);
        CHECKS.with(|checks| {
            let mut checks = checks.borrow_mut();
            if let Some(known_check) = checks.get(&id) {
                if *known_check != check {
                    let known = registered(id);
                    record_collision(id, known.unwrap_or("?"), text);
                }
                return;
            }
            register(id, text);
            remember(&mut checks, id, check);
        });
        Name(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }

    /// The id.
    pub fn id(self) -> u64 {
        self.0.get()
    }

    /// The text: the registry's own, borrowed for the life of the process.
    pub fn text(self) -> Text {
        self.with_known(|known| match known {
            Some(text) => Text::Name(text),
            None => Text::from(format!("#{:016x}", self.0.get())),
        })
    }

    /// Calls `f` with the text, without copying it.
    pub fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        self.with_known(|known| match known {
            Some(text) => f(text),
            None => f(&format!("#{:016x}", self.0.get())),
        })
    }

    /// Calls `f` with the registered text, if any. Output rows turn many names into
    /// text on several threads at once: this thread's cache answers without a lock;
    /// only a name first seen here reads the process registry.
    fn with_known<R>(self, f: impl FnOnce(Option<&'static str>) -> R) -> R {
        let id = self.0.get();
        let cached = TEXTS.with(|texts| texts.borrow().get(&id).copied());
        if cached.is_some() {
            return f(cached);
        }
        let known = registered(id);
        if let Some(text) = known {
            TEXTS.with(|texts| remember(&mut texts.borrow_mut(), id, text));
        }
        f(known)
    }
}

/// The text of an output cell: a [`Name`]'s, borrowed from the registry (no reference
/// count: every worker and writer thread writing the same user's rows would otherwise
/// write one shared counter, a cache line moved between cores at every row), or a text
/// of its own (a value read back from a file, a label). Compares, hashes and prints as
/// its text.
#[derive(Clone)]
pub enum Text {
    /// A registered name's text.
    Name(&'static str),
    /// A text of its own.
    Shared(Arc<str>),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Name(text) => text,
            Text::Shared(text) => text,
        }
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> Order {
        (**self).cmp(&**other)
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::Shared(Arc::from(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text::Shared(Arc::from(text))
    }
}

impl From<Arc<str>> for Text {
    fn from(text: Arc<str>) -> Text {
        Text::Shared(text)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        Ok(Text::from(String::deserialize(deserializer)?))
    }
}

/// Keeps what this thread knows of `id` in one of its caches, starting the cache over
/// once it is full.
fn remember<T>(cache: &mut FxHashMap<u64, T>, id: u64, known: T) {
    if cache.len() >= THREAD_CACHE {
        cache.clear();
    }
    let before = cache.capacity();
    cache.insert(id, known);
    let grown = cache.capacity().saturating_sub(before);
    if grown > 0 {
        let bytes = state_sizes::hash_table_bytes(grown, std::mem::size_of::<(u64, T)>());
        CACHE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The bytes of every thread's caches of names (see [`remember`]), about: tables grow,
/// and a cache that starts over keeps its room.
static CACHE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The bytes of the registry's texts (each a block of its own).
static TEXT_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Prints what this process holds for its names when `TIDEMARK_STATE_SIZES` is set
/// (see [`crate::operators::state_sizes`]): the registry's names, its table, the bytes
/// of their texts, and those of every thread's caches of names.
pub fn report_held() {
    if !state_sizes::wanted() {
        return;
    }
    let names = registry().read().unwrap_or_else(|e| e.into_inner());
    let caches = state_sizes::mb(CACHE_BYTES.load(Ordering::Relaxed));
    state_sizes::report(
        &format!("Names (threads' caches {caches}; owned: the texts)"),
        names.len(),
        names.capacity(),
        size_of::<(u64, &str)>(),
        Some(TEXT_BYTES.load(Ordering::Relaxed)),
    );
}

/// The text registered under `id` in this process, if any.
fn registered(id: u64) -> Option<&'static str> {
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .copied()
}

/// Registers `text` under `id` in the process registry, recording a collision if
/// another text holds the id.
fn register(id: u64, text: &str) {
    // Most ids a thread meets are registered already (by another thread, or before a
    // thread cache started over): compare under the read lock, without cloning the
    // shared text (whose reference count every thread would write).
    {
        let names = registry().read().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = names.get(&id) {
            if &**known != text {
                record_collision(id, known, text);
            }
            return;
        }
    }
    let mut names = registry().write().unwrap_or_else(|e| e.into_inner());
    // Kept for the life of the process (see [`registry`]).
    let known = *names.entry(id).or_insert_with(|| {
        TEXT_BYTES.fetch_add(text.len().next_multiple_of(16), Ordering::Relaxed);
        Box::leak(Box::<str>::from(text))
    });
    if known != text {
        record_collision(id, known, text);
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| fmt::Debug::fmt(text, f))
    }
}

/// Across processes a name travels as its text, so the receiver registers it.
impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_name_is_as_small_as_a_name() {
        assert_eq!(std::mem::size_of::<Option<Name>>(), 8);
    }

    #[test]
    fn equal_texts_give_equal_names_and_the_text_comes_back() {
        let a = Name::new("user-1");
        let b = std::thread::spawn(|| Name::new("user-1")).join().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Name::new("user-2"));
        assert_eq!(&*a.text(), "user-1");
        assert_eq!(a.to_string(), "user-1");
    }
}

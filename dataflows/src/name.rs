//! `Name`: an interned identifier (user id, event type, session id) that is cheap to
//! clone, hash and compare inside arrangements, yet keeps its text for the outputs.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_64;

/// Text with its 64-bit hash. Ordered by hash first (then text, so distinct texts
/// never compare equal), so arrangements almost never touch the bytes; cloning shares
/// the text.
#[derive(Clone)]
pub struct Name {
    hash: u64,
    text: Arc<str>,
}

impl Name {
    /// A name for `text`.
    pub fn new(text: &str) -> Name {
        Name {
            hash: xxh3_64(text.as_bytes()),
            text: Arc::from(text),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&other.hash).then_with(|| {
            if Arc::ptr_eq(&self.text, &other.text) {
                std::cmp::Ordering::Equal
            } else {
                self.text.cmp(&other.text)
            }
        })
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

/// Hands out one shared [`Name`] per distinct text, so equal names share their bytes.
/// Bounded: past `capacity` distinct texts it stops remembering and just makes names.
pub struct Interner {
    names: HashMap<Box<str>, Name>,
    capacity: usize,
}

impl Interner {
    /// An interner remembering at most `capacity` texts.
    pub fn with_capacity(capacity: usize) -> Interner {
        Interner {
            names: HashMap::new(),
            capacity,
        }
    }

    /// The shared name for `text`.
    pub fn intern(&mut self, text: &str) -> Name {
        if let Some(name) = self.names.get(text) {
            return name.clone();
        }
        let name = Name::new(text);
        if self.names.len() < self.capacity {
            self.names.insert(Box::from(text), name.clone());
        }
        name
    }
}

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};

/// A field name. Cheap to clone: a name from an [`Interner`] is one of the process's kept
/// names (cloning copies a pointer: no reference count to touch on every field of every
/// event, nor when the event is dropped); any other name counts references to its text.
/// Compares, hashes and orders as its text, whichever it is.
#[derive(Clone)]
pub struct FieldName(Repr);

#[derive(Clone)]
enum Repr {
    /// Kept for the life of the process ([`kept`]), with its number.
    Kept {
        text: &'static str,
        id: u32,
    },
    Counted(Arc<str>),
}

/// Most names, and bytes of names, the process keeps for its life: the names of the sources
/// it reads (hundreds). Past either bound — a source inventing keys — names are counted
/// like any text and freed with their events, so memory stays bounded.
const KEPT_NAMES: usize = 16_384;
const KEPT_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Kept {
    /// Name → its number, in the order they were first kept.
    set: FxHashMap<&'static str, u32>,
    bytes: usize,
}

static KEPT: LazyLock<Mutex<Kept>> = LazyLock::new(Mutex::default);

/// `s` as a kept name, or `None` once the bounds are reached. Taken by an [`Interner`] only
/// for a name it has not seen, so the lock is rare.
fn kept(s: &str) -> Option<FieldName> {
    let mut g = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((&text, &id)) = g.set.get_key_value(s) {
        return Some(FieldName(Repr::Kept { text, id }));
    }
    if g.set.len() >= KEPT_NAMES || g.bytes + s.len() > KEPT_BYTES {
        return None;
    }
    let text: &'static str = Box::leak(Box::from(s));
    let id = u32::try_from(g.set.len()).ok()?;
    g.bytes += text.len();
    g.set.insert(text, id);
    Some(FieldName(Repr::Kept { text, id }))
}

impl FieldName {
    /// A name of its own (reference-counted); [`Interner::intern`] gives kept names.
    pub fn new(s: &str) -> FieldName {
        FieldName(Repr::Counted(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Kept { text, .. } => text,
            Repr::Counted(s) => s,
        }
    }

    /// The name's number among the names the process keeps (interned names, up to the
    /// bounds): dense from 0 and the same for every reader, so a table indexed by it finds a
    /// name's entry without hashing its text. `None` for any other name.
    pub fn id(&self) -> Option<u32> {
        match self.0 {
            Repr::Kept { id, .. } => Some(id),
            Repr::Counted(_) => None,
        }
    }
}

impl PartialEq for FieldName {
    fn eq(&self, o: &FieldName) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for FieldName {}

impl Hash for FieldName {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for FieldName {
    fn partial_cmp(&self, o: &FieldName) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for FieldName {
    fn cmp(&self, o: &FieldName) -> Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Borrow<str> for FieldName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for FieldName {
    fn from(s: &str) -> FieldName {
        FieldName::new(s)
    }
}

/// Most names a record's sequence remembers.
const MAX_RECENT: usize = 512;

/// Deduplicates field names, one per reader or thread. The names it gives are kept for the
/// process (up to the bounds above): intern names, not values.
#[derive(Default, Debug)]
pub struct Interner {
    set: FxHashSet<FieldName>,
    /// The names of the last record, in order ([`Interner::intern_seq`]): records of one
    /// source repeat their keys in the same order, so the name at the same position is the
    /// likely answer, confirmed by one comparison instead of hashing and probing.
    recent: Vec<FieldName>,
    cursor: usize,
}

impl Interner {
    pub fn new() -> Interner {
        Interner::default()
    }

    pub fn intern(&mut self, s: &str) -> FieldName {
        if let Some(n) = self.set.get(s) {
            return n.clone();
        }
        let n = kept(s).unwrap_or_else(|| FieldName::new(s));
        self.set.insert(n.clone());
        n
    }

    /// Starts a record for [`Interner::intern_seq`].
    pub fn start_record(&mut self) {
        self.cursor = 0;
    }

    /// [`Interner::intern`] for the next name of a record (after [`Interner::start_record`]):
    /// the same result, found faster when the record's names come in the order of the last one.
    pub fn intern_seq(&mut self, s: &str) -> FieldName {
        let i = self.cursor;
        self.cursor += 1;
        if let Some(n) = self.recent.get(i) {
            if n.as_str() == s {
                return n.clone();
            }
        }
        let n = self.intern(s);
        match self.recent.get_mut(i) {
            Some(slot) => *slot = n.clone(),
            // Bounded: a record with more names than this uses the hash set only.
            None if i < MAX_RECENT => self.recent.push(n.clone()),
            None => {}
        }
        n
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_are_bounded_and_compare_as_text() {
        let mut names = Interner::new();
        let a = names.intern("kept.test.name");
        assert!(matches!(a.0, Repr::Kept { .. }));
        // Every reader gets the same number for a name.
        assert_eq!(Interner::new().intern("kept.test.name").id(), a.id());
        assert_ne!(names.intern("kept.test.other").id(), a.id());
        // Equal whichever way they were made.
        let b = FieldName::new("kept.test.name");
        assert_eq!(a, b);
        assert_eq!(a.cmp(&b), Ordering::Equal);
        let hash = |n: &FieldName| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            n.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        // A source inventing keys: past the bounds, names are counted, not kept.
        let last = (0..KEPT_NAMES + 10)
            .map(|i| names.intern(&format!("invented.{i}")))
            .last()
            .unwrap();
        assert!(matches!(last.0, Repr::Counted(_)));
        assert_eq!(last.id(), None);
        assert_eq!(last.as_str(), format!("invented.{}", KEPT_NAMES + 9));
        let g = KEPT.lock().unwrap();
        assert!(g.set.len() <= KEPT_NAMES && g.bytes <= KEPT_BYTES);
        // Numbers are dense: each below the count, none twice.
        let mut ids: Vec<u32> = g.set.values().copied().collect();
        ids.sort_unstable();
        assert!(ids.iter().enumerate().all(|(i, &id)| id as usize == i));
    }
}

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashSet;

/// A field name. Cheap to clone (one reference count); readers intern names through an
/// [`Interner`] so a million events share one allocation per distinct name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(Arc<str>);

impl FieldName {
    pub fn new(s: &str) -> FieldName {
        FieldName(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for FieldName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for FieldName {
    fn from(s: &str) -> FieldName {
        FieldName::new(s)
    }
}

/// Most names a record's sequence remembers.
const MAX_RECENT: usize = 512;

/// Deduplicates field names (and other repeated short strings). One per reader or thread.
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
        let n = FieldName::new(s);
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

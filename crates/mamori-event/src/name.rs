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

/// Deduplicates field names (and other repeated short strings). One per reader or thread.
#[derive(Default, Debug)]
pub struct Interner {
    set: FxHashSet<FieldName>,
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

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

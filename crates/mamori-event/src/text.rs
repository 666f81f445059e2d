use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// The text of a string [`Value`](crate::Value): a slice of a shared, immutable buffer.
///
/// A reader can put every string of one record in one buffer — the JSON fast path uses the
/// record's line itself, with unescaped strings appended — so an event costs one allocation
/// for all its strings instead of one per field, and copying a value (an ECS copy, a
/// correlation's slim event) costs a reference count. A `Text` made from a `&str` or a
/// `String` owns a buffer of its own. Dereferences to `str`; compares, hashes and prints as
/// its text.
#[derive(Clone)]
pub struct Text {
    buf: Arc<str>,
    start: u32,
    /// [`WHOLE`]: the whole buffer (which may then be longer than `u32::MAX`).
    len: u32,
}

const WHOLE: u32 = u32::MAX;

impl Text {
    pub fn new(s: &str) -> Text {
        Text::whole(Arc::from(s))
    }

    /// The whole of `buf`.
    pub fn whole(buf: Arc<str>) -> Text {
        Text {
            buf,
            start: 0,
            len: WHOLE,
        }
    }

    /// `buf[range]`, sharing `buf`. A range that is out of bounds or not on character
    /// boundaries gives the empty text (callers pass ranges of strings they found in `buf`).
    pub fn slice(buf: &Arc<str>, range: Range<usize>) -> Text {
        let Some(s) = buf.get(range.clone()) else {
            return Text::new("");
        };
        match (u32::try_from(range.start), u32::try_from(s.len())) {
            (Ok(start), Ok(len)) if len != WHOLE => Text {
                buf: buf.clone(),
                start,
                len,
            },
            // Past 4 GiB: a buffer of its own.
            _ => Text::new(s),
        }
    }

    pub fn as_str(&self) -> &str {
        if self.len == WHOLE {
            return &self.buf;
        }
        let start = self.start as usize;
        // Always in bounds (checked in `slice`); `get` keeps this free of panics regardless.
        self.buf
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }

    /// A copy of the text in a buffer of its own, so keeping it does not keep the rest of a
    /// shared buffer (a whole log line) alive.
    pub fn detached(&self) -> Text {
        if self.len == WHOLE {
            self.clone()
        } else {
            Text::new(self.as_str())
        }
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::new("")
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Text {
    fn eq(&self, o: &Text) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, o: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Text {
    fn cmp(&self, o: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::whole(Arc::from(s))
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        Text::whole(Arc::from(s))
    }
}

impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Text {
        Text::whole(s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_owned()
    }
}

impl From<&Text> for Box<str> {
    fn from(t: &Text) -> Box<str> {
        t.as_str().into()
    }
}

impl From<Text> for Box<str> {
    fn from(t: Text) -> Box<str> {
        t.as_str().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_one_buffer_and_compare_as_text() {
        let buf: Arc<str> = Arc::from("{\"a\":\"xyz\",\"b\":\"é\"}");
        let a = Text::slice(&buf, 6..9);
        let b = Text::slice(&buf, 16..18);
        assert_eq!(a, "xyz");
        assert_eq!(&*b, "é");
        assert_eq!(Arc::strong_count(&buf), 3);
        assert_eq!(a, Text::from("xyz"));
        assert_eq!(format!("{a:?} {b}"), "\"xyz\" é");
        let d = a.detached();
        assert_eq!(d, "xyz");
        drop((a, b));
        assert_eq!(Arc::strong_count(&buf), 1);
    }

    #[test]
    fn bad_ranges_give_empty_text() {
        let buf: Arc<str> = Arc::from("é");
        assert_eq!(Text::slice(&buf, 0..1), "");
        assert_eq!(Text::slice(&buf, 1..9), "");
        #[allow(clippy::reversed_empty_ranges)]
        let r = 2..1;
        assert_eq!(Text::slice(&buf, r), "");
        assert_eq!(Text::slice(&buf, 0..2), "é");
    }
}

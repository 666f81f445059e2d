//! Large values of an [`AlertStore`]'s key/value table, written and deleted in parts.
//!
//! The saved correlation state is megabytes (18 MB at the 100,000-group cap under a flood of
//! new addresses) and was written every few seconds as one value: the serialised state, then
//! SQLite's copy of the bound parameter and its copy into the record — three times the state
//! held at once, up to 80 MB of transient memory on every save (issue #15, finding 12: the
//! steady-phase peak of `bench ingest`). [`put_chunked`] streams a value into parts of
//! [`PART_BYTES`] as it is serialised, so a save holds one part (and SQLite's copies of it).
//!
//! Layout: the parts are `{key}/part/{slot}/{i}` (i = 0, 1, …) and `key` itself holds a small
//! manifest naming the slot, the number of parts and the total length. A write fills the slot
//! the current manifest does **not** name, then replaces the manifest (one atomic put), then
//! deletes the old slot's parts: a crash at any point leaves the previous value whole, and
//! whatever a crash left in the unused slot is overwritten (and its extra parts deleted) by
//! the next write. A value written whole by an earlier version reads as before.

use std::io::Write;

use crate::{AlertStore, Error, Result};

/// Size of one part.
pub const PART_BYTES: usize = 1 << 20;

/// Marks a manifest: no value written whole by Mamori starts with it (saved states start with
/// an 8-byte generation and JSON's `{`).
const MAGIC: &[u8; 16] = b"\0mamori-chunked\0";

struct Manifest {
    slot: u8,
    parts: u64,
    len: u64,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(self.slot);
        v.extend_from_slice(&self.parts.to_le_bytes());
        v.extend_from_slice(&self.len.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Manifest> {
        let rest = v.strip_prefix(MAGIC.as_slice())?;
        let (&slot, rest) = rest.split_first()?;
        if rest.len() != 16 || slot > 1 {
            return None;
        }
        Some(Manifest {
            slot,
            parts: u64::from_le_bytes(rest[..8].try_into().ok()?),
            len: u64::from_le_bytes(rest[8..].try_into().ok()?),
        })
    }
}

fn part_key(key: &str, slot: u8, i: u64) -> String {
    format!("{key}/part/{slot}/{i}")
}

/// Deletes the parts of `slot` from `from` on, as long as they exist.
fn delete_parts(store: &dyn AlertStore, key: &str, slot: u8, from: u64) -> Result<()> {
    let mut i = from;
    while store.kv_delete(&part_key(key, slot, i))? {
        i += 1;
    }
    Ok(())
}

struct Parts<'a> {
    store: &'a dyn AlertStore,
    key: &'a str,
    slot: u8,
    buf: Vec<u8>,
    parts: u64,
    len: u64,
    error: Option<Error>,
}

impl Parts<'_> {
    fn flush_part(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let k = part_key(self.key, self.slot, self.parts);
        match self.store.kv_put(&k, &self.buf) {
            Ok(()) => {
                self.parts += 1;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                Err(std::io::Error::other(msg))
            }
        }
    }
}

impl Write for Parts<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.len += n as u64;
        if self.buf.len() == PART_BYTES {
            self.flush_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stores what `write` writes under `key`, in parts of [`PART_BYTES`], replacing the previous
/// value only once every part is stored; returns the value's length. An error from `write`
/// or the store leaves the previous value in place.
pub fn put_chunked(
    store: &dyn AlertStore,
    key: &str,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<u64> {
    let old = store.kv_get(key)?.as_deref().and_then(Manifest::decode);
    let slot = match &old {
        Some(m) => 1 - m.slot,
        None => 0,
    };
    let mut parts = Parts {
        store,
        key,
        slot,
        buf: Vec::with_capacity(PART_BYTES),
        parts: 0,
        len: 0,
        error: None,
    };
    let written = write(&mut parts).and_then(|()| parts.flush_part());
    if let Err(e) = written {
        return Err(parts.error.take().unwrap_or_else(|| Error::Io {
            path: key.into(),
            source: e,
        }));
    }
    let (n, len) = (parts.parts, parts.len);
    drop(parts);
    // Parts a crash left in this slot beyond the new ones.
    delete_parts(store, key, slot, n)?;
    store.kv_put(
        key,
        &Manifest {
            slot,
            parts: n,
            len,
        }
        .encode(),
    )?;
    if let Some(m) = old {
        delete_parts(store, key, m.slot, 0)?;
    }
    Ok(len)
}

/// The value under `key`, whether written by [`put_chunked`] or whole by [`AlertStore::kv_put`].
pub fn get_chunked(store: &dyn AlertStore, key: &str) -> Result<Option<Vec<u8>>> {
    let Some(v) = store.kv_get(key)? else {
        return Ok(None);
    };
    let Some(m) = Manifest::decode(&v) else {
        return Ok(Some(v));
    };
    let mut out = Vec::with_capacity(usize::try_from(m.len).unwrap_or(0).min(1 << 30));
    for i in 0..m.parts {
        match store.kv_get(&part_key(key, m.slot, i))? {
            Some(p) => out.extend_from_slice(&p),
            None => return Err(missing(key, i)),
        }
    }
    if out.len() as u64 != m.len {
        return Err(missing(key, m.parts));
    }
    Ok(Some(out))
}

/// Removes `key` and its parts; whether it existed.
pub fn delete_chunked(store: &dyn AlertStore, key: &str) -> Result<bool> {
    if !store.kv_delete(key)? {
        return Ok(false);
    }
    // Both slots: the manifest's, and whatever a crash left in the other.
    delete_parts(store, key, 0, 0)?;
    delete_parts(store, key, 1, 0)?;
    Ok(true)
}

fn missing(key: &str, part: u64) -> Error {
    Error::Io {
        path: key.into(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("part {part} of the value is missing or the value is short"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryAlertStore, SqliteAlertStore};

    fn stores() -> Vec<(Box<dyn AlertStore>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sqlite = SqliteAlertStore::open(&dir.path().join("state.db")).expect("sqlite opens");
        vec![
            (Box::new(MemoryAlertStore::new()), None),
            (Box::new(sqlite), Some(dir)),
        ]
    }

    fn value(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn put(store: &dyn AlertStore, key: &str, v: &[u8]) -> Result<u64> {
        // Odd-sized writes, so parts are filled across write calls.
        put_chunked(store, key, &mut |w| {
            for c in v.chunks(77_777) {
                w.write_all(c)?;
            }
            Ok(())
        })
    }

    #[test]
    fn values_round_trip_in_parts_and_replace_each_other() {
        for (s, _dir) in stores() {
            let s = &*s;
            for (len, seed) in [(0, 1), (10, 2), (PART_BYTES, 3), (3 * PART_BYTES + 5, 4)] {
                let v = value(len, seed);
                assert_eq!(put(s, "k", &v).unwrap(), len as u64);
                assert_eq!(get_chunked(s, "k").unwrap().unwrap(), v, "len {len}");
            }
            // The manifest is small: the value lives in its parts.
            assert!(s.kv_get("k").unwrap().unwrap().len() < 64);
            // Only the current slot's parts remain (3 full parts and one of 5 bytes).
            let current = Manifest::decode(&s.kv_get("k").unwrap().unwrap()).unwrap();
            assert_eq!(current.parts, 4);
            assert!(s
                .kv_get(&part_key("k", 1 - current.slot, 0))
                .unwrap()
                .is_none());
            assert!(s.kv_get(&part_key("k", current.slot, 4)).unwrap().is_none());
            assert!(delete_chunked(s, "k").unwrap());
            assert!(get_chunked(s, "k").unwrap().is_none());
            for slot in 0..2 {
                assert!(s.kv_get(&part_key("k", slot, 0)).unwrap().is_none());
            }
            assert!(!delete_chunked(s, "k").unwrap());
        }
    }

    #[test]
    fn a_value_written_whole_reads_as_before() {
        for (s, _dir) in stores() {
            let legacy = [&7u64.to_le_bytes()[..], b"{\"version\":3}"].concat();
            s.kv_put("k", &legacy).unwrap();
            assert_eq!(get_chunked(&*s, "k").unwrap().unwrap(), legacy);
            let v = value(PART_BYTES + 1, 9);
            put(&*s, "k", &v).unwrap();
            assert_eq!(get_chunked(&*s, "k").unwrap().unwrap(), v);
        }
    }

    #[test]
    fn a_failed_write_leaves_the_previous_value_and_the_next_write_cleans_up() {
        for (s, _dir) in stores() {
            let s = &*s;
            let v1 = value(2 * PART_BYTES + 3, 1);
            put(s, "k", &v1).unwrap();
            // A serialiser that fails after three parts: as a crash mid-save would leave it.
            let err = put_chunked(s, "k", &mut |w| {
                w.write_all(&value(3 * PART_BYTES, 2))?;
                Err(std::io::Error::other("serialiser failed"))
            });
            assert!(err.is_err());
            assert_eq!(get_chunked(s, "k").unwrap().unwrap(), v1);
            // The next (smaller) write reuses that slot and deletes the parts it does not need.
            let v3 = value(10, 3);
            put(s, "k", &v3).unwrap();
            assert_eq!(get_chunked(s, "k").unwrap().unwrap(), v3);
            for slot in 0..2 {
                for i in 1..4 {
                    assert!(s.kv_get(&part_key("k", slot, i)).unwrap().is_none());
                }
            }
        }
    }

    #[test]
    fn a_missing_part_is_an_error_not_a_short_value() {
        for (s, _dir) in stores() {
            let s = &*s;
            put(s, "k", &value(2 * PART_BYTES, 1)).unwrap();
            let m = Manifest::decode(&s.kv_get("k").unwrap().unwrap()).unwrap();
            s.kv_delete(&part_key("k", m.slot, 1)).unwrap();
            let e = get_chunked(s, "k").unwrap_err().to_string();
            assert!(e.contains("part 1"), "{e}");
        }
    }
}

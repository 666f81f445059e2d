//! The bundle's files while an export is written: each one a temporary file beside the output
//! with its running SHA-256 and size, so an export holds no record in memory — only a few
//! open writers — however many records it contains (issue #15, finding 10).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// Most spool files open at once (a bundle has one file per source).
const MAX_OPEN: usize = 16;

struct Entry {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    sha: Sha256,
    len: u64,
    /// Last use, for closing the least recently used writer.
    used: u64,
}

/// A directory of bundle files being written; removed on drop.
pub(crate) struct Spool {
    dir: PathBuf,
    entries: BTreeMap<String, Entry>,
    open: usize,
    clock: u64,
}

impl Spool {
    /// Creates the spool directory (which must not exist).
    pub(crate) fn create(dir: PathBuf) -> Result<Spool> {
        fs::create_dir(&dir).at(&dir)?;
        Ok(Spool {
            dir,
            entries: BTreeMap::new(),
            open: 0,
            clock: 0,
        })
    }

    /// Appends `bytes` to the bundle file `name` (created empty on first use).
    pub(crate) fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.clock += 1;
        let clock = self.clock;
        if !self.entries.contains_key(name) {
            let path = self.dir.join(format!("{:08}", self.entries.len()));
            self.entries.insert(
                name.to_owned(),
                Entry {
                    path,
                    writer: None,
                    sha: Sha256::new(),
                    len: 0,
                    used: clock,
                },
            );
        }
        if self.entries[name].writer.is_none() {
            if self.open >= MAX_OPEN {
                self.close_oldest()?;
            }
            let e = self.entries.get_mut(name).expect("inserted above");
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&e.path)
                .at(&e.path)?;
            e.writer = Some(BufWriter::with_capacity(64 << 10, f));
            self.open += 1;
        }
        let e = self.entries.get_mut(name).expect("inserted above");
        e.used = clock;
        e.sha.update(bytes);
        e.len += bytes.len() as u64;
        let w = e.writer.as_mut().expect("opened above");
        w.write_all(bytes).at(&e.path)
    }

    fn close_oldest(&mut self) -> Result<()> {
        let Some(e) = self
            .entries
            .values_mut()
            .filter(|e| e.writer.is_some())
            .min_by_key(|e| e.used)
        else {
            return Ok(());
        };
        let mut w = e.writer.take().expect("open");
        self.open -= 1;
        w.flush().at(&e.path)
    }

    /// Flushes every writer; the files can be read back.
    pub(crate) fn flush(&mut self) -> Result<()> {
        for e in self.entries.values_mut() {
            if let Some(mut w) = e.writer.take() {
                w.flush().at(&e.path)?;
            }
        }
        self.open = 0;
        Ok(())
    }

    /// Where the bytes of `name` are (after [`Spool::flush`]).
    pub(crate) fn path(&self, name: &str) -> Option<&Path> {
        self.entries.get(name).map(|e| e.path.as_path())
    }

    pub(crate) fn len(&self, name: &str) -> u64 {
        self.entries.get(name).map_or(0, |e| e.len)
    }

    /// `(name, sha256 hex, size, path)` of every file, in name order.
    pub(crate) fn files(&self) -> impl Iterator<Item = (&str, String, u64, &Path)> + '_ {
        self.entries.iter().map(|(n, e)| {
            (
                n.as_str(),
                hex::encode(e.sha.clone().finalize()),
                e.len,
                e.path.as_path(),
            )
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        for e in self.entries.values_mut() {
            e.writer = None;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

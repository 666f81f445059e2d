use std::path::PathBuf;

/// Everything that can go wrong in the vault. Tampering found by [`crate::verify()`] is *not* an
/// error: it is the verifier's result ([`crate::VerifyReport`]). [`Error::Corrupt`] is for the
/// writer, which refuses to append to a vault whose tail it cannot trust.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The on-disk data does not have the shape the format requires (bad magic, broken chain,
    /// unreadable header). Carries where, so an operator can look.
    #[error("vault data is corrupt at {path} offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "unsupported vault format version {found} in {path} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("key error for {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the signing key does not match the key that signed this vault's heads ({path})")]
    KeyMismatch { path: PathBuf },
    #[error("{what} already exists: {path} (refusing to overwrite)")]
    AlreadyExists { what: &'static str, path: PathBuf },
    #[error("record too large: {what} is {len} bytes, the limit is {max}")]
    RecordTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the vault {path} is in use by another process (is `mamori serve` running? it owns the vault while it runs)")]
    InUse { path: PathBuf },
    /// A previous write failed half-way and the partial bytes could not be rolled back; the
    /// writer stops rather than append after garbage. Reopening runs torn-tail recovery.
    #[error("the vault writer is poisoned by an earlier failed write; reopen the vault")]
    Poisoned,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error; every I/O error in this crate goes through here so the
/// message always names the file.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

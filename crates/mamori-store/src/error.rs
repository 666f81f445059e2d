use std::path::PathBuf;

/// Everything that can go wrong in the store. Corruption of data that was once acknowledged is
/// its own variant ([`Error::Corrupt`]) so callers can alert on it instead of retrying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored data does not have the shape the format requires somewhere other than the torn
    /// tail that open-time recovery truncates (a bad frame inside a sealed segment, a broken seq
    /// sequence). Carries where, so an operator can look.
    #[error("store data is corrupt at {path} offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "unsupported store format version {found} in {path} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    /// The search query does not parse. `pos` is the byte offset in the query when the parser
    /// can name one.
    #[error("invalid query {query:?}{}: {message}", pos.map(|p| format!(" at position {p}")).unwrap_or_default())]
    Query {
        query: String,
        pos: Option<usize>,
        message: String,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("event too large: {len} bytes encoded, the limit is {max}")]
    EventTooLarge { len: usize, max: usize },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A previous write failed half-way and could not be rolled back; the writer stops rather
    /// than append after garbage. Reopening the store runs torn-tail recovery.
    #[error("the event log writer is poisoned by an earlier failed write; reopen the store")]
    Poisoned,
    #[error("search index error: {0}")]
    Index(String),
    /// A database or message-bus backend outside this crate (PostgreSQL): which, and what it said.
    #[error("{backend} error: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this failure is a full disk (ENOSPC) or an exhausted quota (EDQUOT) — on the
    /// event log, the index or SQLite. It clears when space returns, so callers hold data and
    /// retry (and raise it to the operator) instead of failing it for good.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => io_is_disk_full(source),
            Error::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull)
            ),
            // tantivy reports I/O failures of its worker and merge threads as text only
            // (`ErrorInThread`), so the OS error is recognised in the message.
            Error::Index(m) => {
                m.contains("os error 28")
                    || m.contains("os error 122")
                    || m.contains("No space left on device")
            }
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn io_is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Error {
        Error::Index(e.to_string())
    }
}

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

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate. A failed *check* is not an error: it is a
/// [`crate::CheckRecord`] with status `Failed` and findings. Errors are for the machinery
/// (configuration, history database, key files).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backup history {}: {source}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "backup history {} has schema version {found}, this build reads up to {supported}",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("backup history {}: record {id} is corrupt: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        id: i64,
        reason: String,
    },
    #[error("backup configuration: {0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup manifest key: {0}")]
    Key(#[from] mamori_vault::Error),
}

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

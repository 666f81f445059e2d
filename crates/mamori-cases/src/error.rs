use std::path::PathBuf;

use crate::model::{IncidentId, Phase};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate. `NotFound`/`TaskNotFound` map to HTTP 404,
/// `InvalidTransition`/`Invalid` to 400 or 409, the rest to 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    #[error("incident {incident} has no task {task}")]
    TaskNotFound { incident: IncidentId, task: u32 },
    #[error("cannot move incident from {from} to {to}: {reason}")]
    InvalidTransition {
        from: Phase,
        to: Phase,
        reason: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("playbook {file}: {reason}")]
    Playbook { file: String, reason: String },
    #[error("case database {}: {source}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "case database {} has schema version {found}, this build reads up to {supported}",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// `store` is the backend's [`describe`](crate::backend::CaseBackend::describe).
    #[error("case database {store}: incident {id} is corrupt: {reason}")]
    Corrupt {
        store: String,
        id: IncidentId,
        reason: String,
    },
    /// A database other than SQLite failed (PostgreSQL: the server's own words).
    #[error("case database {store}: {message}")]
    Backend { store: String, message: String },
}

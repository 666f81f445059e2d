//! A JSON list kept under one kv key (API tokens, console users), changed by read-modify-write
//! through [`AlertStore::kv_update`]: atomic against another process on the same `state.db`
//! and another cluster node on the same PostgreSQL.

use mamori_store::AlertStore;
use serde::{de::DeserializeOwned, Serialize};

/// Applies `f` to the list under `key` (absent: empty) and writes it back if `f` returns
/// `Some`; `f`'s error (or a corrupt list, named `what`) stops it with nothing written. `f`
/// may run more than once, on a list another writer changed meanwhile.
pub(crate) fn update<T: Serialize + DeserializeOwned, R>(
    store: &dyn AlertStore,
    key: &str,
    what: &str,
    mut f: impl FnMut(&mut Vec<T>) -> Result<Option<R>, String>,
) -> Result<Option<R>, String> {
    let mut out: Result<Option<R>, String> = Ok(None);
    store
        .kv_update(key, &mut |cur| {
            let mut list: Vec<T> = match cur {
                None => Vec::new(),
                Some(b) => match serde_json::from_slice(b) {
                    Ok(l) => l,
                    Err(e) => {
                        out = Err(format!("{what} is corrupt: {e}"));
                        return None;
                    }
                },
            };
            out = f(&mut list);
            match &out {
                Ok(Some(_)) => match serde_json::to_vec(&list) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        out = Err(e.to_string());
                        None
                    }
                },
                _ => None,
            }
        })
        .map_err(|e| e.to_string())?;
    out
}

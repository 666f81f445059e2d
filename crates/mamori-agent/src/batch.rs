//! The wire format of a batch: gzip-compressed JSON, one object per batch.
//!
//! ```json
//! {"seq": 42, "buffer": {"bytes": 1234, "pending": 3, "dropped": 0},
//!  "records": [
//!    {"t": "line", "path": "/var/log/auth.log", "line": 12, "offset": 840, "text": "…"},
//!    {"t": "journal", "fields": {"MESSAGE": "…", "SYSLOG_IDENTIFIER": "sshd", …}},
//!    {"t": "event", "source": "fim", "fields": {"event": {"category": "file", …}, "file": {…}}}
//!  ]}
//! ```
//!
//! `seq` numbers the agent's batches from 1 without reuse; the server stores a batch once per
//! (agent, seq) and acknowledges a repeat without storing it again.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One thing collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    /// A line of a followed file.
    Line {
        path: String,
        line: u64,
        offset: u64,
        text: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    /// A journald entry (selected fields, as journalctl prints them).
    Journal { fields: serde_json::Value },
    /// An event the agent made itself (file integrity, ransomware), ECS fields.
    Event {
        source: String,
        fields: serde_json::Value,
    },
}

/// The buffer's state, reported with every batch and heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferState {
    pub bytes: u64,
    pub pending: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub seq: u64,
    pub buffer: BufferState,
    pub records: Vec<Record>,
}

impl Batch {
    /// JSON, gzip-compressed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&json)
            .and_then(|_| gz.finish())
            .map_err(|e| Error::Invalid(format!("gzip: {e}")))
    }

    /// The inverse of [`Batch::encode`], reading at most `max` decompressed bytes.
    pub fn decode(body: &[u8], max: usize) -> Result<Batch> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Invalid(format!("gzip: {e}")))?;
        if out.len() > max {
            return Err(Error::Invalid(format!("batch exceeds {max} bytes")));
        }
        serde_json::from_slice(&out).map_err(|e| Error::Invalid(format!("batch: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_limit() {
        let b = Batch {
            seq: 7,
            buffer: BufferState::default(),
            records: vec![
                Record::Line {
                    path: "/var/log/a".into(),
                    line: 1,
                    offset: 0,
                    text: "x".repeat(1000),
                    truncated: false,
                },
                Record::Event {
                    source: "fim".into(),
                    fields: serde_json::json!({"event": {"category": "file"}}),
                },
            ],
        };
        let enc = b.encode().unwrap();
        assert!(enc.len() < 300, "compressed: {}", enc.len());
        assert_eq!(Batch::decode(&enc, 1 << 20).unwrap(), b);
        assert!(Batch::decode(&enc, 100).is_err());
        assert!(Batch::decode(b"nope", 100).is_err());
    }
}

//! Event sources of the server: each one parses on the tokio workers and hands batches to the
//! pipeline's [`crate::pipeline::Sink`].

pub mod framing;
pub mod syslog;
pub mod tail;
pub mod tls;

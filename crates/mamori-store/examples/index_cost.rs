//! The cost of storing and indexing realistic syslog, for instruction counting:
//!
//! ```text
//! cargo build --release -p mamori-store --example index_cost
//! valgrind --tool=callgrind target/release/examples/index_cost 20000
//! ```
//!
//! Parses N lines of the fleet mix of `mamori bench ingest`, then appends them to an embedded
//! store (fsync off) in batches of 512 and waits until they are searchable. callgrind's
//! instruction count is the same from run to run (±3%: tantivy splits the work between its
//! threads differently), whatever else the machine is doing, which wall-clock figures on a
//! shared 2-core machine are not.

use mamori_event::{Interner, Origin, Transport};
use mamori_store::{EmbeddedConfig, EventStore, FsyncPolicy};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut names = Interner::new();
    let origin = Origin::Network {
        peer: ([10, 0, 0, 1], 514).into(),
        transport: Transport::Tcp,
    };
    let events: Vec<_> = (0..n)
        .map(|i| {
            let line = mamori_sim::load::fleet_syslog_line(i);
            mamori_ingest::parse_syslog_line(line.as_bytes(), origin.clone(), &mut names)
                .expect("the fleet mix parses")
        })
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedConfig {
        fsync: FsyncPolicy::Never,
        ..EmbeddedConfig::new(dir.path())
    }
    .open()
    .expect("store opens");
    let t = std::time::Instant::now();
    for c in events.chunks(512) {
        store.append_at(c, chrono::Utc::now()).expect("append");
    }
    store.refresh().expect("refresh");
    eprintln!("{n} events stored and indexed in {:?}", t.elapsed());
    store.close().expect("close");
}

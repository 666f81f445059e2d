//! SIGKILL during ingest, then restart: every acknowledged event is in the log exactly once,
//! the log is dense, and the index (which lags the log) agrees after re-indexing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use mamori_event::{Event, FieldName, Value};
use mamori_store::testsuite::{ssh_event, t};
use mamori_store::{EmbeddedConfig, EventStore, SearchRequest};

const CHILD_ENV: &str = "MAMORI_STORE_CRASH_CHILD_DIR";

fn crash_config(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        // Default fsync policy (Always); small segments so kills land around rollovers too;
        // a lazy index so the kill usually finds it behind the log.
        segment_max_bytes: 64 << 10,
        index_heap_bytes: 15 << 20,
        index_commit_every: 500,
        index_commit_interval_ms: 200,
        ..EmbeddedConfig::new(dir)
    }
}

/// Event `n` of the stream, recognisable after restart (its `n` field and raw bytes).
fn crash_event(n: u64) -> Event {
    let mut e = ssh_event(
        n,
        "alice",
        "failure",
        "203.0.113.5",
        Some(t(n as i64 % 600)),
    );
    e.push(FieldName::new("n"), Value::Int(n as i64));
    if n % 7 == 0 {
        // Big records make it likely the kill lands inside a write(2).
        let mut raw = e.raw.to_vec();
        raw.resize(24 << 10, b'z');
        e.raw = raw.into_boxed_slice();
    }
    e
}

/// The child: appends batches forever, printing `ack <first> <last> <n0>` after each
/// acknowledgement. Does nothing unless started by the parent test below.
#[test]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = crash_config(dir.as_ref()).open().unwrap();
    let mut next_n = store.stats().unwrap().last_seq.unwrap_or(0);
    let mut out = std::io::stdout().lock();
    loop {
        let size = 1 + (next_n % 13);
        let batch: Vec<Event> = (next_n..next_n + size).map(crash_event).collect();
        let ack = store.append_at(&batch, t(1000)).unwrap();
        writeln!(out, "ack {} {} {}", ack.first_seq, ack.last_seq, next_n).unwrap();
        out.flush().unwrap();
        next_n += size;
    }
}

#[test]
fn sigkill_during_ingest_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // (seq, n) of every acknowledged event.
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut reindexed_total = 0;
    let mut recovered_total = 0;
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child_appender",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 60 + round * 37;
        let mut batches = 0;
        while let Some(Ok(line)) = lines.next() {
            let parts: Vec<u64> = line
                .strip_prefix("ack ")
                .map(|r| r.split(' ').map(|x| x.parse().unwrap()).collect())
                .unwrap_or_default();
            if let [first, last, n0] = parts[..] {
                acked.extend((first..=last).map(|s| (s, n0 + (s - first))));
                batches += 1;
                if batches == target {
                    child.kill().unwrap(); // SIGKILL on Unix
                }
            }
        }
        child.wait().unwrap();
        assert!(
            batches >= target,
            "child stopped early after {batches} batches"
        );

        let store = crash_config(dir.path()).open().unwrap();
        let report = store.open_report().clone();
        reindexed_total += report.reindexed;
        recovered_total += report.recoveries.len();
        let st = store.stats().unwrap();
        let last = st.last_seq.unwrap();
        assert_eq!(st.first_seq, Some(1));
        assert_eq!(st.events, last, "the log is dense");
        // Every acknowledged seq is stored, with the event that was acknowledged for it.
        let raws = store.raw_since(0, usize::MAX).unwrap();
        assert_eq!(raws.len() as u64, last);
        for &(seq, n) in &acked {
            let e = store.get(seq).unwrap().expect("acknowledged event stored");
            assert_eq!(e.event.get("n"), Some(&Value::Int(n as i64)), "seq {seq}");
            assert_eq!(
                raws[seq as usize - 1].raw,
                crash_event(n).raw,
                "raw of seq {seq}"
            );
        }
        // Exactly once: the n values over the whole log are distinct and dense from 0 (the
        // child restarts counting at the last stored seq, so unacknowledged-but-written
        // events are continued from, not rewritten).
        let mut ns: Vec<i64> = (1..=last)
            .map(|s| match store.get(s).unwrap().unwrap().event.get("n") {
                Some(Value::Int(n)) => *n,
                other => panic!("seq {s}: {other:?}"),
            })
            .collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..last as i64).collect::<Vec<_>>(), "each event once");
        // The index agrees with the log: every seq once, nothing else.
        assert_eq!(
            store.indexed_seqs().unwrap(),
            (1..=last).collect::<Vec<_>>()
        );
        let all = store
            .search(&SearchRequest {
                limit: 0,
                ..SearchRequest::new("user.name:alice")
            })
            .unwrap();
        assert_eq!(all.total, last);
        store.close().unwrap();
        // Unacknowledged events the child wrote before dying are kept; the child continues
        // numbering after them.
        acked.retain(|&(s, _)| s <= last);
    }
    eprintln!(
        "crash test: {} acknowledged events survived 3 SIGKILLs; {reindexed_total} re-indexed, \
         {recovered_total} torn tail(s) recovered",
        acked.len()
    );
}

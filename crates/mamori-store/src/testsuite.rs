//! The one behavioural test suite every backend must pass (the Quickwit/tantivy habit: one
//! trait, many backends, one suite). Call [`event_store_suite`] / [`alert_store_suite`] from a
//! test with a factory that returns a fresh, empty store (and a guard kept alive while it is
//! used, e.g. a temporary directory). Failures panic with the name of the check.
//!
//! Backends with retention units (segments) must be configured so units are small (≤ 8 KiB):
//! the retention checks write ~40 KiB.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mamori_event::{Event, FieldName, Format, Level, LogSource, Origin, RuleId, Transport, Value};

use crate::{
    Ack, AlertFilter, AlertId, AlertStatus, AlertStore, Error, EventStore, InsertOutcome, NewAlert,
    SearchRequest, SortOrder, MAX_LIMIT,
};

/// 2025-01-01T00:00:00Z plus `mins` minutes.
pub fn t(mins: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_735_689_600, 0).unwrap() + TimeDelta::minutes(mins)
}

/// An sshd-like event: `user.name`, `source.ip`, `event.outcome`, `host.name`.
pub fn ssh_event(i: u64, user: &str, outcome: &str, ip: &str, at: Option<DateTime<Utc>>) -> Event {
    let verb = if outcome == "success" {
        "Accepted"
    } else {
        "Failed"
    };
    let line = format!(
        "<38>Jan  1 00:00:00 web01 sshd[{i}]: {verb} password for {user} from {ip} port 22 ssh2"
    );
    let mut e = Event::new(
        Format::Syslog,
        Origin::File {
            path: Arc::from(Path::new("/var/log/auth.log")),
            record: None,
            line: Some(i + 1),
            offset: i * 100,
        },
        line.into_bytes(),
    );
    e.timestamp = at;
    e.timestamp_raw = Some("Jan  1 00:00:00".into());
    e.logsource = LogSource {
        product: Some(FieldName::new("linux")),
        category: None,
        service: Some(FieldName::new("sshd")),
    };
    e.push(FieldName::new("host.name"), Value::str("web01"));
    e.push(FieldName::new("user.name"), Value::str(user));
    e.push(FieldName::new("source.ip"), Value::str(ip));
    e.push(FieldName::new("source.port"), Value::Int(22));
    e.push(FieldName::new("event.outcome"), Value::str(outcome));
    e
}

/// A Windows process-creation event from the network (EventID as an integer).
pub fn windows_event(i: u64, image: &str, at: Option<DateTime<Utc>>) -> Event {
    let raw = format!(r#"{{"EventID":4688,"Computer":"dc01","NewProcessName":"{image}","n":{i}}}"#);
    let mut e = Event::new(
        Format::Json,
        Origin::Network {
            peer: "10.0.0.7:5986".parse::<SocketAddr>().unwrap(),
            transport: Transport::Http,
        },
        raw.into_bytes(),
    );
    e.timestamp = at;
    e.push(FieldName::new("EventID"), Value::Int(4688));
    e.push(FieldName::new("Computer"), Value::str("dc01"));
    e.push(FieldName::new("Image"), Value::str(image));
    e.push(
        FieldName::new("CommandLine"),
        Value::str(format!("{image} /c whoami")),
    );
    e
}

/// Same content, compared field by field (Event has no `PartialEq`: NaN).
pub fn assert_same_event(a: &Event, b: &Event, what: &str) {
    assert_eq!(a.timestamp, b.timestamp, "{what}: timestamp");
    assert_eq!(a.timestamp_raw, b.timestamp_raw, "{what}: timestamp_raw");
    assert_eq!(a.origin, b.origin, "{what}: origin");
    assert_eq!(a.format, b.format, "{what}: format");
    assert_eq!(a.logsource, b.logsource, "{what}: logsource");
    assert_eq!(a.raw, b.raw, "{what}: raw");
    assert_eq!(
        format!("{:?}", a.fields()),
        format!("{:?}", b.fields()),
        "{what}: fields"
    );
}

fn seqs_of(r: &crate::SearchResponse) -> Vec<u64> {
    r.hits.iter().map(|h| h.seq).collect()
}

fn search(s: &dyn EventStore, q: &str) -> crate::SearchResponse {
    s.search(&SearchRequest {
        limit: 1000,
        ..SearchRequest::new(q)
    })
    .unwrap_or_else(|e| panic!("query {q:?}: {e}"))
}

type EventCheck = (&'static str, fn(&dyn EventStore));
type AlertCheck = (&'static str, fn(&dyn AlertStore));

/// Runs every event-store check, each against a fresh store from `make`.
pub fn event_store_suite<S: EventStore, G>(mut make: impl FnMut() -> (S, G)) {
    let checks: [EventCheck; 11] = [
        (
            "append_assigns_dense_seqs_and_get_roundtrips",
            append_and_get,
        ),
        ("raw_since_keeps_bytes_and_receipt_order", raw_since),
        ("search_fields_boolean_phrase_free_text", search_fields),
        ("search_time_range_sort_paging", search_time_sort_paging),
        ("search_histogram_dense_buckets", search_histogram),
        ("search_rejects_bad_queries_without_panic", bad_queries),
        ("retention_by_age_removes_only_old_prefix", retention_age),
        ("retention_by_size_bounds_bytes", retention_size),
        ("oversized_event_fails_whole_batch", oversized),
        ("hostile_but_valid_input_roundtrips", hostile_input),
        ("concurrent_appends_get_unique_dense_seqs", concurrent),
    ];
    for (name, check) in checks {
        let (store, guard) = make();
        eprintln!("event store suite: {name}");
        check(&store);
        drop(store);
        drop(guard);
    }
}

fn append_and_get(s: &dyn EventStore) {
    let st = s.stats().unwrap();
    assert_eq!((st.events, st.first_seq, st.last_seq), (0, None, None));
    let batch: Vec<Event> = (0..3)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(i as i64))))
        .collect();
    let ack = s.append_at(&batch, t(100)).unwrap();
    assert_eq!((ack.first_seq, ack.last_seq, ack.len()), (1, 3, 3));
    let empty = s.append_at(&[], t(100)).unwrap();
    assert_eq!((empty.first_seq, empty.last_seq, empty.len()), (4, 3, 0));
    let ack2 = s
        .append_at(
            &[windows_event(9, r"C:\Windows\System32\cmd.exe", None)],
            t(101),
        )
        .unwrap();
    assert_eq!((ack2.first_seq, ack2.last_seq), (4, 4));
    for (i, e) in batch.iter().enumerate() {
        let got = s.get(i as u64 + 1).unwrap().expect("stored");
        assert_eq!(got.seq, i as u64 + 1);
        assert_eq!(got.received_at, t(100));
        assert_eq!(got.time(), t(i as i64));
        assert_same_event(&got.event, e, "get");
    }
    let w = s.get(4).unwrap().unwrap();
    assert_eq!(w.time(), t(101), "no event time: receipt time");
    assert!(s.get(0).unwrap().is_none());
    assert!(s.get(5).unwrap().is_none());
    assert!(s.get(u64::MAX).unwrap().is_none());
    let st = s.stats().unwrap();
    assert_eq!(
        (st.events, st.first_seq, st.last_seq),
        (4, Some(1), Some(4))
    );
    assert!(st.bytes > 0);
}

fn raw_since(s: &dyn EventStore) {
    let mut batch = Vec::new();
    for i in 0..5u64 {
        let mut e = ssh_event(i, "bob", "failure", "198.51.100.1", None);
        if i == 2 {
            e.raw = vec![0xff, 0xfe, b'x', 0, 0x80].into_boxed_slice();
        }
        batch.push(e);
    }
    s.append_at(&batch[..2], t(1)).unwrap();
    s.append_at(&batch[2..], t(2)).unwrap();
    let all = s.raw_since(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for (r, e) in all.iter().zip(&batch) {
        assert_eq!(r.raw, e.raw, "raw bytes untouched");
        assert_eq!(r.source, e.origin.to_string());
    }
    assert_eq!(all[0].received_at, t(1));
    assert_eq!(all[4].received_at, t(2));
    let page = s.raw_since(2, 2).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(s.raw_since(5, 10).unwrap().is_empty());
    assert!(s.raw_since(u64::MAX, 10).unwrap().is_empty());
    assert!(s.raw_since(0, 0).unwrap().is_empty());
}

fn search_fixture(s: &dyn EventStore) {
    // seqs 1..=6
    let b = vec![
        ssh_event(0, "alice", "failure", "203.0.113.5", Some(t(0))),
        ssh_event(1, "alice", "failure", "203.0.113.5", Some(t(1))),
        ssh_event(2, "bob", "failure", "198.51.100.7", Some(t(2))),
        ssh_event(3, "alice", "success", "203.0.113.5", Some(t(3))),
        windows_event(4, r"C:\Windows\System32\cmd.exe", Some(t(4))),
        windows_event(5, r"C:\Windows\System32\vssadmin.exe", Some(t(5))),
    ];
    s.append_at(&b, t(10)).unwrap();
    s.refresh().unwrap();
}

fn search_fields(s: &dyn EventStore) {
    search_fixture(s);
    let cases: &[(&str, &[u64])] = &[
        ("user.name:alice AND event.outcome:failure", &[1, 2]),
        ("user.name:alice", &[1, 2, 4]),
        ("user.name:ALICE", &[1, 2, 4]),
        ("user.name:alice OR user.name:bob", &[1, 2, 3, 4]),
        ("user.name:alice AND NOT event.outcome:failure", &[4]),
        ("NOT user.name:alice", &[3, 5, 6]),
        ("-user.name:alice", &[3, 5, 6]),
        ("\"Failed password\"", &[1, 2, 3]),
        ("Accepted", &[4]),
        ("source.ip:203.0.113.5", &[1, 2, 4]),
        ("source.ip:\"198.51.100.7\"", &[3]),
        ("host:web01", &[1, 2, 3, 4]),
        ("host:dc01", &[5, 6]),
        ("EventID:4688", &[5, 6]),
        ("Image:vssadmin.exe", &[6]),
        ("Image:\"System32 cmd.exe\"", &[5]),
        ("CommandLine:whoami AND Image:cmd.exe", &[5]),
        ("source.port:22", &[1, 2, 3, 4]),
        ("user.name:carol", &[]),
        ("no.such.field:x", &[]),
        ("*", &[1, 2, 3, 4, 5, 6]),
        ("", &[1, 2, 3, 4, 5, 6]),
    ];
    let mut failures = Vec::new();
    for (q, want) in cases {
        let r = search(s, q);
        let mut got = seqs_of(&r);
        got.sort_unstable();
        if &got != want || r.total != want.len() as u64 {
            failures.push(format!(
                "{q:?}: want {want:?}, got {got:?} (total {})",
                r.total
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn search_time_sort_paging(s: &dyn EventStore) {
    let b: Vec<Event> = (0..10)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(i as i64))))
        .collect();
    s.append_at(&b, t(100)).unwrap();
    // No event time: searched by receipt time t(100).
    s.append_at(
        &[ssh_event(10, "alice", "failure", "203.0.113.5", None)],
        t(100),
    )
    .unwrap();
    s.refresh().unwrap();
    let req = |from, to, sort, offset, limit| SearchRequest {
        query: "user.name:alice".into(),
        from,
        to,
        sort,
        offset,
        limit,
        histogram: None,
    };
    let r = s
        .search(&req(Some(t(2)), Some(t(5)), SortOrder::Asc, 0, 100))
        .unwrap();
    assert_eq!(seqs_of(&r), [3, 4, 5], "from inclusive, to exclusive");
    assert_eq!(r.total, 3);
    let r = s.search(&req(None, None, SortOrder::Desc, 0, 3)).unwrap();
    assert_eq!(seqs_of(&r), [11, 10, 9], "newest first");
    assert_eq!(r.total, 11, "total counts beyond the page");
    let r = s.search(&req(None, None, SortOrder::Desc, 3, 3)).unwrap();
    assert_eq!(seqs_of(&r), [8, 7, 6], "second page");
    let r = s.search(&req(None, None, SortOrder::Asc, 9, 5)).unwrap();
    assert_eq!(seqs_of(&r), [10, 11], "last page is short");
    let r = s.search(&req(None, None, SortOrder::Asc, 50, 5)).unwrap();
    assert!(r.hits.is_empty());
    assert_eq!(r.total, 11);
    let r = s
        .search(&req(Some(t(99)), None, SortOrder::Asc, 0, 5))
        .unwrap();
    assert_eq!(seqs_of(&r), [11]);
    let r = s.search(&req(None, None, SortOrder::Asc, 0, 0)).unwrap();
    assert!(r.hits.is_empty(), "limit 0: counts only");
    assert_eq!(r.total, 11);
    let r = s
        .search(&req(Some(t(3)), Some(t(3)), SortOrder::Asc, 0, 5))
        .unwrap();
    assert_eq!(r.total, 0, "empty range");
    let bad = s.search(&req(Some(t(5)), Some(t(3)), SortOrder::Asc, 0, 5));
    assert!(matches!(bad, Err(Error::InvalidRequest(_))), "{bad:?}");
    let bad = s.search(&req(None, None, SortOrder::Asc, 0, MAX_LIMIT + 1));
    assert!(matches!(bad, Err(Error::InvalidRequest(_))), "{bad:?}");
    let bad = s.search(&req(None, None, SortOrder::Asc, usize::MAX, 10));
    assert!(matches!(bad, Err(Error::InvalidRequest(_))), "{bad:?}");
}

fn search_histogram(s: &dyn EventStore) {
    // 2 events in [0,5), 3 in [5,10), none in [10,15), 1 in [15,20)
    let mins = [0, 4, 5, 6, 9, 17];
    let b: Vec<Event> = mins
        .iter()
        .enumerate()
        .map(|(i, &m)| ssh_event(i as u64, "alice", "failure", "203.0.113.5", Some(t(m))))
        .collect();
    s.append_at(&b, t(100)).unwrap();
    s.refresh().unwrap();
    let mut req = SearchRequest {
        histogram: Some(TimeDelta::minutes(5)),
        limit: 0,
        ..SearchRequest::new("user.name:alice")
    };
    let r = s.search(&req).unwrap();
    let got: Vec<(DateTime<Utc>, u64)> = r.histogram.iter().map(|b| (b.start, b.count)).collect();
    assert_eq!(got, [(t(0), 2), (t(5), 3), (t(10), 0), (t(15), 1)]);
    req.from = Some(t(-10));
    req.to = Some(t(10));
    let r = s.search(&req).unwrap();
    let got: Vec<(DateTime<Utc>, u64)> = r.histogram.iter().map(|b| (b.start, b.count)).collect();
    assert_eq!(got, [(t(-10), 0), (t(-5), 0), (t(0), 2), (t(5), 3)]);
    assert_eq!(r.total, 5);
    req.histogram = Some(TimeDelta::milliseconds(1));
    req.from = Some(t(0));
    req.to = Some(t(60 * 24 * 365));
    let r = s.search(&req);
    assert!(
        matches!(r, Err(Error::InvalidRequest(_))),
        "too many buckets: {r:?}"
    );
    req.histogram = Some(TimeDelta::zero());
    assert!(matches!(s.search(&req), Err(Error::InvalidRequest(_))));
}

fn bad_queries(s: &dyn EventStore) {
    search_fixture(s);
    for q in [
        "user.name:(alice",
        "\"unclosed phrase",
        "user.name:alice AND (",
    ] {
        match s.search(&SearchRequest::new(q)) {
            Err(Error::Query {
                query,
                pos,
                message,
            }) => {
                assert_eq!(query, q);
                assert!(pos.is_some(), "{q:?}: position named ({message})");
                let shown = Error::Query {
                    query,
                    pos,
                    message,
                }
                .to_string();
                assert!(shown.contains("position"), "{shown}");
            }
            other => panic!("{q:?}: expected a query error, got {other:?}"),
        }
    }
    // Whatever these mean, they must answer (hits or an error), never panic.
    for q in [
        ":::",
        "*:*",
        "a:[1 TO",
        "\\",
        "AND",
        "OR OR",
        "NOT",
        "((((((((((",
        "user.name:",
        "\u{0}",
        "ü:ö",
        "EventID:[4000 TO 5000]",
        "EventID:>4000",
        "a\u{1}b:c",
        "source.ip:203.0.113.5/24",
        "~~~",
        "^2",
        "user.name:alice^",
        "x:\"a\"~",
    ] {
        let _ = s.search(&SearchRequest::new(q));
    }
    let deep = "(".repeat(5000) + "a" + &")".repeat(5000);
    let _ = s.search(&SearchRequest::new(deep));
    // `seq` and `ts` are columns for ranges and sorting, not words: a term query on them is an
    // error that says so, never a silent empty answer.
    for q in ["seq:1", "ts:5"] {
        match s.search(&SearchRequest::new(q)) {
            Err(Error::Query { message, .. }) => {
                assert!(
                    message.contains("not declared as indexed"),
                    "{q:?}: {message}"
                )
            }
            other => panic!("{q:?}: expected a query error, got {other:?}"),
        }
    }
}

fn expect_prefix_removed(s: &dyn EventStore, removed: u64, total: u64) {
    let st = s.stats().unwrap();
    assert_eq!(st.events, total - removed);
    assert_eq!(st.first_seq, Some(removed + 1), "a prefix was removed");
    assert_eq!(st.last_seq, Some(total));
    for seq in 1..=total {
        assert_eq!(s.get(seq).unwrap().is_some(), seq > removed, "seq {seq}");
    }
    assert_eq!(
        s.raw_since(0, 1).unwrap().first().map(|r| r.seq),
        Some(removed + 1)
    );
    s.refresh().unwrap();
    let r = search(s, "*");
    assert_eq!(r.total, total - removed, "the index followed retention");
}

fn retention_age(s: &dyn EventStore) {
    let old: Vec<Event> = (0..100)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(0))))
        .collect();
    for chunk in old.chunks(10) {
        s.append_at(chunk, t(0)).unwrap();
    }
    let new: Vec<Event> = (0..20)
        .map(|i| ssh_event(i, "bob", "failure", "203.0.113.5", Some(t(0))))
        .collect();
    s.append_at(&new, t(60)).unwrap();
    let r = s
        .apply_retention(t(61), Some(TimeDelta::minutes(30)), None)
        .unwrap();
    assert!(r.removed_events > 0, "old units removed: {r:?}");
    assert!(
        r.removed_events <= 100,
        "no new event removed for age: {r:?}"
    );
    assert!(r.removed_bytes > 0);
    assert_eq!(r.first_retained_seq, Some(r.removed_events + 1));
    expect_prefix_removed(s, r.removed_events, 120);
    let again = s
        .apply_retention(t(61), Some(TimeDelta::minutes(30)), None)
        .unwrap();
    assert!(again.removed_events <= 100 - r.removed_events);
    let ack = s
        .append_at(
            &[ssh_event(0, "carol", "success", "203.0.113.9", None)],
            t(62),
        )
        .unwrap();
    assert_eq!(ack.first_seq, 121, "seqs are never reused");
    let none = s.apply_retention(t(62), None, None).unwrap();
    assert_eq!(none.removed_events, 0);
}

fn retention_size(s: &dyn EventStore) {
    let b: Vec<Event> = (0..120)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(0))))
        .collect();
    for chunk in b.chunks(10) {
        s.append_at(chunk, t(0)).unwrap();
    }
    let before = s.stats().unwrap();
    let max = before.bytes / 2;
    let r = s.apply_retention(t(0), None, Some(max)).unwrap();
    let after = s.stats().unwrap();
    assert!(r.removed_events > 0 && r.removed_events < 120, "{r:?}");
    assert!(
        after.bytes <= max || after.bytes == after.active_bytes,
        "bytes {} over {max} (active {})",
        after.bytes,
        after.active_bytes
    );
    assert_eq!(after.bytes + r.removed_bytes, before.bytes);
    expect_prefix_removed(s, r.removed_events, 120);
}

fn oversized(s: &dyn EventStore) {
    s.append_at(&[ssh_event(0, "a", "failure", "1.2.3.4", None)], t(0))
        .unwrap();
    let before = s.stats().unwrap();
    let mut huge = ssh_event(1, "a", "failure", "1.2.3.4", None);
    huge.raw = vec![b'x'; 40 << 20].into_boxed_slice();
    let ok = ssh_event(2, "a", "failure", "1.2.3.4", None);
    let r = s.append_at(&[ok.clone(), huge], t(0));
    assert!(matches!(r, Err(Error::EventTooLarge { .. })), "{r:?}");
    let mut deep = Value::Int(1);
    for _ in 0..100 {
        deep = Value::List(vec![deep]);
    }
    let mut nested = ok.clone();
    nested.push(FieldName::new("deep"), deep);
    let r = s.append_at(&[ok.clone(), nested], t(0));
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    let after = s.stats().unwrap();
    assert_eq!(
        (after.events, after.bytes),
        (before.events, before.bytes),
        "nothing written"
    );
    assert_eq!(s.append_at(&[ok], t(0)).unwrap().first_seq, 2);
}

fn hostile_input(s: &dyn EventStore) {
    let mut e = ssh_event(0, "alice", "failure", "203.0.113.5", Some(t(0)));
    e.raw = b"\xff\xfe invalid utf-8 \x00 \xc3\x28 mallory"
        .to_vec()
        .into_boxed_slice();
    e.push(FieldName::new(""), Value::str("empty name"));
    e.push(FieldName::new(&"n".repeat(1000)), Value::str("long name"));
    e.push(FieldName::new("a..b"), Value::str("dots"));
    e.push(FieldName::new("we:ird \"name\""), Value::str("quotes"));
    e.push(FieldName::new("nul\u{0}name"), Value::str("nul"));
    e.push(FieldName::new("big"), Value::str("y".repeat(2 << 20)));
    e.push(FieldName::new("nan"), Value::Float(f64::NAN));
    e.push(FieldName::new("inf"), Value::Float(f64::INFINITY));
    e.push(FieldName::new("null"), Value::Null);
    e.push(FieldName::new("bool"), Value::Bool(true));
    e.push(FieldName::new("min"), Value::Int(i64::MIN));
    e.push(
        FieldName::new("list"),
        Value::List(vec![Value::str("x"), Value::Int(1), Value::List(vec![])]),
    );
    e.push(FieldName::new("user.name"), Value::str("second-alice"));
    e.push(FieldName::new("日本語.フィールド"), Value::str("値 テスト"));
    e.push(
        FieldName::new("file.hash.sha256"),
        Value::str("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"),
    );
    let mut far = ssh_event(1, "zed", "failure", "203.0.113.5", None);
    far.timestamp = Some(DateTime::<Utc>::MAX_UTC);
    let mut early = ssh_event(2, "zed", "failure", "203.0.113.5", None);
    early.timestamp = Some(DateTime::<Utc>::MIN_UTC);
    let batch = [e, far, early];
    let ack = s.append_at(&batch, t(0)).unwrap();
    for (seq, e) in ack.seqs().zip(&batch) {
        assert_same_event(&s.get(seq).unwrap().unwrap().event, e, "hostile roundtrip");
    }
    s.refresh().unwrap();
    assert_eq!(search(s, "*").total, 3);
    assert_eq!(
        seqs_of(&search(s, "mallory")),
        [1],
        "lossy text still searchable"
    );
    assert_eq!(seqs_of(&search(s, "user.name:\"second-alice\"")), [1]);
    assert_eq!(
        seqs_of(&search(s, "user.name:alice")),
        [1],
        "a repeated field: every value searchable"
    );
    assert_eq!(seqs_of(&search(s, "list:x")), [1], "list elements");
    assert_eq!(seqs_of(&search(s, "bool:true")), [1]);
    assert_eq!(seqs_of(&search(s, "日本語.フィールド:値")), [1]);
    assert_eq!(
        seqs_of(&search(
            s,
            "file.hash.sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )),
        [1],
        "64-character hashes are searchable tokens"
    );
    let r = s
        .search(&SearchRequest {
            sort: SortOrder::Asc,
            ..SearchRequest::new("user.name:zed")
        })
        .unwrap();
    assert_eq!(seqs_of(&r), [3, 2], "extreme times sort");
}

fn concurrent(s: &dyn EventStore) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|th| {
                scope.spawn(move || {
                    let mut acks = Vec::new();
                    for b in 0..25u64 {
                        let batch: Vec<Event> = (0..4)
                            .map(|i| {
                                ssh_event(th * 1000 + b * 4 + i, "u", "failure", "1.1.1.1", None)
                            })
                            .collect();
                        acks.push(s.append_at(&batch, t(0)).unwrap());
                    }
                    acks
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .flat_map(|a| a.seqs())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    });
    s.refresh().unwrap();
    assert_eq!(search(s, "*").total, 400);
}

// ---------------------------------------------------------------------------------------------

fn alert(rule: &str, level: Level, at: DateTime<Utc>, dedup: Option<&str>) -> NewAlert {
    NewAlert {
        rule_id: RuleId(rule.into()),
        title: format!("rule {rule}"),
        level,
        event_time: Some(at - TimeDelta::seconds(1)),
        received_at: at,
        event_seqs: vec![1, 2],
        group_key: Some("source.ip=203.0.113.5".into()),
        dedup_key: dedup.map(String::from),
        details: serde_json::json!({"count": 5, "names": ["a", "b"], "ja": "総当たり"}),
    }
}

/// Runs every alert-store check, each against a fresh store from `make`.
pub fn alert_store_suite<S: AlertStore, G>(mut make: impl FnMut() -> (S, G)) {
    let checks: [AlertCheck; 7] = [
        ("insert_get_list_filters_paging", alerts_basic),
        ("dedup_merges_into_open_alert_only", alerts_dedup),
        ("dedup_widens_the_seq_span", alerts_seq_span),
        ("acknowledge_first_wins_unknown_is_not_found", alerts_ack),
        ("kv_put_get_replace_delete", kv),
        ("kv_compare_and_swap_and_concurrent_updates", kv_cas),
        ("oversized_alert_rejected", alerts_bad),
    ];
    for (name, check) in checks {
        let (store, guard) = make();
        eprintln!("alert store suite: {name}");
        check(&store);
        drop(store);
        drop(guard);
    }
}

fn alerts_basic(s: &dyn AlertStore) {
    let a = alert("r1", Level::High, t(0), None);
    let id1 = s.insert_alert(&a).unwrap();
    assert!(matches!(id1, InsertOutcome::Created(_)));
    let got = s.get_alert(id1.id()).unwrap().unwrap();
    assert_eq!(got.rule_id, a.rule_id);
    assert_eq!(got.title, a.title);
    assert_eq!(got.level, Level::High);
    assert_eq!(got.status, AlertStatus::Open);
    assert_eq!(got.event_time, a.event_time);
    assert_eq!((got.received_at, got.last_seen, got.count), (t(0), t(0), 1));
    assert_eq!(got.event_seqs, [1, 2]);
    assert_eq!(got.group_key, a.group_key);
    assert_eq!(got.details, a.details);
    assert_eq!(got.ack, None);
    let mut no_time = alert("r2", Level::Low, t(1), None);
    no_time.event_time = None;
    no_time.group_key = None;
    let id2 = s.insert_alert(&no_time).unwrap().id();
    let id3 = s
        .insert_alert(&alert("r3", Level::Critical, t(2), None))
        .unwrap()
        .id();
    assert!(id1.id() < id2 && id2 < id3, "ids increase");
    assert_eq!(s.get_alert(id2).unwrap().unwrap().event_time, None);
    assert!(s.get_alert(AlertId(9999)).unwrap().is_none());
    let ids = |f: AlertFilter| -> Vec<AlertId> {
        s.list_alerts(&f).unwrap().iter().map(|a| a.id).collect()
    };
    assert_eq!(
        ids(AlertFilter::default()),
        [id3, id2, id1.id()],
        "newest first"
    );
    assert_eq!(
        ids(AlertFilter {
            min_level: Some(Level::High),
            ..AlertFilter::default()
        }),
        [id3, id1.id()]
    );
    assert_eq!(
        ids(AlertFilter {
            since: Some(t(1)),
            ..AlertFilter::default()
        }),
        [id3, id2]
    );
    assert_eq!(
        ids(AlertFilter {
            rule_id: Some(RuleId("r2".into())),
            ..AlertFilter::default()
        }),
        [id2]
    );
    assert_eq!(
        ids(AlertFilter {
            offset: 1,
            limit: 1,
            ..AlertFilter::default()
        }),
        [id2]
    );
    s.acknowledge(
        id2,
        &Ack {
            by: "yuki".into(),
            at: t(5),
            note: String::new(),
        },
    )
    .unwrap();
    assert_eq!(
        ids(AlertFilter {
            status: Some(AlertStatus::Open),
            ..AlertFilter::default()
        }),
        [id3, id1.id()]
    );
    assert_eq!(
        ids(AlertFilter {
            status: Some(AlertStatus::Acknowledged),
            ..AlertFilter::default()
        }),
        [id2]
    );
}

fn alerts_dedup(s: &dyn AlertStore) {
    let first = s
        .insert_alert(&alert(
            "brute",
            Level::Medium,
            t(0),
            Some("brute|203.0.113.5"),
        ))
        .unwrap();
    assert!(matches!(first, InsertOutcome::Created(_)));
    let mut again = alert("brute", Level::High, t(3), Some("brute|203.0.113.5"));
    again.event_seqs = vec![2, 7, 8, 7];
    let merged = s.insert_alert(&again).unwrap();
    assert_eq!(merged, InsertOutcome::Merged(first.id()));
    let other = s
        .insert_alert(&alert(
            "brute",
            Level::Medium,
            t(4),
            Some("brute|198.51.100.1"),
        ))
        .unwrap();
    assert!(matches!(other, InsertOutcome::Created(_)));
    let a = s.get_alert(first.id()).unwrap().unwrap();
    assert_eq!((a.count, a.received_at, a.last_seen), (2, t(0), t(3)));
    assert_eq!(
        a.event_seqs,
        [1, 2, 7, 8],
        "seqs already named are not repeated"
    );
    assert_eq!(a.level, Level::High, "merged alert takes the highest level");
    let mut many = alert("brute", Level::Medium, t(5), Some("brute|203.0.113.5"));
    many.event_seqs = (0..5000).collect();
    s.insert_alert(&many).unwrap();
    let a = s.get_alert(first.id()).unwrap().unwrap();
    assert_eq!(a.event_seqs.len(), crate::MAX_ALERT_SEQS, "seqs bounded");
    assert_eq!(a.count, 3);
    s.acknowledge(
        first.id(),
        &Ack {
            by: "yuki".into(),
            at: t(6),
            note: "blocked at the firewall".into(),
        },
    )
    .unwrap();
    let after = s
        .insert_alert(&alert(
            "brute",
            Level::Medium,
            t(7),
            Some("brute|203.0.113.5"),
        ))
        .unwrap();
    assert!(
        matches!(after, InsertOutcome::Created(id) if id != first.id()),
        "an acknowledged alert does not absorb new occurrences: {after:?}"
    );
}

/// A merged occurrence (a correlation episode's end) widens `first_seq`/`last_seq` and
/// `events`; the other details keep their first values.
fn alerts_seq_span(s: &dyn AlertStore) {
    let mut open = alert("bf", Level::High, t(0), Some("bf|1"));
    open.details = serde_json::json!({"events": 10, "first_seq": 5, "last_seq": 14, "value": 10});
    let id = s.insert_alert(&open).unwrap().id();
    let mut end = alert("bf", Level::High, t(1), Some("bf|1"));
    end.details = serde_json::json!({"events": 150, "first_seq": 5, "last_seq": 154, "value": 150});
    assert_eq!(s.insert_alert(&end).unwrap(), InsertOutcome::Merged(id));
    let a = s.get_alert(id).unwrap().unwrap();
    assert_eq!(
        a.details,
        serde_json::json!({"events": 150, "first_seq": 5, "last_seq": 154, "value": 10})
    );
    // Details without a span are left alone.
    let plain = s
        .insert_alert(&alert("p", Level::Low, t(2), Some("p")))
        .unwrap();
    let mut again = alert("p", Level::Low, t(3), Some("p"));
    again.details = serde_json::json!({"count": 9});
    s.insert_alert(&again).unwrap();
    let a = s.get_alert(plain.id()).unwrap().unwrap();
    assert_eq!(a.details["count"], 5);
}

fn alerts_ack(s: &dyn AlertStore) {
    let id = s
        .insert_alert(&alert("r", Level::High, t(0), None))
        .unwrap()
        .id();
    let ack = Ack {
        by: "yuki".into(),
        at: t(1),
        note: "false positive: backup job".into(),
    };
    let a = s.acknowledge(id, &ack).unwrap();
    assert_eq!(
        (a.status, a.ack.as_ref()),
        (AlertStatus::Acknowledged, Some(&ack))
    );
    let second = Ack {
        by: "ken".into(),
        at: t(2),
        note: "me too".into(),
    };
    let a = s.acknowledge(id, &second).unwrap();
    assert_eq!(a.ack.as_ref(), Some(&ack), "the first acknowledgement wins");
    assert_eq!(s.get_alert(id).unwrap().unwrap().ack, Some(ack));
    let r = s.acknowledge(AlertId(424242), &second);
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

fn kv_cas(s: &dyn AlertStore) {
    // Absent: only "expected absent" writes.
    assert!(!s.kv_compare_and_swap("list", Some(b"x"), b"a").unwrap());
    assert!(s.kv_compare_and_swap("list", None, b"a").unwrap());
    assert!(!s.kv_compare_and_swap("list", None, b"b").unwrap());
    assert!(!s.kv_compare_and_swap("list", Some(b"b"), b"c").unwrap());
    assert!(s.kv_compare_and_swap("list", Some(b"a"), b"\x00c").unwrap());
    assert_eq!(s.kv_get("list").unwrap().as_deref(), Some(&b"\x00c"[..]));
    // `None` from the update keeps the value.
    s.kv_update("list", &mut |_| None).unwrap();
    assert_eq!(s.kv_get("list").unwrap().as_deref(), Some(&b"\x00c"[..]));
    // Read-modify-write from several threads: no increment is lost.
    let (threads, each) = (4, 25);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                for _ in 0..each {
                    s.kv_update("counter", &mut |cur| {
                        let n: u64 = cur
                            .map(|b| std::str::from_utf8(b).unwrap().parse().unwrap())
                            .unwrap_or(0);
                        Some((n + 1).to_string().into_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.kv_get("counter").unwrap().as_deref(),
        Some((threads * each).to_string().as_bytes())
    );
}

fn kv(s: &dyn AlertStore) {
    assert_eq!(s.kv_get("correlation").unwrap(), None);
    s.kv_put("correlation", b"\x00\x01state").unwrap();
    assert_eq!(
        s.kv_get("correlation").unwrap().as_deref(),
        Some(&b"\x00\x01state"[..])
    );
    s.kv_put("correlation", b"newer").unwrap();
    assert_eq!(
        s.kv_get("correlation").unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    s.kv_put("", b"").unwrap();
    assert_eq!(s.kv_get("").unwrap().as_deref(), Some(&b""[..]));
    let big = vec![7u8; 4 << 20];
    s.kv_put("settings/日本", &big).unwrap();
    assert_eq!(s.kv_get("settings/日本").unwrap(), Some(big));
    assert!(s.kv_delete("correlation").unwrap());
    assert!(!s.kv_delete("correlation").unwrap());
    assert_eq!(s.kv_get("correlation").unwrap(), None);
}

fn alerts_bad(s: &dyn AlertStore) {
    let mut a = alert("r", Level::High, t(0), None);
    a.title = "x".repeat(10_000);
    assert!(matches!(s.insert_alert(&a), Err(Error::InvalidRequest(_))));
    let mut a = alert("r", Level::High, t(0), None);
    a.details = serde_json::json!("d".repeat(2 << 20));
    assert!(matches!(s.insert_alert(&a), Err(Error::InvalidRequest(_))));
    // Alert times have microsecond precision; far-off ones survive.
    let far = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    let mut a = alert("r'; DROP TABLE alerts; --", Level::High, far, None);
    a.event_time = Some(Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap());
    let id = s.insert_alert(&a).unwrap().id();
    let got = s.get_alert(id).unwrap().unwrap();
    assert_eq!(got.rule_id, a.rule_id);
    assert_eq!(got.event_time, a.event_time);
    assert_eq!(got.received_at, a.received_at);
    assert_eq!(s.list_alerts(&AlertFilter::default()).unwrap().len(), 1);
}

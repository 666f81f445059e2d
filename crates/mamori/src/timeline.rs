//! Timeline rows and their CSV / JSONL writers.
//!
//! Log content is attacker-controlled: CSV cells that a spreadsheet would run as a formula
//! (starting with `=`, `+`, `-`, `@`, tab or carriage return) are prefixed with `'`.

use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufReader, Seek, Write};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use mamori_event::{write_json_str, Level};
use mamori_vault::formula_safe;
use serde::{Deserialize, Serialize};

/// Rows a worker hands over at once, at most.
pub(crate) const BATCH: usize = 4096;
/// Bytes of rendered rows a worker hands over at once, at most (JSONL rows carry their event).
const BATCH_BYTES: usize = 1 << 20;
/// Rows kept in memory before a sorted run is spilled to a temporary file.
const SPILL_AT: usize = 10_000;

/// One detection on the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) host: String,
    pub(crate) source: String,
    pub(crate) rule_id: String,
    pub(crate) rule_title: String,
    pub(crate) level: mamori_event::Level,
    pub(crate) tags: Vec<String>,
    pub(crate) details: Vec<(String, String)>,
    /// The full event as JSON object text (JSONL only), rendered once per event and shared by
    /// the rows of every rule it matched.
    pub(crate) event: Option<std::sync::Arc<str>>,
    /// Correlation rows: the events behind the row (first/last `file:line`, count, hosts, all
    /// sources up to a bound). Written in JSONL; CSV shows first … last in `source`.
    #[serde(default)]
    pub(crate) evidence: Option<serde_json::Value>,
    /// Detection, signal (adds risk, not an alert) or risk alert.
    #[serde(default)]
    pub(crate) kind: RowKind,
}

/// What a row is: only `Detection` and `Risk` rows are alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RowKind {
    /// A Sigma rule, a correlation or a strong analytics finding.
    #[default]
    Detection,
    /// A weak finding that adds risk to an entity; reported, not counted as an alert.
    Signal,
    /// An entity's risk crossed the threshold; cites its signals.
    Risk,
}

impl RowKind {
    fn as_str(self) -> &'static str {
        match self {
            RowKind::Detection => "detection",
            RowKind::Signal => "signal",
            RowKind::Risk => "risk",
        }
    }
}

impl Row {
    /// The row's fields borrowed, for rendering and counting.
    fn with_view<R>(&self, f: impl FnOnce(&RowView<'_>) -> R) -> R {
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        f(&RowView {
            timestamp: self.timestamp,
            host: &self.host,
            source: &self.source,
            rule_id: &self.rule_id,
            rule_title: &self.rule_title,
            level: self.level,
            tags: &tags,
            details: &self.details,
            event: self.event.as_deref(),
            evidence: self.evidence.as_ref(),
            kind: self.kind,
        })
    }

    #[cfg(test)]
    fn ts(&self) -> String {
        self.with_view(|v| v.ts())
    }
}

/// A row with its fields borrowed: what is rendered and counted. The hunt renders each
/// detection from views of its event and rule, so a row costs no owned copy of its strings.
pub(crate) struct RowView<'a> {
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) host: &'a str,
    pub(crate) source: &'a str,
    pub(crate) rule_id: &'a str,
    pub(crate) rule_title: &'a str,
    pub(crate) level: Level,
    pub(crate) tags: &'a [&'a str],
    pub(crate) details: &'a [(String, String)],
    pub(crate) event: Option<&'a str>,
    pub(crate) evidence: Option<&'a serde_json::Value>,
    pub(crate) kind: RowKind,
}

impl RowView<'_> {
    /// An owned copy, for a row that waits (remote administration until the admin-network
    /// logons are known).
    pub(crate) fn to_row(&self) -> Row {
        Row {
            timestamp: self.timestamp,
            host: self.host.to_owned(),
            source: self.source.to_owned(),
            rule_id: self.rule_id.to_owned(),
            rule_title: self.rule_title.to_owned(),
            level: self.level,
            tags: self.tags.iter().map(|t| (*t).to_owned()).collect(),
            details: self.details.to_vec(),
            event: self.event.map(Into::into),
            evidence: self.evidence.cloned(),
            kind: self.kind,
        }
    }

    fn ts(&self) -> String {
        self.timestamp
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default()
    }

    fn details_text(&self) -> String {
        self.details
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(" ¦ ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TimelineFormat {
    Csv,
    Jsonl,
}

/// Counts for the summary, gathered while writing.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Alerts (detections and risk alerts; not signals).
    pub(crate) total: usize,
    /// Signal rows: they add risk and are not alerts.
    pub(crate) signals: usize,
    pub(crate) signals_by_rule: BTreeMap<String, usize>,
    pub(crate) by_level: BTreeMap<Level, usize>,
    pub(crate) by_rule: BTreeMap<(String, Level), usize>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.total += o.total;
        self.signals += o.signals;
        for (k, n) in o.signals_by_rule {
            *self.signals_by_rule.entry(k).or_default() += n;
        }
        for (k, n) in o.by_level {
            *self.by_level.entry(k).or_default() += n;
        }
        for (k, n) in o.by_rule {
            *self.by_rule.entry(k).or_default() += n;
        }
    }

    fn add(&mut self, r: &RowView<'_>) {
        if r.kind == RowKind::Signal {
            self.signals += 1;
            match self.signals_by_rule.get_mut(r.rule_title) {
                Some(n) => *n += 1,
                None => {
                    self.signals_by_rule.insert(r.rule_title.to_owned(), 1);
                }
            }
            return;
        }
        self.total += 1;
        *self.by_level.entry(r.level).or_default() += 1;
        *self
            .by_rule
            .entry((r.rule_title.to_owned(), r.level))
            .or_default() += 1;
    }
}

/// Collects rows from many threads and writes them sorted by time. Each row is rendered to its
/// output bytes (a JSONL line or a CSV record) by the thread that made it, into a [`Batch`]
/// outside the lock, and only its sort key and bytes are kept. Memory stays bounded: past [`SPILL_AT`] rows or
/// [`SPILL_BYTES`], a sorted run goes to an anonymous temporary file (key and bytes, no
/// re-serialisation), and the runs are merged at the end (an external merge sort), so an input
/// with millions of detections does not grow the process.
pub(crate) struct Buffer {
    format: TimelineFormat,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rows: Vec<Rendered>,
    bytes: usize,
    runs: Vec<std::fs::File>,
    error: Option<std::io::Error>,
    stats: Stats,
}

/// Bytes of rendered rows kept in memory before a sorted run is spilled.
const SPILL_BYTES: usize = 24 << 20;

/// A row as written: its sort key (time, source) and its output bytes, the source and the
/// bytes in one block.
struct Rendered {
    timestamp: Option<DateTime<Utc>>,
    /// The length of the source at the start of `data`.
    src: usize,
    data: Box<[u8]>,
}

impl Rendered {
    /// Sources compare as their bytes: UTF-8 orders as its code points, as `str` does.
    fn key(&self) -> (Option<DateTime<Utc>>, &[u8]) {
        (
            self.timestamp,
            self.data.get(..self.src).unwrap_or_default(),
        )
    }

    fn bytes(&self) -> &[u8] {
        self.data.get(self.src..).unwrap_or_default()
    }

    /// Spill record: has-time byte, seconds, nanoseconds, the source's length, then the
    /// block after its length (little-endian).
    fn spill(&self, w: &mut impl Write) -> std::io::Result<()> {
        let (has, secs, nanos) = match self.timestamp {
            Some(t) => (1u8, t.timestamp(), t.timestamp_subsec_nanos()),
            None => (0, 0, 0),
        };
        w.write_all(&[has])?;
        w.write_all(&secs.to_le_bytes())?;
        w.write_all(&nanos.to_le_bytes())?;
        w.write_all(&(self.src as u64).to_le_bytes())?;
        w.write_all(&(self.data.len() as u64).to_le_bytes())?;
        w.write_all(&self.data)
    }

    /// The next record of a run; `None` at its end.
    fn unspill(r: &mut impl std::io::Read) -> std::io::Result<Option<Rendered>> {
        let mut has = [0u8; 1];
        match r.read_exact(&mut has) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let mut b8 = [0u8; 8];
        let mut b4 = [0u8; 4];
        r.read_exact(&mut b8)?;
        let secs = i64::from_le_bytes(b8);
        r.read_exact(&mut b4)?;
        let nanos = u32::from_le_bytes(b4);
        r.read_exact(&mut b8)?;
        let src = u64::from_le_bytes(b8) as usize;
        r.read_exact(&mut b8)?;
        let len = u64::from_le_bytes(b8);
        // Read into a block of the exact size, not zeroed first.
        let mut data = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut *r, len), &mut data)?;
        if data.len() as u64 != len || src > data.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Some(Rendered {
            timestamp: (has[0] == 1)
                .then(|| DateTime::from_timestamp(secs, nanos))
                .flatten(),
            src,
            data: data.into(),
        }))
    }
}

/// Rows rendered by one worker, handed to the [`Buffer`] at once with their counts.
pub(crate) struct Batch {
    renderer: Renderer,
    rows: Vec<Rendered>,
    bytes: usize,
    stats: Stats,
    /// Scratch: a row is rendered here, then copied into a block of its exact size.
    line: Vec<u8>,
}

impl Batch {
    pub(crate) fn add(&mut self, r: &RowView<'_>) {
        self.stats.add(r);
        self.line.clear();
        self.line.extend_from_slice(r.source.as_bytes());
        self.renderer.render(r, &mut self.line);
        self.bytes += self.line.len();
        self.rows.push(Rendered {
            timestamp: r.timestamp,
            src: r.source.len(),
            data: self.line.as_slice().into(),
        });
        // A huge row's scratch is not kept.
        if self.line.capacity() > 1 << 20 {
            self.line = Vec::new();
        }
    }

    /// Whether the batch should be handed over ([`Buffer::push`]).
    pub(crate) fn full(&self) -> bool {
        self.rows.len() >= BATCH || self.bytes >= BATCH_BYTES
    }
}

fn sort_rows(rows: &mut [Rendered]) {
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
}

impl Buffer {
    pub(crate) fn new(format: TimelineFormat) -> Buffer {
        Buffer {
            format,
            inner: Mutex::default(),
        }
    }

    /// An empty batch for one worker.
    pub(crate) fn batch(&self) -> Batch {
        Batch {
            renderer: Renderer::new(self.format),
            rows: Vec::new(),
            bytes: 0,
            stats: Stats::default(),
            line: Vec::new(),
        }
    }

    /// Renders and queues rows built elsewhere (correlations, analytics, episodes).
    pub(crate) fn push_batch(&self, rows: Vec<Row>) {
        let mut b = self.batch();
        for r in &rows {
            r.with_view(|v| b.add(v));
        }
        self.push(&mut b);
    }

    /// Queues a worker's rendered rows (rendered and counted before the lock: threads only
    /// queue bytes); the batch is left empty for reuse.
    pub(crate) fn push(&self, batch: &mut Batch) {
        if batch.rows.is_empty() {
            return;
        }
        let rendered = std::mem::take(&mut batch.rows);
        let stats = std::mem::take(&mut batch.stats);
        let bytes = std::mem::take(&mut batch.bytes);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.stats.merge(stats);
        g.rows.extend(rendered);
        g.bytes += bytes;
        if (g.rows.len() >= SPILL_AT || g.bytes >= SPILL_BYTES) && g.error.is_none() {
            let mut rows = std::mem::take(&mut g.rows);
            sort_rows(&mut rows);
            match spill(&rows) {
                Ok(f) => {
                    g.runs.push(f);
                    g.bytes = 0;
                }
                Err(e) => {
                    // Keep the rows in memory rather than lose them; reported at the end.
                    g.rows = rows;
                    g.error = Some(e);
                }
            }
        }
    }

    /// Writes every row, sorted by (time, source).
    pub(crate) fn write_sorted(&self, out: &mut dyn Write) -> std::io::Result<Stats> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.error.take() {
            eprintln!("warning: could not spill timeline rows to a temporary file ({e}); kept them in memory");
        }
        let mut rows = std::mem::take(&mut g.rows);
        sort_rows(&mut rows);
        let runs = std::mem::take(&mut g.runs);
        let stats = std::mem::take(&mut g.stats);
        out.write_all(&Renderer::header(self.format))?;
        if runs.is_empty() {
            for r in &rows {
                out.write_all(r.bytes())?;
            }
            out.flush()?;
            return Ok(stats);
        }
        // k-way merge of the spilled runs and the in-memory tail.
        type Run = Box<dyn Iterator<Item = std::io::Result<Rendered>>>;
        let mut readers: Vec<Run> = Vec::new();
        for mut f in runs {
            f.rewind()?;
            let mut r = BufReader::with_capacity(1 << 16, f);
            readers.push(Box::new(std::iter::from_fn(move || {
                Rendered::unspill(&mut r).transpose()
            })));
        }
        readers.push(Box::new(rows.into_iter().map(Ok)));
        let mut heap = BinaryHeap::new();
        for (i, it) in readers.iter_mut().enumerate() {
            if let Some(r) = it.next() {
                heap.push(Head(r?, i));
            }
        }
        while let Some(Head(row, i)) = heap.pop() {
            out.write_all(row.bytes())?;
            if let Some(r) = readers[i].next() {
                heap.push(Head(r?, i));
            }
        }
        out.flush()?;
        Ok(stats)
    }
}

/// A run's next row, ordered so the max-heap pops the earliest row first.
struct Head(Rendered, usize);

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Head) -> std::cmp::Ordering {
        o.0.key().cmp(&self.0.key()).then(o.1.cmp(&self.1))
    }
}

fn spill(rows: &[Rendered]) -> std::io::Result<std::fs::File> {
    let f = tempfile::tempfile()?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
    for r in rows {
        r.spill(&mut w)?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

/// Renders rows to their output bytes in one format.
enum Renderer {
    Csv,
    Jsonl,
}

impl Renderer {
    fn new(format: TimelineFormat) -> Renderer {
        match format {
            TimelineFormat::Csv => Renderer::Csv,
            TimelineFormat::Jsonl => Renderer::Jsonl,
        }
    }

    /// What the output starts with: the CSV header.
    fn header(format: TimelineFormat) -> Vec<u8> {
        match format {
            TimelineFormat::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let _ = w.write_record([
                    "timestamp",
                    "host",
                    "source",
                    "rule_id",
                    "rule_title",
                    "level",
                    "tags",
                    "details",
                    "kind",
                ]);
                w.into_inner().unwrap_or_default()
            }
            TimelineFormat::Jsonl => Vec::new(),
        }
    }

    /// Appends one row's bytes (with its line end). Writing into memory cannot fail.
    fn render(&self, r: &RowView<'_>, line: &mut Vec<u8>) {
        match self {
            Renderer::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .buffer_capacity(1024)
                    .from_writer(std::mem::take(line));
                let tags = r.tags.join(" ");
                let details = r.details_text();
                let _ = w.write_record([
                    formula_safe(&r.ts()).as_ref(),
                    &formula_safe(r.host),
                    &formula_safe(r.source),
                    &formula_safe(r.rule_id),
                    &formula_safe(r.rule_title),
                    r.level.as_str(),
                    &formula_safe(&tags),
                    &formula_safe(&details),
                    r.kind.as_str(),
                ]);
                *line = w.into_inner().unwrap_or_default();
            }
            Renderer::Jsonl => {
                // Written field by field (the keys in the order `json!` would give them), strings
                // escaped as serde_json escapes them: the event is already JSON text and is
                // copied, not parsed and re-serialised.
                line.reserve(256 + r.event.map_or(0, str::len));
                line.extend_from_slice(b"{\"timestamp\":");
                write_json_str(line, &r.ts());
                line.extend_from_slice(b",\"host\":");
                write_json_str(line, r.host);
                line.extend_from_slice(b",\"source\":");
                write_json_str(line, r.source);
                line.extend_from_slice(b",\"rule\":{\"id\":");
                write_json_str(line, r.rule_id);
                line.extend_from_slice(b",\"title\":");
                write_json_str(line, r.rule_title);
                line.extend_from_slice(b",\"level\":");
                write_json_str(line, r.level.as_str());
                line.extend_from_slice(b",\"tags\":[");
                for (i, t) in r.tags.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    write_json_str(line, t);
                }
                line.extend_from_slice(b"]},\"details\":{");
                // A repeated key keeps its first place and its last value (as a JSON map would).
                let mut first = true;
                for (i, (k, _)) in r.details.iter().enumerate() {
                    if r.details[..i].iter().any(|(x, _)| x == k) {
                        continue;
                    }
                    let v = r.details[i..]
                        .iter()
                        .rev()
                        .find(|(x, _)| x == k)
                        .map_or("", |(_, v)| v.as_str());
                    if !first {
                        line.push(b',');
                    }
                    first = false;
                    write_json_str(line, k);
                    line.push(b':');
                    write_json_str(line, v);
                }
                line.extend_from_slice(b"},\"kind\":");
                write_json_str(line, r.kind.as_str());
                line.extend_from_slice(b",\"event\":");
                match r.event {
                    Some(e) => line.extend_from_slice(e.as_bytes()),
                    None => line.extend_from_slice(b"null"),
                }
                if let Some(e) = r.evidence {
                    line.extend_from_slice(b",\"evidence\":");
                    let _ = serde_json::to_writer(&mut *line, e);
                }
                line.extend_from_slice(b"}\n");
            }
        }
    }
}

/// Writes rows in the given order (tests).
#[cfg(test)]
pub(crate) fn write(
    rows: &[Row],
    format: TimelineFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let r = Renderer::new(format);
    out.write_all(&Renderer::header(format))?;
    for row in rows {
        let mut line = Vec::new();
        row.with_view(|v| r.render(v, &mut line));
        out.write_all(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(secs: i64, src: &str) -> Row {
        Row {
            timestamp: DateTime::from_timestamp(secs, 0),
            host: "h".into(),
            source: src.into(),
            rule_id: "r".into(),
            rule_title: "t".into(),
            level: Level::Low,
            tags: vec![],
            details: vec![("k".into(), "v".into())],
            event: None,
            kind: RowKind::Detection,
            evidence: None,
        }
    }

    #[test]
    fn spilled_runs_merge_in_time_order() {
        let buf = Buffer::new(TimelineFormat::Jsonl);
        // Three spills and an in-memory tail, pushed out of order.
        for chunk in 0..3i64 {
            buf.push_batch(
                (0..SPILL_AT as i64)
                    .map(|i| row(i * 4 + chunk, "a"))
                    .collect(),
            );
        }
        buf.push_batch(vec![row(3, "z"), row(1, "b")]);
        assert_eq!(buf.inner.lock().unwrap().runs.len(), 3);
        let mut out = Vec::new();
        let stats = buf.write_sorted(&mut out).unwrap();
        assert_eq!(stats.total, 3 * SPILL_AT + 2);
        let times: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
    }

    #[test]
    fn a_view_made_owned_renders_as_its_row() {
        let mut r = row(7, "f.jsonl:3");
        r.tags = vec!["attack.t1".into(), "attack.t2".into()];
        r.event = Some(r#"{"a":1}"#.into());
        r.evidence = Some(serde_json::json!({"count": 2}));
        let owned = r.with_view(|v| v.to_row());
        for format in [TimelineFormat::Jsonl, TimelineFormat::Csv] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write(std::slice::from_ref(&r), format, &mut a).unwrap();
            write(std::slice::from_ref(&owned), format, &mut b).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(formula_safe("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(formula_safe("+1"), "'+1");
        assert_eq!(formula_safe("-2"), "'-2");
        assert_eq!(formula_safe("@SUM(1)"), "'@SUM(1)");
        assert_eq!(formula_safe("\tx"), "'\tx");
        assert_eq!(formula_safe("plain"), "plain");
    }

    #[test]
    fn csv_quotes_and_jsonl_carries_event() {
        let row = Row {
            timestamp: None,
            host: "h,1".into(),
            source: "a.log:3".into(),
            rule_id: "r".into(),
            rule_title: "=HYPERLINK(\"x\")".into(),
            level: mamori_event::Level::High,
            tags: vec!["attack.t1110".into()],
            details: vec![("user.name".into(), "root".into())],
            event: Some(r#"{"user.name":"root"}"#.into()),
            kind: RowKind::Detection,
            evidence: None,
        };
        let mut out = Vec::new();
        write(std::slice::from_ref(&row), TimelineFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"h,1\""));
        assert!(text.contains("'=HYPERLINK"));
        let mut out = Vec::new();
        write(&[row], TimelineFormat::Jsonl, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"]["user.name"], "root");
        assert_eq!(v["rule"]["level"], "high");
    }

    #[test]
    fn jsonl_rows_are_what_a_json_tree_gives() {
        let event = json!({"CommandLine": "a \"b\"\n", "EventID": 1, "x": null, "l": [1, "2"]});
        let row = Row {
            timestamp: DateTime::from_timestamp(1_600_000_000, 5_000_000),
            host: "h\u{7}".into(),
            source: "f.jsonl:3".into(),
            rule_id: "id-1".into(),
            rule_title: "Title é".into(),
            level: Level::Critical,
            tags: vec!["attack.t1".into(), "attack.t2".into()],
            details: vec![
                ("b".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "3".into()),
            ],
            event: Some(event.to_string().into()),
            kind: RowKind::Signal,
            evidence: Some(json!({"first": "x", "count": 2})),
        };
        let mut out = Vec::new();
        write(std::slice::from_ref(&row), TimelineFormat::Jsonl, &mut out).unwrap();
        let mut details = serde_json::Map::new();
        for (k, v) in &row.details {
            details.insert(k.clone(), json!(v));
        }
        let want = json!({
            "timestamp": row.ts(),
            "host": row.host,
            "source": row.source,
            "rule": {"id": row.rule_id, "title": row.rule_title, "level": row.level, "tags": row.tags},
            "details": details,
            "kind": "signal",
            "event": event,
            "evidence": row.evidence,
        });
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, want);
        // Keys in the order of the tree the rows used to be rendered from.
        let keys: Vec<&str> = [
            "timestamp",
            "host",
            "source",
            "rule",
            "details",
            "kind",
            "event",
            "evidence",
        ]
        .to_vec();
        let mut last = 0;
        for k in keys {
            let at = text.find(&format!("\"{k}\":")).unwrap();
            assert!(at >= last, "{k} out of order in {text}");
            last = at;
        }
    }

    #[test]
    fn spilled_csv_is_the_stable_sort_of_the_rows() {
        let rows: Vec<Row> = (0..3 * SPILL_AT as i64 + 5)
            .map(|i| {
                let mut r = row((i * 7919) % 1000, &format!("s{}", i % 5));
                if i % 7 == 0 {
                    r.timestamp = None;
                } else {
                    r.timestamp =
                        DateTime::from_timestamp((i * 7919) % 1000, (i % 3) as u32 * 1000);
                }
                r.host = format!("=h{i}");
                r
            })
            .collect();
        let buf = Buffer::new(TimelineFormat::Csv);
        for chunk in rows.chunks(BATCH) {
            buf.push_batch(chunk.to_vec());
        }
        assert!(buf.inner.lock().unwrap().runs.len() >= 2);
        let mut got = Vec::new();
        let stats = buf.write_sorted(&mut got).unwrap();
        assert_eq!(stats.total, rows.len());
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| (a.timestamp, &a.source).cmp(&(b.timestamp, &b.source)));
        let mut want = Vec::new();
        write(&sorted, TimelineFormat::Csv, &mut want).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}

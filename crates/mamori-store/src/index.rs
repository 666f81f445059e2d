//! The search index: tantivy over the event log, shared by the embedded (on-disk) and the
//! in-memory backends. It is a cache: every document is derived from a log record and carries
//! its seq, and each commit records (in the commit payload) the highest seq it covers, so the
//! owner can re-index the log from there after a crash — idempotently, because a commit is
//! atomic with its payload.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_event::Event;
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::index::SegmentId;
use tantivy::indexer::{IndexWriterOptions, LogMergePolicy, MergeCandidate, MergePolicy};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::query_grammar::{Occur as GrammarOccur, UserInputAst, UserInputLeaf};
use tantivy::schema::{
    IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, SegmentMeta,
    SegmentReader, Term,
};

use crate::doc::{DocFields, IndexDoc};
use crate::error::{Error, Result};
use crate::model::{
    Bucket, SearchRequest, SearchResponse, Seq, SortOrder, StoredEvent, MAX_BUCKETS,
};
use crate::words::WordTokenizer;

/// Bump when the schema or the document mapping changes: an index with another version is
/// dropped and rebuilt from the log.
const INDEX_VERSION: u32 = 3;
/// tantivy's `default` analyser (split on non-alphanumerics, lower-case) but keeping tokens up
/// to 255 bytes instead of 40: SHA-256 hashes (64 hex digits) and long identifiers are exactly
/// what an analyst searches for.
const TOKENIZER: &str = "mamori";
const MAX_QUERY_LEN: usize = 16 << 10;
const MAX_QUERY_DEPTH: usize = 32;

/// When the index commits (making appended events searchable and durable in the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexConfig {
    /// Indexing memory budget (tantivy's writer heap).
    pub(crate) heap_bytes: usize,
    pub(crate) commit_every_docs: u64,
    pub(crate) commit_interval: Duration,
    pub(crate) merge_max_docs: usize,
    pub(crate) merge_threads: usize,
}

impl From<&crate::EmbeddedConfig> for IndexConfig {
    fn from(cfg: &crate::EmbeddedConfig) -> Self {
        IndexConfig {
            heap_bytes: cfg.index_heap_bytes,
            commit_every_docs: cfg.index_commit_every.max(1),
            commit_interval: Duration::from_millis(cfg.index_commit_interval_ms),
            merge_max_docs: usize::try_from(cfg.index_merge_max_docs).unwrap_or(usize::MAX),
            merge_threads: cfg.index_merge_threads.max(1),
        }
    }
}

struct WriterState {
    writer: IndexWriter<IndexDoc>,
    /// Set when a rollback could not recreate the writer: nothing commits until one does.
    broken: Option<String>,
    /// Highest seq added (committed or not).
    added_through: Seq,
    pending: u64,
    last_commit: Instant,
}

pub(crate) struct EventIndex {
    cfg: IndexConfig,
    index: Index,
    writer: Mutex<WriterState>,
    reader: IndexReader,
    f: DocFields,
    parser: QueryParser,
    committed_through: AtomicU64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    version: u32,
    indexed_through: Seq,
}

fn schema() -> (Schema, DocFields) {
    let mut b = Schema::builder();
    let text = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
        .set_fieldnorms(false);
    let seq = b.add_u64_field("seq", NumericOptions::default().set_fast());
    let ts = b.add_i64_field("ts", NumericOptions::default().set_fast());
    let host = b.add_text_field(
        "host",
        TextOptions::default().set_indexing_options(text.clone()),
    );
    let message = b.add_text_field(
        "message",
        TextOptions::default().set_indexing_options(text.clone()),
    );
    let fields = b.add_json_field(
        "fields",
        JsonObjectOptions::default()
            .set_indexing_options(text)
            .set_expand_dots_enabled(),
    );
    (
        b.build(),
        DocFields {
            seq,
            ts,
            host,
            message,
            fields,
        },
    )
}

impl EventIndex {
    /// Opens the index in `dir`, rebuilding it (empty) if it is missing, of another version or
    /// unreadable. Returns the index and the highest seq it has committed.
    pub(crate) fn open_dir(dir: &Path, cfg: IndexConfig) -> Result<(EventIndex, Seq)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.into(),
            source: e,
        })?;
        let (schema, _) = schema();
        let attempt = || -> Result<(Index, Seq)> {
            let d = MmapDirectory::open(dir).map_err(|e| Error::Index(e.to_string()))?;
            let index = Index::open_or_create(d, schema.clone())?;
            let through = match index.load_metas()?.payload {
                None => 0,
                Some(p) => match serde_json::from_str::<Payload>(&p) {
                    Ok(p) if p.version == INDEX_VERSION => p.indexed_through,
                    _ => return Err(Error::Index(format!("index version changed: {p}"))),
                },
            };
            Ok((index, through))
        };
        let (index, through) = match attempt() {
            Ok(x) => x,
            Err(_) => {
                // The index is a cache of the log: drop it and rebuild.
                std::fs::remove_dir_all(dir).map_err(|e| Error::Io {
                    path: dir.into(),
                    source: e,
                })?;
                std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                    path: dir.into(),
                    source: e,
                })?;
                attempt()?
            }
        };
        Ok((EventIndex::new(index, cfg, through)?, through))
    }

    pub(crate) fn open_ram(cfg: IndexConfig) -> Result<EventIndex> {
        EventIndex::new(Index::create_in_ram(schema().0), cfg, 0)
    }

    fn new(index: Index, cfg: IndexConfig, through: Seq) -> Result<EventIndex> {
        let (_, f) = schema();
        index
            .tokenizers()
            .register(TOKENIZER, TextAnalyzer::from(WordTokenizer::default()));
        let writer = index.writer_with_options::<IndexDoc>(
            IndexWriterOptions::builder()
                .num_worker_threads(2)
                .memory_budget_per_thread(cfg.heap_bytes.max(30 << 20) / 2)
                .num_merge_threads(cfg.merge_threads)
                .build(),
        )?;
        set_merge_policy(&writer, cfg.merge_max_docs);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![f.message, f.fields]);
        parser.set_conjunction_by_default();
        Ok(EventIndex {
            cfg,
            index: index.clone(),
            writer: Mutex::new(WriterState {
                writer,
                broken: None,
                added_through: through,
                pending: 0,
                last_commit: Instant::now(),
            }),
            reader,
            f,
            parser,
            committed_through: AtomicU64::new(through),
        })
    }

    pub(crate) fn committed_through(&self) -> Seq {
        self.committed_through.load(Ordering::Acquire)
    }

    /// Adds documents; the caller adds seqs in increasing order, each once.
    pub(crate) fn add<'a>(
        &self,
        events: impl IntoIterator<Item = (Seq, DateTime<Utc>, &'a Event)>,
    ) -> Result<()> {
        let mut last = None;
        let docs: Vec<IndexDoc> = events
            .into_iter()
            .map(|(seq, received_at, e)| {
                last = Some(seq);
                self.document(seq, received_at, e)
            })
            .collect();
        match last {
            Some(last) => self.add_documents(docs, last),
            None => Ok(()),
        }
    }

    /// Adds documents built by [`EventIndex::document`], in seq order; `last` is the seq of
    /// the last one.
    ///
    /// On failure everything added since the last commit is dropped (see
    /// [`EventIndex::rollback_locked`]): the caller re-adds from `committed_through() + 1`.
    pub(crate) fn add_documents(&self, docs: Vec<IndexDoc>, last: Seq) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let n = docs.len() as u64;
        for d in docs {
            if let Err(e) = w.writer.add_document(d) {
                self.rollback_locked(&mut w);
                return Err(e.into());
            }
        }
        w.added_through = last;
        w.pending += n;
        Ok(())
    }

    /// The highest seq handed to the writer (committed or not); after a failure it is back
    /// at [`EventIndex::committed_through`].
    pub(crate) fn added_through(&self) -> Seq {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .added_through
    }

    /// Drops everything added since the last durable commit and starts a fresh writer.
    ///
    /// This is the only safe answer to a failed add or commit: a tantivy writer whose
    /// indexing worker died (an I/O error flushing a segment, e.g. disk full) loses that
    /// worker's documents, yet a later commit would succeed and record them as covered — the
    /// gap a restart would never re-index. So after any failure the writer is rolled back, the
    /// covered seq is re-read from the index's own metadata (the truth of what is durable),
    /// and the caller re-adds everything after it from the log.
    pub(crate) fn rollback(&self) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.rollback_locked(&mut w);
        match w.broken.take() {
            Some(e) => Err(Error::Index(e)),
            None => Ok(()),
        }
    }

    fn rollback_locked(&self, w: &mut WriterState) {
        w.pending = 0;
        if let Err(e) = w.writer.rollback() {
            // The writer could not be recreated; the next rollback tries again.
            w.broken = Some(e.to_string());
            w.added_through = self.committed_through();
            return;
        }
        w.broken = None;
        set_merge_policy(&w.writer, self.cfg.merge_max_docs);
        let durable = self
            .index
            .load_metas()
            .ok()
            .and_then(|m| m.payload)
            .and_then(|p| serde_json::from_str::<Payload>(&p).ok())
            .map_or(0, |p| p.indexed_through);
        // Never claim more than the last commit we saw succeed, nor less than is durable.
        let through = durable.max(self.committed_through());
        self.committed_through.store(through, Ordering::Release);
        w.added_through = through;
        // Documents past the durable point cannot be in the index after a rollback, but delete
        // them anyway so re-adding them can never duplicate one.
        let _ = w.writer.delete_query(Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(self.f.seq, through)),
            Bound::Unbounded,
        )));
    }

    /// Commits if the policy says so (`force`: if anything is pending).
    pub(crate) fn maybe_commit(&self, force: bool) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let due = w.pending >= self.cfg.commit_every_docs
            || (w.pending > 0 && w.last_commit.elapsed() >= self.cfg.commit_interval)
            || (force && w.pending > 0);
        if due {
            self.commit_locked(&mut w)?;
        }
        Ok(())
    }

    fn commit_locked(&self, w: &mut WriterState) -> Result<()> {
        if let Some(e) = &w.broken {
            return Err(Error::Index(format!("the index writer is not usable: {e}")));
        }
        let payload = serde_json::to_string(&Payload {
            version: INDEX_VERSION,
            indexed_through: w.added_through,
        })
        .expect("payload serialises");
        let committed = w.writer.prepare_commit().and_then(|mut pc| {
            pc.set_payload(&payload);
            pc.commit()
        });
        if let Err(e) = committed {
            self.rollback_locked(w);
            return Err(e.into());
        }
        w.pending = 0;
        w.last_commit = Instant::now();
        self.committed_through
            .store(w.added_through, Ordering::Release);
        self.reader.reload()?;
        Ok(())
    }

    /// Deletes documents with seq outside `keep_from..keep_until` and commits, setting the
    /// covered seq to `keep_until - 1` if it was beyond (the log lost its tail).
    pub(crate) fn retain(&self, keep_from: Seq, keep_until: Seq) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let term = |s: Seq| Term::from_field_u64(self.f.seq, s);
        if keep_from > 0 {
            w.writer.delete_query(Box::new(RangeQuery::new(
                Bound::Included(term(0)),
                Bound::Excluded(term(keep_from)),
            )))?;
        }
        w.writer.delete_query(Box::new(RangeQuery::new(
            Bound::Included(term(keep_until)),
            Bound::Unbounded,
        )))?;
        w.added_through = w.added_through.min(keep_until.saturating_sub(1));
        self.commit_locked(&mut w)
    }

    /// The index document of an event (built by the appender, indexed by the indexer thread).
    pub(crate) fn document(&self, seq: Seq, received_at: DateTime<Utc>, e: &Event) -> IndexDoc {
        IndexDoc::new(self.f, seq, received_at, e)
    }

    fn parse(&self, q: &str) -> Result<Box<dyn Query>> {
        let t = q.trim();
        if t.is_empty() || t == "*" {
            return Ok(Box::new(AllQuery));
        }
        let err = |pos, message| Error::Query {
            query: q.to_string(),
            pos,
            message,
        };
        // The grammar parser recurses: bound input size and nesting before it runs, so a
        // hostile query is an error and never a stack overflow.
        if q.len() > MAX_QUERY_LEN {
            return Err(err(
                Some(MAX_QUERY_LEN),
                format!("query longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        let mut depth = 0usize;
        for (pos, c) in q.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_QUERY_DEPTH {
                return Err(err(
                    Some(pos),
                    format!("parentheses nested deeper than {MAX_QUERY_DEPTH}"),
                ));
            }
        }
        let (_, errors) = tantivy::query_grammar::parse_query_lenient(q);
        if let Some(e) = errors.first() {
            return Err(err(Some(e.pos), e.message.clone()));
        }
        let ast = tantivy::query_grammar::parse_query(q)
            .map_err(|_| err(None, "syntax error".to_string()))?;
        self.parser
            .build_query_from_user_input_ast(complete_negations(ast))
            .map_err(|e| err(None, e.to_string()))
    }

    /// Runs a search; `fetch` turns a seq into the stored event (from the log).
    pub(crate) fn search(
        &self,
        req: &SearchRequest,
        fetch: impl Fn(&[Seq]) -> Result<Vec<StoredEvent>>,
    ) -> Result<SearchResponse> {
        req.validate()?;
        let parsed = self.parse(&req.query)?;
        let (lo, hi) = (req.from.map(micros), req.to.map(micros));
        let query: Box<dyn Query> = if lo.is_none() && hi.is_none() {
            parsed
        } else {
            let term = |t| Term::from_field_i64(self.f.ts, t);
            let range = RangeQuery::new(
                lo.map_or(Bound::Unbounded, |t| Bound::Included(term(t))),
                hi.map_or(Bound::Unbounded, |t| Bound::Excluded(term(t))),
            );
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, parsed),
                (Occur::Must, Box::new(range)),
            ]))
        };
        let width = req
            .histogram
            .map(|w| w.num_microseconds().unwrap_or(i64::MAX).max(1));
        if let (Some(w), Some(lo), Some(hi)) = (width, lo, hi) {
            let n = (hi - 1).div_euclid(w) - lo.div_euclid(w) + 1;
            if n > MAX_BUCKETS as i64 {
                return Err(Error::InvalidRequest(format!(
                    "histogram would have {n} buckets, the limit is {MAX_BUCKETS}"
                )));
            }
        }
        let order = match req.sort {
            SortOrder::Asc => Order::Asc,
            SortOrder::Desc => Order::Desc,
        };
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(req.limit.max(1))
            .and_offset(req.offset)
            .order_by_fast_field::<i64>("ts", order);
        let hist = Histogram { width };
        let (total, top, buckets) = searcher.search(&*query, &(Count, top, hist))?;
        let mut keyed: Vec<(i64, Seq)> = Vec::with_capacity(top.len());
        if req.limit > 0 {
            for (ts, addr) in top {
                keyed.push((ts, self.seq_of(&searcher, addr)?));
            }
        }
        // Ties on time are broken by seq (receipt order) within the page.
        match req.sort {
            SortOrder::Asc => keyed.sort_unstable(),
            SortOrder::Desc => keyed.sort_unstable_by(|a, b| b.cmp(a)),
        }
        let seqs: Vec<Seq> = keyed.iter().map(|&(_, s)| s).collect();
        let hits = fetch(&seqs)?;
        let histogram = match width {
            None => Vec::new(),
            Some(w) => dense(&buckets, w, lo, hi)?,
        };
        Ok(SearchResponse {
            total: total as u64,
            hits,
            histogram,
        })
    }

    fn seq_of(&self, searcher: &tantivy::Searcher, addr: DocAddress) -> Result<Seq> {
        let col = searcher
            .segment_reader(addr.segment_ord)
            .fast_fields()
            .u64("seq")?;
        col.first(addr.doc_id)
            .ok_or_else(|| Error::Index(format!("document {addr:?} has no seq")))
    }

    /// Number of indexed documents (committed), and their seqs — for consistency checks.
    pub(crate) fn committed_seqs(&self) -> Result<Vec<Seq>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for sr in searcher.segment_readers() {
            let col = sr.fast_fields().u64("seq")?;
            for doc in sr.doc_ids_alive() {
                out.extend(col.first(doc));
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// No merge takes in more than `max_docs` documents (so none produces a segment past it).
///
/// Memory of `mamori serve` must not grow with the volume stored (issue #15, findings 3 and
/// 12): a merge holds per-document maps of its inputs and reads every page of them through
/// mmap — resident pages of the process until the merged inputs are dropped — so what one
/// merge takes in is what the process holds at its peak. tantivy's log policy merges a whole
/// level of similar segments at once (8 × 600 k events makes one 4.8 M input even when
/// segments past 1 M are never merged again); [`CappedMergePolicy`] splits each of its
/// candidates into runs of at most `max_docs` documents. The price is more segments per
/// search: about one per `max_docs / 2` events at worst.
fn set_merge_policy(w: &IndexWriter<IndexDoc>, max_docs: usize) {
    w.set_merge_policy(Box::new(CappedMergePolicy::new(max_docs)));
}

#[derive(Debug)]
struct CappedMergePolicy {
    log: LogMergePolicy,
    max_docs: u64,
}

impl CappedMergePolicy {
    fn new(max_docs: usize) -> CappedMergePolicy {
        let mut log = LogMergePolicy::default();
        log.set_max_docs_before_merge(max_docs);
        CappedMergePolicy {
            log,
            max_docs: max_docs as u64,
        }
    }
}

impl MergePolicy for CappedMergePolicy {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let docs: HashMap<SegmentId, u64> = segments
            .iter()
            .map(|s| (s.id(), u64::from(s.max_doc())))
            .collect();
        let mut out = Vec::new();
        for MergeCandidate(ids) in self.log.compute_merge_candidates(segments) {
            // Largest first, packed greedily: a run closes when the next segment would take
            // it past the cap; a run of one segment is not a merge.
            let mut sized: Vec<(u64, SegmentId)> = ids
                .into_iter()
                .map(|id| (docs.get(&id).copied().unwrap_or(0), id))
                .collect();
            sized.sort_by_key(|&(n, _)| std::cmp::Reverse(n));
            let mut run: Vec<SegmentId> = Vec::new();
            let mut total = 0u64;
            for (n, id) in sized {
                if !run.is_empty() && total + n > self.max_docs {
                    close_run(&mut run, &mut out);
                    total = 0;
                }
                run.push(id);
                total += n;
            }
            close_run(&mut run, &mut out);
        }
        out
    }
}

/// Hands `run` on as a merge if it holds two segments or more, and empties it.
fn close_run(run: &mut Vec<SegmentId>, out: &mut Vec<MergeCandidate>) {
    let segments = std::mem::take(run);
    if segments.len() > 1 {
        out.push(MergeCandidate(segments));
    }
}

/// Lucene semantics for negation: a group whose clauses are all negative (`NOT x`, `a AND NOT b`
/// parses as `+a +(-b)`) means "everything except", but tantivy matches nothing for a purely
/// negative boolean query. Adding a match-all clause to such groups gives the Lucene meaning.
fn complete_negations(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(clauses) => {
            let mut clauses: Vec<_> = clauses
                .into_iter()
                .map(|(o, a)| (o, complete_negations(a)))
                .collect();
            if !clauses.is_empty()
                && clauses
                    .iter()
                    .all(|(o, _)| *o == Some(GrammarOccur::MustNot))
            {
                clauses.push((
                    Some(GrammarOccur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(inner, b) => {
            UserInputAst::Boost(Box::new(complete_negations(*inner)), b)
        }
        leaf => leaf,
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Dense buckets between the bounds (or the first and last non-empty bucket).
fn dense(
    counts: &BTreeMap<i64, u64>,
    width: i64,
    lo: Option<i64>,
    hi: Option<i64>,
) -> Result<Vec<Bucket>> {
    let first = lo
        .map(|t| t.div_euclid(width))
        .or(counts.keys().next().copied());
    let last = hi
        .map(|t| (t - 1).div_euclid(width))
        .or(counts.keys().next_back().copied());
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Vec::new());
    };
    if last < first {
        return Ok(Vec::new());
    }
    if last - first + 1 > MAX_BUCKETS as i64 {
        return Err(Error::InvalidRequest(format!(
            "histogram would have {} buckets, the limit is {MAX_BUCKETS}; use a wider bucket or a time range",
            last - first + 1
        )));
    }
    Ok((first..=last)
        .map(|k| Bucket {
            start: from_micros(k.saturating_mul(width)),
            count: counts.get(&k).copied().unwrap_or(0),
        })
        .collect())
}

/// Counts matching documents per `ts` bucket of `width` µs (nothing when `width` is `None`).
struct Histogram {
    width: Option<i64>,
}

struct SegmentHistogram {
    width: i64,
    col: Option<Column<i64>>,
    /// Counts per bucket from `base` when the segment's time span has few buckets (the
    /// usual case: an array add per document instead of a map lookup).
    base: i64,
    dense: Vec<u64>,
    counts: BTreeMap<i64, u64>,
}

/// Buckets a segment may count in an array.
const DENSE_BUCKETS: i64 = 1 << 16;

impl Collector for Histogram {
    type Fruit = BTreeMap<i64, u64>;
    type Child = SegmentHistogram;

    fn for_segment(&self, _: u32, sr: &SegmentReader) -> tantivy::Result<SegmentHistogram> {
        let width = self.width.unwrap_or(1);
        let col = match self.width {
            Some(_) => Some(sr.fast_fields().i64("ts")?),
            None => None,
        };
        let (base, dense) = match &col {
            Some(c) if c.num_docs() > 0 => {
                let (lo, hi) = (
                    c.min_value().div_euclid(width),
                    c.max_value().div_euclid(width),
                );
                match hi.checked_sub(lo) {
                    Some(n) if n < DENSE_BUCKETS => (lo, vec![0; n as usize + 1]),
                    _ => (0, Vec::new()),
                }
            }
            _ => (0, Vec::new()),
        };
        Ok(SegmentHistogram {
            width,
            col,
            base,
            dense,
            counts: BTreeMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<BTreeMap<i64, u64>>) -> tantivy::Result<Self::Fruit> {
        let mut all = BTreeMap::new();
        for p in parts {
            for (k, v) in p {
                *all.entry(k).or_insert(0) += v;
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for SegmentHistogram {
    type Fruit = BTreeMap<i64, u64>;

    fn collect(&mut self, doc: u32, _: Score) {
        if let Some(col) = &self.col {
            if let Some(ts) = col.first(doc) {
                let k = ts.div_euclid(self.width);
                match self.dense.get_mut(k.wrapping_sub(self.base) as usize) {
                    Some(n) => *n += 1,
                    None => *self.counts.entry(k).or_insert(0) += 1,
                }
            }
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        for (i, n) in self.dense.iter().enumerate() {
            if *n > 0 {
                *self.counts.entry(self.base + i as i64).or_insert(0) += n;
            }
        }
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metas(sizes: &[u32]) -> Vec<SegmentMeta> {
        let index = Index::create_in_ram(schema().0);
        sizes
            .iter()
            .map(|&n| index.new_segment_meta(SegmentId::generate_random(), n))
            .collect()
    }

    fn docs_of(c: &MergeCandidate, segs: &[SegmentMeta]) -> Vec<u32> {
        c.0.iter()
            .map(|id| {
                segs.iter()
                    .find(|s| s.id() == *id)
                    .map_or(0, |s| s.max_doc())
            })
            .collect()
    }

    /// tantivy's log policy merges a whole level at once; capped, no merge takes in more than
    /// the cap, none is a single segment, and nothing outside a log candidate is merged.
    #[test]
    fn capped_merges_never_take_in_more_than_the_cap() {
        let policy = CappedMergePolicy::new(1_000_000);
        // Eight segments of 600 k: one level, one 4.8 M merge for the log policy.
        let segs = metas(&[600_000; 8]);
        assert_eq!(policy.log.compute_merge_candidates(&segs).len(), 1);
        assert!(
            policy.compute_merge_candidates(&segs).is_empty(),
            "two 600 k segments already pass 1 M"
        );
        // Twenty segments of 90–110 k: the log policy's one candidate becomes runs of ≤ 1 M.
        let sizes: Vec<u32> = (0..20).map(|i| 90_000 + i * 1_000).collect();
        let segs = metas(&sizes);
        let log = policy.log.compute_merge_candidates(&segs);
        assert_eq!(log.len(), 1);
        let capped = policy.compute_merge_candidates(&segs);
        assert!(capped.len() >= 2, "{} runs", capped.len());
        let mut merged = 0;
        for c in &capped {
            let d = docs_of(c, &segs);
            assert!(d.len() >= 2, "a run of one segment is not a merge: {d:?}");
            assert!(
                d.iter().map(|&x| u64::from(x)).sum::<u64>() <= 1_000_000,
                "{d:?}"
            );
            assert!(c.0.iter().all(|id| log[0].0.contains(id)));
            merged += d.len();
        }
        // Greedy packing leaves at most one segment of the level out.
        assert!(
            merged >= sizes.len() - 1,
            "{merged} of {} merged",
            sizes.len()
        );
        // Small segments (one level below the minimum layer size) still merge as tantivy would.
        let segs = metas(&[5_000; 8]);
        let capped = policy.compute_merge_candidates(&segs);
        assert_eq!(capped.len(), 1);
        assert_eq!(capped[0].0.len(), 8);
        // Segments past the cap are never merged again.
        assert!(policy
            .compute_merge_candidates(&metas(&[1_500_000; 10]))
            .is_empty());
    }
}

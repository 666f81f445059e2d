//! Sigma correlation rules over the match stream, in event time — robust to hostile clocks.
//!
//! Design decisions:
//!
//! * **State** is keyed by (correlation, group-by values) and holds the matching events' times
//!   (and values for value_* types), sorted, so out-of-order events inside a window are placed
//!   correctly. An event that lacks a group-by value (after aliases and, for chained
//!   correlations, the inherited group) belongs to no group and is counted as
//!   `missing_group_by`: "the values of the group-by fields must all have the same value" (Sigma
//!   correlation specification), and a missing value is not a value — otherwise every event
//!   without, say, `source.ip` would pile into one empty-key group.
//! * **There is no global event-time watermark.** One line dated 2099 must not make every
//!   later event "too late". Two clocks are used instead:
//!   - the *processing clock*: the newest receipt time ([`Arrival::received_ms`], `serve`) or,
//!     offline where input is sorted (`hunt`), the newest event time. Idle groups expire on it:
//!     a group that received nothing for `timespan + lateness` is closed;
//!   - each group's *own event time* (the newest event it holds). Non-monotone windows close
//!     when their group's own time has passed their end by the lateness.
//!
//!   An event dated more than [`Limits::future_tolerance_ms`] after its receipt is
//!   *future-dated*: it is placed at its receipt time (clamped — a sender's clock is evidence,
//!   not a clock to follow), counted, and its source reported once ([`Correlator::take_skew_reports`])
//!   so the operator hears "clock skew / future-dated events from X" once, not per line. So a
//!   source's clock affects only the groups its own events belong to, and a backfilled file or
//!   a forwarder catching up after an outage still correlates: every entry is kept for at least
//!   `timespan + lateness` of *processing* time after its arrival, whatever its event time.
//! * **Too late** is only what cannot be judged correctly any more: an event for a
//!   non-monotone window (`lt`, averages, percentiles…) that its group already closed and judged
//!   (`too_late_window_closed`). Monotone conditions (`gt`/`gte` on counts and sums, temporal)
//!   never drop a late event: it can only add to a count.
//! * **Episodes.** Monotone conditions fire as soon as a sliding window of `timespan`
//!   satisfies them (Sigma semantics, unchanged); non-monotone ones when a window closes. The
//!   firing opens an *episode* of its group ([`Phase::Opened`]): every later event of the group
//!   dated within `timespan` of the episode's last event (or of its first, for late ones) extends
//!   the episode instead of counting towards a new firing; for non-monotone conditions a
//!   satisfied window that starts within `timespan` of the episode's last event extends it. The
//!   episode ends when its group receives an event more than `timespan` after the episode's last
//!   event, when the group expires idle, is evicted, or at [`Correlator::flush`]
//!   ([`Phase::Closed`], with the final first/last time, count and evidence). One attack gives
//!   one episode, however long it lasts and however often a sliding window would re-fire.
//! * **Evidence.** Every entry carries the caller's reference of its event (a store seq in
//!   `serve`, an index in `hunt`) and its host; an alert names the first and last contributing
//!   events, their count, the distinct hosts, and up to [`Limits::max_evidence`] references
//!   (chained correlations pass their inputs' evidence up).
//! * **Bounded and cheap under attack.** At most `max_groups` groups per correlation; groups are
//!   kept in least-recently-touched order (a `BTreeMap` from a touch counter), so evicting the
//!   oldest and expiring idle groups cost O(log n) each, never a scan of all groups. What is
//!   evicted is counted. State is saved as a full snapshot ([`Correlator::save`]) or as the
//!   groups changed since the last save ([`Correlator::save_changes`]); [`Correlator::restore`]
//!   applies either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mamori_event::{Event, Level, Value};
use mamori_sigma::{
    CorrelationCondition, CorrelationKind, CountOp, FieldMap, Meta, RuleExpr, RulePack,
};
use serde::{Deserialize, Serialize};

use crate::{Match, RuleSet};

/// Limits on correlation state.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most groups per correlation; the least recently touched is evicted first.
    pub max_groups: usize,
    pub max_entries: usize,
    /// How late (ms) an event may arrive and still be placed in its window.
    pub lateness_ms: i64,
    /// How far (ms) an event may be dated after its receipt before it is future-dated.
    pub future_tolerance_ms: i64,
    /// Most distinct future-dated sources reported; further ones are only counted.
    pub max_skew_sources: usize,
    /// Most event references kept per alert (the first and last are always named).
    pub max_evidence: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_groups: 25_000,
            max_entries: 10_000,
            lateness_ms: 60_000,
            future_tolerance_ms: 300_000,
            max_skew_sources: 1_000,
            max_evidence: 100,
        }
    }
}

/// Most distinct hosts named per alert.
pub const MAX_HOSTS: usize = 16;

/// Counters for operators: what the correlator did and what it had to drop.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    /// (event, correlation input) pairs fed.
    pub observed: u64,
    /// Episodes opened (alerts raised, including quiet inner correlations).
    pub fired: u64,
    pub no_timestamp: u64,
    /// Events dropped as too late, all reasons (today only `too_late_window_closed`).
    pub too_late: u64,
    /// Events for a non-monotone window that its group had already closed and judged.
    pub too_late_window_closed: u64,
    /// Events without a value for some group-by field (not grouped, Sigma semantics).
    pub missing_group_by: u64,
    /// Events dated beyond the tolerance after their receipt (placed at their receipt time).
    pub future_dated: u64,
    pub evicted_groups: u64,
    pub evicted_entries: u64,
    /// Episodes of state pressure: a correlation at its group cap started evicting.
    pub pressure_episodes: u64,
}

/// "State under pressure": a correlation reached [`Limits::max_groups`] and evicts its least
/// recently seen groups, so a slow attack hidden in the flood may be missed. Reported once per
/// episode ([`Correlator::take_pressure_reports`]); the episode ends once no correlation has
/// evicted for the longest `timespan + lateness` of processing time.
#[derive(Debug, Clone)]
pub struct PressureReport {
    /// The correlation that evicted first.
    pub correlation: Arc<CorrelationInfo>,
    pub max_groups: usize,
    /// Processing time of the first eviction (ms).
    pub at_ms: i64,
    /// Groups evicted before this episode (all time).
    pub evicted_before: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pressure {
    last_evict_ms: i64,
}

/// Where an event came from and when it arrived, as the caller knows it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The unit clock skew is reported per: a file path, `transport://peer/host`, an upload.
    pub source: &'a str,
    /// Receipt time (ms since the epoch), `None` offline where event time is the only clock.
    pub received_ms: Option<i64>,
    /// The caller's reference of the event (a store seq, an index), cited as evidence.
    pub reference: u64,
}

/// One contributing event: its (correlation) time and the caller's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvRef {
    pub ms: i64,
    pub reference: u64,
}

/// The events behind an alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Contributing base events (through chained correlations).
    pub count: u64,
    /// The earliest and the latest contributing event.
    pub first: Option<EvRef>,
    pub last: Option<EvRef>,
    /// Contributing events in time order, at most [`Limits::max_evidence`].
    pub refs: Vec<EvRef>,
    /// Distinct hosts of the contributing events, at most [`MAX_HOSTS`].
    pub hosts: Vec<String>,
}

impl Evidence {
    fn add(&mut self, r: EvRef, host: Option<&str>, max: usize) {
        self.count += 1;
        if self.first.is_none_or(|f| r.ms < f.ms) {
            self.first = Some(r);
        }
        if self.last.is_none_or(|l| r.ms >= l.ms) {
            self.last = Some(r);
        }
        if self.refs.len() < max {
            self.refs.push(r);
        }
        if let Some(h) = host {
            self.add_host(h);
        }
    }

    fn add_host(&mut self, h: &str) {
        if self.hosts.len() < MAX_HOSTS && !self.hosts.iter().any(|x| x == h) {
            self.hosts.push(h.to_owned());
        }
    }

    fn merge(&mut self, o: &Evidence, max: usize) {
        self.count += o.count;
        if let Some(f) = o.first {
            if self.first.is_none_or(|x| f.ms < x.ms) {
                self.first = Some(f);
            }
        }
        if let Some(l) = o.last {
            if self.last.is_none_or(|x| l.ms >= x.ms) {
                self.last = Some(l);
            }
        }
        let room = max.saturating_sub(self.refs.len());
        self.refs.extend(o.refs.iter().take(room));
        for h in &o.hosts {
            self.add_host(h);
        }
    }

    fn sort(&mut self) {
        self.refs.sort_by_key(|r| (r.ms, r.reference));
    }
}

/// Whether an alert opens an episode (raise it now) or closes one (final figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Opened,
    Closed,
}

/// A correlation that fired (an episode opened) or whose episode ended.
#[derive(Debug, Clone)]
pub struct CorrelationAlert {
    pub correlation: Arc<CorrelationInfo>,
    /// group-by field → value
    pub group: Vec<(String, String)>,
    pub phase: Phase,
    /// The episode's identity: its first event time when it opened (stable across phases).
    pub episode_ms: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The measured quantity when it fired: event count, distinct values, sum, average,
    /// percentile, or the number of distinct rules seen (temporal).
    pub value: f64,
    /// Contributing events (= `evidence.count`).
    pub events: usize,
    pub evidence: Evidence,
}

/// A source that sent events dated in the future (reported once per source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkewReport {
    pub source: String,
    /// The first future-dated event's time and its receipt time (ms).
    pub event_ms: i64,
    pub received_ms: i64,
    /// Host named by that event, if any.
    pub host: Option<String>,
    pub reference: u64,
}

#[derive(Debug)]
pub struct CorrelationInfo {
    pub meta: Meta,
    pub level: Level,
    pub kind: CorrelationKind,
    /// Whether its alerts are reported (false when only a parent correlation uses it).
    pub emit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Rule(u32),
    Corr(usize),
}

#[derive(Debug)]
struct Def {
    info: Arc<CorrelationInfo>,
    span_ms: i64,
    group_by: Vec<String>,
    /// Per input: the references in `rules`, and the field names to read for each group-by
    /// entry (aliases applied).
    inputs: Vec<(Input, Vec<Vec<String>>, String)>,
    ops: Vec<(CountOp, f64)>,
    /// Field for value_* types, with names to try.
    field: Option<Vec<String>>,
    percentile: f64,
    rules_expr: Option<RuleExpr>,
    monotone: bool,
    parents: Vec<usize>,
}

/// Group-by values of one group in one allocation (a flood of new addresses makes a group per
/// event, so a group's fixed cost is what bounds memory): one value as itself, several each
/// prefixed by its byte length and `:` so no two tuples encode alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(Arc<str>);

impl Key {
    fn encode<S: AsRef<str>>(values: &[S]) -> Key {
        if let [one] = values {
            return Key(Arc::from(one.as_ref()));
        }
        let mut s = String::new();
        for v in values {
            let v = v.as_ref();
            s.push_str(&v.len().to_string());
            s.push(':');
            s.push_str(v);
        }
        Key(Arc::from(s))
    }

    /// The values of a key of `n` group-by fields.
    fn values(&self, n: usize) -> Vec<&str> {
        if n == 1 {
            return vec![&*self.0];
        }
        let mut out = Vec::with_capacity(n);
        let mut rest = &*self.0;
        while let Some((len, tail)) = rest.split_once(':') {
            let Ok(len) = len.parse::<usize>() else { break };
            let Some(v) = tail.get(..len) else { break };
            out.push(v);
            rest = &tail[len..];
        }
        out
    }
}

/// What an entry cites: one event, or the evidence of a chained correlation's firing.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cite {
    #[serde(rename = "o")]
    One(u64, Option<Arc<str>>),
    #[serde(rename = "c")]
    Chain(Arc<Evidence>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
// Short names: the saved state is written every few seconds, under attack too.
struct Entry {
    /// Correlation time (event time, clamped to receipt when future-dated).
    #[serde(rename = "t")]
    ts: i64,
    #[serde(rename = "i", default)]
    input: u16,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    value: Option<Box<str>>,
    /// Processing time of its arrival: kept at least `timespan + lateness` of it, so a
    /// backfill finds its own partners whatever the group's newest time.
    #[serde(rename = "a")]
    at: i64,
    #[serde(rename = "c")]
    cite: Cite,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    opened_ms: i64,
    first_ms: i64,
    last_ms: i64,
    value: f64,
    evidence: Evidence,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    /// The first entry inline: under a flood of new addresses most groups never get a second.
    #[serde(rename = "e", with = "inline_entries")]
    entries: smallvec::SmallVec<[Entry; 1]>,
    /// Entries per input index (derived from `entries`, rebuilt on restore): lets a temporal
    /// correlation that needs every input skip a group that lacks one in O(1).
    #[serde(skip)]
    per_input: smallvec::SmallVec<[u32; 4]>,
    /// The group's own event time: the newest event it received.
    #[serde(rename = "n")]
    newest: i64,
    /// Non-monotone windows ending at or before this are closed and judged.
    #[serde(rename = "x", default = "never", skip_serializing_if = "is_never")]
    closed_through: i64,
    /// Processing time of the last event.
    #[serde(rename = "u")]
    touched: i64,
    /// Position in the least-recently-touched order.
    #[serde(skip)]
    order: u64,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    episode: Option<Box<Episode>>,
}

/// Entries saved as a plain list (the format of state version 2).
mod inline_entries {
    use super::Entry;
    use serde::{Deserialize, Deserializer, Serializer};
    use smallvec::SmallVec;

    pub(super) fn serialize<S: Serializer>(
        v: &SmallVec<[Entry; 1]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<SmallVec<[Entry; 1]>, D::Error> {
        Vec::<Entry>::deserialize(d).map(SmallVec::from_vec)
    }
}

fn never() -> i64 {
    i64::MIN
}

fn is_never(t: &i64) -> bool {
    *t == i64::MIN
}

impl Group {
    fn new() -> Group {
        Group {
            entries: smallvec::SmallVec::new(),
            per_input: smallvec::SmallVec::new(),
            newest: i64::MIN,
            closed_through: i64::MIN,
            touched: i64::MIN,
            order: 0,
            episode: None,
        }
    }

    fn count(&mut self, input: u16, delta: i32) {
        let i = input as usize;
        if self.per_input.len() <= i {
            self.per_input.resize(i + 1, 0);
        }
        self.per_input[i] = self.per_input[i].saturating_add_signed(delta);
    }

    fn recount(&mut self) {
        self.per_input.clear();
        for k in 0..self.entries.len() {
            let input = self.entries[k].input;
            self.count(input, 1);
        }
    }

    fn has_input(&self, input: usize) -> bool {
        self.per_input.get(input).is_some_and(|&n| n > 0)
    }

    /// Removes `entries[range]`, keeping the per-input counts right.
    fn drain(&mut self, range: std::ops::Range<usize>) -> Vec<Entry> {
        let gone: Vec<Entry> = self.entries.drain(range).collect();
        for e in &gone {
            self.count(e.input, -1);
        }
        gone
    }
}

/// The groups of one correlation, with their least-recently-touched order.
#[derive(Debug, Default)]
struct DefState {
    groups: HashMap<Key, Group>,
    order: BTreeMap<u64, Key>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SkewSeen {
    event_ms: i64,
    received_ms: i64,
}

/// Correlation state machine. Feed it every event with its matches, in roughly time order.
#[derive(Debug)]
pub struct Correlator {
    defs: Vec<Def>,
    rule_to_defs: HashMap<u32, Vec<(usize, usize)>>,
    state: Vec<DefState>,
    limits: Limits,
    /// Processing clock (see the module docs).
    clock: i64,
    touch: u64,
    since_sweep: u32,
    /// Sources already reported as future-dated (once each).
    skewed: HashMap<Box<str>, SkewSeen>,
    skew_reports: Vec<SkewReport>,
    /// Groups changed since the last save (def, key).
    dirty: HashSet<(u32, Key)>,
    tracking: bool,
    hosts: HashSet<Arc<str>>,
    pressure: Option<Pressure>,
    pressure_reports: Vec<PressureReport>,
    pub stats: Stats,
}

/// Saved state: a full snapshot, or the groups changed since the previous save (`None` =
/// removed).
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    full: bool,
    clock: i64,
    stats: Stats,
    skewed: Vec<(Box<str>, SkewSeen)>,
    /// Per correlation (by id): its groups' keys and groups.
    groups: Vec<(String, Vec<SavedGroup>)>,
}

type SavedGroup = (Vec<Box<str>>, Option<Group>);

/// A group by reference, for saving.
type GroupRef<'a> = (Vec<&'a str>, Option<&'a Group>);

/// [`Saved`] by reference: a snapshot is serialised without copying the state first.
#[derive(Serialize)]
struct SavedOut<'a> {
    version: u32,
    full: bool,
    clock: i64,
    stats: &'a Stats,
    skewed: Vec<(&'a str, &'a SkewSeen)>,
    groups: Vec<(&'a str, Vec<GroupRef<'a>>)>,
}

const STATE_VERSION: u32 = 2;

fn fields_for(map: &FieldMap, f: &str) -> Vec<String> {
    map.names_for(f)
}

impl Correlator {
    /// Builds the correlations of `pack` against the compiled `rules` (same pack).
    pub fn new(pack: &RulePack, rules: &RuleSet, fields: &FieldMap, limits: Limits) -> Correlator {
        let find_rule = |r: &str| -> Option<u32> {
            (0..rules.len() as u32).find(|&i| {
                let m = &rules.rule(i).meta;
                m.id.as_deref() == Some(r) || m.name.as_deref() == Some(r)
            })
        };
        let find_corr = |r: &str| {
            pack.correlations
                .iter()
                .position(|c| c.meta.id.as_deref() == Some(r) || c.meta.name.as_deref() == Some(r))
        };
        // A correlation used by a parent without `generate` does not alert on its own.
        let used_quietly = |i: usize| {
            let me = &pack.correlations[i].meta;
            pack.correlations.iter().any(|p| {
                !p.generate
                    && p.rules
                        .iter()
                        .any(|r| me.id.as_deref() == Some(r) || me.name.as_deref() == Some(r))
            })
        };
        let mut defs = Vec::new();
        for (ci, c) in pack.correlations.iter().enumerate() {
            let mut inputs = Vec::new();
            for r in &c.rules {
                let input = match find_rule(r) {
                    Some(i) => Input::Rule(i),
                    None => match find_corr(r) {
                        Some(j) => Input::Corr(j),
                        None => continue,
                    },
                };
                let per_group = c
                    .group_by
                    .iter()
                    .map(|g| {
                        let aliased = c.aliases.get(g).and_then(|per| per.get(r));
                        fields_for(fields, aliased.map(String::as_str).unwrap_or(g))
                    })
                    .collect();
                inputs.push((input, per_group, r.clone()));
            }
            let (ops, field, percentile, rules_expr) = match &c.condition {
                Some(CorrelationCondition::Threshold {
                    ops,
                    field,
                    percentile,
                }) => (
                    ops.clone(),
                    field.as_deref().map(|f| fields_for(fields, f)),
                    percentile.unwrap_or(50.0),
                    None,
                ),
                Some(CorrelationCondition::Rules(e)) => (Vec::new(), None, 50.0, Some(e.clone())),
                None => (Vec::new(), None, 50.0, None),
            };
            let monotone = matches!(
                c.kind,
                CorrelationKind::EventCount
                    | CorrelationKind::ValueCount
                    | CorrelationKind::ValueSum
                    | CorrelationKind::Temporal
                    | CorrelationKind::TemporalOrdered
            ) && ops
                .iter()
                .all(|(op, _)| matches!(op, CountOp::Gt | CountOp::Gte));
            defs.push(Def {
                info: Arc::new(CorrelationInfo {
                    meta: c.meta.clone(),
                    level: c.meta.level.unwrap_or(Level::Medium),
                    kind: c.kind,
                    emit: !used_quietly(ci),
                }),
                span_ms: (c.timespan_secs as i64).saturating_mul(1000),
                group_by: c.group_by.clone(),
                inputs,
                ops,
                field,
                percentile,
                rules_expr,
                monotone,
                parents: Vec::new(),
            });
        }
        for i in 0..defs.len() {
            let parents: Vec<usize> = (0..defs.len())
                .filter(|&p| {
                    defs[p]
                        .inputs
                        .iter()
                        .any(|(inp, _, _)| *inp == Input::Corr(i))
                })
                .collect();
            defs[i].parents = parents;
        }
        let mut rule_to_defs: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
        for (di, d) in defs.iter().enumerate() {
            for (ii, (inp, _, _)) in d.inputs.iter().enumerate() {
                if let Input::Rule(r) = inp {
                    rule_to_defs.entry(*r).or_default().push((di, ii));
                }
            }
        }
        let n = defs.len();
        Correlator {
            defs,
            rule_to_defs,
            state: (0..n).map(|_| DefState::default()).collect(),
            limits,
            clock: i64::MIN,
            touch: 0,
            since_sweep: 0,
            skewed: HashMap::new(),
            skew_reports: Vec::new(),
            dirty: HashSet::new(),
            tracking: false,
            hosts: HashSet::new(),
            pressure: None,
            pressure_reports: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Every event field a correlation reads (group-by names incl. aliases, value fields), so a
    /// caller that buffers events for [`Correlator::observe`] can keep only these.
    pub fn needed_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .defs
            .iter()
            .flat_map(|d| {
                d.inputs
                    .iter()
                    .flat_map(|(_, per_group, _)| per_group.iter().flatten().cloned())
                    .chain(d.field.iter().flatten().cloned())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether matches of this rule feed any correlation.
    pub fn uses_rule(&self, rule: u32) -> bool {
        self.rule_to_defs.contains_key(&rule)
    }

    /// Where the matches of `ev` go: for each correlation they feed, its index in the pack's
    /// `correlations` and the event's group-by values for it, read exactly as
    /// [`Correlator::observe`] reads them (field names, aliases, field mapping). A correlation
    /// whose group-by value is missing is left out (it forms no group). Scale-out partitions
    /// correlation state by these values so one owner sees every event of a group.
    pub fn route(&self, ev: &Event, matches: &[Match]) -> Vec<(usize, Vec<String>)> {
        let mut out: Vec<(usize, Vec<String>)> = Vec::new();
        for m in matches {
            let Some(targets) = self.rule_to_defs.get(&m.rule) else {
                continue;
            };
            for &(di, ii) in targets {
                if out.iter().any(|(d, _)| *d == di) {
                    continue;
                }
                let d = &self.defs[di];
                let values: Option<Vec<String>> = d.inputs[ii]
                    .1
                    .iter()
                    .map(|names| {
                        names.iter().find_map(|n| {
                            ev.get(n)
                                .filter(|v| !matches!(v, Value::Null))
                                .map(|v| v.to_text().into_owned())
                        })
                    })
                    .collect();
                if let Some(v) = values {
                    out.push((di, v));
                }
            }
        }
        out
    }

    /// Number of live groups (for metrics).
    pub fn group_count(&self) -> usize {
        self.state.iter().map(|s| s.groups.len()).sum()
    }

    /// Number of open episodes (for metrics).
    pub fn open_episodes(&self) -> usize {
        self.state
            .iter()
            .flat_map(|s| s.groups.values())
            .filter(|g| g.episode.is_some())
            .count()
    }

    /// Whether a state-pressure episode is going on (some correlation evicts at its cap).
    pub fn under_pressure(&self) -> bool {
        self.pressure.is_some()
    }

    /// The group cap per correlation.
    pub fn max_groups(&self) -> usize {
        self.limits.max_groups
    }

    /// State-pressure episodes that started since the last call (one report each).
    pub fn take_pressure_reports(&mut self) -> Vec<PressureReport> {
        std::mem::take(&mut self.pressure_reports)
    }

    /// Sources newly found sending future-dated events since the last call (once per source).
    pub fn take_skew_reports(&mut self) -> Vec<SkewReport> {
        std::mem::take(&mut self.skew_reports)
    }

    /// Feeds one event and the rules it matched; appends alerts (episodes opened or closed)
    /// to `out`.
    pub fn observe(
        &mut self,
        ev: &Event,
        matches: &[Match],
        arrival: &Arrival<'_>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        if self.defs.is_empty() || !matches.iter().any(|m| self.uses_rule(m.rule)) {
            return;
        }
        let Some(mut ts) = ev.timestamp.map(|t| t.timestamp_millis()) else {
            self.stats.no_timestamp += 1;
            return;
        };
        let host = ev.host().map(|h| self.intern(&h));
        match arrival.received_ms {
            Some(rcv) => {
                self.clock = self.clock.max(rcv);
                if ts > rcv.saturating_add(self.limits.future_tolerance_ms) {
                    self.future_dated(arrival, ts, rcv, host.as_deref());
                    ts = rcv;
                }
            }
            None => self.clock = self.clock.max(ts),
        }
        let cite = Cite::One(arrival.reference, host);
        for m in matches {
            let Some(targets) = self.rule_to_defs.get(&m.rule).cloned() else {
                continue;
            };
            for (di, ii) in targets {
                self.stats.observed += 1;
                self.insert(di, ii, ts, ev, None, cite.clone(), out);
            }
        }
        self.since_sweep += 1;
        if self.since_sweep >= 64 {
            self.since_sweep = 0;
            self.expire_idle(out);
        }
    }

    /// Advances the processing clock to `now_ms` (receipt time of nothing: the server's idle
    /// tick) and closes what expired, so episodes end even when the stream goes quiet.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<CorrelationAlert>) {
        self.clock = self.clock.max(now_ms);
        self.expire_idle(out);
    }

    /// Closes every open window and episode (end of input) and reports what they amount to.
    pub fn flush(&mut self, out: &mut Vec<CorrelationAlert>) {
        // Closing a window may open an episode of a parent correlation flushed already:
        // repeat until nothing is left (each round closes at least one level of chaining).
        for _ in 0..=self.defs.len() {
            for di in 0..self.defs.len() {
                while let Some((_, key)) = self.state[di].order.pop_first() {
                    if let Some(g) = self.state[di].groups.remove(&key) {
                        self.changed(di, &key);
                        self.finish_group(di, &key, g, out);
                    }
                }
            }
            if self.group_count() == 0 {
                break;
            }
        }
    }

    /// Records changed groups for [`Correlator::save_changes`] (off by default: an offline
    /// hunt never saves, and the set would grow with every group seen).
    pub fn track_changes(&mut self, on: bool) {
        self.tracking = on;
        if !on {
            self.dirty.clear();
        }
    }

    fn changed(&mut self, di: usize, key: &Key) {
        if self.tracking {
            self.dirty.insert((di as u32, key.clone()));
        }
    }

    fn intern(&mut self, h: &str) -> Arc<str> {
        if let Some(a) = self.hosts.get(h) {
            return Arc::clone(a);
        }
        if self.hosts.len() >= 4096 {
            self.hosts.clear(); // attacker-chosen names: bounded, entries keep their own Arcs
        }
        let a: Arc<str> = Arc::from(h);
        self.hosts.insert(Arc::clone(&a));
        a
    }

    fn future_dated(&mut self, a: &Arrival<'_>, ts: i64, rcv: i64, host: Option<&str>) {
        self.stats.future_dated += 1;
        if self.skewed.contains_key(a.source) || self.skewed.len() >= self.limits.max_skew_sources {
            return;
        }
        self.skewed.insert(
            a.source.into(),
            SkewSeen {
                event_ms: ts,
                received_ms: rcv,
            },
        );
        self.skew_reports.push(SkewReport {
            source: a.source.to_owned(),
            event_ms: ts,
            received_ms: rcv,
            host: host.map(str::to_owned),
            reference: a.reference,
        });
    }

    /// Group-by values of `ev` for input `ii` of `di`; `None` if one is missing.
    fn group_key(
        &self,
        di: usize,
        ii: usize,
        ev: &Event,
        inherited: Option<&[(String, String)]>,
    ) -> Option<Key> {
        let d = &self.defs[di];
        d.group_by
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let names = &d.inputs[ii].1[gi];
                names
                    .iter()
                    .find_map(|n| {
                        ev.get(n)
                            .filter(|v| !matches!(v, Value::Null))
                            .map(|v| v.to_text().into_owned().into_boxed_str())
                    })
                    .or_else(|| {
                        inherited.and_then(|h| {
                            h.iter()
                                .find(|(k, _)| k == g)
                                .map(|(_, v)| v.clone().into_boxed_str())
                        })
                    })
            })
            .collect::<Option<Vec<Box<str>>>>()
            .map(|v| Key::encode(&v))
    }

    /// The group of `key`, created (evicting the least recently touched one at the limit)
    /// if new, touched and marked changed.
    fn touch_group(&mut self, di: usize, key: &Key, out: &mut Vec<CorrelationAlert>) {
        if !self.state[di].groups.contains_key(key)
            && self.state[di].groups.len() >= self.limits.max_groups
        {
            if let Some((_, victim)) = self.state[di].order.pop_first() {
                if let Some(g) = self.state[di].groups.remove(&victim) {
                    self.evicting(di);
                    self.stats.evicted_groups += 1;
                    self.changed(di, &victim);
                    self.finish_group(di, &victim, g, out);
                }
            }
        }
        self.touch += 1;
        let (touch, clock) = (self.touch, self.clock);
        let st = &mut self.state[di];
        let g = st.groups.entry(key.clone()).or_insert_with(Group::new);
        if g.order != 0 {
            st.order.remove(&g.order);
        }
        g.order = touch;
        g.touched = clock;
        st.order.insert(touch, key.clone());
        self.changed(di, key);
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        di: usize,
        ii: usize,
        ts: i64,
        ev: &Event,
        inherited: Option<&[(String, String)]>,
        cite: Cite,
        out: &mut Vec<CorrelationAlert>,
    ) {
        let Some(key) = self.group_key(di, ii, ev, inherited) else {
            self.stats.missing_group_by += 1;
            return;
        };
        let value = self.defs[di].field.as_ref().and_then(|names| {
            names
                .iter()
                .find_map(|n| ev.get(n).filter(|v| !matches!(v, Value::Null)))
                .map(|v| v.to_text().into_owned().into_boxed_str())
        });
        if self.defs[di].field.is_some() && value.is_none() {
            return; // value_* types count only events that carry the field
        }
        let (span, monotone) = (self.defs[di].span_ms, self.defs[di].monotone);
        let lateness = self.limits.lateness_ms;
        if !monotone
            && self.state[di]
                .groups
                .get(&key)
                .is_some_and(|g| ts <= g.closed_through)
        {
            self.stats.too_late += 1;
            self.stats.too_late_window_closed += 1;
            return;
        }
        self.touch_group(di, &key, out);
        let (clock, max_entries, max_ev) = (
            self.clock,
            self.limits.max_entries,
            self.limits.max_evidence,
        );
        let g = self.state[di]
            .groups
            .get_mut(&key)
            .expect("touched group exists");
        g.newest = g.newest.max(ts);
        // An open episode takes the events that belong to it.
        if monotone {
            if let Some(ep) = &mut g.episode {
                if ts > ep.last_ms.saturating_add(span) {
                    let ep = g.episode.take().expect("episode is open");
                    self.close_episode(di, &key, *ep, out);
                } else if ts >= ep.first_ms.saturating_sub(span) {
                    let r = EvRef {
                        ms: ts,
                        reference: 0,
                    };
                    match &cite {
                        Cite::One(reference, host) => ep.evidence.add(
                            EvRef {
                                reference: *reference,
                                ..r
                            },
                            host.as_deref(),
                            max_ev,
                        ),
                        Cite::Chain(e) => ep.evidence.merge(e, max_ev),
                    }
                    ep.first_ms = ep.first_ms.min(ts);
                    ep.last_ms = ep.last_ms.max(ts);
                    return;
                }
            }
        }
        let g = self.state[di]
            .groups
            .get_mut(&key)
            .expect("touched group exists");
        let pos = g.entries.partition_point(|e| e.ts <= ts);
        g.entries.insert(
            pos,
            Entry {
                ts,
                input: ii as u16,
                value,
                at: clock,
                cite,
            },
        );
        g.count(ii as u16, 1);
        if g.entries.len() > max_entries {
            g.drain(0..1);
            self.stats.evicted_entries += 1;
        }
        if monotone {
            // Entries that no window with the group's newest events can hold, and that
            // arrived long enough ago (processing time) for their own partners to have come.
            let horizon = g.newest.saturating_sub(span.saturating_add(lateness));
            let keep_for = span.saturating_add(lateness);
            let cut = g.entries.partition_point(|e| e.ts < horizon);
            if cut > 0 {
                let mut k = 0;
                while k < g.entries.len() && g.entries[k].ts < horizon {
                    if clock.saturating_sub(g.entries[k].at) > keep_for {
                        g.drain(k..k + 1);
                    } else {
                        k += 1;
                    }
                }
            }
            if let Some((start, end, v)) = self.sliding_hit(di, &key, ts) {
                let g = self.state[di]
                    .groups
                    .get_mut(&key)
                    .expect("touched group exists");
                let win = g.drain(start..end + 1);
                // A new firing resets the group: the rest cannot fire without new events.
                g.drain(0..g.entries.len());
                let old = g.episode.take();
                if let Some(ep) = old {
                    self.close_episode(di, &key, *ep, out);
                }
                let evidence = self.window_evidence(&win);
                let (first, last) = (win[0].ts, win[win.len() - 1].ts);
                self.open_episode(di, &key, first, last, v, evidence, Some(ev), out);
            }
        } else {
            self.close_windows(di, &key, false, out);
        }
    }

    fn window_evidence(&self, win: &[Entry]) -> Evidence {
        let max = self.limits.max_evidence;
        let mut e = Evidence::default();
        for x in win {
            match &x.cite {
                Cite::One(r, host) => e.add(
                    EvRef {
                        ms: x.ts,
                        reference: *r,
                    },
                    host.as_deref(),
                    max,
                ),
                Cite::Chain(c) => e.merge(c, max),
            }
        }
        e
    }

    /// Non-monotone: judges the windows of a group that its own time has passed (or all of
    /// them when `all`), and ends its episode when nothing can extend it any more.
    fn close_windows(&mut self, di: usize, key: &Key, all: bool, out: &mut Vec<CorrelationAlert>) {
        let span = self.defs[di].span_ms;
        let lateness = self.limits.lateness_ms;
        loop {
            let Some(g) = self.state[di].groups.get_mut(key) else {
                return;
            };
            let Some(first) = g.entries.first().map(|e| e.ts) else {
                break;
            };
            let end_ts = first.saturating_add(span);
            if !all && end_ts.saturating_add(lateness) >= g.newest {
                break;
            }
            let end = g.entries.partition_point(|e| e.ts <= end_ts);
            let win = g.drain(0..end);
            g.closed_through = g.closed_through.max(end_ts);
            if let Some(v) = self.judge(&self.defs[di], &win) {
                let evidence = self.window_evidence(&win);
                let last = win.last().map(|e| e.ts).unwrap_or(first);
                let g = self.state[di].groups.get_mut(key).expect("group exists");
                match &mut g.episode {
                    Some(ep) if first <= ep.last_ms.saturating_add(span) => {
                        ep.last_ms = ep.last_ms.max(last);
                        ep.evidence.merge(&evidence, self.limits.max_evidence);
                    }
                    _ => {
                        if let Some(ep) = g.episode.take() {
                            self.close_episode(di, key, *ep, out);
                        }
                        self.open_episode(di, key, first, last, v, evidence, None, out);
                    }
                }
            }
        }
        let Some(g) = self.state[di].groups.get_mut(key) else {
            return;
        };
        let ended = g.episode.as_ref().is_some_and(|ep| {
            all || (g.entries.first().is_none_or(|e| e.ts > ep.last_ms + span)
                && g.newest > ep.last_ms.saturating_add(span).saturating_add(lateness))
        });
        if ended {
            let ep = g.episode.take().expect("episode is open");
            self.close_episode(di, key, *ep, out);
        }
    }

    /// A group leaves the state (expired, evicted, end of input): judge and close what it holds.
    fn finish_group(&mut self, di: usize, key: &Key, g: Group, out: &mut Vec<CorrelationAlert>) {
        if self.defs[di].monotone {
            if let Some(ep) = g.episode {
                self.close_episode(di, key, *ep, out);
            }
            return;
        }
        // Put it back briefly to judge its windows with the shared code, then remove it.
        self.state[di].groups.insert(key.clone(), g);
        self.close_windows(di, key, true, out);
        self.state[di].groups.remove(key);
    }

    /// A group of `di` is being evicted: opens a pressure episode unless one is going on.
    fn evicting(&mut self, di: usize) {
        let now = self.clock;
        match &mut self.pressure {
            Some(p) => p.last_evict_ms = now,
            None => {
                self.pressure = Some(Pressure { last_evict_ms: now });
                self.stats.pressure_episodes += 1;
                self.pressure_reports.push(PressureReport {
                    correlation: Arc::clone(&self.defs[di].info),
                    max_groups: self.limits.max_groups,
                    at_ms: now,
                    evicted_before: self.stats.evicted_groups,
                });
            }
        }
    }

    /// Ends the pressure episode once nothing was evicted for the longest window + lateness.
    fn pressure_eased(&mut self) {
        let Some(p) = self.pressure else { return };
        let quiet = self
            .defs
            .iter()
            .map(|d| d.span_ms)
            .max()
            .unwrap_or(0)
            .saturating_add(self.limits.lateness_ms);
        if self.clock.saturating_sub(p.last_evict_ms) > quiet {
            self.pressure = None;
        }
    }

    /// Closes groups that received nothing for `timespan + lateness` of processing time.
    fn expire_idle(&mut self, out: &mut Vec<CorrelationAlert>) {
        self.pressure_eased();
        for di in 0..self.defs.len() {
            let idle = self.defs[di]
                .span_ms
                .saturating_add(self.limits.lateness_ms);
            let horizon = self.clock.saturating_sub(idle);
            loop {
                let st = &mut self.state[di];
                let Some((&order, key)) = st.order.first_key_value() else {
                    break;
                };
                if st.groups.get(key).is_some_and(|g| g.touched >= horizon) {
                    break;
                }
                let key = key.clone();
                st.order.remove(&order);
                if let Some(g) = st.groups.remove(&key) {
                    self.changed(di, &key);
                    self.finish_group(di, &key, g, out);
                }
            }
        }
    }

    /// For monotone conditions: a window of `timespan` that contains `ts` and satisfies them,
    /// as (start, end) entry indices and the measured value.
    fn sliding_hit(&self, di: usize, key: &Key, ts: i64) -> Option<(usize, usize, f64)> {
        let d = &self.defs[di];
        let g = self.state[di].groups.get(key)?;
        if matches!(
            d.info.kind,
            CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
        ) && d.rules_expr.is_none()
            && d.ops.is_empty()
            && !(0..d.inputs.len()).all(|i| g.has_input(i))
        {
            return None; // every input is required and one is absent from the whole group
        }
        let e = &g.entries;
        // Try every window ending at an entry in [ts, ts + span] (entries are sorted by time).
        let lo = e.partition_point(|x| x.ts < ts);
        let hi = e.partition_point(|x| x.ts <= ts.saturating_add(d.span_ms));
        for end in lo..hi {
            let end_ts = e[end].ts;
            let start = e.partition_point(|x| x.ts < end_ts.saturating_sub(d.span_ms));
            if let Some(v) = self.judge(d, &e[start..=end]) {
                return Some((start, end, v));
            }
        }
        None
    }

    /// The measured value of a window if the condition holds.
    fn judge(&self, d: &Def, win: &[Entry]) -> Option<f64> {
        let ops_hold = |v: f64| !d.ops.is_empty() && d.ops.iter().all(|(op, t)| op.holds(v, *t));
        match d.info.kind {
            CorrelationKind::EventCount => {
                let v = win.len() as f64;
                ops_hold(v).then_some(v)
            }
            CorrelationKind::ValueCount => {
                let mut seen: Vec<&str> = win.iter().filter_map(|e| e.value.as_deref()).collect();
                seen.sort_unstable();
                seen.dedup();
                let v = seen.len() as f64;
                ops_hold(v).then_some(v)
            }
            CorrelationKind::ValueSum
            | CorrelationKind::ValueAvg
            | CorrelationKind::ValuePercentile => {
                let mut nums: Vec<f64> = win
                    .iter()
                    .filter_map(|e| {
                        e.value
                            .as_deref()
                            .and_then(|s| s.trim().parse::<f64>().ok())
                    })
                    .collect();
                if nums.is_empty() {
                    return None;
                }
                let v = match d.info.kind {
                    CorrelationKind::ValueSum => nums.iter().sum(),
                    CorrelationKind::ValueAvg => nums.iter().sum::<f64>() / nums.len() as f64,
                    _ => {
                        nums.sort_by(|a, b| a.total_cmp(b));
                        let rank =
                            (d.percentile / 100.0 * (nums.len() - 1) as f64).round() as usize;
                        nums[rank.min(nums.len() - 1)]
                    }
                };
                ops_hold(v).then_some(v)
            }
            CorrelationKind::Temporal | CorrelationKind::TemporalOrdered => {
                let mut present = vec![false; d.inputs.len()];
                let mut missing = present.len();
                for e in win {
                    if let Some(p) = present.get_mut(e.input as usize) {
                        if !*p {
                            *p = true;
                            missing -= 1;
                            if missing == 0 {
                                break;
                            }
                        }
                    }
                }
                let distinct = present.iter().filter(|p| **p).count() as f64;
                let ok = match &d.rules_expr {
                    Some(expr) => eval_rule_expr(expr, d, &present),
                    None if !d.ops.is_empty() => ops_hold(distinct),
                    None => present.iter().all(|p| *p),
                };
                if !ok {
                    return None;
                }
                if d.info.kind == CorrelationKind::TemporalOrdered && !in_order(win, d.inputs.len())
                {
                    return None;
                }
                Some(distinct)
            }
        }
    }

    fn named_group(&self, di: usize, key: &Key) -> Vec<(String, String)> {
        let d = &self.defs[di];
        d.group_by
            .iter()
            .cloned()
            .zip(key.values(d.group_by.len()).into_iter().map(str::to_owned))
            .collect()
    }

    /// Opens an episode: reports it, and feeds it to parent correlations as one of their
    /// input events (at its last time, citing its evidence).
    #[allow(clippy::too_many_arguments)]
    fn open_episode(
        &mut self,
        di: usize,
        key: &Key,
        first: i64,
        last: i64,
        value: f64,
        mut evidence: Evidence,
        ev: Option<&Event>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        self.stats.fired += 1;
        evidence.sort();
        let group = self.named_group(di, key);
        if let Some(g) = self.state[di].groups.get_mut(key) {
            g.episode = Some(Box::new(Episode {
                opened_ms: first,
                first_ms: first,
                last_ms: last,
                value,
                evidence: evidence.clone(),
            }));
        }
        let info = self.defs[di].info.clone();
        if info.emit {
            out.push(CorrelationAlert {
                correlation: info,
                group: group.clone(),
                phase: Phase::Opened,
                episode_ms: first,
                first_ms: first,
                last_ms: last,
                value,
                events: evidence.count as usize,
                evidence: evidence.clone(),
            });
        }
        let parents = self.defs[di].parents.clone();
        if parents.is_empty() {
            return;
        }
        let empty;
        let ev = match ev {
            Some(e) => e,
            None => {
                empty = Event::new(
                    mamori_event::Format::Json,
                    mamori_event::Origin::Network {
                        peer: ([0, 0, 0, 0], 0).into(),
                        transport: mamori_event::Transport::Tcp,
                    },
                    Vec::new(),
                );
                &empty
            }
        };
        let chained = Arc::new(evidence);
        for p in parents {
            if let Some(ii) = self.defs[p]
                .inputs
                .iter()
                .position(|(i, _, _)| *i == Input::Corr(di))
            {
                self.insert(
                    p,
                    ii,
                    last,
                    ev,
                    Some(&group),
                    Cite::Chain(Arc::clone(&chained)),
                    out,
                );
            }
        }
    }

    fn close_episode(
        &mut self,
        di: usize,
        key: &Key,
        mut ep: Episode,
        out: &mut Vec<CorrelationAlert>,
    ) {
        self.changed(di, key);
        let info = self.defs[di].info.clone();
        if !info.emit {
            return;
        }
        ep.evidence.sort();
        out.push(CorrelationAlert {
            correlation: info,
            group: self.named_group(di, key),
            phase: Phase::Closed,
            episode_ms: ep.opened_ms,
            first_ms: ep.first_ms,
            last_ms: ep.last_ms,
            value: ep.value,
            events: ep.evidence.count as usize,
            evidence: ep.evidence,
        });
    }

    fn saved_to(
        &self,
        w: &mut dyn std::io::Write,
        full: bool,
        groups: Vec<(&str, Vec<GroupRef<'_>>)>,
    ) -> std::io::Result<()> {
        let mut skewed: Vec<(&str, &SkewSeen)> =
            self.skewed.iter().map(|(k, v)| (&**k, v)).collect();
        skewed.sort_by(|a, b| a.0.cmp(b.0));
        let saved = SavedOut {
            version: STATE_VERSION,
            full,
            clock: self.clock,
            stats: &self.stats,
            skewed,
            groups,
        };
        serde_json::to_writer(w, &saved).map_err(std::io::Error::other)
    }

    /// Serialises the whole state (JSON) so a restart loses no window; groups in
    /// least-recently-touched order.
    pub fn save(&self) -> Vec<u8> {
        self.save_prefixed(&[])
    }

    /// [`Correlator::save`] after `prefix` (a caller's header), without copying the snapshot.
    pub fn save_prefixed(&self, prefix: &[u8]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        if self.save_to(&mut out).is_err() {
            out.truncate(prefix.len());
        }
        out
    }

    /// [`Correlator::save`] streamed into `w` (a store's parts): the snapshot is never whole
    /// in memory.
    pub fn save_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut groups = Vec::with_capacity(self.defs.len());
        for (di, st) in self.state.iter().enumerate() {
            let list: Vec<GroupRef<'_>> = st
                .order
                .values()
                .filter_map(|key| {
                    let n = self.defs[di].group_by.len();
                    Some((key.values(n), Some(st.groups.get(key)?)))
                })
                .collect();
            if !list.is_empty() {
                groups.push((self.defs[di].info.meta.reference(), list));
            }
        }
        self.saved_to(w, true, groups)
    }

    /// Forgets which groups changed (after a full [`Correlator::save`] was stored).
    pub fn mark_saved(&mut self) {
        self.dirty.clear();
    }

    /// The groups changed or removed since the last save, `None` if nothing changed; apply
    /// it with [`Correlator::restore`] after the snapshot and earlier changes.
    pub fn save_changes(&mut self) -> Option<Vec<u8>> {
        self.save_changes_prefixed(&[])
    }

    /// [`Correlator::save_changes`] after `prefix`.
    pub fn save_changes_prefixed(&mut self, prefix: &[u8]) -> Option<Vec<u8>> {
        let mut out = prefix.to_vec();
        match self.save_changes_to(&mut out)? {
            Ok(()) => Some(out),
            Err(_) => {
                out.truncate(prefix.len());
                Some(out)
            }
        }
    }

    /// [`Correlator::save_changes`] streamed into `w`; `None` if nothing changed. The changes
    /// are no longer tracked afterwards, whether the write succeeded or not (after a failed
    /// one, save a full snapshot).
    pub fn save_changes_to(&mut self, w: &mut dyn std::io::Write) -> Option<std::io::Result<()>> {
        if self.dirty.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut per_def: BTreeMap<u32, Vec<GroupRef<'_>>> = BTreeMap::new();
        for (di, key) in &dirty {
            let g = self.state[*di as usize].groups.get(key);
            let n = self.defs[*di as usize].group_by.len();
            per_def.entry(*di).or_default().push((key.values(n), g));
        }
        let groups = per_def
            .into_iter()
            .map(|(di, list)| (self.defs[di as usize].info.meta.reference(), list))
            .collect();
        Some(self.saved_to(w, false, groups))
    }

    /// Number of groups changed since the last save.
    pub fn changed_groups(&self) -> usize {
        self.dirty.len()
    }

    /// Restores a snapshot ([`Correlator::save`], replacing the state) or applies changes
    /// ([`Correlator::save_changes`]); windows of correlations that no longer exist are dropped
    /// and counted as evicted.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let saved: Saved =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid correlation state: {e}"))?;
        if saved.version != STATE_VERSION {
            return Err(format!(
                "unsupported correlation state version {} (this version reads {STATE_VERSION})",
                saved.version
            ));
        }
        if saved.full {
            for st in &mut self.state {
                st.groups.clear();
                st.order.clear();
            }
            self.skewed.clear();
        }
        self.clock = self.clock.max(saved.clock);
        self.stats = saved.stats;
        self.skewed.extend(saved.skewed);
        let index: BTreeMap<&str, usize> = self
            .defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.info.meta.reference(), i))
            .collect();
        for (id, list) in saved.groups {
            let Some(&di) = index.get(id.as_str()) else {
                if saved.full {
                    self.stats.evicted_groups += list.len() as u64;
                }
                continue;
            };
            for (key, g) in list {
                let key = Key::encode(&key);
                let st = &mut self.state[di];
                if let Some(old) = st.groups.remove(&key) {
                    st.order.remove(&old.order);
                }
                if let Some(mut g) = g {
                    g.recount();
                    self.touch += 1;
                    g.order = self.touch;
                    st.order.insert(self.touch, key.clone());
                    st.groups.insert(key, g);
                }
            }
        }
        Ok(())
    }
}

fn eval_rule_expr(e: &RuleExpr, d: &Def, present: &[bool]) -> bool {
    match e {
        RuleExpr::Rule(name) => d
            .inputs
            .iter()
            .position(|(_, _, r)| r == name)
            .is_some_and(|i| present[i]),
        RuleExpr::And(v) => v.iter().all(|x| eval_rule_expr(x, d, present)),
        RuleExpr::Or(v) => v.iter().any(|x| eval_rule_expr(x, d, present)),
        RuleExpr::Not(x) => !eval_rule_expr(x, d, present),
    }
}

/// Whether inputs 0, 1, …, n-1 occur in that order (each at or after the previous).
fn in_order(win: &[Entry], n: usize) -> bool {
    let mut want = 0usize;
    for e in win {
        if e.input as usize == want {
            want += 1;
            if want == n {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests;

//! Sigma correlation rules over the match stream, in event time.
//!
//! Design decision: state is keyed by (correlation, group-by values) and holds the matching
//! events' times (and values for value_* types), sorted, so out-of-order events inside a window
//! are placed correctly. Monotone conditions (`gt`/`gte` on counts and sums) fire as soon as any
//! sliding window of `timespan` satisfies them; the others (`lt`, `lte`, `eq`, `neq`, averages,
//! percentiles) are judged when a window closes, i.e. when event time (the *watermark*, the
//! highest time seen, minus the allowed lateness) passes its end, or at [`Correlator::flush`].
//! A group that fires is reset, so one burst gives one alert. Memory is bounded: at most
//! `max_groups` groups per correlation and `max_entries` per group; what is evicted is counted.
//! The whole state can be saved and restored ([`Correlator::save`] / [`Correlator::restore`]).

use std::collections::{BTreeMap, HashMap};
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
    pub max_groups: usize,
    pub max_entries: usize,
    /// How late (ms) an event may arrive and still be placed in its window.
    pub lateness_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_groups: 100_000,
            max_entries: 10_000,
            lateness_ms: 60_000,
        }
    }
}

/// Counters for operators: what the correlator did and what it had to drop.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub observed: u64,
    pub fired: u64,
    pub no_timestamp: u64,
    pub too_late: u64,
    pub evicted_groups: u64,
    pub evicted_entries: u64,
}

/// A correlation that fired.
#[derive(Debug, Clone)]
pub struct CorrelationAlert {
    pub correlation: Arc<CorrelationInfo>,
    /// group-by field → value
    pub group: Vec<(String, String)>,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The measured quantity: event count, distinct values, sum, average, percentile, or the
    /// number of distinct rules seen (temporal).
    pub value: f64,
    pub events: usize,
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

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Group {
    /// (event ms, input index, value)
    entries: Vec<(i64, u16, Option<String>)>,
    /// Entries per input index (derived from `entries`, rebuilt on restore): lets a temporal
    /// correlation that needs every input skip a group that lacks one in O(1) instead of
    /// scanning its window on every event.
    #[serde(skip)]
    per_input: Vec<u32>,
}

impl Group {
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
            let input = self.entries[k].1;
            self.count(input, 1);
        }
    }

    fn has_input(&self, input: usize) -> bool {
        self.per_input.get(input).is_some_and(|&n| n > 0)
    }
}

/// Correlation state machine. Feed it every event with its matches, in roughly time order.
#[derive(Debug)]
pub struct Correlator {
    defs: Vec<Def>,
    rule_to_defs: HashMap<u32, Vec<(usize, usize)>>,
    state: Vec<HashMap<Vec<String>, Group>>,
    limits: Limits,
    watermark: i64,
    since_sweep: u32,
    pub stats: Stats,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    watermark: i64,
    stats: Stats,
    groups: Vec<(String, Vec<String>, Group)>,
}

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
            state: (0..n).map(|_| HashMap::new()).collect(),
            limits,
            watermark: i64::MIN,
            since_sweep: 0,
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

    /// Number of live groups (for metrics).
    pub fn group_count(&self) -> usize {
        self.state.iter().map(HashMap::len).sum()
    }

    /// Feeds one event and the rules it matched; appends fired correlations to `out`.
    pub fn observe(&mut self, ev: &Event, matches: &[Match], out: &mut Vec<CorrelationAlert>) {
        if self.defs.is_empty() {
            return;
        }
        let relevant = matches
            .iter()
            .any(|m| self.rule_to_defs.contains_key(&m.rule));
        let Some(ts) = ev.timestamp.map(|t| t.timestamp_millis()) else {
            if relevant {
                self.stats.no_timestamp += 1;
            }
            return;
        };
        if ts > self.watermark {
            self.watermark = ts;
        }
        for m in matches {
            let Some(targets) = self.rule_to_defs.get(&m.rule).cloned() else {
                continue;
            };
            for (di, ii) in targets {
                self.stats.observed += 1;
                self.insert(di, ii, ts, ev, None, out);
            }
        }
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            self.since_sweep = 0;
            self.sweep(self.watermark - self.limits.lateness_ms, out);
        }
    }

    /// Closes every open window (end of input) and reports what they amount to.
    pub fn flush(&mut self, out: &mut Vec<CorrelationAlert>) {
        self.sweep(i64::MAX, out);
    }

    fn group_key(
        &self,
        di: usize,
        ii: usize,
        ev: &Event,
        inherited: Option<&[(String, String)]>,
    ) -> Vec<String> {
        let d = &self.defs[di];
        d.group_by
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let names = &d.inputs[ii].1[gi];
                names
                    .iter()
                    .find_map(|n| ev.get(n).map(|v| v.to_text().into_owned()))
                    .or_else(|| {
                        inherited
                            .and_then(|h| h.iter().find(|(k, _)| k == g).map(|(_, v)| v.clone()))
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    fn insert(
        &mut self,
        di: usize,
        ii: usize,
        ts: i64,
        ev: &Event,
        inherited: Option<&[(String, String)]>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        if ts
            < self
                .watermark
                .saturating_sub(self.limits.lateness_ms + self.defs[di].span_ms)
        {
            self.stats.too_late += 1;
            return;
        }
        let key = self.group_key(di, ii, ev, inherited);
        let value = self.defs[di].field.as_ref().and_then(|names| {
            names
                .iter()
                .find_map(|n| ev.get(n).filter(|v| !matches!(v, Value::Null)))
                .map(|v| v.to_text().into_owned())
        });
        if self.defs[di].field.is_some() && value.is_none() {
            return; // value_* types count only events that carry the field
        }
        let limits = self.limits;
        let states = &mut self.state[di];
        if !states.contains_key(&key) && states.len() >= limits.max_groups {
            // Evict the group whose newest entry is oldest.
            if let Some(victim) = states
                .iter()
                .min_by_key(|(_, g)| g.entries.last().map(|e| e.0).unwrap_or(i64::MIN))
                .map(|(k, _)| k.clone())
            {
                states.remove(&victim);
                self.stats.evicted_groups += 1;
            }
        }
        let g = states.entry(key.clone()).or_default();
        let pos = g.entries.partition_point(|e| e.0 <= ts);
        g.entries.insert(pos, (ts, ii as u16, value));
        g.count(ii as u16, 1);
        if g.entries.len() > limits.max_entries {
            let gone = g.entries.remove(0);
            g.count(gone.1, -1);
            self.stats.evicted_entries += 1;
        }
        if self.defs[di].monotone {
            if let Some((first, last, v, n)) = self.sliding_hit(di, &key, ts) {
                self.state[di].remove(&key);
                self.fire(di, key, first, last, v, n, ev, out);
            }
        }
    }

    /// For monotone conditions: a window of `timespan` that contains `ts` and satisfies them.
    fn sliding_hit(&self, di: usize, key: &[String], ts: i64) -> Option<(i64, i64, f64, usize)> {
        let d = &self.defs[di];
        let g = self.state[di].get(key)?;
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
        let lo = e.partition_point(|x| x.0 < ts);
        let hi = e.partition_point(|x| x.0 <= ts.saturating_add(d.span_ms));
        for end in lo..hi {
            let end_ts = e[end].0;
            let start = e.partition_point(|x| x.0 < end_ts.saturating_sub(d.span_ms));
            let win = &e[start..=end];
            if let Some(v) = self.judge(d, win) {
                return Some((win[0].0, end_ts, v, win.len()));
            }
        }
        None
    }

    /// The measured value of a window if the condition holds.
    fn judge(&self, d: &Def, win: &[(i64, u16, Option<String>)]) -> Option<f64> {
        let ops_hold = |v: f64| !d.ops.is_empty() && d.ops.iter().all(|(op, t)| op.holds(v, *t));
        match d.info.kind {
            CorrelationKind::EventCount => {
                let v = win.len() as f64;
                ops_hold(v).then_some(v)
            }
            CorrelationKind::ValueCount => {
                let mut seen: Vec<&str> = win.iter().filter_map(|e| e.2.as_deref()).collect();
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
                    .filter_map(|e| e.2.as_deref().and_then(|s| s.trim().parse::<f64>().ok()))
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
                    if let Some(p) = present.get_mut(e.1 as usize) {
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

    /// Closes windows that ended before `until` (tumbling, anchored at their first entry).
    fn sweep(&mut self, until: i64, out: &mut Vec<CorrelationAlert>) {
        for di in 0..self.defs.len() {
            let span = self.defs[di].span_ms;
            let keys: Vec<Vec<String>> = self.state[di]
                .iter()
                .filter(|(_, g)| {
                    g.entries
                        .first()
                        .is_some_and(|e| e.0.saturating_add(span) < until)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                while let Some(g) = self.state[di].get(&key) {
                    let Some(first) = g.entries.first().map(|e| e.0) else {
                        self.state[di].remove(&key);
                        break;
                    };
                    if first.saturating_add(span) >= until {
                        break;
                    }
                    let end = g
                        .entries
                        .partition_point(|e| e.0 <= first.saturating_add(span));
                    let win: Vec<_> = g.entries[..end].to_vec();
                    let hit = if self.defs[di].monotone {
                        None
                    } else {
                        self.judge(&self.defs[di], &win)
                    };
                    if let Some(g) = self.state[di].get_mut(&key) {
                        for gone in g.entries.drain(..end).collect::<Vec<_>>() {
                            g.count(gone.1, -1);
                        }
                    }
                    if let Some(v) = hit {
                        let last = win.last().map(|e| e.0).unwrap_or(first);
                        let group = self.named_group(di, &key);
                        self.emit(di, group, first, last, v, win.len(), None, out);
                    }
                }
            }
        }
    }

    fn named_group(&self, di: usize, key: &[String]) -> Vec<(String, String)> {
        self.defs[di]
            .group_by
            .iter()
            .cloned()
            .zip(key.iter().cloned())
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        di: usize,
        key: Vec<String>,
        first: i64,
        last: i64,
        v: f64,
        n: usize,
        ev: &Event,
        out: &mut Vec<CorrelationAlert>,
    ) {
        let group = self.named_group(di, &key);
        self.emit(di, group, first, last, v, n, Some(ev), out);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        di: usize,
        group: Vec<(String, String)>,
        first: i64,
        last: i64,
        value: f64,
        events: usize,
        ev: Option<&Event>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        self.stats.fired += 1;
        let alert = CorrelationAlert {
            correlation: self.defs[di].info.clone(),
            group: group.clone(),
            first_ms: first,
            last_ms: last,
            value,
            events,
        };
        let parents = self.defs[di].parents.clone();
        if alert.correlation.emit {
            out.push(alert);
        }
        // Chained correlations: this firing is an input event of its parents, at its last time.
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
        for p in parents {
            if let Some(ii) = self.defs[p]
                .inputs
                .iter()
                .position(|(i, _, _)| *i == Input::Corr(di))
            {
                self.insert(p, ii, last, ev, Some(&group), out);
            }
        }
    }

    /// Serialises the open windows (JSON) so a restart loses none.
    pub fn save(&self) -> Vec<u8> {
        let mut groups = Vec::new();
        for (di, st) in self.state.iter().enumerate() {
            let id = self.defs[di].info.meta.reference().to_owned();
            for (k, g) in st {
                groups.push((id.clone(), k.clone(), g.clone()));
            }
        }
        groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        serde_json::to_vec(&Saved {
            version: 1,
            watermark: self.watermark,
            stats: self.stats.clone(),
            groups,
        })
        .unwrap_or_default()
    }

    /// Restores state saved by [`Correlator::save`]; windows of correlations that no longer
    /// exist are dropped and counted as evicted.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let saved: Saved =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid correlation state: {e}"))?;
        if saved.version != 1 {
            return Err(format!(
                "unsupported correlation state version {}",
                saved.version
            ));
        }
        self.watermark = saved.watermark;
        self.stats = saved.stats;
        let index: BTreeMap<String, usize> = self
            .defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.info.meta.reference().to_owned(), i))
            .collect();
        for (id, key, mut g) in saved.groups {
            match index.get(&id) {
                Some(&di) => {
                    g.recount();
                    self.state[di].insert(key, g);
                }
                None => self.stats.evicted_groups += 1,
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
fn in_order(win: &[(i64, u16, Option<String>)], n: usize) -> bool {
    let mut want = 0usize;
    for e in win {
        if e.1 as usize == want {
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

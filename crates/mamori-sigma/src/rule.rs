//! Sigma documents: detection rules, correlation rules and filters.

use std::collections::BTreeMap;

use mamori_event::Level;

use crate::condition::{parse_condition, pattern_matches, Cond, Target};
use crate::detection::{parse_selection, Expr};
use crate::error::{ErrorKind, PResult, Problem};
use crate::placeholders::Placeholders;
use crate::yaml::{Node, NodeKind};

/// The `logsource` of a rule or filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogSourceSpec {
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
}

/// Metadata shared by every kind of document.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<String>,
    pub level: Option<Level>,
    pub tags: Vec<String>,
    pub author: Option<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    pub date: Option<String>,
    pub modified: Option<String>,
    /// Other scalar keys (e.g. `description_ja`, `title_ja`), kept for reports.
    pub extra: BTreeMap<String, String>,
    /// The file and 1-based line the document starts at.
    pub path: String,
    pub line: usize,
}

impl Meta {
    /// Id, else name, else title: how other documents and reports refer to it.
    pub fn reference(&self) -> &str {
        self.id
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.title)
    }

    /// ATT&CK tags (`attack.t1059.001`, `attack.execution`).
    pub fn attack_tags(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .filter(|t| t.starts_with("attack."))
            .map(|t| t.as_str())
    }
}

/// A detection rule: its metadata, logsource and the resolved condition expression.
#[derive(Debug, Clone)]
pub struct Rule {
    pub meta: Meta,
    pub logsource: LogSourceSpec,
    /// The whole detection as one expression (a list of conditions is ORed).
    pub condition: Expr,
    /// Field names the detection refers to, in order of appearance (for the details column).
    pub fields_used: Vec<String>,
    /// The rule's `fields:` list.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationKind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
    ValueSum,
    ValueAvg,
    ValuePercentile,
}

impl CorrelationKind {
    fn parse(s: &str) -> Option<CorrelationKind> {
        Some(match s {
            "event_count" => CorrelationKind::EventCount,
            "value_count" => CorrelationKind::ValueCount,
            "temporal" => CorrelationKind::Temporal,
            "temporal_ordered" => CorrelationKind::TemporalOrdered,
            "value_sum" => CorrelationKind::ValueSum,
            "value_avg" => CorrelationKind::ValueAvg,
            "value_percentile" => CorrelationKind::ValuePercentile,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationKind::EventCount => "event_count",
            CorrelationKind::ValueCount => "value_count",
            CorrelationKind::Temporal => "temporal",
            CorrelationKind::TemporalOrdered => "temporal_ordered",
            CorrelationKind::ValueSum => "value_sum",
            CorrelationKind::ValueAvg => "value_avg",
            CorrelationKind::ValuePercentile => "value_percentile",
        }
    }

    fn needs_field(self) -> bool {
        matches!(
            self,
            CorrelationKind::ValueCount
                | CorrelationKind::ValueSum
                | CorrelationKind::ValueAvg
                | CorrelationKind::ValuePercentile
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CountOp {
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CountOp::Gt => lhs > rhs,
            CountOp::Gte => lhs >= rhs,
            CountOp::Lt => lhs < rhs,
            CountOp::Lte => lhs <= rhs,
            CountOp::Eq => lhs == rhs,
            CountOp::Neq => lhs != rhs,
        }
    }
}

/// A boolean expression over referenced rule names (extended temporal conditions).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleExpr {
    Rule(String),
    And(Vec<RuleExpr>),
    Or(Vec<RuleExpr>),
    Not(Box<RuleExpr>),
}

#[derive(Debug, Clone)]
pub enum CorrelationCondition {
    /// Comparisons that must all hold (a range is two of them).
    Threshold {
        ops: Vec<(CountOp, f64)>,
        field: Option<String>,
        percentile: Option<f64>,
    },
    /// Extended temporal condition over rule names.
    Rules(RuleExpr),
}

#[derive(Debug, Clone)]
pub struct Correlation {
    pub meta: Meta,
    pub kind: CorrelationKind,
    /// References by id or name.
    pub rules: Vec<String>,
    pub group_by: Vec<String>,
    pub timespan_secs: u64,
    pub condition: Option<CorrelationCondition>,
    /// alias → (rule reference → field)
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    pub generate: bool,
}

/// A global filter: an extra condition ANDed to the referenced rules (pySigma semantics: the
/// author writes `condition: not selection` to exclude).
#[derive(Debug, Clone)]
pub struct Filter {
    pub meta: Meta,
    pub logsource: LogSourceSpec,
    pub rules: Vec<String>,
    pub condition: Expr,
}

#[derive(Debug, Clone)]
pub enum Document {
    Rule(Rule),
    Correlation(Correlation),
    Filter(Filter),
}

impl Document {
    pub fn meta(&self) -> &Meta {
        match self {
            Document::Rule(r) => &r.meta,
            Document::Correlation(c) => &c.meta,
            Document::Filter(f) => &f.meta,
        }
    }
}

fn schema(line: usize, msg: impl Into<String>) -> Problem {
    Problem::at(line, ErrorKind::Schema, msg)
}

fn string_list(n: &Node) -> Vec<String> {
    match &n.kind {
        NodeKind::Seq(items) => items.iter().filter_map(|i| i.scalar_text()).collect(),
        NodeKind::Scalar(_) => n.scalar_text().into_iter().collect(),
        NodeKind::Map(_) => Vec::new(),
    }
}

fn parse_meta(doc: &Node, path: &str) -> PResult<Meta> {
    let mut m = Meta {
        path: path.to_owned(),
        line: doc.pos.line,
        ..Meta::default()
    };
    let map = doc.as_map().ok_or_else(|| {
        schema(
            doc.pos.line,
            format!(
                "a Sigma document must be a mapping, found a {}",
                doc.kind_name()
            ),
        )
    })?;
    for (k, v) in map {
        let key = k.scalar_text().unwrap_or_default();
        let text = || v.scalar_text();
        match key.as_str() {
            "title" => {
                m.title = text().ok_or_else(|| schema(v.pos.line, "`title` must be a string"))?
            }
            "id" => m.id = text(),
            "name" => m.name = text(),
            "description" => m.description = text(),
            "status" => m.status = text(),
            "author" => m.author = text(),
            "date" => m.date = text(),
            "modified" => m.modified = text(),
            "level" => {
                let t = text().unwrap_or_default();
                m.level = Some(Level::parse(&t).ok_or_else(|| {
                    schema(v.pos.line, format!("unknown level `{t}` (expected informational, low, medium, high or critical)"))
                })?);
            }
            "tags" => m.tags = string_list(v),
            "references" | "reference" => m.references = string_list(v),
            "falsepositives" => m.falsepositives = string_list(v),
            _ => {
                if let Some(t) = text() {
                    m.extra.insert(key, t);
                }
            }
        }
    }
    if m.title.is_empty() {
        return Err(schema(doc.pos.line, "missing `title`"));
    }
    if !m.extra.contains_key("title_ja") {
        if let Some(t) = m.id.as_deref().and_then(crate::titles_ja::title_ja) {
            m.extra.insert("title_ja".into(), t.to_owned());
        }
    }
    Ok(m)
}

fn parse_logsource(doc: &Node) -> PResult<LogSourceSpec> {
    let Some(ls) = doc.get("logsource") else {
        return Err(schema(doc.pos.line, "missing `logsource`"));
    };
    if ls.as_map().is_none() {
        return Err(schema(ls.pos.line, "`logsource` must be a mapping"));
    }
    let get = |k: &str| {
        ls.get(k)
            .and_then(|n| n.scalar_text())
            .filter(|s| !s.is_empty())
    };
    Ok(LogSourceSpec {
        product: get("product"),
        category: get("category"),
        service: get("service"),
    })
}

/// Parses the selections and condition(s) of a `detection` (or `filter`) mapping.
fn parse_detection(det: &Node, skip: &[&str], ph: &Placeholders) -> PResult<(Expr, Vec<String>)> {
    let map = det
        .as_map()
        .ok_or_else(|| schema(det.pos.line, "`detection` must be a mapping"))?;
    let mut selections: Vec<(String, Expr)> = Vec::new();
    let mut cond_node = None;
    for (k, v) in map {
        let key = k.scalar_text().unwrap_or_default();
        if key == "condition" {
            cond_node = Some(v);
        } else if key == "timeframe" || skip.contains(&key.as_str()) {
            // `timeframe` belongs to the deprecated aggregation syntax; ignored without a pipe.
        } else {
            selections.push((key, parse_selection(v, ph)?));
        }
    }
    let cond_node = cond_node.ok_or_else(|| schema(det.pos.line, "missing `condition`"))?;
    let conds: Vec<(String, usize)> = match &cond_node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .map(|n| (n.scalar_text().unwrap_or_default(), n.pos.line))
            .collect(),
        _ => vec![(
            cond_node.scalar_text().unwrap_or_default(),
            cond_node.pos.line,
        )],
    };
    let mut exprs = Vec::new();
    for (c, line) in conds {
        let cond = parse_condition(&c, line)?;
        exprs.push(resolve(&cond, &selections, line)?);
    }
    let mut fields = Vec::new();
    for (_, e) in &selections {
        collect_fields(e, &mut fields);
    }
    let expr = if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::Or(exprs)
    };
    Ok((expr, fields))
}

fn collect_fields(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Test { field: Some(f), .. } => {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        Expr::Test { field: None, .. } | Expr::Const(_) => {}
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| collect_fields(x, out)),
        Expr::Not(x) => collect_fields(x, out),
    }
}

fn resolve(c: &Cond, sels: &[(String, Expr)], line: usize) -> PResult<Expr> {
    let cond_err = |m: String| Problem::at(line, ErrorKind::Condition, m);
    Ok(match c {
        Cond::Ref(name) => sels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| cond_err(format!("condition refers to undefined selection `{name}`")))?,
        Cond::Not(x) => Expr::Not(Box::new(resolve(x, sels, line)?)),
        Cond::And(v) => Expr::And(
            v.iter()
                .map(|x| resolve(x, sels, line))
                .collect::<PResult<_>>()?,
        ),
        Cond::Or(v) => Expr::Or(
            v.iter()
                .map(|x| resolve(x, sels, line))
                .collect::<PResult<_>>()?,
        ),
        Cond::OneOf(t) | Cond::AllOf(t) => {
            let matched: Vec<Expr> = sels
                .iter()
                .filter(|(n, _)| match t {
                    // `them` and patterns not starting with `_` skip `_`-prefixed selections.
                    Target::Them => !n.starts_with('_'),
                    Target::Pattern(p) => {
                        pattern_matches(p, n) && (p.starts_with('_') || !n.starts_with('_'))
                    }
                })
                .map(|(_, e)| e.clone())
                .collect();
            if matched.is_empty() {
                let what = match t {
                    Target::Them => "them".to_owned(),
                    Target::Pattern(p) => format!("`{p}`"),
                };
                return Err(cond_err(format!("`of {what}` matches no selection")));
            }
            if matches!(c, Cond::OneOf(_)) {
                Expr::Or(matched)
            } else {
                Expr::And(matched)
            }
        }
    })
}

pub(crate) fn parse_document(doc: &Node, path: &str, ph: &Placeholders) -> PResult<Document> {
    let meta = parse_meta(doc, path)?;
    if let Some(corr) = doc.get("correlation") {
        return parse_correlation(meta, corr, doc).map(Document::Correlation);
    }
    if let Some(filter) = doc.get("filter") {
        let logsource = parse_logsource(doc)?;
        let rules = filter
            .get("rules")
            .map(string_list)
            .ok_or_else(|| schema(filter.pos.line, "a filter needs `rules`"))?;
        let (condition, _) = parse_detection(filter, &["rules"], ph)?;
        return Ok(Document::Filter(Filter {
            meta,
            logsource,
            rules,
            condition,
        }));
    }
    let det = doc.get("detection").ok_or_else(|| {
        schema(
            doc.pos.line,
            "missing `detection` (or `correlation`/`filter`)",
        )
    })?;
    let logsource = parse_logsource(doc)?;
    let (condition, fields_used) = parse_detection(det, &[], ph)?;
    let fields = doc.get("fields").map(string_list).unwrap_or_default();
    Ok(Document::Rule(Rule {
        meta,
        logsource,
        condition,
        fields_used,
        fields,
    }))
}

/// Parses `5m`, `1h`, `30s`, `2d`, `1w`, `1M`, `1y`.
pub fn parse_timespan(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        'M' => 2_629_746,
        'y' => 31_556_952,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

fn parse_correlation(meta: Meta, corr: &Node, _doc: &Node) -> PResult<Correlation> {
    let line = corr.pos.line;
    if corr.as_map().is_none() {
        return Err(schema(line, "`correlation` must be a mapping"));
    }
    let kind_text = corr
        .get("type")
        .and_then(|n| n.scalar_text())
        .unwrap_or_default();
    let kind = CorrelationKind::parse(&kind_text).ok_or_else(|| {
        schema(line, format!("unknown correlation type `{kind_text}` (expected event_count, value_count, temporal, temporal_ordered, value_sum, value_avg or value_percentile)"))
    })?;
    let rules = corr.get("rules").map(string_list).unwrap_or_default();
    if rules.is_empty() {
        return Err(schema(line, "a correlation needs `rules`"));
    }
    let group_by = corr.get("group-by").map(string_list).unwrap_or_default();
    let ts_node = corr
        .get("timespan")
        .or_else(|| corr.get("timeframe"))
        .ok_or_else(|| schema(line, "a correlation needs `timespan`"))?;
    let ts_text = ts_node.scalar_text().unwrap_or_default();
    let timespan_secs = parse_timespan(&ts_text).ok_or_else(|| {
        schema(
            ts_node.pos.line,
            format!("invalid timespan `{ts_text}` (expected a number and s, m, h, d, w, M or y)"),
        )
    })?;
    let generate = match corr.get("generate").or_else(|| _doc.get("generate")) {
        None => false,
        Some(n) => matches!(n.scalar_text().as_deref(), Some("true")),
    };
    let mut aliases = BTreeMap::new();
    if let Some(a) = corr.get("aliases").and_then(|n| n.as_map()) {
        for (k, v) in a {
            let mut per = BTreeMap::new();
            for (rk, rv) in v.as_map().unwrap_or_default() {
                per.insert(
                    rk.scalar_text().unwrap_or_default(),
                    rv.scalar_text().unwrap_or_default(),
                );
            }
            aliases.insert(k.scalar_text().unwrap_or_default(), per);
        }
    }
    let condition = match corr.get("condition") {
        None => None,
        Some(n) if n.as_map().is_some() => {
            let mut ops = Vec::new();
            let mut field = None;
            let mut percentile = None;
            for (k, v) in n.as_map().unwrap_or_default() {
                let key = k.scalar_text().unwrap_or_default();
                let num = || -> PResult<f64> {
                    v.scalar_text()
                        .and_then(|t| t.parse::<f64>().ok())
                        .ok_or_else(|| schema(v.pos.line, format!("`{key}` needs a number")))
                };
                match key.as_str() {
                    "gt" => ops.push((CountOp::Gt, num()?)),
                    "gte" => ops.push((CountOp::Gte, num()?)),
                    "lt" => ops.push((CountOp::Lt, num()?)),
                    "lte" => ops.push((CountOp::Lte, num()?)),
                    "eq" => ops.push((CountOp::Eq, num()?)),
                    "neq" => ops.push((CountOp::Neq, num()?)),
                    "field" => {
                        field = match &v.kind {
                            NodeKind::Seq(_) => string_list(v).first().cloned(),
                            _ => v.scalar_text(),
                        }
                    }
                    "percentile" => percentile = Some(num()?),
                    other => {
                        return Err(schema(
                            k.pos.line,
                            format!("unknown correlation condition key `{other}`"),
                        ))
                    }
                }
            }
            if ops.is_empty() {
                return Err(schema(
                    n.pos.line,
                    "a correlation condition needs one of gt, gte, lt, lte, eq, neq",
                ));
            }
            Some(CorrelationCondition::Threshold {
                ops,
                field,
                percentile,
            })
        }
        Some(n) => {
            let text = n.scalar_text().unwrap_or_default();
            if !matches!(
                kind,
                CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
            ) {
                return Err(schema(
                    n.pos.line,
                    "a boolean correlation condition is only allowed for temporal types",
                ));
            }
            let cond = parse_condition(&text, n.pos.line)?;
            Some(CorrelationCondition::Rules(to_rule_expr(
                &cond, &rules, n.pos.line,
            )?))
        }
    };
    match (&condition, kind) {
        (None, CorrelationKind::Temporal | CorrelationKind::TemporalOrdered) => {}
        (None, _) => {
            return Err(schema(
                line,
                format!("a `{}` correlation needs a `condition`", kind.as_str()),
            ))
        }
        (Some(CorrelationCondition::Threshold { field: None, .. }), k) if k.needs_field() => {
            return Err(schema(
                line,
                format!("a `{}` correlation needs `condition.field`", k.as_str()),
            ))
        }
        _ => {}
    }
    if group_by.is_empty()
        && !matches!(
            kind,
            CorrelationKind::EventCount
                | CorrelationKind::ValueCount
                | CorrelationKind::ValueSum
                | CorrelationKind::ValueAvg
                | CorrelationKind::ValuePercentile
        )
    {
        // temporal without group-by correlates across everything: allowed.
    }
    Ok(Correlation {
        meta,
        kind,
        rules,
        group_by,
        timespan_secs,
        condition,
        aliases,
        generate,
    })
}

fn to_rule_expr(c: &Cond, rules: &[String], line: usize) -> PResult<RuleExpr> {
    Ok(match c {
        Cond::Ref(n) => {
            if !rules.contains(n) {
                return Err(Problem::at(
                    line,
                    ErrorKind::Reference,
                    format!("condition names rule `{n}` that is not in `rules`"),
                ));
            }
            RuleExpr::Rule(n.clone())
        }
        Cond::Not(x) => RuleExpr::Not(Box::new(to_rule_expr(x, rules, line)?)),
        Cond::And(v) => RuleExpr::And(
            v.iter()
                .map(|x| to_rule_expr(x, rules, line))
                .collect::<PResult<_>>()?,
        ),
        Cond::Or(v) => RuleExpr::Or(
            v.iter()
                .map(|x| to_rule_expr(x, rules, line))
                .collect::<PResult<_>>()?,
        ),
        Cond::OneOf(_) | Cond::AllOf(_) => {
            return Err(Problem::at(
                line,
                ErrorKind::Condition,
                "`of` is not allowed in a correlation condition",
            ))
        }
    })
}

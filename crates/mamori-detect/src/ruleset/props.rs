//! Property test for issue #16: **a rule's matches never depend on the other rules compiled
//! with it.** Random rule sets are built from literals that share prefixes, suffixes and
//! substrings (and 16-byte automaton keys with different tails); each rule is compiled alone
//! and with the others, and both answers must agree on random events — and agree with a direct,
//! obviously-correct evaluation of the Sigma semantics (`reference`), so a bug that shows up
//! even in one rule (two values of one list sharing an automaton state) is caught too.
//!
//! Deterministic: the seeds are fixed, a failure prints its seed, rules and event.

use std::path::Path;
use std::sync::Arc;

use mamori_event::{Event, FieldName, Format, Origin, Value};
use mamori_sigma::{Placeholders, RulePack};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;

/// Building blocks of literals and values: short pieces that occur inside each other, the
/// issue's own pairs (`.exe` / `.exe.log`, `.cpl` / `.cpl",`), non-ASCII with case forms,
/// and long pieces so literals pass the 16-byte key with tails shorter and longer than 64.
const POOL: &[&str] = &[
    "a",
    "b",
    "ab",
    "ba",
    "x",
    ".exe",
    ".exe.log",
    ".cpl",
    ".cpl\",",
    "rundll32.exe",
    "-",
    "é",
    "É",
    "0123456789abcdef",
    "0123456789abcdefgh",
    "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt",
    "uuuuuuuuuu",
];

const FIELDS: &[&str] = &["F", "G"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Eq,
    Contains,
    Starts,
    Ends,
    /// `lit*lit` or `lit?lit`.
    Glob,
    /// `(?i)lit.*lit` with `|re`.
    Regex,
    Null,
    Empty,
    /// Field-less keyword list.
    Keyword,
}

#[derive(Debug, Clone)]
struct Sel {
    field: &'static str,
    kind: Kind,
    values: Vec<String>,
    all: bool,
    /// The compiled `values[0]` of a `Regex` selection.
    re: Option<regex::Regex>,
}

#[derive(Debug, Clone)]
enum Cond {
    One(Sel),
    Not(Sel),
    AndNot(Sel, Sel),
    Or(Sel, Sel),
}

fn random_case(rng: &mut StdRng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.gen_bool(0.3) {
                match c {
                    'é' => 'É',
                    'É' => 'é',
                    c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
                    c => c.to_ascii_lowercase(),
                }
            } else {
                c
            }
        })
        .collect()
}

fn literal(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..=3);
    let s: String = (0..n).map(|_| *POOL.choose(rng).unwrap()).collect();
    random_case(rng, &s)
}

fn sel(rng: &mut StdRng) -> Sel {
    let kind = *[
        Kind::Eq,
        Kind::Contains,
        Kind::Starts,
        Kind::Ends,
        Kind::Contains,
        Kind::Starts,
        Kind::Ends,
        Kind::Glob,
        Kind::Regex,
        Kind::Null,
        Kind::Empty,
        Kind::Keyword,
    ]
    .choose(rng)
    .unwrap();
    let field = *FIELDS.choose(rng).unwrap();
    let n = rng.gen_range(1..=3);
    let values = match kind {
        Kind::Null | Kind::Empty => Vec::new(),
        Kind::Glob => (0..n)
            .map(|_| {
                let w = if rng.gen_bool(0.5) { "*" } else { "?" };
                format!("{}{w}{}", literal(rng), literal(rng))
            })
            .collect(),
        Kind::Regex => vec![format!(
            "(?i){}.*{}",
            regex::escape(&literal(rng)),
            regex::escape(&literal(rng))
        )],
        _ => (0..n).map(|_| literal(rng)).collect(),
    };
    let all = matches!(kind, Kind::Contains | Kind::Keyword) && n > 1 && rng.gen_bool(0.3);
    let re = (kind == Kind::Regex).then(|| regex::Regex::new(&values[0]).unwrap());
    Sel {
        field,
        kind,
        values,
        all,
        re,
    }
}

fn cond(rng: &mut StdRng) -> Cond {
    match rng.gen_range(0..6) {
        0..=2 => Cond::One(sel(rng)),
        3 => Cond::Not(sel(rng)),
        4 => Cond::AndNot(sel(rng), sel(rng)),
        _ => Cond::Or(sel(rng), sel(rng)),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sel_yaml(name: &str, s: &Sel) -> String {
    let list: String = s
        .values
        .iter()
        .map(|v| format!("      - {}\n", quote(v)))
        .collect();
    let all = if s.all { "|all" } else { "" };
    match s.kind {
        Kind::Null => format!("  {name}:\n    {}: null\n", s.field),
        Kind::Empty => format!("  {name}:\n    {}: ''\n", s.field),
        Kind::Keyword if s.all => format!("  {name}:\n    '|all':\n{list}"),
        Kind::Keyword => format!(
            "  {name}:\n{}",
            s.values
                .iter()
                .map(|v| format!("    - {}\n", quote(v)))
                .collect::<String>()
        ),
        k => {
            let m = match k {
                Kind::Contains => "|contains",
                Kind::Starts => "|startswith",
                Kind::Ends => "|endswith",
                Kind::Regex => "|re",
                _ => "",
            };
            format!("  {name}:\n    {}{m}{all}:\n{list}", s.field)
        }
    }
}

fn rule_yaml(i: usize, c: &Cond) -> String {
    let (sels, condition) = match c {
        Cond::One(a) => (sel_yaml("s", a), "s"),
        Cond::Not(a) => (sel_yaml("s", a), "not s"),
        Cond::AndNot(a, b) => (sel_yaml("s", a) + &sel_yaml("t", b), "s and not t"),
        Cond::Or(a, b) => (sel_yaml("s", a) + &sel_yaml("t", b), "s or t"),
    };
    format!(
        "title: r{i}\nid: r{i}\nlogsource: {{product: test}}\ndetection:\n{sels}  condition: {condition}\n"
    )
}

fn compile_all(docs: &[String], opts: &CompileOptions) -> RuleSet {
    let mut pack = RulePack::new();
    pack.add_file("p.yml", &docs.join("---\n"), &Placeholders::new());
    assert!(
        pack.failures.is_empty(),
        "{:?}\n{}",
        pack.failures,
        docs.join("---\n")
    );
    RuleSet::compile(&pack, opts)
}

/// A field of a random event: absent, null, empty, one string or a list of two.
fn field_value(rng: &mut StdRng, lits: &[String]) -> Option<Value> {
    let text = |rng: &mut StdRng| -> String {
        let n = rng.gen_range(0..=4);
        let s: String = (0..n)
            .map(|_| {
                if !lits.is_empty() && rng.gen_bool(0.5) {
                    lits.choose(rng).unwrap().clone()
                } else {
                    POOL.choose(rng).unwrap().to_string()
                }
            })
            .collect();
        random_case(rng, &s)
    };
    match rng.gen_range(0..20) {
        0..=2 => None,
        3 => Some(Value::Null),
        4 => Some(Value::str("")),
        5 | 6 => Some(Value::List(vec![
            Value::str(text(rng)),
            Value::str(text(rng)),
        ])),
        _ => Some(Value::str(text(rng))),
    }
}

fn make_event(fields: &[(&str, Value)]) -> Event {
    let mut e = Event::new(
        Format::Json,
        Origin::File {
            path: Arc::from(Path::new("p.json")),
            record: None,
            line: Some(1),
            offset: 0,
        },
        Vec::new(),
    );
    for (k, v) in fields {
        e.push(FieldName::new(k), v.clone());
    }
    e.logsource.product = Some("test".into());
    e
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::Str(s) => vec![s],
        Value::List(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// `*` and `?` over chars, case already folded.
fn glob_match(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|k| glob_match(rest, &t[k..])),
        Some(('?', rest)) => !t.is_empty() && glob_match(rest, &t[1..]),
        Some((c, rest)) => t.first() == Some(c) && glob_match(rest, &t[1..]),
    }
}

/// The Sigma semantics of one selection, evaluated directly.
fn reference_sel(s: &Sel, fields: &[(&str, Value)]) -> bool {
    let low = |x: &str| x.to_lowercase();
    if s.kind == Kind::Keyword {
        let all: Vec<String> = fields
            .iter()
            .flat_map(|(_, v)| strings(v))
            .map(low)
            .collect();
        let hit = |k: &String| all.iter().any(|t| t.contains(&low(k)));
        return if s.all {
            s.values.iter().all(hit)
        } else {
            s.values.iter().any(hit)
        };
    }
    let value = fields.iter().find(|(n, _)| *n == s.field).map(|(_, v)| v);
    match s.kind {
        Kind::Null => matches!(value, None | Some(Value::Null)),
        Kind::Empty => value.is_some_and(|v| strings(v).contains(&"")),
        _ => {
            let texts: Vec<&str> = value.map(strings).unwrap_or_default();
            let one = |pat: &String| {
                texts.iter().any(|t| {
                    let (t, p) = (low(t), low(pat));
                    match s.kind {
                        Kind::Eq => t == p,
                        Kind::Contains => t.contains(&p),
                        Kind::Starts => t.starts_with(&p),
                        Kind::Ends => t.ends_with(&p),
                        Kind::Glob => glob_match(
                            &p.chars().collect::<Vec<_>>(),
                            &t.chars().collect::<Vec<_>>(),
                        ),
                        Kind::Regex => s.re.as_ref().is_some_and(|r| r.is_match(&t)),
                        _ => unreachable!(),
                    }
                })
            };
            if s.all {
                s.values.iter().all(one)
            } else {
                s.values.iter().any(one)
            }
        }
    }
}

fn reference(c: &Cond, fields: &[(&str, Value)]) -> bool {
    match c {
        Cond::One(a) => reference_sel(a, fields),
        Cond::Not(a) => !reference_sel(a, fields),
        Cond::AndNot(a, b) => reference_sel(a, fields) && !reference_sel(b, fields),
        Cond::Or(a, b) => reference_sel(a, fields) || reference_sel(b, fields),
    }
}

fn matched(rs: &RuleSet, ev: &Event, scratch: &mut Scratch) -> Vec<String> {
    let mut out = Vec::new();
    rs.matches(ev, scratch, &mut out);
    out.iter()
        .map(|m| rs.rule(m.rule).meta.id.clone().unwrap_or_default())
        .collect()
}

#[test]
fn adding_unrelated_rules_never_changes_a_rules_matches() {
    let opts = CompileOptions::default();
    let mut checked = 0usize;
    let mut fired = 0usize;
    for seed in 0..250u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(2..=12);
        let conds: Vec<Cond> = (0..n).map(|_| cond(&mut rng)).collect();
        let docs: Vec<String> = conds
            .iter()
            .enumerate()
            .map(|(i, c)| rule_yaml(i, c))
            .collect();
        let lits: Vec<String> = conds
            .iter()
            .flat_map(|c| match c {
                Cond::One(a) | Cond::Not(a) => vec![a.clone()],
                Cond::AndNot(a, b) | Cond::Or(a, b) => vec![a.clone(), b.clone()],
            })
            .filter(|s| s.kind != Kind::Regex)
            .flat_map(|s| s.values)
            .map(|v| v.replace(['*', '?'], ""))
            .collect();
        let together = compile_all(&docs, &opts);
        let alone: Vec<RuleSet> = docs
            .iter()
            .map(|d| compile_all(std::slice::from_ref(d), &opts))
            .collect();
        let mut sc = together.scratch();
        let mut sc1 = together.scratch();
        for _ in 0..40 {
            let mut fields: Vec<(&str, Value)> = Vec::new();
            for f in FIELDS.iter().chain(["H"].iter()) {
                if let Some(v) = field_value(&mut rng, &lits) {
                    fields.push((f, v));
                }
            }
            let ev = make_event(&fields);
            let all = matched(&together, &ev, &mut sc);
            for (i, c) in conds.iter().enumerate() {
                let id = format!("r{i}");
                let in_set = all.contains(&id);
                let by_itself = !matched(&alone[i], &ev, &mut sc1).is_empty();
                let want = reference(c, &fields);
                assert!(
                    in_set == by_itself && by_itself == want,
                    "seed {seed}, rule r{i}: with others {in_set}, alone {by_itself}, \
                     reference {want}\nrule:\n{}\nall rules:\n{}\nevent: {fields:?}",
                    docs[i],
                    docs.join("---\n"),
                );
                checked += 1;
                fired += usize::from(want);
            }
        }
    }
    // The generator must exercise both outcomes, or the property says nothing.
    assert!(checked > 10_000, "{checked} checks");
    assert!(
        fired * 10 > checked && fired * 10 < checked * 9,
        "{fired} of {checked} rule×event pairs matched"
    );
}

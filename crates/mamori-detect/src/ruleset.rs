use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Anchored, MatchKind, StartKind,
};
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use mamori_event::{Event, FieldName, Level, Value};
use mamori_sigma::{
    Cidr, CmpOp, Expr, FieldMap, LogSourceSpec, LogsourceMap, MapValue, Meta, Pattern, Piece,
    RefMode, Rule, RulePack, Test, TimePart,
};
use regex::Regex;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::logsource::{selector, Selector, WinAlt};

/// Mapping data the compiler needs.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub logsources: LogsourceMap,
    pub fields: FieldMap,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            logsources: LogsourceMap::builtin(),
            fields: FieldMap::builtin(),
        }
    }
}

/// What a match refers to: the rule's metadata, shared.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub meta: Meta,
    pub level: Level,
    pub logsource: LogSourceSpec,
    pub fields_used: Vec<String>,
    /// False for rules referenced by a correlation without `generate: true`: their matches
    /// feed the correlation but are not alerts of their own.
    pub standalone: bool,
}

/// A rule that matched an event: the index into [`RuleSet::rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    pub rule: u32,
}

const KEYWORD_SLOT: u32 = u32::MAX;

/// Distinct field names a [`Scratch`] remembers the slots of.
const NAME_CACHE: usize = 4096;
/// Most slot numbers the name caches hold: every name the rules read has one or two, so
/// this is reached only by names that are not kept, and then the caches start again.
const SLOT_POOL: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Anchor {
    Contains,
    Prefix,
    Suffix,
    Exact,
}

#[derive(Debug)]
enum PredKind {
    /// Found by the slot's automaton; true when fired.
    Lit,
    /// A literal no rule waits for (in no trigger group: a filter's, or one an AND holds
    /// besides a rarer one): left out of the slot's automaton and checked in the field's
    /// values only when a candidate rule reads it. Common literals (`.exe`, ` -`, `\\`) are
    /// mostly of this kind; scanning for them cost most of the automata's matches.
    LazyLit {
        anchor: Anchor,
        text: Box<[u8]>,
    },
    /// Wildcard pattern, cased string or non-ASCII literal: a regex, tried only when the
    /// `required` literal (if any) fired.
    Glob {
        glob: crate::glob::Glob,
        required: Option<u32>,
    },
    Regex {
        re: Regex,
        required: Option<Vec<u32>>,
    },
    NumEq(f64),
    Cmp(CmpOp, f64),
    Bool(bool),
    /// Absent or null (`field: null`); an empty string is not null.
    Null,
    Exists(bool),
    Cidr(Cidr),
    FieldRef {
        other: u32,
        mode: RefMode,
    },
    TimePart(TimePart, i64),
    /// The event's reader-set logsource.
    Logsource {
        product: Option<String>,
        services: Option<Vec<String>>,
        category: Option<String>,
    },
}

#[derive(Debug)]
struct Pred {
    slot: u32,
    kind: PredKind,
}

#[derive(Debug, Clone)]
enum Node {
    Pred(u32),
    /// An OR of literal predicates (sorted): true if any fired. Checked from the side of the
    /// few literals that fired, so a 500-item IOC list costs a few lookups.
    AnyLit(Box<[u32]>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Const(bool),
}

/// Per automaton pattern: the predicates it stands for, each with the rest of its literal
/// when the literal was longer than [`KEY_LEN`] (verified after the automaton hit).
type Targets = SmallVec<[(u32, Option<Box<[u8]>>); 1]>;

/// Literals longer than this enter the automata by their first `KEY_LEN` bytes only: IOC lists
/// (hashes, long paths) would otherwise build tries of hundreds of thousands of states.
const KEY_LEN: usize = 16;

/// One unanchored automaton: pattern index → the predicates it stands for.
#[derive(Debug)]
struct Automaton {
    /// `None` when the only pattern is empty.
    ac: Option<Unanchored>,
    pats: Vec<Targets>,
    /// The pattern index of an empty literal, which every value holds (a double array has no
    /// empty pattern).
    empty: Option<usize>,
    /// Length of the shortest pattern: a shorter value cannot hold any.
    min_len: usize,
    /// For a small pattern set, a SIMD (Teddy) searcher over the same patterns (`None` for
    /// larger sets, or when the CPU lacks the instructions). The overlapping scan cannot use
    /// it (it reports leftmost matches only), but it says where the first occurrence of any
    /// pattern starts: a value with none — nearly every value — is not walked at all, the
    /// others from there on. (Neither automaton builds such a prefilter for an overlapping
    /// search.)
    pre: Option<aho_corasick::packed::Searcher>,
}

/// The overlapping search of an unanchored automaton: a double-array Aho-Corasick
/// (`daachorse`; measured on the SigmaHQ sets against aho-corasick's automata: 0.75× the
/// contiguous NFA's time on the 8,768 command-line keys, 0.6× the DFA's on the 221 image keys,
/// in half the NFA's memory), or aho-corasick's NFA should a set exceed the double array's
/// limits (16 M patterns).
enum Unanchored {
    Double(daachorse::DoubleArrayAhoCorasick<u32>),
    Nfa(AhoCorasick),
}

impl std::fmt::Debug for Unanchored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({} bytes)", self.kind(), self.memory_usage())
    }
}

impl Unanchored {
    fn memory_usage(&self) -> usize {
        match self {
            Unanchored::Double(d) => d.heap_bytes(),
            Unanchored::Nfa(a) => a.memory_usage(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Unanchored::Double(_) => "DoubleArray",
            Unanchored::Nfa(_) => "ContiguousNFA",
        }
    }
}

/// Pattern sets up to this size get a Teddy searcher (its own limit for good speed; two
/// searchers for up to 128 patterns measured no faster than none).
const PRE_MAX_PATTERNS: usize = 64;
/// Values shorter than this are walked directly (Teddy's set-up would cost about as much).
const PRE_MIN_LEN: usize = 32;

/// A Teddy searcher over `patterns`, when they are few and the CPU can run it (the packed
/// builder itself refuses an empty pattern).
fn teddy(patterns: &[Vec<u8>]) -> Option<aho_corasick::packed::Searcher> {
    if patterns.len() > PRE_MAX_PATTERNS {
        return None;
    }
    aho_corasick::packed::Config::new()
        .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
        .builder()
        .extend(patterns)
        .build()
}

/// All literals of one field, split by anchoring so most of them cost almost nothing:
/// equality is a hash lookup, prefixes and suffixes are anchored searches that stop at the
/// first byte no pattern continues with; only `contains` literals scan the whole value.
/// An anchored automaton walked byte by byte from the start of the value; it stops at the first
/// byte no pattern continues with. After `k` bytes only a pattern of length `k` is a hit: the
/// automaton's match sets also carry shorter patterns that merely end there.
#[derive(Debug)]
struct AnchoredAutomaton {
    dfa: Anchor2,
    pats: Vec<Targets>,
}

/// A DFA for small pattern sets, the (much smaller) contiguous NFA for large ones (anchored
/// or unanchored, as built).
#[derive(Debug)]
enum Anchor2 {
    Dfa(aho_corasick::dfa::DFA),
    Nfa(aho_corasick::nfa::contiguous::NFA),
}

impl Anchor2 {
    fn memory_usage(&self) -> usize {
        use aho_corasick::automaton::Automaton as _;
        match self {
            Anchor2::Dfa(d) => d.memory_usage(),
            Anchor2::Nfa(n) => n.memory_usage(),
        }
    }
}

#[derive(Debug, Default)]
struct SlotMatcher {
    contains: Option<Automaton>,
    prefix: Option<AnchoredAutomaton>,
    /// Built over reversed patterns, run over the reversed value.
    suffix: Option<AnchoredAutomaton>,
    exact: FxHashMap<Box<[u8]>, SmallVec<[u32; 1]>>,
    /// Lengths of the `exact` literals (bit `n` of word `n / 64`; the last bit stands for
    /// every length from 255 on): a value of no such length skips the lowercasing and lookup.
    exact_lens: [u64; 4],
}

impl SlotMatcher {
    fn len_bit(n: usize) -> (usize, u64) {
        let n = n.min(255);
        (n / 64, 1 << (n % 64))
    }

    fn may_be_exact(&self, n: usize) -> bool {
        let (w, b) = SlotMatcher::len_bit(n);
        self.exact_lens[w] & b != 0
    }
}

#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Rules in this bucket with no trigger literal: always evaluated.
    always: Vec<u32>,
    /// Bitset of every rule in the bucket.
    member: Vec<u64>,
    /// Bitset of the field slots its rules read: other slots are not scanned.
    slots: Vec<u64>,
    keywords: bool,
    /// Its keyword literals' matcher ([`RuleSet::keyword_ac`]): only its own rules' keywords,
    /// so a Windows event is not searched for every keyword of every channel.
    keyword_ac: Option<u32>,
}

impl Bucket {
    fn slot_used(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    fn has(&self, rule: u32) -> bool {
        self.member
            .get(rule as usize / 64)
            .is_some_and(|w| w & (1 << (rule % 64)) != 0)
    }
}

/// A compiled, immutable set of Sigma rules. Share it between threads (`Arc<RuleSet>`); give
/// each thread its own [`Scratch`].
#[derive(Debug)]
pub struct RuleSet {
    /// Unique per compiled set: a [`Scratch`] used with another set drops its name cache.
    id: u64,
    rules: Vec<(Arc<RuleInfo>, Node)>,
    preds: Vec<Pred>,
    slot_names: Vec<String>,
    name_slots: FxHashMap<String, SmallVec<[u32; 2]>>,
    slot_ac: Vec<Option<SlotMatcher>>,
    /// Keyword matchers, one per distinct set of keyword literals a bucket's rules use.
    keyword_ac: Vec<SlotMatcher>,
    /// Literal predicate → the (rule, trigger group) pairs it wakes.
    trigger_rules: Vec<Vec<(u32, u8)>>,
    /// EventID value → the (rule, trigger group) pairs it wakes.
    eid_rules: FxHashMap<i64, Vec<(u32, u8)>>,
    /// Per rule, the bit of every trigger group: a rule is evaluated only once each of its
    /// groups (necessary conditions ANDed in its detection) has an atom that holds.
    need: Vec<u8>,
    /// Per rule, the slot of each of its `fields_used` ([`KEYWORD_SLOT`] when no rule reads
    /// the field), for [`RuleSet::details`].
    detail_slots: Vec<Box<[u32]>>,
    buckets: Vec<Bucket>,
    /// Channel → (bucket for the channel, EventID → bucket).
    win_chan: FxHashMap<String, (u32, FxHashMap<i64, u32>)>,
    win_any: u32,
    other: u32,
}

/// Per-thread scratch space for [`RuleSet::matches`].
#[derive(Debug, Default)]
pub struct Scratch {
    gen: u32,
    fired: Vec<u32>,
    eval_gen: Vec<u32>,
    eval_val: Vec<bool>,
    cand_gen: Vec<u32>,
    /// Per rule: the trigger groups woken for the event of generation `grp_gen`.
    grp_gen: Vec<u32>,
    grp_mask: Vec<u8>,
    cands: Vec<u32>,
    fired_list: Vec<u32>,
    slot_fields: Vec<(u32, u32)>,
    /// The fields of each slot as chains through `slot_fields`, so a predicate finds its
    /// values without filtering every field: per slot, 1 + the index of its last entry (valid
    /// for the event of generation `slot_gen`); per entry, 1 + the index of the slot's entry
    /// before it (0 ends a chain).
    slot_head: Vec<u32>,
    slot_gen: Vec<u32>,
    slot_next: Vec<u32>,
    /// A name's slots are `slot_pool[start..start + len]`, found by the name's number when
    /// the process keeps it ([`FieldName::id`]: an index, no hashing) and otherwise by the
    /// address of its text (the entry holds a clone of the name, so that address cannot be
    /// reused by another name while cached).
    by_id: Vec<Option<(u32, u32)>>,
    names: FxHashMap<usize, (FieldName, (u32, u32))>,
    slot_pool: Vec<u32>,
    /// The [`RuleSet::id`] the cache above was filled for.
    names_for: u64,
    buf: String,
    bytes: Vec<u8>,
    /// The value being scanned, ASCII-lowercased.
    lower: Vec<u8>,
    /// Diagnostics: bytes walked by `contains` automata (from where their prefilter found the
    /// first occurrence), and their raw matches.
    pub scanned: u64,
    pub raw_matches: u64,
}

impl Scratch {
    /// Rules evaluated for the last event (diagnostics and benchmarks).
    pub fn candidates(&self) -> usize {
        self.cands.len()
    }

    /// Literal predicates that fired for the last event.
    pub fn fired_literals(&self) -> usize {
        self.fired_list.len()
    }

    /// The slots of a field name, as a range of `slot_pool`.
    fn slots_of(
        &mut self,
        name: &FieldName,
        set: &FxHashMap<String, SmallVec<[u32; 2]>>,
    ) -> (u32, u32) {
        let id = name.id().map(|id| id as usize);
        let addr = name.as_str().as_ptr() as usize;
        let cached = match id {
            Some(i) => self.by_id.get(i).copied().flatten(),
            None => self.names.get(&addr).map(|(_, r)| *r),
        };
        if let Some(r) = cached {
            return r;
        }
        // Names that are not kept (a new allocation per event) must not grow it forever.
        if self.names.len() >= NAME_CACHE || self.slot_pool.len() >= SLOT_POOL {
            self.forget_names();
        }
        let start = self.slot_pool.len() as u32;
        self.slot_pool
            .extend(set.get(name.as_str()).into_iter().flatten().copied());
        let r = (start, self.slot_pool.len() as u32 - start);
        match id {
            Some(i) => {
                if self.by_id.len() <= i {
                    self.by_id.resize(i + 1, None);
                }
                self.by_id[i] = Some(r);
            }
            None => {
                self.names.insert(addr, (name.clone(), r));
            }
        }
        r
    }

    fn forget_names(&mut self) {
        self.names.clear();
        self.by_id.clear();
        self.slot_pool.clear();
    }

    fn begin(&mut self, preds: usize, rules: usize, slots: usize) {
        if self.fired.len() != preds
            || self.cand_gen.len() != rules
            || self.slot_gen.len() != slots
            || self.gen == u32::MAX
        {
            self.slot_head = vec![0; slots];
            self.slot_gen = vec![0; slots];
            self.fired = vec![0; preds];
            self.eval_gen = vec![0; preds];
            self.eval_val = vec![false; preds];
            self.cand_gen = vec![0; rules];
            self.grp_gen = vec![0; rules];
            self.grp_mask = vec![0; rules];
            self.gen = 0;
        }
        self.gen += 1;
        self.cands.clear();
        self.fired_list.clear();
        self.slot_fields.clear();
        self.slot_next.clear();
    }

    /// Records that field `field` has slot `slot` (in `slot_fields` and its slot's chain).
    #[inline]
    fn add_slot_field(&mut self, slot: u32, field: u32) {
        let k = self.slot_fields.len() as u32;
        self.slot_fields.push((slot, field));
        let s = slot as usize;
        let prev = if self.slot_gen[s] == self.gen {
            self.slot_head[s]
        } else {
            0
        };
        self.slot_next.push(prev);
        self.slot_head[s] = k + 1;
        self.slot_gen[s] = self.gen;
    }

    /// The indexes of the event's fields that have slot `slot` (last field first).
    fn slot_values(&self, slot: u32) -> SmallVec<[u32; 4]> {
        let mut out = SmallVec::new();
        let s = slot as usize;
        if self.slot_gen.get(s) != Some(&self.gen) {
            return out;
        }
        let mut k = self.slot_head[s];
        while k != 0 {
            let e = k as usize - 1;
            out.push(self.slot_fields[e].1);
            k = self.slot_next[e];
        }
        out
    }
}

struct Builder<'a> {
    opts: &'a CompileOptions,
    preds: Vec<Pred>,
    pred_keys: FxHashMap<(u32, String), u32>,
    slot_names: Vec<String>,
    slot_of: FxHashMap<String, u32>,
    name_slots: FxHashMap<String, SmallVec<[u32; 2]>>,
    /// Per slot (and the keyword slot, last): literal → (pred, anchor) list.
    lits: FxHashMap<u32, Vec<(String, u32, Anchor)>>,
    /// Per predicate, the length of its literal (0 for other predicates).
    lit_len: Vec<u32>,
}

impl Builder<'_> {
    fn slot(&mut self, field: &str) -> u32 {
        if let Some(s) = self.slot_of.get(field) {
            return *s;
        }
        let s = self.slot_names.len() as u32;
        self.slot_names.push(field.to_owned());
        self.slot_of.insert(field.to_owned(), s);
        for name in self.opts.fields.names_for(field) {
            let e = self.name_slots.entry(name).or_default();
            if !e.contains(&s) {
                e.push(s);
            }
        }
        s
    }

    fn add_pred(
        &mut self,
        slot: u32,
        key: String,
        kind: impl FnOnce(&mut Self) -> PredKind,
    ) -> u32 {
        if let Some(p) = self.pred_keys.get(&(slot, key.clone())) {
            return *p;
        }
        let kind = kind(self);
        let id = self.preds.len() as u32;
        self.preds.push(Pred { slot, kind });
        self.pred_keys.insert((slot, key), id);
        id
    }

    fn lit(&mut self, slot: u32, text: &str, anchor: Anchor) -> u32 {
        let lower = text.to_ascii_lowercase();
        let key = format!("lit{anchor:?}:{lower}");
        let known = self.preds.len();
        let id = self.add_pred(slot, key, |_| PredKind::Lit);
        // A predicate's key is its slot, anchor and text: a new literal is a new predicate, so
        // the list needs no search for duplicates (a linear one made compiling quadratic).
        if id as usize >= known {
            if self.lit_len.len() <= id as usize {
                self.lit_len.resize(id as usize + 1, 0);
            }
            self.lit_len[id as usize] = lower.len() as u32;
            self.lits.entry(slot).or_default().push((lower, id, anchor));
        }
        id
    }

    fn node(&mut self, e: &Expr) -> Node {
        match e {
            Expr::Const(b) => Node::Const(*b),
            Expr::Not(x) => Node::Not(Box::new(self.node(x))),
            Expr::And(v) => Node::And(v.iter().map(|x| self.node(x)).collect()),
            Expr::Or(v) => Node::Or(v.iter().map(|x| self.node(x)).collect()),
            Expr::Test { field, test } => {
                let slot = match field {
                    Some(f) => self.slot(f),
                    None => KEYWORD_SLOT,
                };
                self.test(slot, test)
            }
        }
    }

    fn test(&mut self, slot: u32, test: &Test) -> Node {
        let kw = slot == KEYWORD_SLOT;
        if let Test::Str { pattern, cased } = test {
            return self.string(slot, pattern, *cased);
        }
        let key = test.key();
        let kind = match test {
            Test::Str { .. } => unreachable!("handled above"),
            Test::Regex { regex, source } => {
                let required = crate::literals::required_literals(source).map(|lits| {
                    lits.iter()
                        .map(|l| self.lit(slot, l, Anchor::Contains))
                        .collect()
                });
                PredKind::Regex {
                    re: regex.clone(),
                    required,
                }
            }
            Test::NumEq(n) if kw => {
                return self.string(slot, &Pattern::literal(&fmt_num(*n)), false)
            }
            Test::NumEq(n) => PredKind::NumEq(*n),
            Test::Cmp(op, n) => PredKind::Cmp(*op, *n),
            Test::Bool(b) => PredKind::Bool(*b),
            Test::Null => PredKind::Null,
            Test::Exists(b) => PredKind::Exists(*b),
            Test::Cidr(c) => PredKind::Cidr(*c),
            Test::FieldRef { field, mode } => PredKind::FieldRef {
                other: self.slot(field),
                mode: *mode,
            },
            Test::TimePart(p, v) => PredKind::TimePart(*p, *v),
        };
        Node::Pred(self.add_pred(slot, key, |_| kind))
    }

    fn string(&mut self, slot: u32, pattern: &Pattern, cased: bool) -> Node {
        let kw = slot == KEYWORD_SLOT;
        let p = &pattern.0;
        // Keywords are searched for anywhere in a value.
        let mut pieces: Vec<Piece> = p.clone();
        if kw && !pieces.is_empty() {
            if pieces.first() != Some(&Piece::Any) {
                pieces.insert(0, Piece::Any);
            }
            if pieces.last() != Some(&Piece::Any) {
                pieces.push(Piece::Any);
            }
        }
        match pieces.as_slice() {
            // `''` is the empty string, not null (Sigma spec, "Special Field Values"): a
            // present field whose value is empty. A keyword `''` is found in no value.
            [] => {
                return if kw {
                    Node::Const(false)
                } else {
                    Node::Pred(self.lit(slot, "", Anchor::Exact))
                }
            }
            [Piece::Any] => {
                return if kw {
                    Node::Const(true)
                } else {
                    Node::Pred(self.add_pred(slot, "e:true".into(), |_| PredKind::Exists(true)))
                }
            }
            _ => {}
        }
        // The automaton folds ASCII case only; other characters are fine when they have no
        // case forms (dashes, emoji, CJK), so case-insensitive matching stays exact.
        let ascii = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii()
                        || (c.to_lowercase().eq(std::iter::once(c))
                            && c.to_uppercase().eq(std::iter::once(c)))
                })
        };
        if !cased {
            let found = match pieces.as_slice() {
                [Piece::Lit(s)] if ascii(s) => Some((s, Anchor::Exact)),
                [Piece::Any, Piece::Lit(s)] if ascii(s) => Some((s, Anchor::Suffix)),
                [Piece::Lit(s), Piece::Any] if ascii(s) => Some((s, Anchor::Prefix)),
                [Piece::Any, Piece::Lit(s), Piece::Any] if ascii(s) => Some((s, Anchor::Contains)),
                _ => None,
            };
            if let Some((s, anchor)) = found {
                let s = s.clone();
                return Node::Pred(self.lit(slot, &s, anchor));
            }
        }
        // A general pattern, prefiltered by its longest literal.
        let required = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Lit(s) if ascii(s) && s.len() >= 2 => Some(s.clone()),
                _ => None,
            })
            .max_by_key(|s| s.len());
        let key = format!("glob{}:{}", u8::from(cased), Pattern(pieces.clone()));
        Node::Pred(self.add_pred(slot, key, |b| PredKind::Glob {
            glob: crate::glob::Glob::new(&pieces, cased),
            required: required.map(|r| b.lit(slot, &r, Anchor::Contains)),
        }))
    }

    fn selector_node(&mut self, sel: &Selector) -> Node {
        match sel {
            Selector::Other {
                product,
                services,
                category,
            } => {
                let key = format!("ls:{product:?}:{services:?}:{category:?}");
                let kind = PredKind::Logsource {
                    product: product.clone(),
                    services: services.clone(),
                    category: category.clone(),
                };
                Node::Pred(self.add_pred(KEYWORD_SLOT - 1, key, |_| kind))
            }
            Selector::Windows(alts) => {
                let mut ors = Vec::new();
                for a in alts {
                    ors.push(self.win_alt_node(a));
                }
                Node::Or(ors.into())
            }
        }
    }

    fn win_alt_node(&mut self, a: &WinAlt) -> Node {
        let mut ands = Vec::new();
        if let Some((category, service)) = &a.unknown {
            let key = format!("ls:windows:{service:?}:{category:?}");
            let kind = PredKind::Logsource {
                product: Some("windows".into()),
                services: service.as_ref().map(|s| vec![s.clone()]),
                category: category.clone(),
            };
            ands.push(Node::Pred(self.add_pred(KEYWORD_SLOT - 1, key, |_| kind)));
        }
        if let Some(ch) = &a.channels {
            let slot = self.slot("Channel");
            let alts: Vec<Node> = ch
                .iter()
                .map(|c| Node::Pred(self.lit(slot, c, Anchor::Exact)))
                .collect();
            ands.push(Node::Or(alts.into()));
        }
        if let Some(id) = a.event_id {
            ands.push(self.test_on("EventID", &Test::NumEq(id as f64)));
        }
        for (k, v) in &a.extra {
            let t = match v {
                MapValue::Int(i) => Test::NumEq(*i as f64),
                MapValue::Str(s) => Test::Str {
                    pattern: Pattern::literal(s),
                    cased: false,
                },
            };
            ands.push(self.test_on(k, &t));
        }
        Node::And(ands.into())
    }

    fn test_on(&mut self, field: &str, t: &Test) -> Node {
        let s = self.slot(field);
        self.test(s, t)
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Something cheap that must be true for a rule to match: a literal fired, or the event's
/// EventID has a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Lit(u32),
    EventId(i64),
}

/// Most trigger groups a rule waits for (bits of [`RuleSet::need`]).
const MAX_GROUPS: usize = 2;

/// How often an atom is expected to hold, to choose selective triggers. A literal many rules
/// use names something common (`\\rundll32.exe`, `\\powershell.exe`); a short one occurs
/// in many values; an EventID holds for nearly every event of its bucket (buckets are keyed by
/// channel and EventID already).
struct Weights {
    /// Per predicate: (number of rules using it, literal length).
    lits: Vec<(u32, u32)>,
}

impl Weights {
    fn atom(&self, a: &Atom) -> u64 {
        match a {
            Atom::Lit(p) => {
                let (rules, len) = self.lits.get(*p as usize).copied().unwrap_or((1, 0));
                let short = match len {
                    0..=2 => 32,
                    3..=4 => 8,
                    _ => 0,
                };
                4 + 2 * u64::from(rules) + short
            }
            Atom::EventId(_) => 1_000,
        }
    }

    fn set(&self, t: &[Atom]) -> u64 {
        t.iter().map(|a| self.atom(a)).sum()
    }
}

/// Atoms of which at least one must hold for the node to be true; `None` when no such set
/// exists (a negation, an unprefilterable regex, a comparison). Of an AND's children, the
/// set expected to hold least often.
fn trigger(n: &Node, preds: &[Pred], eid_slot: Option<u32>, w: &Weights) -> Option<Vec<Atom>> {
    match n {
        Node::Pred(p) => match &preds[*p as usize].kind {
            PredKind::Lit => Some(vec![Atom::Lit(*p)]),
            PredKind::Glob {
                required: Some(r), ..
            } => Some(vec![Atom::Lit(*r)]),
            PredKind::Regex {
                required: Some(r), ..
            } => Some(r.iter().map(|x| Atom::Lit(*x)).collect()),
            PredKind::NumEq(v) if Some(preds[*p as usize].slot) == eid_slot && v.fract() == 0.0 => {
                Some(vec![Atom::EventId(*v as i64)])
            }
            _ => None,
        },
        Node::AnyLit(set) => Some(set.iter().map(|p| Atom::Lit(*p)).collect()),
        Node::Const(false) => Some(Vec::new()),
        Node::Const(true) | Node::Not(_) => None,
        Node::And(items) => items
            .iter()
            .filter_map(|i| trigger(i, preds, eid_slot, w))
            .min_by_key(|t| w.set(t)),
        Node::Or(items) => {
            let mut all = Vec::new();
            for i in items.iter() {
                all.extend(trigger(i, preds, eid_slot, w)?);
            }
            all.sort_unstable();
            all.dedup();
            Some(all)
        }
    }
}

/// A rule's trigger groups: for an AND, the triggers of up to [`MAX_GROUPS`] of its
/// children (each one necessary, so all of them are), most selective first; `None` when no
/// child has one.
fn trigger_groups(
    n: &Node,
    preds: &[Pred],
    eid_slot: Option<u32>,
    w: &Weights,
) -> Option<Vec<Vec<Atom>>> {
    let Node::And(items) = n else {
        return trigger(n, preds, eid_slot, w).map(|t| vec![t]);
    };
    let mut groups: Vec<Vec<Atom>> = items
        .iter()
        .filter_map(|i| trigger(i, preds, eid_slot, w))
        .collect();
    if groups.is_empty() {
        return None;
    }
    groups.sort_by_key(|t| w.set(t));
    groups.dedup();
    groups.truncate(MAX_GROUPS);
    Some(groups)
}

/// Literal predicates a node reads (also as the prefilter of a glob or regex).
fn lit_preds(n: &Node, preds: &[Pred], out: &mut Vec<u32>) {
    match n {
        Node::Pred(p) => match &preds[*p as usize].kind {
            PredKind::Lit | PredKind::LazyLit { .. } => out.push(*p),
            PredKind::Glob {
                required: Some(r), ..
            } => out.push(*r),
            PredKind::Regex {
                required: Some(r), ..
            } => out.extend(r.iter().copied()),
            _ => {}
        },
        Node::AnyLit(set) => out.extend(set.iter().copied()),
        Node::Const(_) => {}
        Node::Not(x) => lit_preds(x, preds, out),
        Node::And(v) | Node::Or(v) => v.iter().for_each(|x| lit_preds(x, preds, out)),
    }
}

/// Rough evaluation cost, to evaluate cheap children of AND/OR first (all predicates are pure,
/// so order does not change results, only how soon they short-circuit).
fn cost(n: &Node, preds: &[Pred]) -> u32 {
    match n {
        Node::Const(_) => 0,
        Node::Pred(p) => match preds[*p as usize].kind {
            PredKind::Lit => 1,
            PredKind::LazyLit { .. } => 5,
            PredKind::NumEq(_) | PredKind::Exists(_) | PredKind::Null | PredKind::Bool(_) => 3,
            PredKind::Logsource { .. } | PredKind::Cmp(..) | PredKind::TimePart(..) => 4,
            PredKind::Cidr(_) | PredKind::FieldRef { .. } => 6,
            PredKind::Glob { .. } => 10,
            PredKind::Regex { .. } => 20,
        },
        Node::AnyLit(_) => 2,
        Node::Not(x) => cost(x, preds),
        Node::And(v) | Node::Or(v) => v.iter().map(|x| cost(x, preds)).sum::<u32>().min(1000),
    }
}

/// Folds ORs of literal predicates into [`Node::AnyLit`] and flattens nested AND/OR.
fn optimize(n: Node, preds: &[Pred]) -> Node {
    let out = fold(n, preds);
    order(out, preds)
}

fn order(n: Node, preds: &[Pred]) -> Node {
    let sort = |v: Box<[Node]>| -> Box<[Node]> {
        let mut v: Vec<Node> = v.into_vec().into_iter().map(|x| order(x, preds)).collect();
        v.sort_by_key(|x| cost(x, preds));
        v.into()
    };
    match n {
        Node::And(v) => Node::And(sort(v)),
        Node::Or(v) => Node::Or(sort(v)),
        Node::Not(x) => Node::Not(Box::new(order(*x, preds))),
        other => other,
    }
}

fn fold(n: Node, preds: &[Pred]) -> Node {
    match n {
        Node::Or(items) => {
            let mut lits = Vec::new();
            let mut rest = Vec::new();
            for i in items.into_vec() {
                match fold(i, preds) {
                    Node::Pred(p) if matches!(preds[p as usize].kind, PredKind::Lit) => {
                        lits.push(p)
                    }
                    Node::AnyLit(set) => lits.extend(set.iter().copied()),
                    Node::Or(inner) => rest.extend(inner.into_vec()),
                    other => rest.push(other),
                }
            }
            lits.sort_unstable();
            lits.dedup();
            match lits.len() {
                0 => {}
                1 => rest.insert(0, Node::Pred(lits[0])),
                _ => rest.insert(0, Node::AnyLit(lits.into())),
            }
            if rest.len() == 1 {
                rest.pop().unwrap_or(Node::Const(false))
            } else {
                Node::Or(rest.into())
            }
        }
        Node::And(items) => {
            let mut out = Vec::new();
            for i in items.into_vec() {
                match fold(i, preds) {
                    Node::And(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            if out.len() == 1 {
                out.pop().unwrap_or(Node::Const(true))
            } else {
                Node::And(out.into())
            }
        }
        Node::Not(x) => Node::Not(Box::new(fold(*x, preds))),
        other => other,
    }
}

/// An OR of literals longer than this keeps its literals in the automata even when no rule
/// waits for them: checking each when read would cost more than the scan.
const LAZY_SET_MAX: usize = 8;

/// Per predicate, whether it is a literal to check when read ([`PredKind::LazyLit`]) rather
/// than to scan for: a field's literal (keywords are searched in every value: kept) that is in
/// no rule's trigger groups, in no rule evaluated for every event of its buckets (one without
/// triggers), and in no OR of more than [`LAZY_SET_MAX`] literals.
fn lazy_literals(
    preds: &[Pred],
    lits: &FxHashMap<u32, Vec<(String, u32, Anchor)>>,
    rules: &[(Arc<RuleInfo>, Node)],
    triggers: &[(Option<Vec<Vec<Atom>>>, bool)],
) -> Vec<bool> {
    fn big_sets(n: &Node, keep: &mut [bool]) {
        match n {
            Node::AnyLit(set) if set.len() > LAZY_SET_MAX => {
                set.iter().for_each(|p| keep[*p as usize] = true)
            }
            Node::Not(x) => big_sets(x, keep),
            Node::And(v) | Node::Or(v) => v.iter().for_each(|x| big_sets(x, keep)),
            _ => {}
        }
    }
    let mut keep = vec![false; preds.len()];
    let mut used = Vec::new();
    for ((_, node), (t, _)) in rules.iter().zip(triggers) {
        match t {
            Some(groups) => {
                for a in groups.iter().flatten() {
                    if let Atom::Lit(p) = a {
                        keep[*p as usize] = true;
                    }
                }
            }
            None => {
                used.clear();
                lit_preds(node, preds, &mut used);
                used.iter().for_each(|p| keep[*p as usize] = true);
            }
        }
        big_sets(node, &mut keep);
    }
    let mut lazy = vec![false; preds.len()];
    for (slot, ls) in lits {
        if *slot == KEYWORD_SLOT {
            continue;
        }
        for (_, p, anchor) in ls {
            if LAZY_ANCHORS.contains(anchor) && !keep[*p as usize] {
                lazy[*p as usize] = true;
            }
        }
    }
    lazy
}

/// The anchorings whose literals may be left to be checked when read.
const LAZY_ANCHORS: &[Anchor] = &[Anchor::Contains];

/// `n` with each OR of literals that holds lazy ones split: the scanned literals stay one
/// [`Node::AnyLit`], each lazy one becomes its own predicate, checked after them.
fn split_lazy(n: Node, lazy: &[bool]) -> Node {
    match n {
        Node::AnyLit(set) if set.iter().any(|p| lazy[*p as usize]) => {
            let (l, scanned): (Vec<u32>, Vec<u32>) = set.iter().partition(|p| lazy[**p as usize]);
            let mut v = Vec::with_capacity(l.len() + 1);
            match scanned.len() {
                0 => {}
                1 => v.push(Node::Pred(scanned[0])),
                _ => v.push(Node::AnyLit(scanned.into())),
            }
            v.extend(l.into_iter().map(Node::Pred));
            if v.len() == 1 {
                v.pop().unwrap_or(Node::Const(false))
            } else {
                Node::Or(v.into())
            }
        }
        Node::And(v) => Node::And(
            v.into_vec()
                .into_iter()
                .map(|x| split_lazy(x, lazy))
                .collect(),
        ),
        Node::Or(v) => Node::Or(
            v.into_vec()
                .into_iter()
                .map(|x| split_lazy(x, lazy))
                .collect(),
        ),
        Node::Not(x) => Node::Not(Box::new(split_lazy(*x, lazy))),
        other => other,
    }
}

/// Whether a value holds a literal (lowercase ASCII) at its anchoring, ASCII case folded —
/// what the automata find, for a literal checked when read.
fn literal_holds(v: &[u8], lit: &[u8], anchor: Anchor) -> bool {
    match anchor {
        Anchor::Exact => v.eq_ignore_ascii_case(lit),
        Anchor::Prefix => v
            .get(..lit.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(lit)),
        Anchor::Suffix => v
            .len()
            .checked_sub(lit.len())
            .is_some_and(|at| v[at..].eq_ignore_ascii_case(lit)),
        Anchor::Contains => contains_folded(v, lit),
    }
}

/// Whether `hay` holds `needle` (lowercase ASCII), ASCII case folded: candidates are found by
/// the needle's first byte in either case (`memchr2`), then the rest is compared.
fn contains_folded(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last) = hay.len().checked_sub(needle.len()) else {
        return false;
    };
    let upper = first.to_ascii_uppercase();
    let mut from = 0;
    while from <= last {
        let window = &hay[from..=last];
        let found = if upper == first {
            memchr::memchr(first, window)
        } else {
            memchr::memchr2(first, upper, window)
        };
        let Some(i) = found else { return false };
        let at = from + i;
        if hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        from = at + 1;
    }
    false
}

fn node_slots(n: &Node, preds: &[Pred]) -> Vec<u32> {
    fn walk(n: &Node, preds: &[Pred], out: &mut Vec<u32>) {
        match n {
            Node::Pred(p) => {
                let pr = &preds[*p as usize];
                if (pr.slot as usize) < (KEYWORD_SLOT - 1) as usize {
                    out.push(pr.slot);
                }
                if let PredKind::FieldRef { other, .. } = pr.kind {
                    out.push(other);
                }
            }
            Node::Const(_) => {}
            Node::AnyLit(set) => out.extend(
                set.iter()
                    .map(|p| preds[*p as usize].slot)
                    .filter(|s| *s < KEYWORD_SLOT - 1),
            ),
            Node::Not(x) => walk(x, preds, out),
            Node::And(v) | Node::Or(v) => v.iter().for_each(|x| walk(x, preds, out)),
        }
    }
    let mut out = Vec::new();
    walk(n, preds, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

fn uses_keywords(n: &Node, preds: &[Pred]) -> bool {
    match n {
        Node::Pred(p) => preds[*p as usize].slot == KEYWORD_SLOT,
        Node::AnyLit(set) => set.iter().any(|p| preds[*p as usize].slot == KEYWORD_SLOT),
        Node::Const(_) => false,
        Node::Not(x) => uses_keywords(x, preds),
        Node::And(v) | Node::Or(v) => v.iter().any(|x| uses_keywords(x, preds)),
    }
}

/// Anchored (prefix/suffix) pattern sets up to this size are DFAs, larger ones contiguous
/// NFAs (`MAMORI_DFA_LIMIT` overrides it, for measuring); `contains` sets are double arrays.
const DFA_LIMIT: usize = 500;

fn dfa_limit() -> usize {
    std::env::var("MAMORI_DFA_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DFA_LIMIT)
}

fn automaton(patterns: &[Vec<u8>], pats: Vec<Targets>) -> Option<Automaton> {
    if patterns.is_empty() {
        return None;
    }
    let empty = patterns.iter().position(Vec::is_empty);
    let keyed = || {
        patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, p)| (p.as_slice(), i as u32))
    };
    let ac = if keyed().next().is_none() {
        None
    } else {
        let double = daachorse::DoubleArrayAhoCorasickBuilder::new()
            .match_kind(daachorse::MatchKind::Standard)
            .build_with_values(keyed());
        Some(match double {
            Ok(d) => Unanchored::Double(d),
            Err(_) => Unanchored::Nfa(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(patterns)
                    .ok()?,
            ),
        })
    };
    let min_len = patterns.iter().map(Vec::len).min().unwrap_or(0);
    Some(Automaton {
        ac,
        pats,
        empty,
        min_len,
        pre: teddy(patterns),
    })
}

/// Every occurrence of every pattern of `a` in `bytes` (lowercase), overlapping ones included.
fn walk_contains(a: &Automaton, bytes: &[u8], s: &mut Scratch) {
    if bytes.len() < a.min_len {
        return;
    }
    let mut from = 0;
    if let Some(pre) = a.pre.as_ref().filter(|_| bytes.len() >= PRE_MIN_LEN) {
        // The leftmost occurrence of any pattern: none starts before it.
        match pre.find(bytes) {
            None => return,
            Some(m) => from = m.start(),
        }
    }
    s.scanned += (bytes.len() - from) as u64;
    if let Some(e) = a.empty {
        fire_targets(s, &a.pats[e], Tail::Fwd(bytes));
    }
    // A long literal's rest is checked against the bytes after its key.
    match &a.ac {
        None => {}
        Some(Unanchored::Double(d)) => {
            for m in d.find_overlapping_iter(&bytes[from..]) {
                s.raw_matches += 1;
                let t = &a.pats[m.value() as usize];
                let end = from + m.end();
                fire_targets(s, t, Tail::Fwd(bytes.get(end..).unwrap_or_default()));
            }
        }
        Some(Unanchored::Nfa(ac)) => {
            let input = aho_corasick::Input::new(bytes).range(from..);
            for m in ac.find_overlapping_iter(input) {
                s.raw_matches += 1;
                let t = &a.pats[m.pattern().as_usize()];
                fire_targets(s, t, Tail::Fwd(bytes.get(m.end()..).unwrap_or_default()));
            }
        }
    }
}

fn anchored(patterns: &[Vec<u8>], pats: Vec<Targets>) -> Option<AnchoredAutomaton> {
    if patterns.is_empty() {
        return None;
    }
    let dfa = if patterns.len() <= dfa_limit() {
        Anchor2::Dfa(
            aho_corasick::dfa::DFA::builder()
                .match_kind(MatchKind::Standard)
                .start_kind(StartKind::Anchored)
                .build(patterns)
                .ok()?,
        )
    } else {
        Anchor2::Nfa(
            aho_corasick::nfa::contiguous::NFA::builder()
                .match_kind(MatchKind::Standard)
                .build(patterns)
                .ok()?,
        )
    };
    Some(AnchoredAutomaton { dfa, pats })
}

/// Fires every pattern that is a prefix of `bytes` (of reversed `bytes` for suffixes).
fn walk_anchored(a: &AnchoredAutomaton, bytes: &[u8], reversed: bool, s: &mut Scratch) {
    match &a.dfa {
        Anchor2::Dfa(d) => walk(d, &a.pats, bytes, reversed, s),
        Anchor2::Nfa(n) => walk(n, &a.pats, bytes, reversed, s),
    }
}

fn walk<A: aho_corasick::automaton::Automaton>(
    aut: &A,
    pats: &[Targets],
    bytes: &[u8],
    reversed: bool,
    s: &mut Scratch,
) {
    let Ok(mut sid) = aut.start_state(Anchored::Yes) else {
        return;
    };
    let n = bytes.len();
    for k in 0..n {
        let b = if reversed { bytes[n - 1 - k] } else { bytes[k] }.to_ascii_lowercase();
        sid = aut.next_state(Anchored::Yes, sid, b);
        if aut.is_dead(sid) {
            return;
        }
        if aut.is_match(sid) {
            for i in 0..aut.match_len(sid) {
                let pid = aut.match_pattern(sid, i);
                // A state's match set also holds the patterns that are suffixes of its path
                // (Aho-Corasick copies them along failure links for unanchored search): here
                // only a pattern that spans the whole walked prefix is anchored.
                if aut.pattern_len(pid) != k + 1 {
                    continue;
                }
                let t = &pats[pid.as_usize()];
                if reversed {
                    fire_targets(s, t, Tail::Rev(&bytes[..n - 1 - k]));
                } else {
                    fire_targets(s, t, Tail::Fwd(&bytes[k + 1..]));
                }
            }
        }
    }
}

/// Patterns of one anchoring, their predicates, and an index for deduplication.
type PatternGroup = (Vec<Vec<u8>>, Vec<Targets>, FxHashMap<Vec<u8>, usize>);

fn build_slot(lits: &[(String, u32, Anchor)]) -> Option<SlotMatcher> {
    if lits.is_empty() {
        return None;
    }
    let mut m = SlotMatcher::default();
    let mut groups: [PatternGroup; 3] = Default::default();
    for (text, pred, anchor) in lits {
        let (gi, bytes) = match anchor {
            Anchor::Exact => {
                let (w, b) = SlotMatcher::len_bit(text.len());
                m.exact_lens[w] |= b;
                let e = m.exact.entry(text.as_bytes().into()).or_default();
                if !e.contains(pred) {
                    e.push(*pred);
                }
                continue;
            }
            Anchor::Contains => (0, text.as_bytes().to_vec()),
            Anchor::Prefix => (1, text.as_bytes().to_vec()),
            Anchor::Suffix => (2, text.bytes().rev().collect()),
        };
        let (key, rest) = if bytes.len() > KEY_LEN {
            (bytes[..KEY_LEN].to_vec(), Some(bytes[KEY_LEN..].into()))
        } else {
            (bytes, None)
        };
        let g = &mut groups[gi];
        let i = match g.2.get(&key) {
            Some(i) => *i,
            None => {
                g.0.push(key.clone());
                g.1.push(SmallVec::new());
                g.2.insert(key, g.0.len() - 1);
                g.0.len() - 1
            }
        };
        let target = (*pred, rest);
        if !g.1[i].contains(&target) {
            g.1[i].push(target);
        }
    }
    let [c, p, x] = groups;
    m.contains = automaton(&c.0, c.1);
    m.prefix = anchored(&p.0, p.1);
    m.suffix = anchored(&x.0, x.1);
    Some(m)
}

impl RuleSet {
    /// Compiles every rule (and filter, and the rules correlations refer to) of a pack.
    pub fn compile(pack: &RulePack, opts: &CompileOptions) -> RuleSet {
        let mut b = Builder {
            opts,
            preds: Vec::new(),
            pred_keys: FxHashMap::default(),
            slot_names: Vec::new(),
            slot_of: FxHashMap::default(),
            name_slots: FxHashMap::default(),
            lits: FxHashMap::default(),
            lit_len: Vec::new(),
        };
        let referenced_only: Vec<bool> = pack
            .rules
            .iter()
            .map(|r| {
                pack.correlations.iter().any(|c| {
                    !c.generate
                        && c.rules.iter().any(|x| {
                            r.meta.id.as_deref() == Some(x) || r.meta.name.as_deref() == Some(x)
                        })
                })
            })
            .collect();

        let mut rules = Vec::with_capacity(pack.rules.len());
        let mut dets = Vec::with_capacity(pack.rules.len());
        let mut selectors = Vec::with_capacity(pack.rules.len());
        for (i, r) in pack.rules.iter().enumerate() {
            let det = rule_condition(r, pack);
            let det_node = optimize(b.node(&det), &b.preds);
            let kw = uses_keywords(&det_node, &b.preds);
            let sel = selector(&r.logsource, &opts.logsources);
            // Bucket membership already proves a Windows logsource made of channels and
            // EventIDs only; anything more (EventType, reader-set logsources) is checked.
            let proven = match &sel {
                Selector::Windows(alts) => alts
                    .iter()
                    .all(|a| a.extra.is_empty() && a.unknown.is_none()),
                Selector::Other { .. } => false,
            };
            let node = if proven {
                det_node
            } else {
                let ls_node = b.selector_node(&sel);
                Node::And(vec![ls_node, det_node].into())
            };
            dets.push((proven, kw));
            let info = RuleInfo {
                meta: r.meta.clone(),
                level: r.meta.level.unwrap_or(Level::Medium),
                logsource: r.logsource.clone(),
                fields_used: r.fields_used.clone(),
                standalone: !referenced_only[i],
            };
            rules.push((Arc::new(info), node));
            selectors.push(sel);
        }

        // Triggers, chosen once every rule is known: how many rules use a literal estimates
        // how often it holds.
        fn det_of(node: &Node, proven: bool) -> &Node {
            match node {
                Node::And(v) if !proven && v.len() == 2 => &v[1],
                other => other,
            }
        }
        let mut weights = Weights {
            lits: b
                .lit_len
                .iter()
                .map(|l| (0, *l))
                .chain(std::iter::repeat((0, 0)))
                .take(b.preds.len())
                .collect(),
        };
        let det_nodes: Vec<&Node> = rules
            .iter()
            .zip(&dets)
            .map(|((_, n), (proven, _))| det_of(n, *proven))
            .collect();
        let mut used = Vec::new();
        for n in &det_nodes {
            used.clear();
            lit_preds(n, &b.preds, &mut used);
            used.sort_unstable();
            used.dedup();
            for p in &used {
                weights.lits[*p as usize].0 += 1;
            }
        }
        let eid_slot = b.slot_of.get("EventID").copied();
        let triggers: Vec<(Option<Vec<Vec<Atom>>>, bool)> = det_nodes
            .iter()
            .zip(&dets)
            .map(|(n, (_, kw))| (trigger_groups(n, &b.preds, eid_slot, &weights), *kw))
            .collect();
        drop(det_nodes);

        // Literals no rule waits for are checked when read, not scanned for.
        let lazy = lazy_literals(&b.preds, &b.lits, &rules, &triggers);
        if lazy.iter().any(|l| *l) {
            for lits in b.lits.values_mut() {
                lits.retain(|(text, p, anchor)| {
                    if !lazy[*p as usize] {
                        return true;
                    }
                    b.preds[*p as usize].kind = PredKind::LazyLit {
                        anchor: *anchor,
                        text: text.as_bytes().into(),
                    };
                    false
                });
            }
            for (_, n) in rules.iter_mut() {
                let node = std::mem::replace(n, Node::Const(false));
                *n = order(split_lazy(node, &lazy), &b.preds);
            }
        }

        let detail_slots = rules
            .iter()
            .map(|(info, _)| {
                info.fields_used
                    .iter()
                    .map(|f| b.slot_of.get(f.as_str()).copied().unwrap_or(KEYWORD_SLOT))
                    .collect()
            })
            .collect();

        // Automata.
        let nslots = b.slot_names.len();
        let mut slot_ac: Vec<Option<SlotMatcher>> = (0..nslots).map(|_| None).collect();
        let mut keyword_lits: &[(String, u32, Anchor)] = &[];
        for (slot, lits) in &b.lits {
            if *slot == KEYWORD_SLOT {
                keyword_lits = lits;
            } else if let Some(x) = slot_ac.get_mut(*slot as usize) {
                *x = build_slot(lits);
            }
        }
        // Per rule, the keyword literals it reads.
        let rule_keywords: Vec<Vec<u32>> = rules
            .iter()
            .map(|(_, n)| {
                let mut v = Vec::new();
                lit_preds(n, &b.preds, &mut v);
                v.retain(|p| b.preds[*p as usize].slot == KEYWORD_SLOT);
                v
            })
            .collect();
        let mut keyword_ac: Vec<SlotMatcher> = Vec::new();
        let mut keyword_sets: FxHashMap<Vec<u32>, Option<u32>> = FxHashMap::default();

        // Triggers: predicate → rules, EventID value → rules.
        let mut trigger_rules: Vec<Vec<(u32, u8)>> = vec![Vec::new(); b.preds.len()];
        let mut eid_rules: FxHashMap<i64, Vec<(u32, u8)>> = FxHashMap::default();
        let mut need = vec![0u8; rules.len()];
        for (ri, (t, _)) in triggers.iter().enumerate() {
            for (g, atoms) in t.iter().flatten().enumerate() {
                need[ri] |= 1 << g;
                for a in atoms {
                    let x = (ri as u32, g as u8);
                    match a {
                        Atom::Lit(p) => trigger_rules[*p as usize].push(x),
                        Atom::EventId(e) => eid_rules.entry(*e).or_default().push(x),
                    }
                }
            }
        }
        for v in trigger_rules.iter_mut().chain(eid_rules.values_mut()) {
            v.sort_unstable();
            v.dedup();
        }

        // Buckets, with the slots each rule reads (predicates, glob/regex prefilters, fieldrefs).
        let rule_slots: Vec<Vec<u32>> =
            rules.iter().map(|(_, n)| node_slots(n, &b.preds)).collect();
        let nrules = rules.len();
        let words = nrules.div_ceil(64).max(1);
        let mut chan_eid: FxHashMap<(String, i64), Vec<u32>> = FxHashMap::default();
        let mut chan: FxHashMap<String, Vec<u32>> = FxHashMap::default();
        let mut win_any: Vec<u32> = Vec::new();
        let mut other: Vec<u32> = Vec::new();
        for (ri, sel) in selectors.iter().enumerate() {
            let ri = ri as u32;
            match sel {
                Selector::Other { .. } => other.push(ri),
                Selector::Windows(alts) => {
                    for a in alts {
                        match (&a.channels, a.event_id) {
                            (Some(chs), Some(e)) => {
                                for c in chs {
                                    chan_eid.entry((c.clone(), e)).or_default().push(ri);
                                }
                            }
                            (Some(chs), None) => {
                                for c in chs {
                                    chan.entry(c.clone()).or_default().push(ri);
                                }
                            }
                            (None, _) => win_any.push(ri),
                        }
                    }
                }
            }
        }
        let mut buckets = Vec::new();
        let mut make = |members: Vec<u32>| -> u32 {
            let mut bk = Bucket {
                member: vec![0; words],
                slots: vec![0; nslots.div_ceil(64).max(1)],
                ..Bucket::default()
            };
            let mut m = members;
            m.sort_unstable();
            m.dedup();
            let mut kw: Vec<u32> = m
                .iter()
                .flat_map(|r| rule_keywords[*r as usize].iter().copied())
                .collect();
            kw.sort_unstable();
            kw.dedup();
            if !kw.is_empty() {
                bk.keyword_ac = *keyword_sets.entry(kw).or_insert_with_key(|kw| {
                    let lits: Vec<(String, u32, Anchor)> = keyword_lits
                        .iter()
                        .filter(|(_, p, _)| kw.binary_search(p).is_ok())
                        .cloned()
                        .collect();
                    let a = build_slot(&lits)?;
                    keyword_ac.push(a);
                    Some((keyword_ac.len() - 1) as u32)
                });
            }
            for r in m {
                bk.member[r as usize / 64] |= 1 << (r % 64);
                for &sl in &rule_slots[r as usize] {
                    bk.slots[sl as usize / 64] |= 1 << (sl % 64);
                }
                let (t, kw) = &triggers[r as usize];
                if t.is_none() {
                    bk.always.push(r);
                }
                bk.keywords |= *kw;
            }
            buckets.push(bk);
            (buckets.len() - 1) as u32
        };
        let win_any_id = make(win_any.clone());
        let other_id = make(other);
        let mut win_chan: FxHashMap<String, (u32, FxHashMap<i64, u32>)> = FxHashMap::default();
        for (c, rs) in &chan {
            let mut m = rs.clone();
            m.extend(&win_any);
            win_chan.insert(c.clone(), (make(m), FxHashMap::default()));
        }
        for ((c, e), rs) in &chan_eid {
            let mut m = rs.clone();
            m.extend(chan.get(c).into_iter().flatten());
            m.extend(&win_any);
            let id = make(m);
            win_chan
                .entry(c.clone())
                .or_insert_with(|| (win_any_id, FxHashMap::default()))
                .1
                .insert(*e, id);
        }

        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        RuleSet {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rules,
            preds: b.preds,
            slot_names: b.slot_names,
            name_slots: b.name_slots,
            slot_ac,
            keyword_ac,
            trigger_rules,
            eid_rules,
            need,
            detail_slots,
            buckets,
            win_chan,
            win_any: win_any_id,
            other: other_id,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, idx: u32) -> &Arc<RuleInfo> {
        &self.rules[idx as usize].0
    }

    /// Number of distinct predicates after deduplication (for `rules check` and benchmarks).
    pub fn predicate_count(&self) -> usize {
        self.preds.len()
    }

    /// Number of rules without a trigger literal (evaluated on every event of their bucket).
    pub fn untriggered_count(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.always.iter())
            .collect::<rustc_hash::FxHashSet<_>>()
            .len()
    }

    /// The rules that have no trigger literal, for diagnostics (`rules check --verbose`).
    pub fn untriggered_rules(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .buckets
            .iter()
            .flat_map(|b| b.always.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The rules evaluated for the last event matched with `scratch` (diagnostics).
    pub fn last_candidates<'a>(&self, scratch: &'a Scratch) -> &'a [u32] {
        &scratch.cands
    }

    /// Heap bytes held by the literal automata (for `rules check` and benchmarks).
    pub fn automata_memory(&self) -> usize {
        self.slot_ac
            .iter()
            .flatten()
            .chain(self.keyword_ac.iter())
            .map(|m| {
                m.contains.as_ref().map_or(0, |a| {
                    a.ac.as_ref().map_or(0, Unanchored::memory_usage)
                        + a.pre.as_ref().map_or(0, |p| p.memory_usage())
                }) + m.prefix.as_ref().map_or(0, |a| a.dfa.memory_usage())
                    + m.suffix.as_ref().map_or(0, |a| a.dfa.memory_usage())
            })
            .sum()
    }

    /// Per field: (name, contains / prefix / suffix / exact literal counts, automaton kind).
    pub fn slot_stats(&self) -> Vec<(String, [usize; 4], String)> {
        self.slot_ac
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let m = m.as_ref()?;
                Some((
                    self.slot_names[i].clone(),
                    [
                        m.contains.as_ref().map_or(0, |a| a.pats.len()),
                        m.prefix.as_ref().map_or(0, |a| a.pats.len()),
                        m.suffix.as_ref().map_or(0, |a| a.pats.len()),
                        m.exact.len(),
                    ],
                    m.contains
                        .as_ref()
                        .and_then(|a| a.ac.as_ref())
                        .map(|a| a.kind().to_owned())
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    pub fn scratch(&self) -> Scratch {
        Scratch::default()
    }

    /// The event's bucket and EventID.
    fn bucket_for(&self, ev: &Event) -> (&Bucket, Option<i64>) {
        let mut channel = None;
        let mut eid = None;
        for (n, v) in ev.fields() {
            match n.as_str() {
                "Channel" if channel.is_none() => channel = v.as_str(),
                "EventID" if eid.is_none() => eid = v.as_f64().map(|f| f as i64),
                _ => {}
            }
        }
        let windows = ev.logsource.product.as_ref().map(|p| p.as_str()) == Some("windows")
            || (channel.is_some() && eid.is_some());
        if !windows {
            return (&self.buckets[self.other as usize], eid);
        }
        let id = match channel.and_then(|c| self.channel_bucket(c)) {
            None => self.win_any,
            Some((chan_bucket, by_eid)) => eid
                .and_then(|e| by_eid.get(&e).copied())
                .unwrap_or(*chan_bucket),
        };
        (&self.buckets[id as usize], eid)
    }

    /// The buckets of a channel, its name compared in any case (exporters write `security`
    /// for `Security`); the exact spelling is tried first.
    fn channel_bucket(&self, c: &str) -> Option<&(u32, FxHashMap<i64, u32>)> {
        self.win_chan.get(c).or_else(|| {
            self.win_chan
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(c))
                .map(|(_, v)| v)
        })
    }

    /// Appends the rules matching `ev` to `out` (sorted by rule index).
    pub fn matches(&self, ev: &Event, scratch: &mut Scratch, out: &mut Vec<Match>) {
        scratch.begin(self.preds.len(), self.rules.len(), self.slot_names.len());
        if scratch.names_for != self.id {
            scratch.forget_names();
            scratch.names_for = self.id;
        }
        let (bucket, eid) = self.bucket_for(ev);
        let gen = scratch.gen;
        let fields = ev.fields();
        for (i, (name, value)) in fields.iter().enumerate() {
            let (start, len) = scratch.slots_of(name, &self.name_slots);
            for k in start..start + len {
                let s = scratch.slot_pool[k as usize];
                scratch.add_slot_field(s, i as u32);
                if bucket.slot_used(s) {
                    if let Some(a) = &self.slot_ac[s as usize] {
                        scan_value(a, value, scratch);
                    }
                }
            }
        }
        if bucket.keywords {
            if let Some(a) = bucket.keyword_ac.map(|i| &self.keyword_ac[i as usize]) {
                scan_keywords(a, fields, scratch);
            }
        }
        // Candidates: rules all of whose trigger groups fired, plus the bucket's untriggered
        // rules.
        for k in 0..scratch.fired_list.len() {
            let p = scratch.fired_list[k];
            for &(r, g) in &self.trigger_rules[p as usize] {
                self.wake(r, g, bucket, scratch);
            }
        }
        if let Some(rs) = eid.and_then(|e| self.eid_rules.get(&e)) {
            for &(r, g) in rs {
                self.wake(r, g, bucket, scratch);
            }
        }
        for &r in &bucket.always {
            if scratch.cand_gen[r as usize] != gen {
                scratch.cand_gen[r as usize] = gen;
                scratch.cands.push(r);
            }
        }
        let start = out.len();
        let cands = std::mem::take(&mut scratch.cands);
        for &r in &cands {
            if self.eval(&self.rules[r as usize].1, ev, scratch) {
                out.push(Match { rule: r });
            }
        }
        scratch.cands = cands;
        out[start..].sort_unstable();
    }

    /// Marks trigger group `g` of rule `r` as fired; the rule becomes a candidate once all
    /// its groups have.
    #[inline]
    fn wake(&self, r: u32, g: u8, bucket: &Bucket, s: &mut Scratch) {
        let ri = r as usize;
        if !bucket.has(r) {
            return;
        }
        if s.grp_gen[ri] != s.gen {
            s.grp_gen[ri] = s.gen;
            s.grp_mask[ri] = 0;
        }
        s.grp_mask[ri] |= 1 << g;
        if s.grp_mask[ri] == self.need[ri] && s.cand_gen[ri] != s.gen {
            s.cand_gen[ri] = s.gen;
            s.cands.push(r);
        }
    }

    /// Diagnostics (`examples/costs.rs`): evaluates rule `r` against the event `scratch` was
    /// last given to [`RuleSet::matches`], with no predicate result cached, so its own cost
    /// can be timed.
    #[doc(hidden)]
    pub fn eval_uncached(&self, r: u32, ev: &Event, scratch: &mut Scratch) -> bool {
        fn forget(n: &Node, s: &mut Scratch) {
            match n {
                Node::Pred(p) => s.eval_gen[*p as usize] = 0,
                Node::Not(x) => forget(x, s),
                Node::And(v) | Node::Or(v) => v.iter().for_each(|x| forget(x, s)),
                Node::AnyLit(_) | Node::Const(_) => {}
            }
        }
        let node = &self.rules[r as usize].1;
        forget(node, scratch);
        self.eval(node, ev, scratch)
    }

    fn eval(&self, n: &Node, ev: &Event, s: &mut Scratch) -> bool {
        match n {
            Node::Pred(p) => self.pred(*p, ev, s),
            Node::AnyLit(set) => {
                if set.len() > s.fired_list.len() * 4 {
                    s.fired_list.iter().any(|p| set.binary_search(p).is_ok())
                } else {
                    set.iter().any(|p| s.fired[*p as usize] == s.gen)
                }
            }
            Node::And(v) => v.iter().all(|x| self.eval(x, ev, s)),
            Node::Or(v) => v.iter().any(|x| self.eval(x, ev, s)),
            Node::Not(x) => !self.eval(x, ev, s),
            Node::Const(b) => *b,
        }
    }

    fn pred(&self, p: u32, ev: &Event, s: &mut Scratch) -> bool {
        let pu = p as usize;
        let pred = &self.preds[pu];
        if let PredKind::Lit = pred.kind {
            return s.fired[pu] == s.gen;
        }
        if s.eval_gen[pu] == s.gen {
            return s.eval_val[pu];
        }
        let v = self.compute(pred, ev, s);
        s.eval_gen[pu] = s.gen;
        s.eval_val[pu] = v;
        v
    }

    fn compute(&self, pred: &Pred, ev: &Event, s: &mut Scratch) -> bool {
        let fields = ev.fields();
        let slot = pred.slot;
        let values = |s: &Scratch| -> SmallVec<[u32; 4]> { s.slot_values(slot) };
        let any_text = |s: &mut Scratch, f: &dyn Fn(&str) -> bool| -> bool {
            let idx: SmallVec<[u32; 4]> = if slot == KEYWORD_SLOT {
                (0..fields.len() as u32).collect()
            } else {
                values(s)
            };
            idx.iter()
                .any(|&i| for_each_text(&fields[i as usize].1, &mut s.buf, f))
        };
        match &pred.kind {
            PredKind::Lit => false,
            PredKind::LazyLit { anchor, text } => {
                any_text(s, &|t| literal_holds(t.as_bytes(), text, *anchor))
            }
            PredKind::Glob { glob, required } => {
                if let Some(r) = required {
                    if !self.pred(*r, ev, s) {
                        return false;
                    }
                }
                any_text(s, &|t| glob.is_match(t))
            }
            PredKind::Regex { re, required } => {
                if let Some(req) = required {
                    if !req.iter().any(|r| self.pred(*r, ev, s)) {
                        return false;
                    }
                }
                any_text(s, &|t| re.is_match(t))
            }
            PredKind::NumEq(n) => values(s)
                .iter()
                .any(|&i| num_values(&fields[i as usize].1).any(|v| v == *n)),
            PredKind::Cmp(op, n) => values(s).iter().any(|&i| {
                num_values(&fields[i as usize].1).any(|v| match op {
                    CmpOp::Gt => v > *n,
                    CmpOp::Gte => v >= *n,
                    CmpOp::Lt => v < *n,
                    CmpOp::Lte => v <= *n,
                })
            }),
            PredKind::Bool(b) => values(s).iter().any(|&i| match &fields[i as usize].1 {
                Value::Bool(x) => x == b,
                other => other
                    .to_text()
                    .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
            }),
            PredKind::Null => values(s).iter().all(|&i| match &fields[i as usize].1 {
                Value::Null => true,
                Value::List(l) => l.is_empty(),
                _ => false,
            }),
            PredKind::Exists(b) => {
                let present = values(s)
                    .iter()
                    .any(|&i| !matches!(fields[i as usize].1, Value::Null));
                present == *b
            }
            PredKind::Cidr(c) => any_text(s, &|t| {
                let t = t.trim().trim_start_matches('[').trim_end_matches(']');
                t.parse::<IpAddr>().is_ok_and(|ip| c.contains(ip))
            }),
            PredKind::FieldRef { other, mode } => {
                let mine = values(s);
                let theirs = s.slot_values(*other);
                mine.iter().any(|&a| {
                    let a = fields[a as usize].1.to_text().to_ascii_lowercase();
                    theirs.iter().any(|&b| {
                        let b = fields[b as usize].1.to_text().to_ascii_lowercase();
                        match mode {
                            RefMode::Equals => a == b,
                            RefMode::Contains => a.contains(&b),
                            RefMode::StartsWith => a.starts_with(&b),
                            RefMode::EndsWith => a.ends_with(&b),
                        }
                    })
                })
            }
            PredKind::TimePart(part, want) => values(s).iter().any(|&i| {
                parse_time(&fields[i as usize].1.to_text())
                    .is_some_and(|t| time_part(&t, *part) == *want)
            }),
            PredKind::Logsource {
                product,
                services,
                category,
            } => {
                let ls = &ev.logsource;
                let eq = |want: &Option<String>, have: &Option<mamori_event::FieldName>| match want
                {
                    None => true,
                    Some(w) => have
                        .as_ref()
                        .is_some_and(|h| h.as_str().eq_ignore_ascii_case(w)),
                };
                let svc_ok = match services {
                    None => true,
                    Some(list) => {
                        list.iter().any(|x| x == "*")
                            || ls.service.as_ref().is_some_and(|h| {
                                list.iter().any(|w| h.as_str().eq_ignore_ascii_case(w))
                            })
                    }
                };
                eq(product, &ls.product) && svc_ok && eq(category, &ls.category)
            }
        }
    }

    /// The names of the fields a rule refers to and their values in `ev` — the compact
    /// "details" of a detection.
    pub fn details(&self, rule: u32, ev: &Event) -> Vec<(String, String)> {
        let fields: Vec<(u32, u32)> = ev
            .fields()
            .iter()
            .enumerate()
            .flat_map(|(i, (n, _))| {
                self.name_slots
                    .get(n.as_str())
                    .into_iter()
                    .flatten()
                    .map(move |&s| (s, i as u32))
            })
            .collect();
        self.details_of(rule, ev, &fields)
    }

    /// [`RuleSet::details`] of the event `scratch` was last given to [`RuleSet::matches`]
    /// (its fields' slots are known from matching: no name is looked up again).
    pub fn details_matched(
        &self,
        rule: u32,
        ev: &Event,
        scratch: &Scratch,
    ) -> Vec<(String, String)> {
        self.details_of(rule, ev, &scratch.slot_fields)
    }

    /// `slot_fields`: (slot, index of the event's field) of every field that has slots.
    fn details_of(
        &self,
        rule: u32,
        ev: &Event,
        slot_fields: &[(u32, u32)],
    ) -> Vec<(String, String)> {
        let info = self.rule(rule);
        let fields = ev.fields();
        let mut out = Vec::new();
        for (name, &slot) in info
            .fields_used
            .iter()
            .zip(self.detail_slots[rule as usize].iter())
        {
            if slot == KEYWORD_SLOT {
                continue;
            }
            let mut vals: Vec<String> = Vec::new();
            let mut last = u32::MAX;
            for &(s, i) in slot_fields {
                // A field is listed once per slot of its name.
                if s != slot || i == last {
                    continue;
                }
                last = i;
                let t = fields[i as usize].1.to_text();
                if !vals.iter().any(|x| *x == *t) {
                    vals.push(t.into_owned());
                }
            }
            if !vals.is_empty() {
                out.push((name.clone(), vals.join(" | ")));
            }
        }
        // Third-party rules (SigmaHQ, DRL 1.1) must name their author wherever a match is
        // shown; Mamori's own rules (author "Mamori") need not repeat it on every row.
        if let Some(author) = info
            .meta
            .author
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "Mamori")
        {
            out.push(("rule.author".into(), author.to_owned()));
        }
        out
    }
}

/// The rule's detection with the filters that name it ANDed in.
fn rule_condition(r: &Rule, pack: &RulePack) -> Expr {
    let filters: Vec<Expr> = pack
        .filters
        .iter()
        .filter(|f| {
            f.rules
                .iter()
                .any(|x| r.meta.id.as_deref() == Some(x) || r.meta.name.as_deref() == Some(x))
        })
        .map(|f| f.condition.clone())
        .collect();
    if filters.is_empty() {
        r.condition.clone()
    } else {
        let mut all = vec![r.condition.clone()];
        all.extend(filters);
        Expr::And(all)
    }
}

fn num_values(v: &Value) -> Box<dyn Iterator<Item = f64> + '_> {
    match v {
        Value::List(items) => Box::new(items.iter().filter_map(Value::as_f64)),
        other => Box::new(other.as_f64().into_iter()),
    }
}

/// Calls `f` on each text form of a value (list elements separately); true if any call is.
fn for_each_text(v: &Value, buf: &mut String, f: &dyn Fn(&str) -> bool) -> bool {
    use std::fmt::Write;
    match v {
        Value::Null => false,
        Value::Str(s) => f(s),
        Value::Bool(b) => f(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            buf.clear();
            let _ = write!(buf, "{i}");
            f(buf)
        }
        Value::Float(x) => {
            buf.clear();
            let _ = write!(buf, "{x}");
            f(buf)
        }
        Value::List(items) => items.iter().any(|x| for_each_text(x, buf, f)),
    }
}

fn scan_value(a: &SlotMatcher, v: &Value, s: &mut Scratch) {
    use std::fmt::Write;
    match v {
        Value::Null => {}
        Value::Str(t) => scan_text(a, t, s),
        Value::Bool(b) => scan_text(a, if *b { "true" } else { "false" }, s),
        Value::Int(i) => {
            let mut buf = std::mem::take(&mut s.buf);
            buf.clear();
            let _ = write!(buf, "{i}");
            scan_text(a, &buf, s);
            s.buf = buf;
        }
        Value::Float(x) => {
            let mut buf = std::mem::take(&mut s.buf);
            buf.clear();
            let _ = write!(buf, "{x}");
            scan_text(a, &buf, s);
            s.buf = buf;
        }
        Value::List(items) => items.iter().for_each(|x| scan_value(a, x, s)),
    }
}

/// Keywords are searched in every string value: all of them joined by 0xFF, which never
/// occurs in UTF-8 text nor in a pattern, so no match can span two values — one pass instead
/// of one call per field.
fn scan_keywords(a: &SlotMatcher, fields: &[(mamori_event::FieldName, Value)], s: &mut Scratch) {
    fn push(v: &Value, buf: &mut Vec<u8>) {
        match v {
            Value::Str(t) => {
                buf.extend_from_slice(t.as_bytes());
                buf.push(0xFF);
            }
            Value::List(items) => items.iter().for_each(|x| push(x, buf)),
            _ => {}
        }
    }
    let Some(c) = &a.contains else { return };
    let mut buf = std::mem::take(&mut s.bytes);
    buf.clear();
    for (_, v) in fields {
        push(v, &mut buf);
    }
    // The automata hold lowercase patterns and match bytes as they are.
    buf.make_ascii_lowercase();
    walk_contains(c, &buf, s);
    s.bytes = buf;
}

#[inline]
fn fire(s: &mut Scratch, preds: &[u32]) {
    for &p in preds {
        if s.fired[p as usize] != s.gen {
            s.fired[p as usize] = s.gen;
            s.fired_list.push(p);
        }
    }
}

/// The text following an automaton's key, against which the rest of a long literal is checked.
#[derive(Clone, Copy)]
enum Tail<'a> {
    /// Read forward from its start.
    Fwd(&'a [u8]),
    /// Read backward from its end (suffix walks).
    Rev(&'a [u8]),
}

impl Tail<'_> {
    /// Whether the tail, read in its direction, starts with `rest` (ASCII case folded). The
    /// keyword scan's 0xFF separators need no check: a literal is UTF-8, which never holds
    /// that byte, so a rest never matches across one.
    fn starts_with(self, rest: &[u8]) -> bool {
        match self {
            Tail::Fwd(t) => t
                .get(..rest.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(rest)),
            Tail::Rev(t) => {
                t.len() >= rest.len()
                    && t.iter()
                        .rev()
                        .zip(rest)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            }
        }
    }
}

/// Fires the targets of an automaton hit; `after` is the text following the matched key, for
/// verifying the rest of long literals.
#[inline]
fn fire_targets(s: &mut Scratch, targets: &Targets, after: Tail<'_>) {
    for (p, rest) in targets {
        let ok = match rest {
            None => true,
            Some(r) => after.starts_with(r),
        };
        if ok && s.fired[*p as usize] != s.gen {
            s.fired[*p as usize] = s.gen;
            s.fired_list.push(*p);
        }
    }
}

fn scan_text(a: &SlotMatcher, text: &str, s: &mut Scratch) {
    let bytes = text.as_bytes();
    let exact = !a.exact.is_empty() && a.may_be_exact(bytes.len());
    let contains = a.contains.as_ref().filter(|c| bytes.len() >= c.min_len);
    if contains.is_none() && !exact {
        // Anchored walks lowercase the few bytes they read.
        if let Some(p) = &a.prefix {
            walk_anchored(p, bytes, false, s);
        }
        if let Some(x) = &a.suffix {
            walk_anchored(x, bytes, true, s);
        }
        return;
    }
    // The automata hold lowercase patterns and compare bytes as they are (smaller and faster
    // than ASCII-case-insensitive automata): the value is lowercased once for all of them.
    let mut lower = std::mem::take(&mut s.lower);
    lower.clear();
    lower.extend(bytes.iter().map(u8::to_ascii_lowercase));
    if let Some(c) = contains {
        walk_contains(c, &lower, s);
    }
    if let Some(p) = &a.prefix {
        walk_anchored(p, &lower, false, s);
    }
    if let Some(x) = &a.suffix {
        walk_anchored(x, &lower, true, s);
    }
    if exact {
        if let Some(preds) = a.exact.get(lower.as_slice()) {
            fire(s, preds);
        }
    }
    s.lower = lower;
}

fn parse_time(t: &str) -> Option<NaiveDateTime> {
    let t = t.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc).naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d);
        }
    }
    None
}

fn time_part(t: &NaiveDateTime, p: TimePart) -> i64 {
    match p {
        TimePart::Minute => t.minute() as i64,
        TimePart::Hour => t.hour() as i64,
        TimePart::Day => t.day() as i64,
        TimePart::Week => t.iso_week().week() as i64,
        TimePart::Month => t.month() as i64,
        TimePart::Year => t.year() as i64,
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

//! Compiled Sigma rule sets: match many rules against many events, fast, on many threads.
//!
//! Design decision: the whole rule set is compiled at once, not rule by rule.
//! - Every distinct test on a field (across all rules) becomes one *predicate*; identical tests
//!   in different rules are evaluated once per event.
//! - Per field, every case-insensitive literal (equals / contains / startswith / endswith, and
//!   the longest literal of a wildcard pattern) goes into one Aho-Corasick automaton, so one
//!   pass over a field value finds every literal of every rule.
//! - Each rule gets up to two *trigger sets*: literals of which at least one must be present for
//!   the rule to match (derived from its boolean structure: two children of its AND give two).
//!   Only rules all of whose triggers fired — plus the few rules without a trigger — are
//!   evaluated; regexes, CIDRs and numbers run only for them.
//! - Rules are bucketed by logsource (Windows channel × EventID), so an event only looks at the
//!   rules that can apply to it.
//!
//! [`RuleSet::matches`] takes `&self` and a per-thread [`Scratch`]; it never allocates per event
//! once the scratch has warmed up. Correlation (stateful, event-time windows) lives in
//! [`correlation`], which is fed the matches and owns its own state.
//!
//! This crate does no I/O and reads no clock.

pub mod correlation;
mod glob;
mod literals;
mod logsource;
pub mod outcome;
mod ruleset;

pub use ruleset::{CompileOptions, Match, RuleInfo, RuleSet, Scratch};

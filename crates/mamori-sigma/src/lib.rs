//! Sigma rules: YAML text → typed, validated documents.
//!
//! Design decision: everything that can be wrong with a rule is found here, at load time, and
//! reported as a value with file, line and reason — unknown modifiers, invalid regexes and
//! CIDRs, undefined selections in a condition, unresolved `%placeholders%`, correlations that
//! name missing rules. Loading a pack never aborts and never skips silently: it returns the
//! documents that parsed *and* the list of those that did not. Modifier semantics are applied
//! here too, so the matcher (`mamori-detect`) only sees normalised tests.
//!
//! This crate does no I/O: callers pass file contents in.

mod condition;
mod detection;
mod error;
mod mapping;
mod placeholders;
mod rule;
pub mod titles_ja;
pub mod yaml;

pub use condition::{parse_condition, pattern_matches, Cond, Target};
pub use detection::{base64_offsets, Cidr, CmpOp, Expr, Pattern, Piece, RefMode, Test, TimePart};
pub use error::{Error, ErrorKind};
pub use mapping::{CategoryAlt, FieldMap, LogsourceMap, MapValue};
pub use placeholders::Placeholders;
pub use rule::{
    parse_timespan, Correlation, CorrelationCondition, CorrelationKind, CountOp, Document, Filter,
    LogSourceSpec, Meta, Rule, RuleExpr,
};

/// Parses every document of one file. Returns the documents that parsed and one error per
/// document that did not (a YAML syntax error fails the whole file).
pub fn parse_file(path: &str, src: &str, ph: &Placeholders) -> (Vec<Document>, Vec<Error>) {
    let docs = match yaml::parse_documents(src) {
        Ok(d) => d,
        Err(e) => {
            return (
                Vec::new(),
                vec![Error {
                    path: path.to_owned(),
                    line: Some(e.pos.line),
                    rule: None,
                    kind: ErrorKind::Yaml,
                    message: e.message,
                }],
            )
        }
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in &docs {
        // An `action: global` document (legacy multi-doc template) is not a rule.
        if doc.get("action").is_some() {
            errors.push(Error {
                path: path.to_owned(),
                line: Some(doc.pos.line),
                rule: None,
                kind: ErrorKind::Schema,
                message: "legacy `action:` multi-document rules are not supported; split them into separate rules".into(),
            });
            continue;
        }
        match rule::parse_document(doc, path, ph) {
            Ok(d) => out.push(d),
            Err(p) => errors.push(Error {
                path: path.to_owned(),
                line: p.line,
                rule: doc
                    .get("id")
                    .or_else(|| doc.get("title"))
                    .and_then(|n| n.scalar_text()),
                kind: p.kind,
                message: p.message,
            }),
        }
    }
    (out, errors)
}

/// A loaded collection of rules, correlations and filters, plus what failed to load.
#[derive(Debug, Default)]
pub struct RulePack {
    pub rules: Vec<Rule>,
    pub correlations: Vec<Correlation>,
    pub filters: Vec<Filter>,
    pub failures: Vec<Error>,
}

impl RulePack {
    pub fn new() -> RulePack {
        RulePack::default()
    }

    /// Adds one file's documents (and errors).
    pub fn add_file(&mut self, path: &str, src: &str, ph: &Placeholders) {
        let (docs, errors) = parse_file(path, src, ph);
        self.failures.extend(errors);
        for d in docs {
            match d {
                Document::Rule(r) => self.rules.push(r),
                Document::Correlation(c) => self.correlations.push(c),
                Document::Filter(f) => self.filters.push(f),
            }
        }
    }

    /// Checks cross-document references; correlations and filters naming unknown rules are
    /// moved to `failures`. Call once after adding every file.
    pub fn resolve_references(&mut self) {
        let known = |r: &str, rules: &[Rule], corrs: &[Correlation]| {
            rules
                .iter()
                .any(|x| x.meta.id.as_deref() == Some(r) || x.meta.name.as_deref() == Some(r))
                || corrs
                    .iter()
                    .any(|x| x.meta.id.as_deref() == Some(r) || x.meta.name.as_deref() == Some(r))
        };
        // Repeat until stable: removing a broken correlation can break one that names it.
        loop {
            let mut bad = Vec::new();
            for (i, c) in self.correlations.iter().enumerate() {
                if let Some(missing) = c
                    .rules
                    .iter()
                    .find(|r| !known(r, &self.rules, &self.correlations))
                {
                    bad.push((i, missing.clone()));
                }
            }
            if bad.is_empty() {
                break;
            }
            for (i, missing) in bad.into_iter().rev() {
                let c = self.correlations.remove(i);
                self.failures.push(Error {
                    path: c.meta.path.clone(),
                    line: Some(c.meta.line),
                    rule: Some(c.meta.reference().to_owned()),
                    kind: ErrorKind::Reference,
                    message: format!("correlation refers to rule `{missing}`, which is not loaded"),
                });
            }
        }
        let mut bad = Vec::new();
        for (i, f) in self.filters.iter().enumerate() {
            if let Some(missing) = f.rules.iter().find(|r| !known(r, &self.rules, &[])) {
                bad.push((i, missing.clone()));
            }
        }
        for (i, missing) in bad.into_iter().rev() {
            let f = self.filters.remove(i);
            self.failures.push(Error {
                path: f.meta.path.clone(),
                line: Some(f.meta.line),
                rule: Some(f.meta.reference().to_owned()),
                kind: ErrorKind::Reference,
                message: format!("filter refers to rule `{missing}`, which is not loaded"),
            });
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len() + self.correlations.len() + self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;

/// Every `.yml` file below `dir`, depth first in directory order (the diagnostics examples'
/// walk over a SigmaHQ checkout); an unreadable directory is skipped.
pub fn yml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for p in rd.flatten().map(|e| e.path()) {
        if p.is_dir() {
            yml_files(&p, out)
        } else if p.extension().is_some_and(|e| e == "yml") {
            out.push(p)
        }
    }
}

//! Checks as data: YAML templates in the spirit of Nuclei's format.
//!
//! ```yaml
//! id: exposed-git
//! info:
//!   name: {en: Git repository exposed, ja: Git リポジトリが公開されている}
//!   severity: high
//!   description: {en: ..., ja: ...}
//!   remediation: {en: ..., ja: ...}
//! requests:
//!   - path: ["{{BaseURL}}/.git/HEAD"]
//!     matchers-condition: and
//!     matchers:
//!       - {type: status, status: [200]}
//!       - {type: regex, part: body, regex: ['^ref: refs/']}
//! ```
//! A `passive:` template sends nothing: its matchers are applied to every page the crawl
//! fetched (directory listings, version banners). A template with `fingerprint: PRODUCT`
//! names a product of the KEV list and extracts its `version`.
//!
//! Templates are read with yaml-rust2 into JSON values and deserialised with
//! `deny_unknown_fields`, so a typo is an error naming the file, the document and the field;
//! loading returns the templates that compiled *and* the errors of those that did not.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value as JsonValue;
use yaml_rust2::{Yaml, YamlLoader};

use crate::http::{Method, Response};
use crate::model::{Severity, Text};
use crate::scan::Profile;
use crate::Error;

include!(concat!(env!("OUT_DIR"), "/shipped_templates.rs"));

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Info {
    pub name: Text,
    pub severity: Severity,
    pub description: Text,
    pub remediation: Text,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub reference: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    And,
    #[default]
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    #[default]
    Body,
    Header,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatcherType {
    Status,
    Word,
    Regex,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Matcher {
    #[serde(rename = "type")]
    pub kind: MatcherType,
    #[serde(default)]
    pub part: Part,
    #[serde(default)]
    pub words: Vec<String>,
    #[serde(default)]
    pub regex: Vec<String>,
    #[serde(default)]
    pub status: Vec<u16>,
    #[serde(default)]
    pub condition: Condition,
    #[serde(default)]
    pub negative: bool,
    #[serde(default)]
    pub case_insensitive: bool,
    #[serde(skip)]
    compiled: Vec<Regex>,
}

/// Pulls a value (`version`) out of a matched response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extractor {
    pub name: String,
    #[serde(default)]
    pub part: Part,
    pub regex: Vec<String>,
    /// `$1.$2.$3` builds the value from groups; default: group 1.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(skip)]
    compiled: Vec<Regex>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Probe {
    #[serde(default)]
    pub matchers_condition: Condition,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub extractors: Vec<Extractor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequestSpec {
    #[serde(default = "default_method")]
    pub method: Method,
    pub path: Vec<String>,
    #[serde(default)]
    matchers_condition: Condition,
    #[serde(default)]
    matchers: Vec<Matcher>,
    #[serde(default)]
    extractors: Vec<Extractor>,
    /// The matchers and extractors, compiled (serde's `flatten` does not mix with
    /// `deny_unknown_fields`, so they are read above and moved here).
    #[serde(skip)]
    pub probe: Probe,
}

fn default_method() -> Method {
    Method::Get
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub info: Info,
    /// The least profile that runs it.
    #[serde(default)]
    pub profile: Profile,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub requests: Vec<RequestSpec>,
    #[serde(default)]
    pub passive: Option<Probe>,
    /// Where it came from (`templates/exposed-git.yml`), for errors and reports.
    #[serde(skip)]
    pub source: String,
}

/// What a matched template saw.
#[derive(Debug, Clone, Default)]
pub struct Hit {
    pub url: String,
    pub evidence: String,
    pub extracted: Vec<(String, String)>,
}

fn part_text(r: &Response, part: Part) -> String {
    match part {
        Part::Body => r.body.clone(),
        Part::Header => r.header_text(),
        Part::All => format!("{}\n{}", r.header_text(), r.body),
    }
}

impl Matcher {
    fn compile(&mut self) -> Result<(), String> {
        match self.kind {
            MatcherType::Status if self.status.is_empty() => {
                return Err("a status matcher needs `status`".into())
            }
            MatcherType::Word if self.words.is_empty() => {
                return Err("a word matcher needs `words`".into())
            }
            MatcherType::Regex if self.regex.is_empty() => {
                return Err("a regex matcher needs `regex`".into())
            }
            _ => {}
        }
        self.compiled = self
            .regex
            .iter()
            .map(|r| {
                regex::RegexBuilder::new(r)
                    .case_insensitive(self.case_insensitive)
                    .multi_line(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("regex {r:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Whether it matches, and what matched (for the evidence).
    fn eval(&self, r: &Response) -> (bool, Option<String>) {
        let (hit, what) = match self.kind {
            MatcherType::Status => (
                self.status.contains(&r.status),
                Some(format!("HTTP {}", r.status)),
            ),
            MatcherType::Word => {
                let text = part_text(r, self.part);
                let text_l = if self.case_insensitive {
                    text.to_lowercase()
                } else {
                    text
                };
                let found: Vec<&String> = self
                    .words
                    .iter()
                    .filter(|w| {
                        if self.case_insensitive {
                            text_l.contains(&w.to_lowercase())
                        } else {
                            text_l.contains(w.as_str())
                        }
                    })
                    .collect();
                let hit = match self.condition {
                    Condition::And => found.len() == self.words.len(),
                    Condition::Or => !found.is_empty(),
                };
                (hit, found.first().map(|w| w.to_string()))
            }
            MatcherType::Regex => {
                let text = part_text(r, self.part);
                let found: Vec<String> = self
                    .compiled
                    .iter()
                    .filter_map(|re| re.find(&text).map(|m| m.as_str().to_string()))
                    .collect();
                let hit = match self.condition {
                    Condition::And => found.len() == self.compiled.len(),
                    Condition::Or => !found.is_empty(),
                };
                (hit, found.into_iter().next())
            }
        };
        if self.negative {
            (!hit, None)
        } else {
            (hit, if hit { what } else { None })
        }
    }
}

impl Extractor {
    fn compile(&mut self) -> Result<(), String> {
        self.compiled = self
            .regex
            .iter()
            .map(|r| {
                regex::RegexBuilder::new(r)
                    .multi_line(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("regex {r:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn extract(&self, r: &Response) -> Option<String> {
        let text = part_text(r, self.part);
        self.compiled.iter().find_map(|re| {
            let c = re.captures(&text)?;
            Some(match &self.format {
                Some(f) => {
                    let mut out = String::new();
                    c.expand(f, &mut out);
                    out
                }
                None => c.get(1).or_else(|| c.get(0))?.as_str().to_string(),
            })
        })
    }
}

impl Probe {
    fn compile(&mut self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("no matchers".into());
        }
        for m in &mut self.matchers {
            m.compile()?;
        }
        for e in &mut self.extractors {
            e.compile()?;
        }
        Ok(())
    }

    /// `Some(hit)` when the matchers hold for `r`.
    pub fn eval(&self, r: &Response) -> Option<Hit> {
        let mut evidence = Vec::new();
        let mut any = false;
        let mut all = true;
        for m in &self.matchers {
            let (ok, what) = m.eval(r);
            any |= ok;
            all &= ok;
            if let Some(w) = what {
                evidence.push(w);
            }
        }
        let hit = match self.matchers_condition {
            Condition::And => all,
            Condition::Or => any,
        };
        if !hit {
            return None;
        }
        Some(Hit {
            url: r.url.clone(),
            evidence: crate::model::excerpt(&evidence.join(" · "), 300),
            extracted: self
                .extractors
                .iter()
                .filter_map(|e| e.extract(r).map(|v| (e.name.clone(), v)))
                .collect(),
        })
    }
}

impl Template {
    fn compile(&mut self) -> Result<(), String> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(format!(
                "id {:?}: letters, digits, '-', '_', '.' only",
                self.id
            ));
        }
        if self.requests.is_empty() == self.passive.is_none() {
            return Err("a template has either `requests` or `passive`".into());
        }
        for r in &mut self.requests {
            if r.path.is_empty() {
                return Err("a request needs at least one path".into());
            }
            for p in &r.path {
                let rest = p
                    .strip_prefix("{{BaseURL}}")
                    .ok_or_else(|| format!("path {p:?} must start with {{{{BaseURL}}}}"))?;
                if rest.contains("://") || rest.contains('\\') {
                    return Err(format!("path {p:?} must stay on the target"));
                }
            }
            r.probe = Probe {
                matchers_condition: r.matchers_condition,
                matchers: std::mem::take(&mut r.matchers),
                extractors: std::mem::take(&mut r.extractors),
            };
            r.probe.compile()?;
        }
        if let Some(p) = &mut self.passive {
            p.compile()?;
        }
        Ok(())
    }

    /// The path of `p` under the target's directory (`{{BaseURL}}/.git/HEAD` → `.git/HEAD`).
    pub fn rel_path(p: &str) -> &str {
        p.strip_prefix("{{BaseURL}}")
            .unwrap_or(p)
            .trim_start_matches('/')
    }
}

fn yaml_to_json(y: &Yaml) -> JsonValue {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(JsonValue::Number)
            .unwrap_or_else(|| JsonValue::String(s.clone())),
        Yaml::Integer(i) => JsonValue::from(*i),
        Yaml::String(s) => JsonValue::String(s.clone()),
        Yaml::Boolean(b) => JsonValue::Bool(*b),
        Yaml::Array(a) => JsonValue::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => JsonValue::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => JsonValue::Null,
    }
}

/// Reads YAML documents (`---`-separated) into values of `T`, each on its own: one bad
/// document does not hide the others. `Err` only when the text is not YAML at all.
pub fn load_yaml_each<T: serde::de::DeserializeOwned>(
    path: &str,
    text: &str,
) -> Result<Vec<Result<T, Error>>, Error> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| Error::Template {
        path: path.to_string(),
        msg: format!(
            "line {}, column {}: {}",
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        ),
    })?;
    Ok(docs
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, d)| {
            serde_json::from_value(yaml_to_json(d)).map_err(|e| Error::Template {
                path: path.to_string(),
                msg: format!("document {}: {e}", i + 1),
            })
        })
        .collect())
}

/// Like [`load_yaml_each`], failing at the first bad document (for data files that must be
/// whole: the KEV list, the check texts).
pub fn load_yaml<T: serde::de::DeserializeOwned>(path: &str, text: &str) -> Result<Vec<T>, Error> {
    load_yaml_each(path, text)?.into_iter().collect()
}

/// The templates that compiled and the errors of those that did not.
#[derive(Debug, Default)]
pub struct TemplateSet {
    pub templates: Vec<Template>,
    pub errors: Vec<Error>,
}

impl TemplateSet {
    /// Adds the templates in one file's text.
    pub fn add_text(&mut self, path: &str, text: &str) {
        match load_yaml_each::<Template>(path, text) {
            Ok(ts) => {
                for t in ts {
                    let mut t = match t {
                        Ok(t) => t,
                        Err(e) => {
                            self.errors.push(e);
                            continue;
                        }
                    };
                    t.source = path.to_string();
                    match t.compile() {
                        Ok(()) => {
                            // A later template with the same id replaces the shipped one.
                            self.templates.retain(|o| o.id != t.id);
                            self.templates.push(t);
                        }
                        Err(msg) => self.errors.push(Error::Template {
                            path: path.to_string(),
                            msg: format!("template {}: {msg}", t.id),
                        }),
                    }
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// The templates shipped in the binary (`crates/mamori-scan/templates/`).
    pub fn shipped() -> TemplateSet {
        let mut s = TemplateSet::default();
        for (path, text) in SHIPPED {
            s.add_text(path, text);
        }
        s
    }

    /// Adds every `*.yml`/`*.yaml` file of `dir` (not recursive), in name order.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(t) => self.add_text(&f.display().to_string(), &t),
                Err(e) => self.errors.push(Error::Template {
                    path: f.display().to_string(),
                    msg: e.to_string(),
                }),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

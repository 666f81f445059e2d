//! `%name%` placeholders for `|expand`, resolved from a values file.

use std::collections::BTreeMap;

use crate::yaml::{parse_documents, NodeKind};

/// Placeholder values: `name → [values]`. An unresolved placeholder is an error, never a
/// silent never-match.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    values: BTreeMap<String, Vec<String>>,
}

impl Placeholders {
    pub fn new() -> Placeholders {
        Placeholders::default()
    }

    pub fn insert(&mut self, name: &str, values: Vec<String>) {
        self.values.insert(name.to_owned(), values);
    }

    /// Parses a YAML values file: a mapping of names to a value or a list of values.
    pub fn from_yaml(src: &str) -> Result<Placeholders, String> {
        let docs =
            parse_documents(src).map_err(|e| format!("line {}: {}", e.pos.line, e.message))?;
        let mut out = Placeholders::new();
        for doc in docs {
            let Some(map) = doc.as_map() else {
                return Err(format!(
                    "line {}: expected a mapping of placeholder names",
                    doc.pos.line
                ));
            };
            for (k, v) in map {
                let name = k.scalar_text().unwrap_or_default();
                let vals = match &v.kind {
                    NodeKind::Seq(items) => items.iter().filter_map(|n| n.scalar_text()).collect(),
                    NodeKind::Scalar(_) => v.scalar_text().into_iter().collect(),
                    NodeKind::Map(_) => {
                        return Err(format!(
                            "line {}: `{name}` must be a value or a list",
                            v.pos.line
                        ))
                    }
                };
                out.values.insert(name, vals);
            }
        }
        Ok(out)
    }

    /// Expands every `%name%` in `text` (cartesian product over several placeholders).
    /// `\%` is a literal percent sign.
    pub fn expand(&self, text: &str) -> Result<Vec<String>, String> {
        let mut results = vec![String::new()];
        let mut rest = text;
        while !rest.is_empty() {
            let Some(start) = find_unescaped_percent(rest) else {
                for r in &mut results {
                    r.push_str(rest);
                }
                break;
            };
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else {
                for r in &mut results {
                    r.push_str(rest);
                }
                break;
            };
            let name = &after[..end];
            let prefix = &rest[..start];
            let values = self.values.get(name).ok_or_else(|| {
                format!(
                    "placeholder `%{name}%` has no value (add it to the placeholder values file)"
                )
            })?;
            let mut next = Vec::with_capacity(results.len() * values.len().max(1));
            for r in &results {
                for v in values {
                    next.push(format!("{r}{prefix}{v}"));
                }
            }
            results = next;
            rest = &after[end + 1..];
        }
        Ok(results)
    }
}

fn find_unescaped_percent(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'%' && (i == 0 || b[i - 1] != b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_cartesian_and_rejects_unknown() {
        let ph = Placeholders::from_yaml("a: [x, y]\nb: z\n").unwrap();
        assert_eq!(ph.expand("1%a%2%b%").unwrap(), vec!["1x2z", "1y2z"]);
        assert!(ph.expand("%nope%").unwrap_err().contains("%nope%"));
        assert_eq!(ph.expand("50\\% off").unwrap(), vec!["50\\% off"]);
    }
}

//! Logsource and field mappings, kept as data files (`data/*.yml`) and parsed at startup.

use std::collections::BTreeMap;

use crate::yaml::{parse_documents, Node, NodeKind, Scalar};

/// One way a Windows event can belong to a category: a service (→ channels) plus field
/// equalities (`EventID: 1`, `EventType: CreateKey`).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryAlt {
    pub service: Option<String>,
    pub equals: Vec<(String, MapValue)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MapValue {
    Int(i64),
    Str(String),
}

/// The logsource mapping data.
#[derive(Debug, Clone, Default)]
pub struct LogsourceMap {
    /// Windows service → channels.
    pub windows_services: BTreeMap<String, Vec<String>>,
    /// Windows category → alternatives.
    pub windows_categories: BTreeMap<String, Vec<CategoryAlt>>,
    /// product → rule service → event services that satisfy it (`*` = any).
    pub other_services: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Field groups: every name maps to the names of its group.
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    groups: Vec<Vec<String>>,
}

const LOGSOURCES: &str = include_str!("../data/logsources.yml");
const FIELDS: &str = include_str!("../data/fields.yml");

impl LogsourceMap {
    /// The built-in mapping.
    pub fn builtin() -> LogsourceMap {
        LogsourceMap::from_yaml(LOGSOURCES).expect("built-in logsources.yml is valid (tested)")
    }

    pub fn from_yaml(src: &str) -> Result<LogsourceMap, String> {
        let docs =
            parse_documents(src).map_err(|e| format!("line {}: {}", e.pos.line, e.message))?;
        let doc = docs.first().ok_or("empty logsource mapping")?;
        let mut m = LogsourceMap::default();
        if let Some(w) = doc.get("windows") {
            for (k, v) in w.get("services").and_then(Node::as_map).unwrap_or_default() {
                let chans = v
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| n.scalar_text())
                    .collect();
                m.windows_services
                    .insert(k.scalar_text().unwrap_or_default(), chans);
            }
            for (k, v) in w
                .get("categories")
                .and_then(Node::as_map)
                .unwrap_or_default()
            {
                let mut alts = Vec::new();
                for alt in v.as_seq().unwrap_or_default() {
                    let mut a = CategoryAlt {
                        service: None,
                        equals: Vec::new(),
                    };
                    for (ak, av) in alt.as_map().unwrap_or_default() {
                        let key = ak.scalar_text().unwrap_or_default();
                        if key == "service" {
                            a.service = av.scalar_text();
                        } else {
                            let val = match &av.kind {
                                NodeKind::Scalar(Scalar::Int(i)) => MapValue::Int(*i),
                                _ => MapValue::Str(av.scalar_text().unwrap_or_default()),
                            };
                            a.equals.push((key, val));
                        }
                    }
                    alts.push(a);
                }
                m.windows_categories
                    .insert(k.scalar_text().unwrap_or_default(), alts);
            }
        }
        if let Some(o) = doc.get("other").and_then(Node::as_map) {
            for (prod, services) in o {
                let mut per = BTreeMap::new();
                for (svc, implied) in services.as_map().unwrap_or_default() {
                    let list = implied
                        .as_seq()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|n| n.scalar_text())
                        .collect();
                    per.insert(svc.scalar_text().unwrap_or_default(), list);
                }
                m.other_services
                    .insert(prod.scalar_text().unwrap_or_default(), per);
            }
        }
        Ok(m)
    }
}

impl FieldMap {
    pub fn builtin() -> FieldMap {
        FieldMap::from_yaml(FIELDS).expect("built-in fields.yml is valid (tested)")
    }

    pub fn from_yaml(src: &str) -> Result<FieldMap, String> {
        let docs =
            parse_documents(src).map_err(|e| format!("line {}: {}", e.pos.line, e.message))?;
        let mut m = FieldMap::default();
        if let Some(groups) = docs
            .first()
            .and_then(|d| d.get("groups"))
            .and_then(Node::as_seq)
        {
            for g in groups {
                m.groups.push(
                    g.as_seq()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|n| n.scalar_text())
                        .collect(),
                );
            }
        }
        Ok(m)
    }

    /// The event field names a rule field reads: itself first, then its group.
    pub fn names_for(&self, field: &str) -> Vec<String> {
        let mut out = vec![field.to_owned()];
        for g in &self.groups {
            if g.iter().any(|n| n == field) {
                out.extend(g.iter().filter(|n| *n != field).cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_mappings_parse() {
        let m = LogsourceMap::builtin();
        assert_eq!(m.windows_services["security"], vec!["Security".to_string()]);
        let pc = &m.windows_categories["process_creation"];
        assert!(pc.iter().any(|a| a.service.as_deref() == Some("sysmon")
            && a.equals == vec![("EventID".to_string(), MapValue::Int(1))]));
        assert!(m.other_services["linux"]["auth"].contains(&"sshd".to_string()));
        let f = FieldMap::builtin();
        assert_eq!(f.names_for("Image"), vec!["Image", "NewProcessName"]);
        assert_eq!(f.names_for("CommandLine"), vec!["CommandLine"]);
    }
}

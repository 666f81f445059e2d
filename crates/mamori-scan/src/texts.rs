//! The plain-words explanations of the built-in checks (`data/checks.yml`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::model::Text;

const DATA: &str = include_str!("../data/checks.yml");

/// Every built-in check id (templates carry their own texts).
pub const CHECKS: &[&str] = &[
    "no-https",
    "tls-unreachable",
    "cert-expired",
    "cert-expiring",
    "cert-name",
    "cert-untrusted",
    "tls-old-protocol",
    "tls-weak-cipher",
    "hsts-missing",
    "csp-missing",
    "frame-missing",
    "nosniff-missing",
    "cookie-flags",
    "trace-enabled",
    "put-allowed",
    "xss-reflected",
    "sqli-error",
    "sqli-boolean",
    "open-redirect",
    "kev-affected",
    "kev-exposed",
    "product-seen",
    "unreachable",
    "budget-spent",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckText {
    pub title: Text,
    pub explain: Text,
    pub fix: Text,
}

fn table() -> &'static HashMap<String, CheckText> {
    static T: OnceLock<HashMap<String, CheckText>> = OnceLock::new();
    T.get_or_init(|| {
        crate::template::load_yaml::<HashMap<String, CheckText>>("data/checks.yml", DATA)
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    })
}

/// The texts of built-in check `id`; a missing one is a defect caught by the unit test.
pub fn get(id: &str) -> CheckText {
    table().get(id).cloned().unwrap_or_else(|| CheckText {
        title: Text::new(id, id),
        explain: Text::default(),
        fix: Text::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_both_languages_and_nothing_extra() {
        let t = table();
        for id in CHECKS {
            let c = t.get(*id).unwrap_or_else(|| panic!("no text for {id}"));
            for s in [&c.title, &c.explain, &c.fix] {
                assert!(!s.en.is_empty() && !s.ja.is_empty(), "{id}");
            }
        }
        assert_eq!(t.len(), CHECKS.len());
    }
}

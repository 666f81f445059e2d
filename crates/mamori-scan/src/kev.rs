//! A local, updatable list of known-exploited vulnerabilities (CISA KEV-style entries) for the
//! products small companies expose: VPN appliances, webmail, CMS, Exchange, Confluence.
//! Shipped as data (`data/kev.yml`); `--kev FILE` / `kev_file` replaces it with a newer copy.
//! A product is recognised by a `fingerprint:` template, which may extract its version.

use std::cmp::Ordering;

use serde::Deserialize;

use crate::model::Severity;
use crate::Error;

/// The shipped list.
pub const SHIPPED: &str = include_str!("../data/kev.yml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vuln {
    pub cve: String,
    pub name: String,
    /// When CISA added it to the KEV catalogue (`YYYY-MM-DD`).
    pub kev_added: String,
    pub severity: Severity,
    /// Version constraints, any of which makes a version affected: `"<1.4.15"`,
    /// `">=1.5.0 <1.5.5"`, `"=2.4.49"`.
    pub affected: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub name: String,
    /// `false`: the version cannot be read from outside; a sighting lists the CVEs to check.
    #[serde(default = "yes")]
    pub versioned: bool,
    pub vulns: Vec<Vuln>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KevFile {
    products: Vec<Product>,
}

#[derive(Debug, Clone, Default)]
pub struct Kev {
    pub products: Vec<Product>,
}

/// Numeric segments of a version (`1.4.03` → `[1, 4, 3]`; `15.1.2507.6` → four segments).
fn segments(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

/// `1.04.03` → `1.4.3` (leading zeros of extracted numbers dropped); a value without digits
/// is kept as it is.
pub fn normalise_version(v: &str) -> String {
    let s = segments(v);
    if s.is_empty() {
        return v.to_string();
    }
    s.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (segments(a), segments(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

/// `">=1.5.0 <1.5.5"`: every clause must hold.
fn satisfies(version: &str, constraint: &str) -> Result<bool, String> {
    let mut any = false;
    for clause in constraint.split_whitespace() {
        any = true;
        let (op, v) = if let Some(v) = clause.strip_prefix(">=") {
            (">=", v)
        } else if let Some(v) = clause.strip_prefix("<=") {
            ("<=", v)
        } else if let Some(v) = clause.strip_prefix('<') {
            ("<", v)
        } else if let Some(v) = clause.strip_prefix('>') {
            (">", v)
        } else if let Some(v) = clause.strip_prefix('=') {
            ("=", v)
        } else {
            return Err(format!("constraint {clause:?}: needs <, <=, >, >= or ="));
        };
        if segments(v).is_empty() {
            return Err(format!("constraint {clause:?}: no version number"));
        }
        let o = compare_versions(version, v);
        let ok = match op {
            ">=" => o != Ordering::Less,
            "<=" => o != Ordering::Greater,
            "<" => o == Ordering::Less,
            ">" => o == Ordering::Greater,
            _ => o == Ordering::Equal,
        };
        if !ok {
            return Ok(false);
        }
    }
    if !any {
        return Err("empty constraint".into());
    }
    Ok(true)
}

impl Vuln {
    pub fn affects(&self, version: &str) -> bool {
        self.affected
            .iter()
            .any(|c| satisfies(version, c).unwrap_or(false))
    }
}

impl Kev {
    /// Parses and checks a KEV file (every constraint must parse).
    pub fn parse(path: &str, text: &str) -> Result<Kev, Error> {
        let files: Vec<KevFile> = crate::template::load_yaml(path, text)?;
        let mut products = Vec::new();
        for f in files {
            for p in f.products {
                for v in &p.vulns {
                    for c in &v.affected {
                        satisfies("0", c).map_err(|msg| Error::Template {
                            path: path.to_string(),
                            msg: format!("{} {}: {msg}", p.id, v.cve),
                        })?;
                    }
                }
                products.push(p);
            }
        }
        Ok(Kev { products })
    }

    pub fn shipped() -> Kev {
        // Checked by a unit test; an error here is a build defect.
        Kev::parse("data/kev.yml", SHIPPED).unwrap_or_default()
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.4.3", "1.4.15"), Ordering::Less);
        assert_eq!(compare_versions("1.04.03", "1.4.3"), Ordering::Equal);
        assert_eq!(compare_versions("1.6", "1.6.0"), Ordering::Equal);
        assert_eq!(compare_versions("2.4.50", "2.4.49"), Ordering::Greater);
        assert_eq!(normalise_version("1.04.03"), "1.4.3");
        assert_eq!(normalise_version("15.1.2507.6"), "15.1.2507.6");
    }

    #[test]
    fn constraints() {
        assert!(satisfies("1.4.3", "<1.4.15").unwrap());
        assert!(!satisfies("1.5.5", ">=1.5.0 <1.5.5").unwrap());
        assert!(satisfies("2.4.49", "=2.4.49").unwrap());
        assert!(satisfies("1", "~1").is_err());
    }

    #[test]
    fn shipped_list_parses_and_knows_old_roundcube() {
        let k = Kev::parse("data/kev.yml", SHIPPED).unwrap();
        assert!(k.products.len() >= 8, "{}", k.products.len());
        let rc = k.product("roundcube").unwrap();
        let hit: Vec<&str> = rc
            .vulns
            .iter()
            .filter(|v| v.affects("1.4.3"))
            .map(|v| v.cve.as_str())
            .collect();
        assert!(hit.contains(&"CVE-2020-12641"), "{hit:?}");
        assert!(rc.vulns.iter().all(|v| !v.affects("1.6.11")));
        for p in &k.products {
            for v in &p.vulns {
                assert!(v.cve.starts_with("CVE-"), "{}", v.cve);
            }
        }
    }
}

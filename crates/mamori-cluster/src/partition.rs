//! Correlation partitions: which node keeps the state of which correlation group.
//!
//! A correlation's state is exact only if one owner sees every event of a group. Detectors
//! send each match that feeds a correlation to partition
//! `hash(family, group-by values) mod N` ([`partition`]); each partition has one owner.
//!
//! A **family** is a set of correlations linked by references (a correlation over another
//! one's results): the members share one state machine, so they go to one owner together, keyed
//! by the group-by values of the correlation the matched rule feeds. (Chained correlations
//! group by the same fields in practice; a chain whose members group by different fields is
//! kept exact only while one partition is used — documented in ARCHITECTURE.md.)

use mamori_sigma::RulePack;

/// Correlation families of a rule pack.
#[derive(Debug, Clone)]
pub struct Families {
    /// Per correlation (index in `pack.correlations`): the index of its family's first member.
    root: Vec<usize>,
    /// Per correlation: its reference (id, else name, else title).
    names: Vec<String>,
}

impl Families {
    pub fn new(pack: &RulePack) -> Families {
        let n = pack.correlations.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for (i, c) in pack.correlations.iter().enumerate() {
            for r in &c.rules {
                if let Some(j) = pack.correlations.iter().position(|o| {
                    o.meta.id.as_deref() == Some(r.as_str())
                        || o.meta.name.as_deref() == Some(r.as_str())
                }) {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    // The lower index is the root: the same on every node for the same pack.
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
        let root = (0..n).map(|i| find(&mut parent, i)).collect();
        let names = pack
            .correlations
            .iter()
            .map(|c| c.meta.reference().to_owned())
            .collect();
        Families { root, names }
    }

    /// The family of correlation `i`: the reference of its first member.
    pub fn family(&self, i: usize) -> &str {
        &self.names[self.root[i]]
    }

    /// Indices of the correlations of `family`.
    pub fn members(&self, family: &str) -> Vec<usize> {
        (0..self.root.len())
            .filter(|&i| self.family(i) == family)
            .collect()
    }
}

/// The partition of a group: FNV-1a (stable across processes and builds) of the family and
/// the group-by values, modulo `n`.
pub fn partition(family: &str, values: &[String], n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(family.as_bytes());
    for v in values {
        eat(&[0x1f]);
        eat(v.as_bytes());
    }
    (h % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_sigma::{Placeholders, RulePack};

    const RULES: &str = r#"
title: Failed
id: r-failed
logsource: {product: linux, service: sshd}
detection:
  sel: {event.outcome: failure}
  condition: sel
---
title: Brute
id: c-brute
correlation: {type: event_count, rules: [r-failed], group-by: [source.ip], timespan: 5m, condition: {gte: 10}}
---
title: Spray
id: c-spray
correlation: {type: value_count, rules: [r-failed], group-by: [source.ip], timespan: 10m, condition: {field: user.name, gte: 5}}
---
title: Chain
id: c-chain
correlation: {type: temporal, rules: [c-spray, r-failed], group-by: [source.ip], timespan: 10m}
"#;

    #[test]
    fn families_follow_references_and_partitions_are_stable() {
        let mut pack = RulePack::new();
        pack.add_file("t.yml", RULES, &Placeholders::default());
        assert!(pack.failures.is_empty(), "{:?}", pack.failures);
        let f = Families::new(&pack);
        assert_eq!(pack.correlations.len(), 3);
        assert_eq!(f.family(0), "c-brute");
        assert_eq!(f.family(1), "c-spray");
        assert_eq!(f.family(2), "c-spray", "a chain joins the family it reads");
        assert_eq!(f.members("c-spray"), [1, 2]);
        let v = vec!["203.0.113.5".to_owned()];
        // Fixed values: a change of hash would move groups between owners on upgrade.
        let p = partition("c-brute", &v, 1024);
        assert_eq!(p, partition("c-brute", &v, 1024));
        assert!(p < 1024);
        assert_eq!(partition("c-brute", &v, 1), 0);
        let spread: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition("c-brute", &[format!("198.51.100.{i}")], 8))
            .collect();
        assert_eq!(spread.len(), 8, "groups spread over every partition");
        assert_ne!(
            partition("a", &["bc".into()], 1 << 20),
            partition("ab", &["c".into()], 1 << 20),
            "family and values are separated"
        );
    }
}

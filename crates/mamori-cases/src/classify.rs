//! What an alert says about the attack: its ATT&CK tactic (for progression) and the incident
//! kind it points to (for the playbook). Both read only the rule id, title and tags.

use std::fmt;

use crate::model::IncidentKind;

/// ATT&CK enterprise tactics in kill-chain order; the order is what "progression" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tactic {
    Reconnaissance,
    ResourceDevelopment,
    InitialAccess,
    Execution,
    Persistence,
    PrivilegeEscalation,
    DefenseEvasion,
    CredentialAccess,
    Discovery,
    LateralMovement,
    Collection,
    CommandAndControl,
    Exfiltration,
    Impact,
}

impl Tactic {
    pub const ALL: [Tactic; 14] = [
        Tactic::Reconnaissance,
        Tactic::ResourceDevelopment,
        Tactic::InitialAccess,
        Tactic::Execution,
        Tactic::Persistence,
        Tactic::PrivilegeEscalation,
        Tactic::DefenseEvasion,
        Tactic::CredentialAccess,
        Tactic::Discovery,
        Tactic::LateralMovement,
        Tactic::Collection,
        Tactic::CommandAndControl,
        Tactic::Exfiltration,
        Tactic::Impact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tactic::Reconnaissance => "reconnaissance",
            Tactic::ResourceDevelopment => "resource_development",
            Tactic::InitialAccess => "initial_access",
            Tactic::Execution => "execution",
            Tactic::Persistence => "persistence",
            Tactic::PrivilegeEscalation => "privilege_escalation",
            Tactic::DefenseEvasion => "defense_evasion",
            Tactic::CredentialAccess => "credential_access",
            Tactic::Discovery => "discovery",
            Tactic::LateralMovement => "lateral_movement",
            Tactic::Collection => "collection",
            Tactic::CommandAndControl => "command_and_control",
            Tactic::Exfiltration => "exfiltration",
            Tactic::Impact => "impact",
        }
    }

    /// `attack.lateral_movement` or Sigma's `attack.lateral-movement`; techniques are not tactics.
    pub fn from_tag(tag: &str) -> Option<Tactic> {
        let t = normalise_tag(tag);
        let name = t.strip_prefix("attack.")?;
        Tactic::ALL.into_iter().find(|x| x.as_str() == name)
    }

    /// The furthest tactic among `tags` (an alert tagged with several counts as the latest).
    pub fn of_tags<S: AsRef<str>>(tags: &[S]) -> Option<Tactic> {
        tags.iter()
            .filter_map(|t| Tactic::from_tag(t.as_ref()))
            .max()
    }

    pub(crate) fn index(self) -> i64 {
        self as i64
    }

    pub(crate) fn from_index(i: i64) -> Option<Tactic> {
        usize::try_from(i)
            .ok()
            .and_then(|i| Tactic::ALL.get(i))
            .copied()
    }
}

impl fmt::Display for Tactic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn normalise_tag(tag: &str) -> String {
    tag.trim().to_ascii_lowercase().replace('-', "_")
}

/// Technique ids in `tags` (`attack.t1110.003` → `t1110.003`).
fn techniques<S: AsRef<str>>(tags: &[S]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| {
            let t = normalise_tag(t.as_ref());
            let id = t.strip_prefix("attack.")?;
            let digits = id.strip_prefix('t')?;
            (digits.len() >= 4 && digits.as_bytes()[..4].iter().all(u8::is_ascii_digit))
                .then(|| id.to_owned())
        })
        .collect()
}

fn has_technique(techs: &[String], parent: &str) -> bool {
    techs
        .iter()
        .any(|t| t == parent || t.strip_prefix(parent).is_some_and(|r| r.starts_with('.')))
}

/// The incident kind one alert points to. Rules are checked from the most to the least severe
/// kind, so an alert that is both (a VPN brute force) gets the more specific playbook.
pub fn classify<S: AsRef<str>>(rule_id: &str, title: &str, tags: &[S]) -> IncidentKind {
    let text = format!("{} {}", rule_id, title).to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let techs = techniques(tags);
    let tech = |ids: &[&str]| ids.iter().any(|id| has_technique(&techs, id));
    let tactic = Tactic::of_tags(tags);

    if tech(&["t1486", "t1490"])
        || has(&[
            "ransom",
            "shadow cop",
            "shadowcop",
            "shadow_cop",
            "vssadmin",
            "wbadmin",
            "bcdedit",
            "encrypted for impact",
        ])
    {
        IncidentKind::Ransomware
    } else if tactic == Some(Tactic::Exfiltration)
        || tech(&["t1041", "t1048", "t1537", "t1567", "t1030"])
        || has(&["exfil"])
    {
        IncidentKind::DataExfiltration
    } else if has(&["vpn"]) {
        IncidentKind::VpnCompromise
    } else if tech(&[
        "t1078", "t1098", "t1136", "t1550", "t1556", "t1528", "t1621",
    ]) || has(&[
        "impossible travel",
        "impossible_travel",
        "new country",
        "access key",
        "access_key",
        "mfa",
        "departed",
        "account compromise",
        "account_compromise",
    ]) {
        IncidentKind::AccountCompromise
    } else if tech(&["t1190", "t1505.003", "t1189"])
        || has(&[
            "sql injection",
            "sqli",
            "webshell",
            "web shell",
            "web_shell",
            "path traversal",
            "directory traversal",
            "xss",
            "cross-site",
            "web_attack",
            "log4",
        ])
    {
        IncidentKind::WebAttack
    } else if tech(&["t1110"]) || has(&["brute", "password spray", "password_spray"]) {
        IncidentKind::BruteForce
    } else {
        IncidentKind::Generic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tactics_parse_both_spellings_and_order() {
        assert_eq!(
            Tactic::from_tag("attack.initial-access"),
            Some(Tactic::InitialAccess)
        );
        assert_eq!(
            Tactic::from_tag("ATTACK.Lateral_Movement"),
            Some(Tactic::LateralMovement)
        );
        assert_eq!(Tactic::from_tag("attack.t1110.003"), None);
        assert_eq!(Tactic::from_tag("cve.2021-44228"), None);
        assert_eq!(
            Tactic::of_tags(&["attack.credential-access", "attack.initial_access"]),
            Some(Tactic::CredentialAccess)
        );
        assert!(Tactic::InitialAccess < Tactic::Execution);
        assert!(Tactic::Exfiltration < Tactic::Impact);
        for t in Tactic::ALL {
            assert_eq!(Tactic::from_index(t.index()), Some(t));
        }
    }

    #[test]
    fn kinds_from_rules_and_tags() {
        let cases: &[(&str, &str, &[&str], IncidentKind)] = &[
            // Our VPN rules (rules/vpn/vpn_auth.yml): by name, and a correlation by its title.
            (
                "mamori_vpn_spray",
                "VPN Password Spraying",
                &["attack.credential-access", "attack.t1110.003"],
                IncidentKind::VpnCompromise,
            ),
            (
                "mamori_vpn_auth_success",
                "VPN Login Succeeded",
                &[],
                IncidentKind::VpnCompromise,
            ),
            (
                "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a05",
                "VPN Login Success After Password Spraying",
                &["attack.initial-access", "attack.t1133", "attack.t1078"],
                IncidentKind::VpnCompromise,
            ),
            (
                "a1",
                "SSH Brute Force",
                &["attack.credential_access", "attack.t1110.001"],
                IncidentKind::BruteForce,
            ),
            (
                "a2",
                "Shadow Copies Deletion Using Operating Systems Utilities",
                &["attack.impact"],
                IncidentKind::Ransomware,
            ),
            (
                "a3",
                "Inhibit recovery",
                &["attack.t1490"],
                IncidentKind::Ransomware,
            ),
            (
                "a4",
                "Files encrypted",
                &["attack.t1486"],
                IncidentKind::Ransomware,
            ),
            (
                "a5",
                "Large upload to cloud storage",
                &["attack.exfiltration"],
                IncidentKind::DataExfiltration,
            ),
            (
                "a6",
                "Console login from a never-seen country",
                &["attack.t1078.004"],
                IncidentKind::AccountCompromise,
            ),
            (
                "a7",
                "SQL Injection Attempt",
                &["attack.initial_access"],
                IncidentKind::WebAttack,
            ),
            (
                "a8",
                "Webshell detected",
                &["attack.t1505.003"],
                IncidentKind::WebAttack,
            ),
            (
                "a9",
                "Suspicious PowerShell",
                &["attack.execution"],
                IncidentKind::Generic,
            ),
            // t11100 is not a sub-technique of t1110.
            (
                "a10",
                "Something",
                &["attack.t11100"],
                IncidentKind::Generic,
            ),
        ];
        for (rule, title, tags, want) in cases {
            assert_eq!(classify(rule, title, tags), *want, "{rule} / {title}");
        }
    }
}

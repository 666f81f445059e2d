//! IT's remote administration, told apart from an intruder's by where it comes from: a network
//! the operator declared as IT's admin workstations (`role = "admin"`).
//!
//! PsExec, remote services, WMI and WinRM are how IT maintains servers and how intruders move
//! between them; the rules that catch the one catch the other. What differs is the session
//! behind the tool: PsExec and its kind log on to the target over the network (4624, type 3)
//! right before they install their service. [`AdminSessions`] remembers, per host, the recent
//! network logons whose source address is inside an admin network; a remote-administration
//! detection on that host within a few minutes is then the admin's work — a signal that says
//! who and from where — while the same tool run from an office PC or the VPN stays an alert.
//! Pure: time from the events, bounded memory.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use mamori_event::Event;

use crate::risk::{NetworkRole, Networks};

/// A network logon from an admin network.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminLogon {
    pub time: DateTime<Utc>,
    pub account: String,
    pub address: String,
    pub network: String,
}

/// Recent admin-network logons per host (lowercase host name).
#[derive(Debug, Default, Clone)]
pub struct AdminSessions {
    by_host: HashMap<String, Vec<AdminLogon>>,
}

/// Logons kept per host (most recent last).
const PER_HOST: usize = 16;
/// Hosts kept before the oldest are swept.
const MAX_HOSTS: usize = 20_000;

/// The admin-network logon an event is, if it is one: a Windows network logon (4624, logon
/// type 3 or 10) whose source address is inside a network declared `admin`.
pub fn admin_logon(ev: &Event, networks: &Networks) -> Option<(String, AdminLogon)> {
    let s = |n: &str| {
        ev.get_str(n)
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty() && v != "-")
    };
    if s("EventID").as_deref() != Some("4624") {
        return None;
    }
    if !matches!(s("LogonType").as_deref(), Some("3" | "10")) {
        return None;
    }
    let ip = s("IpAddress").or_else(|| s("source.ip"))?;
    let (network, role) = networks.role_of(&ip)?;
    if role != NetworkRole::Admin {
        return None;
    }
    let host = ev.host()?.to_ascii_lowercase();
    Some((
        host,
        AdminLogon {
            time: ev.timestamp?,
            account: s("TargetUserName").unwrap_or_default(),
            address: ip,
            network: network.to_owned(),
        },
    ))
}

impl AdminSessions {
    /// Notes an admin-network logon to `host`.
    pub fn note(&mut self, host: String, logon: AdminLogon) {
        if self.by_host.len() >= MAX_HOSTS && !self.by_host.contains_key(&host) {
            let cutoff = logon.time - Duration::hours(1);
            self.by_host
                .retain(|_, v| v.last().is_some_and(|l| l.time >= cutoff));
        }
        let list = self.by_host.entry(host).or_default();
        list.push(logon);
        list.sort_by_key(|l| l.time);
        if list.len() > PER_HOST {
            list.remove(0);
        }
    }

    /// Notes `ev` if it is an admin-network logon.
    pub fn observe(&mut self, ev: &Event, networks: &Networks) {
        if let Some((h, l)) = admin_logon(ev, networks) {
            self.note(h, l);
        }
    }

    /// The admin-network logon to `host` at most `minutes` before `time` (and not after it),
    /// the most recent one.
    pub fn session(&self, host: &str, time: DateTime<Utc>, minutes: i64) -> Option<&AdminLogon> {
        let list = self.by_host.get(&host.to_ascii_lowercase())?;
        list.iter()
            .rev()
            .find(|l| l.time <= time && time - l.time <= Duration::minutes(minutes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use mamori_event::{Format, Interner, Origin};

    use super::*;
    use crate::risk::Network;

    fn logon(names: &mut Interner, ip: &str, min: u32) -> Event {
        let origin = Origin::File {
            path: Arc::from(std::path::Path::new("windows.jsonl")),
            record: None,
            line: Some(1),
            offset: 0,
        };
        let mut e = Event::new(Format::Json, origin, Vec::new());
        e.timestamp = Some(Utc.with_ymd_and_hms(2026, 9, 3, 2, min, 0).unwrap());
        for (k, v) in [
            ("EventID", "4624"),
            ("LogonType", "3"),
            ("IpAddress", ip),
            ("TargetUserName", "adm-ito"),
            ("Computer", "FS01.corp.example"),
        ] {
            e.push(names.intern(k), v.into());
        }
        e
    }

    fn networks() -> Networks {
        Networks::parse(&[
            Network {
                name: "it-admin".into(),
                cidrs: vec!["10.0.10.0/24".into()],
                role: Some(NetworkRole::Admin),
            },
            Network {
                name: "openvas".into(),
                cidrs: vec!["10.0.10.50/32".into()],
                role: Some(NetworkRole::Scanner),
            },
        ])
        .unwrap()
    }

    #[test]
    fn a_logon_from_the_admin_network_opens_a_short_session_on_its_host() {
        let n = networks();
        let mut names = Interner::new();
        let mut s = AdminSessions::default();
        s.observe(&logon(&mut names, "10.0.10.5", 0), &n);
        // From an office PC, or from the scanner inside the admin /24: no session.
        s.observe(&logon(&mut names, "10.0.20.33", 0), &n);
        s.observe(&logon(&mut names, "10.0.10.50", 0), &n);
        let t = |m: u32| Utc.with_ymd_and_hms(2026, 9, 3, 2, m, 0).unwrap();
        let got = s.session("fs01.corp.example", t(2), 5).unwrap();
        assert_eq!(
            (got.account.as_str(), got.network.as_str()),
            ("adm-ito", "it-admin")
        );
        assert!(
            s.session("FS01.corp.example", t(6), 5).is_none(),
            "too late"
        );
        assert!(
            s.session("DB01.corp.example", t(2), 5).is_none(),
            "other host"
        );
        assert_eq!(n.scanner_of("10.0.10.50"), Some("openvas"));
        assert_eq!(n.scanner_of("10.0.10.5"), None);
    }
}

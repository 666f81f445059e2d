//! The simulated company's life: staff of a configurable size whose habits change the way real
//! ones do — DHCP leases that change every day and are handed to other PCs, people working at a
//! hot desk or a colleague's PC, a new hire and a leaver, business trips with VPN logins from
//! abroad, IT doing admin work (service installs, scheduled tasks, PsExec maintenance, a new
//! account for the new hire, disabling the leaver), nightly backups with the `wbadmin` /
//! `vssadmin` calls backup software makes, service accounts logging on all day (and one with an
//! expired password failing), mail logins, and console use of the cloud account.
//!
//! None of it is malicious; all of it is what makes naive detections noisy.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::background::{
    self, at, cloudtrail, logon, proc_create, syslog, vpn, weekday, win, ws, OFFICE_IP, STAFF,
};
use crate::{Builder, LogFile, SimConfig};

/// A member of staff (the named people of [`STAFF`] first, then numbered ones).
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) user: String,
    pub(crate) name_ja: String,
    pub(crate) home_ip: String,
    pub(crate) hours: (u32, u32),
    pub(crate) vpn: bool,
    pub(crate) crm: bool,
    /// First working day (a new hire starts later).
    pub(crate) first_day: u32,
    /// Last working day of a leaver.
    pub(crate) last_day: Option<u32>,
    /// Index of the member's own PC (its DHCP lease changes daily).
    pub(crate) pc: usize,
}

/// A business trip: VPN logins from abroad with the right account.
#[derive(Debug, Clone)]
pub(crate) struct Trip {
    pub(crate) member: usize,
    pub(crate) days: std::ops::Range<u32>,
    /// Hotel address prefix (a country of the MaxMind test databases) and working hours (UTC).
    pub(crate) addr: &'static str,
    pub(crate) hours: (u32, u32),
}

/// The company: its members, the hot desks, trips.
#[derive(Debug, Clone, Default)]
pub(crate) struct Company {
    pub(crate) members: Vec<Member>,
    pub(crate) trips: Vec<Trip>,
    pub(crate) hire: usize,
    pub(crate) leaver: usize,
    pub(crate) seed: u64,
    pub(crate) realistic: bool,
}

/// Hot desks and the meeting-room PC (their PC indices follow the members').
pub(crate) const SHARED_PCS: &[&str] = &[
    "WS-HOTDESK01.corp.example",
    "WS-HOTDESK02.corp.example",
    "WS-MEETING01.corp.example",
];
/// IT's admin accounts (domain) and the admin workstations they use.
pub(crate) const WIN_ADMINS: &[(&str, &str)] =
    &[("adm-ito", "10.0.10.5"), ("adm-tanaka", "10.0.10.6")];
pub(crate) const SERVERS: &[&str] = &[
    "FS01.corp.example",
    "DB01.corp.example",
    "APP01.corp.example",
    "BK01.corp.example",
];

impl Company {
    pub(crate) fn new(cfg: &SimConfig) -> Company {
        let mut members: Vec<Member> = STAFF
            .iter()
            .enumerate()
            .map(|(i, p)| Member {
                user: p.user.to_owned(),
                name_ja: p.name_ja.to_owned(),
                home_ip: p.home_ip.to_owned(),
                hours: p.hours,
                vpn: p.vpn,
                crm: p.crm,
                first_day: 0,
                last_day: None,
                pc: i,
            })
            .collect();
        let n = if cfg.realistic {
            cfg.staff.max(STAFF.len() as u32) as usize
        } else {
            STAFF.len()
        };
        for i in STAFF.len()..n {
            let k = i + 1;
            members.push(Member {
                user: format!("staff{k:03}"),
                name_ja: format!("社員{k}"),
                home_ip: format!("2001:240:2b:{k:x}::10"),
                hours: (k as u32 % 2, 8 + k as u32 % 2),
                vpn: k % 3 != 0,
                crm: k % 5 == 0,
                first_day: 0,
                last_day: None,
                pc: i,
            });
        }
        let days = cfg.days;
        if !cfg.realistic {
            return Company {
                members,
                trips: Vec::new(),
                hire: usize::MAX,
                leaver: usize::MAX,
                seed: cfg.seed,
                realistic: false,
            };
        }
        let hire = members.len();
        members.push(Member {
            user: "mori".into(),
            name_ja: "森".into(),
            home_ip: "2001:240:2c:1::10".into(),
            hours: (0, 9),
            vpn: true,
            crm: false,
            first_day: days / 3,
            last_day: None,
            pc: hire,
        });
        let leaver = members.len();
        members.push(Member {
            user: "hayashi".into(),
            name_ja: "林".into(),
            home_ip: "2001:240:2c:2::10".into(),
            hours: (0, 8),
            vpn: true,
            crm: true,
            first_day: 0,
            // Leaves well before the attacks of the last days.
            last_day: Some(days / 2),
            pc: leaver,
        });
        let idx = |u: &str| members.iter().position(|m| m.user == u).unwrap_or(0);
        let trips = vec![
            // A sales trip to Taipei (one hour behind Japan).
            Trip {
                member: idx("watanabe"),
                days: days / 3 + 1..days / 3 + 4,
                addr: "2001:238:1:4",
                hours: (1, 9),
            },
            // IT at a conference in London, logging in in the UK morning (late afternoon JST).
            Trip {
                member: idx("ito"),
                days: days / 2 + 1..days / 2 + 3,
                addr: "81.2.69.17",
                hours: (7, 9),
            },
        ];
        Company {
            members,
            trips,
            hire,
            leaver,
            seed: cfg.seed,
            realistic: true,
        }
    }

    /// Members working on `day`.
    pub(crate) fn active(&self, day: u32) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                day >= m.first_day && m.last_day.is_none_or(|l| day <= l)
            })
            .collect()
    }

    /// The DHCP lease of PC `pc` on `day` in `office-dhcp` (10.0.20.0/24): every PC gets a
    /// different address than the day before, and yesterday's address mostly belongs to
    /// another PC today.
    pub(crate) fn lease(&self, pc: usize, day: u32) -> String {
        if !self.realistic {
            return format!("10.0.20.{}", 11 + pc);
        }
        // A pool a little larger than the PCs, handed out in a different order each day.
        let pool = (self.members.len() + SHARED_PCS.len() + 8).min(230) as u64;
        let mut off = crate::Rng::new(self.seed ^ (u64::from(day) << 20)).next_u64() % pool;
        if day > 0
            && off == crate::Rng::new(self.seed ^ (u64::from(day - 1) << 20)).next_u64() % pool
        {
            off = (off + 1) % pool;
        }
        format!("10.0.20.{}", 20 + (pc as u64 + off) % pool)
    }

    pub(crate) fn trip(&self, member: usize, day: u32) -> Option<&Trip> {
        self.trips
            .iter()
            .find(|t| t.member == member && t.days.contains(&day))
    }
}

/// The address of `user`'s own PC at time `t` (its lease that day).
pub(crate) fn pc_ip(b: &Builder, user: &str, t: DateTime<Utc>) -> String {
    let day = (t - b.day_start(0)).num_days().max(0) as u32;
    let pc = b
        .company
        .members
        .iter()
        .find(|m| m.user == user)
        .map(|m| m.pc)
        .unwrap_or(0);
    b.company.lease(pc, day)
}

/// One working day of every member of staff.
pub(crate) fn staff_day(b: &mut Builder, day: u32) {
    for i in b.company.active(day) {
        let m = b.company.members[i].clone();
        if let Some(trip) = b.company.trip(i, day).cloned() {
            travel_day(b, day, &m, &trip);
            continue;
        }
        let t0 = at(b, day, (m.hours.0, m.hours.0 + 1));
        if m.vpn && (!b.cfg.realistic || b.rng.chance(0.5)) {
            // Working from home this morning.
            let pid = b.next_pid();
            let fmt = b.vpn_format();
            b.good(
                t0,
                LogFile::VpnLog,
                vpn(fmt, t0, pid, &m.user, &m.home_ip, true),
            );
        }
        // Most days at their own PC; sometimes at a hot desk or the meeting-room PC.
        let (pc_name, pc) = if b.cfg.realistic && b.rng.chance(0.08) {
            let k = b.rng.range(0, SHARED_PCS.len() as u64) as usize;
            (SHARED_PCS[k].to_owned(), b.company.members.len() + k)
        } else {
            (ws(&m.user), m.pc)
        };
        let ip = b.company.lease(pc, day);
        let t = t0 + Duration::seconds(40);
        b.good(
            t,
            LogFile::Windows,
            logon(t, &pc_name, &m.user, 2, "127.0.0.1"),
        );
        for (k, srv) in ["FS01.corp.example", "DC01.corp.example"]
            .iter()
            .enumerate()
        {
            let t = t0 + Duration::seconds(60 + k as i64 * 7);
            b.good(t, LogFile::Windows, logon(t, srv, &m.user, 3, &ip));
        }
        for _ in 0..3 {
            let t = at(b, day, m.hours);
            b.good(
                t,
                LogFile::Windows,
                logon(t, "FS01.corp.example", &m.user, 3, &ip),
            );
        }
        if !b.cfg.realistic {
            if m.crm {
                crm(b, day, &m);
            }
            continue;
        }
        // Mail: the office PC's client, and a phone from home in the evening now and then.
        let t = t0 + Duration::seconds(90);
        mail_login(b, t, &m.user, OFFICE_IP, true);
        if b.rng.chance(0.2) {
            let t = at(b, day, (m.hours.1, m.hours.1 + 3));
            mail_login(b, t, &m.user, &m.home_ip, true);
        }
        if b.rng.chance(0.03) {
            // A mistyped password on the phone, then the right one.
            let t = at(b, day, m.hours);
            mail_login(b, t, &m.user, OFFICE_IP, false);
            mail_login(b, t + Duration::seconds(20), &m.user, OFFICE_IP, true);
        }
        if m.crm {
            crm(b, day, &m);
        }
    }
}

fn crm(b: &mut Builder, day: u32, m: &Member) {
    background::crm_export(b, day, m.hours, &m.user);
}

fn travel_day(b: &mut Builder, day: u32, m: &Member, trip: &Trip) {
    let ip = if trip.addr.contains(':') {
        format!("{}::{:x}", trip.addr, 0x20 + day)
    } else {
        format!("{}{}", trip.addr, day % 10)
    };
    for _ in 0..b.rng.range(1, 3) {
        let t = at(b, day, trip.hours);
        let pid = b.next_pid();
        let fmt = b.vpn_format();
        b.good(t, LogFile::VpnLog, vpn(fmt, t, pid, &m.user, &ip, true));
        // Through the tunnel (vpn-pool) to the file server.
        let tunnel = format!("10.212.134.{}", 200 + pid % 50);
        let t = t + Duration::seconds(30);
        b.good(
            t,
            LogFile::Windows,
            logon(t, "FS01.corp.example", &m.user, 3, &tunnel),
        );
        mail_login(b, t + Duration::seconds(5), &m.user, &ip, true);
    }
}

/// A dovecot IMAP login (success or failure) as the mail server logs it over syslog.
pub(crate) fn mail_login(b: &mut Builder, t: DateTime<Utc>, user: &str, ip: &str, ok: bool) {
    let pid = b.next_pid();
    let session = b.rng.next_u64() & 0xffff_ffff_ffff;
    let msg = if ok {
        format!(
            "imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.25, mpid={pid}, TLS, session=<{session:012x}>"
        )
    } else {
        format!(
            "imap-login: Disconnected (auth failed, 1 attempts in 4 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.25, TLS, session=<{session:012x}>"
        )
    };
    b.good(t, LogFile::MailLog, syslog(t, "mx01", "dovecot", pid, &msg));
}

/// IT's work of the day: scheduled maintenance, installs, accounts for joiners and leavers.
pub(crate) fn admin_day(b: &mut Builder, day: u32) {
    let (admin, admin_ip) = *b.rng.pick(WIN_ADMINS);
    let srv = *b.rng.pick(SERVERS);
    let dow = day % 7;
    let t = at(b, day, (1, 8));
    // Admin logons to servers happen every working day.
    b.good(t, LogFile::Windows, logon(t, srv, admin, 3, admin_ip));
    let t = t + Duration::seconds(30);
    match dow {
        // A monitoring agent or an update installs its service.
        1 => {
            let (name, image) = *b.rng.pick(&[
                (
                    "Zabbix Agent 2",
                    r#""C:\Program Files\Zabbix Agent 2\zabbix_agent2.exe" -c "C:\Program Files\Zabbix Agent 2\zabbix_agent2.conf" -f=false"#,
                ),
                (
                    "Veeam Agent for Microsoft Windows",
                    r#""C:\Program Files\Veeam\Endpoint Backup\Veeam.EndPoint.Service.exe""#,
                ),
                (
                    "Microsoft Edge Update Service (edgeupdate)",
                    r#""C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe" /svc"#,
                ),
            ]);
            b.good(
                t,
                LogFile::Windows,
                win(t, 7045, srv, json!({"ServiceName": name, "ImagePath": image, "ServiceType": "user mode service", "StartType": "auto start", "AccountName": "LocalSystem"})),
            );
        }
        // A reporting job is scheduled.
        2 => {
            b.good(
                t,
                LogFile::Windows,
                win(t, 4698, srv, json!({"SubjectUserName": admin, "TaskName": "\\Corp\\NightlyReport", "TaskContent": "<Exec><Command>\"C:\\Program Files\\CorpTools\\report.exe\"</Command><Arguments>--daily</Arguments></Exec>"})),
            );
        }
        // Maintenance with PsExec from the admin workstation: announced, every other week.
        3 if (day / 7) % 2 == 0 => {
            b.good(
                t,
                LogFile::Windows,
                win(t, 7045, srv, json!({"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe", "ServiceType": "user mode service", "StartType": "demand start", "AccountName": "LocalSystem"})),
            );
            let t = t + Duration::seconds(2);
            b.good(
                t,
                LogFile::Windows,
                proc_create(
                    t,
                    srv,
                    admin,
                    r"C:\Windows\System32\gpupdate.exe",
                    "gpupdate.exe /force",
                    r"C:\Windows\PSEXESVC.exe",
                ),
            );
        }
        _ => {}
    }
    // The new hire's account and group, created by IT on the first day (ticket in the
    // helpdesk, not in the log); the leaver's account disabled the day after leaving.
    let hire = b.company.members[b.company.hire].clone();
    if day + 1 == hire.first_day {
        let t = at(b, day, (2, 6));
        b.good(
            t,
            LogFile::Windows,
            win(t, 4720, "DC01.corp.example", json!({"SubjectUserName": admin, "TargetUserName": hire.user, "SamAccountName": hire.user, "DisplayName": hire.name_ja, "UserPrincipalName": format!("{}@corp.example", hire.user)})),
        );
        let t = t + Duration::seconds(40);
        b.good(
            t,
            LogFile::Windows,
            win(t, 4728, "DC01.corp.example", json!({"SubjectUserName": admin, "TargetUserName": "Sales", "MemberName": format!("CN={},OU=Staff,DC=corp,DC=example", hire.user)})),
        );
    }
    let leaver = b.company.members[b.company.leaver].clone();
    if leaver.last_day.is_some_and(|l| day == l + 1) {
        let t = at(b, day, (1, 3));
        b.good(
            t,
            LogFile::Windows,
            win(
                t,
                4725,
                "DC01.corp.example",
                json!({"SubjectUserName": admin, "TargetUserName": leaver.user}),
            ),
        );
    }
    // Console use of the cloud account by IT, with MFA, from the office.
    if dow == 4 {
        let t = at(b, day, (1, 8));
        let rec = cloudtrail(
            b,
            t,
            "signin.amazonaws.com",
            "ConsoleLogin",
            "",
            "it-admin",
            OFFICE_IP,
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
            json!(null),
            json!({"eventType": "AwsConsoleSignIn", "readOnly": false, "responseElements": {"ConsoleLogin": "Success"}, "additionalEventData": {"MFAUsed": "Yes", "LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No"}}),
        );
        b.good(t, LogFile::CloudTrail, rec);
    }
}

/// Every night: the backup server's job (02:00 JST) with its service account, the shadow copy
/// it takes, and the weekly retention that deletes backups older than fourteen versions.
pub(crate) fn nightly(b: &mut Builder, day: u32) {
    let t = b.day_start(day) + Duration::hours(17) + Duration::seconds(b.rng.range(0, 300) as i64);
    let bk = "BK01.corp.example";
    b.good(t, LogFile::Windows, win(t, 4624, bk, json!({"TargetUserName": "svc-backup", "TargetDomainName": "CORP", "LogonType": 5, "IpAddress": "-", "WorkstationName": "-", "AuthenticationPackageName": "Negotiate"})));
    let parent = r"C:\Program Files\Corp\BackupAgent\backupagent.exe";
    let mut cmds = vec![
        (
            r"C:\Windows\System32\vssadmin.exe",
            "vssadmin.exe list shadows /for=D:",
        ),
        (
            r"C:\Windows\System32\vssadmin.exe",
            "vssadmin.exe create shadow /for=D:",
        ),
        (
            r"C:\Windows\System32\wbadmin.exe",
            r"wbadmin.exe start backup -backupTarget:\\NAS01\backup -include:D: -vssFull -quiet",
        ),
    ];
    if day % 7 == 6 {
        cmds.push((
            r"C:\Windows\System32\wbadmin.exe",
            "wbadmin.exe delete backup -keepVersions:14 -quiet",
        ));
    }
    for (k, (image, cmd)) in cmds.into_iter().enumerate() {
        let t = t + Duration::seconds(10 + 60 * k as i64);
        b.good(
            t,
            LogFile::Windows,
            proc_create(t, bk, "svc-backup", image, cmd, parent),
        );
    }
    // The database server's service account logs on to the app server through the night, and
    // the old scan-to-folder copier with an expired password fails every couple of hours.
    for h in (0..24).step_by(3) {
        let t =
            b.day_start(day) + Duration::hours(h) + Duration::seconds(b.rng.range(0, 600) as i64);
        b.good(
            t,
            LogFile::Windows,
            logon(t, "DB01.corp.example", "svc-sql", 3, "10.0.30.12"),
        );
        if weekday(b, day) && (1..9).contains(&h) {
            b.good(t, LogFile::Windows, win(t, 4625, "FS01.corp.example", json!({"TargetUserName": "svc-scan", "TargetDomainName": "CORP", "LogonType": 3, "IpAddress": "10.0.40.21", "WorkstationName": "MFP-2F", "Status": "0xc000006d", "SubStatus": "0xc000006a", "FailureReason": "%%2313", "AuthenticationPackageName": "NTLM"})));
        }
    }
}

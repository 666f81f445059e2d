//! Export → verify, with mamori_vault and with the real `sha256sum`, `openssl` and `python3`
//! (each skipped with a message if missing); path sanitization; refusing to overwrite.

use std::path::Path;
use std::process::Command;

use mamori_vault::{verify_bundle, ExportFilter, ExportRequest, RecordInput, Vault, VaultConfig};

use crate::common::*;

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: `{tool}` not found; the standard-tool check with it did not run");
    }
    ok
}

fn vault_with_hostile_source(dir: &Path) -> Vault {
    let mut v = VaultConfig {
        checkpoint_every_records: 10,
        ..small_config(dir)
    }
    .open(key(), t(0))
    .unwrap();
    fill(&mut v, 60, u64::MAX);
    for (i, src) in ["../../etc/passwd", "/abs/path", "udp://web01:514"]
        .iter()
        .enumerate()
    {
        v.append(
            &RecordInput {
                source: src,
                received_at: t(30 + i as i64),
                payload: b"=cmd|' /C calc'!A0",
            },
            t(70),
        )
        .unwrap();
    }
    v
}

fn request(from: i64, to: i64) -> ExportRequest {
    ExportRequest {
        incident: None,
        filter: ExportFilter {
            from: Some(t(from)),
            to: Some(t(to)),
            host: None,
            source: None,
            store_seqs: None,
        },
        actor: "analyst-a".into(),
    }
}

fn untar(bundle: &Path, into: &Path) -> std::path::PathBuf {
    let mut a = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    a.unpack(into).unwrap();
    let root = std::fs::read_dir(into)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(root
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("mamori-evidence-"));
    root
}

#[test]
fn export_verifies_with_mamori_and_standard_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let vdir = tmp.path().join("vault");
    let mut v = vault_with_hostile_source(&vdir);
    let out = tmp.path().join("case.tar");
    let s = v.export(&request(10, 40), &out, t(100)).unwrap();
    v.close(t(101)).unwrap();
    assert_eq!(
        s.records,
        30 + 3,
        "t(10)..t(40): 30 records, plus the 3 hostile-source ones"
    );
    assert!(s.audit_records >= 2, "notes and the export itself");

    let r = verify_bundle(&out, Some(&key().verifying_key())).unwrap();
    assert!(r.is_intact(), "{:#?}", r.findings);
    assert_eq!(r.records, s.records);
    // The export's own custody entry is in the vault too, and the vault still verifies.
    assert!(mamori_vault::verify(&vdir, &key().verifying_key())
        .unwrap()
        .is_intact());

    let wrong = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(!verify_bundle(&out, Some(&wrong)).unwrap().is_intact());

    let x = tempfile::tempdir().unwrap();
    let root = untar(&out, x.path());
    if have("sha256sum") {
        let o = Command::new("sha256sum")
            .args(["-c", "--strict", "MANIFEST.sha256"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sha256sum -c: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    if have("openssl") {
        for (msg, sig) in [
            ("head/tree-head.msg", "head/tree-head.sig"),
            ("MANIFEST.sha256", "MANIFEST.sha256.sig"),
        ] {
            let o = Command::new("openssl")
                .args([
                    "pkeyutl",
                    "-verify",
                    "-pubin",
                    "-inkey",
                    "vault-public-key.pem",
                    "-rawin",
                    "-in",
                    msg,
                    "-sigfile",
                    sig,
                ])
                .current_dir(&root)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "openssl verify {msg}: {} {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let der = Command::new("openssl")
            .args([
                "pkey",
                "-pubin",
                "-in",
                "vault-public-key.pem",
                "-outform",
                "DER",
            ])
            .current_dir(&root)
            .output()
            .unwrap();
        let fp = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der.stdout));
        assert_eq!(
            format!("SHA256:{fp}"),
            mamori_vault::fingerprint(&key().verifying_key())
        );
        // And a tampered head must fail the same command.
        let mut m = std::fs::read(root.join("head/tree-head.msg")).unwrap();
        m[40] ^= 1;
        std::fs::write(root.join("bad.msg"), m).unwrap();
        let o = Command::new("openssl")
            .args([
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "vault-public-key.pem",
                "-rawin",
                "-in",
                "bad.msg",
                "-sigfile",
                "head/tree-head.sig",
            ])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(!o.status.success());
    }
    if have("python3") {
        let o = Command::new("python3")
            .arg("verify_proofs.py")
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "verify_proofs.py: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn hostile_source_names_stay_inside_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v = vault_with_hostile_source(&tmp.path().join("vault"));
    let out = tmp.path().join("b.tar");
    v.export(&request(0, 1000), &out, t(100)).unwrap();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    for n in &names {
        assert!(
            n.starts_with("mamori-evidence-") && !n.split('/').any(|c| c == ".."),
            "{n}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.contains("records/by-source/.._.._etc_passwd-")
                || n.contains("records/by-source/_._.._etc_passwd-")),
        "{names:#?}"
    );
    let x = tempfile::tempdir().unwrap();
    untar(&out, x.path());
    assert!(!x.path().join("etc").exists() && !tmp.path().join("etc/passwd").exists());
    // Formula-looking payloads are defused in the CSV view only.
    let root = std::fs::read_dir(x.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = std::fs::read_to_string(root.join("timeline/timeline.csv")).unwrap();
    assert!(
        csv.contains(",\"'=cmd|' /C calc'!A0\"") || csv.contains(",'=cmd|' /C calc'!A0"),
        "{csv}"
    );
}

#[test]
fn host_filter_and_tampered_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v = vault_with_hostile_source(&tmp.path().join("vault"));
    let out = tmp.path().join("h.tar");
    let req = ExportRequest {
        filter: ExportFilter {
            host: Some("10.0.0.1".into()),
            ..Default::default()
        },
        ..request(0, 1)
    };
    let s = v.export(&req, &out, t(100)).unwrap();
    assert_eq!(
        s.records,
        20 - 1,
        "every third record of 60 comes from 10.0.0.1, one of them is an audit entry"
    );

    // Flip one byte inside records.bin in the tar: the manifest and the proofs both notice.
    let mut b = std::fs::read(&out).unwrap();
    let needle = b"web01 sshd";
    let at = b.windows(needle.len()).position(|w| w == needle).unwrap();
    b[at] ^= 0x20;
    let bad = tmp.path().join("bad.tar");
    std::fs::write(&bad, b).unwrap();
    let r = verify_bundle(&bad, None).unwrap();
    assert!(!r.is_intact());
    assert!(r.key_from_bundle);
}

#[test]
fn export_refuses_to_overwrite_or_follow_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v = vault_with_hostile_source(&tmp.path().join("vault"));
    let existing = tmp.path().join("exists.tar");
    std::fs::write(&existing, b"keep me").unwrap();
    assert!(matches!(
        v.export(&request(0, 10), &existing, t(100)),
        Err(mamori_vault::Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    #[cfg(unix)]
    {
        let link = tmp.path().join("link.tar");
        std::os::unix::fs::symlink(tmp.path().join("target"), &link).unwrap();
        assert!(v.export(&request(0, 10), &link, t(100)).is_err());
        assert!(!tmp.path().join("target").exists());
    }
    assert!(matches!(
        v.export(&request(10, 5), &tmp.path().join("x.tar"), t(100)),
        Err(mamori_vault::Error::InvalidRequest(_))
    ));
}

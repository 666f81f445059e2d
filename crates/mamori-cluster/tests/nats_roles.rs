//! The collector's publishing store and the store role against a real NATS JetStream: a
//! `nats-server` started by the test on a free loopback port with its own storage directory
//! (`/usr/sbin/nats-server`; "skipped" without it).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mamori_cluster::bus::Bus;
use mamori_cluster::collector::PublishingStore;
use mamori_cluster::store_role::{self, StoreProgress};
use mamori_cluster::{testing, ClusterConfig, SITE_FIELD};
use mamori_event::{FieldName, Value};
use mamori_store::testsuite::{ssh_event, t};
use mamori_store::{EventStore, MemoryEventStore};

fn wait_stored(p: &StoreProgress, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stored_through.load(Ordering::Relaxed) < want {
        assert!(
            Instant::now() < deadline,
            "stored through {} of {want}",
            p.stored_through.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn published_events_are_stored_once_with_the_stream_seq_and_the_collectors_site() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = testing::single(dir.path()) else {
        return;
    };
    let port = nats.port;
    let cfg: ClusterConfig = serde_json::from_value(serde_json::json!({
        "nats": [format!("nats://127.0.0.1:{port}")],
        "postgres": "unused here",
        "site": "kobe",
        "roles": ["collector", "store"],
    }))
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bus = rt.block_on(Bus::connect(&cfg)).unwrap();
    let collector = PublishingStore::new(&bus, rt.handle().clone(), "kobe", "n1");
    let mut batch: Vec<_> = (0..700)
        .map(|i| ssh_event(i, "alice", "failure", "203.0.113.5", Some(t(i as i64))))
        .collect();
    // A sender's own `mamori.site` is replaced by the collector's.
    batch[3].push(FieldName::new(SITE_FIELD), Value::str("forged"));
    let a = collector.append_at(&batch[..600], t(1000)).unwrap();
    assert_eq!((a.first_seq, a.last_seq), (1, 600));
    let a = collector.append_at(&batch[600..], t(1001)).unwrap();
    assert_eq!((a.first_seq, a.last_seq), (601, 700));
    // Never from inside the runtime (it would block a worker): an error, not a panic.
    let inside = rt.block_on(async { collector.append_at(&batch[..1], t(0)) });
    assert!(inside.is_err());

    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let progress = Arc::new(StoreProgress::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let role = rt.spawn(store_role::run(
        bus.clone(),
        Arc::clone(&store),
        Arc::clone(&progress),
        stop_rx,
    ));
    wait_stored(&progress, 700);
    for (i, ev) in batch.iter().enumerate() {
        let got = store.get(i as u64 + 1).unwrap().expect("stored");
        assert_eq!(got.event.raw, ev.raw, "store seq {} = stream seq", i + 1);
        assert_eq!(
            got.received_at,
            if i < 600 { t(1000) } else { t(1001) },
            "receipt time travels with the event"
        );
        let sites: Vec<_> = got
            .event
            .fields()
            .iter()
            .filter(|(n, _)| n.as_str() == SITE_FIELD)
            .map(|(_, v)| v.to_text().into_owned())
            .collect();
        assert_eq!(sites, ["kobe"], "event {i}");
    }
    // The role restarts from the store's last seq: nothing is stored twice.
    stop.send(true).unwrap();
    rt.block_on(role).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let progress = Arc::new(StoreProgress::default());
    let role = rt.spawn(store_role::run(
        bus.clone(),
        Arc::clone(&store),
        Arc::clone(&progress),
        stop_rx,
    ));
    collector.append_at(&batch[..5], t(1002)).unwrap();
    wait_stored(&progress, 705);
    assert_eq!(store.stats().unwrap().events, 705);
    assert_eq!(store.get(705).unwrap().unwrap().event.raw, batch[4].raw);
    stop.send(true).unwrap();
    rt.block_on(role).unwrap();
}

fn auth_cfg(port: u16, auth: serde_json::Value) -> ClusterConfig {
    let mut v = serde_json::json!({
        "nats": [format!("nats://127.0.0.1:{port}")],
        "postgres": "unused here",
        "site": "kobe",
        "roles": ["collector"],
    });
    v.as_object_mut()
        .unwrap()
        .extend(auth.as_object().unwrap().clone());
    let c: ClusterConfig = serde_json::from_value(v).unwrap();
    c.validate().unwrap();
    c
}

fn connects(cfg: &ClusterConfig) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), Bus::connect(cfg))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map(drop)
    })
}

#[test]
fn nats_token_and_user_password_from_the_config_are_what_a_server_requiring_them_gets() {
    let dir = tempfile::tempdir().unwrap();
    let Some(by_token) = testing::NatsServer::start(
        &dir.path().join("token"),
        "token",
        "",
        "authorization {\n  token: \"s3cr3t-t0ken\"\n}",
    ) else {
        return;
    };
    let Some(by_user) = testing::NatsServer::start(
        &dir.path().join("user"),
        "user",
        "",
        "authorization {\n  user: mamori\n  password: \"pa55-w0rd\"\n}",
    ) else {
        return;
    };
    let t = by_token.port;
    connects(&auth_cfg(
        t,
        serde_json::json!({"nats_token": "s3cr3t-t0ken"}),
    ))
    .expect("the right token is let in and creates the streams");
    let no = connects(&auth_cfg(t, serde_json::json!({})));
    assert!(no.is_err(), "no token: refused, got {no:?}");
    let bad = connects(&auth_cfg(t, serde_json::json!({"nats_token": "guess"})));
    assert!(bad.is_err(), "a wrong token: refused");

    let u = by_user.port;
    connects(&auth_cfg(
        u,
        serde_json::json!({"nats_user": "mamori", "nats_password": "pa55-w0rd"}),
    ))
    .expect("the right user and password are let in");
    let bad = connects(&auth_cfg(
        u,
        serde_json::json!({"nats_user": "mamori", "nats_password": "guess"}),
    ));
    assert!(bad.is_err(), "a wrong password: refused");
    let bad = connects(&auth_cfg(u, serde_json::json!({"nats_token": "pa55-w0rd"})));
    assert!(bad.is_err(), "a token where a user is required: refused");

    // TLS: a CA file that is not there is an error naming it, before any connection.
    let missing = dir.path().join("no-ca.pem");
    let e = connects(&auth_cfg(
        t,
        serde_json::json!({"nats_token": "s3cr3t-t0ken", "nats_tls_ca": missing}),
    ))
    .unwrap_err();
    assert!(e.contains("no-ca.pem"), "{e}");
}

/// A CA and a server certificate for 127.0.0.1 made with the `openssl` command (`None`
/// without it): `(ca.pem, server.pem, server.key)`.
fn test_pki(dir: &std::path::Path) -> Option<[std::path::PathBuf; 3]> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mamori test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "srv.ext",
    ]);
    if !ok {
        eprintln!("skipped: openssl could not make a test CA");
        return None;
    }
    Some([dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key")])
}

#[test]
fn nats_tls_ca_from_the_config_verifies_a_server_requiring_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some([ca, cert, key]) = test_pki(dir.path()) else {
        return;
    };
    let Some(tls) = testing::NatsServer::start(
        &dir.path().join("tls"),
        "tls",
        "",
        &format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\nauthorization {{\n  token: \"t\"\n}}",
            cert, key
        ),
    ) else {
        return;
    };
    let p = tls.port;
    connects(&auth_cfg(
        p,
        serde_json::json!({"nats_token": "t", "nats_tls_ca": ca}),
    ))
    .expect("TLS verified with the configured CA");
    // Another CA (the server's own certificate is not a CA): refused.
    let other = connects(&auth_cfg(
        p,
        serde_json::json!({"nats_token": "t", "nats_tls_ca": cert}),
    ));
    assert!(
        other.is_err(),
        "a server not signed by the configured CA: refused"
    );
    // Without the CA the server's certificate is not trusted.
    let plain = connects(&auth_cfg(p, serde_json::json!({"nats_token": "t"})));
    assert!(plain.is_err(), "an untrusted server certificate: refused");
}

//! A site cut off from the hub (issue #20): the site's collector talks to a NATS **leaf
//! node** with a JetStream domain of its own; its events go to the site stream
//! `MAMORI_SITE_<site>`, which the hub's `MAMORI_EVENTS` sources (JetStream `sources` with the
//! domain's `external` API prefix — the engine's mechanism, none of ours). The leaf link runs
//! through a TCP relay the test cuts: the collector keeps accepting and acknowledging logs;
//! when the link returns, the hub's store gets every one of them, in order, once.

use std::time::{Duration, Instant};

use crate::cluster::{all_alerts, cluster_config, status, Schema};
use crate::serve::Server;

fn count(store: &Server) -> u64 {
    let (st, v) = store.get("/api/v1/search?limit=1&q=message%3Aleaftest");
    assert_eq!(st, 200, "{v}");
    v["total"].as_u64().unwrap_or(0)
}

fn wait_count(store: &Server, want: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = count(store);
        if n >= want {
            assert_eq!(n, want, "more events than were sent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the hub's store has {n} of {want} events: {}",
            store.log_lines()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `n` events numbered from `first`; every 50th a shadow-copy deletion on a host of its own.
fn batch(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| {
            if i % 50 == 0 {
                format!(
                    r#"{{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"LEAF-{i}","Image":"C:\\Windows\\System32\\vssadmin.exe","CommandLine":"vssadmin.exe delete shadows /all /quiet","leaf.n":{i},"message":"leaftest"}}"#
                ) + "\n"
            } else {
                format!("{{\"leaf.n\":{i},\"message\":\"leaftest\"}}\n")
            }
        })
        .collect()
}

#[test]
fn a_site_cut_off_from_the_hub_keeps_acknowledging_and_delivers_everything_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((hub, relay, leaf)) =
        mamori_cluster::testing::hub_and_leaf(&dir.path().join("nats"), "branch")
    else {
        return;
    };
    let Some((guard, pg)) = Schema::create("leaf") else {
        return;
    };
    let branch_cfg = cluster_config(
        dir.path(),
        &[leaf.url()],
        &guard.name,
        "branch",
        "branch",
        "[\"collector\"]",
        "[]",
        "jetstream_domain = \"branch\"",
    );
    let hq_cfg = cluster_config(
        dir.path(),
        &[hub.url()],
        &guard.name,
        "hq",
        "hq",
        "[\"detector\", \"store\"]",
        "[0, 1]",
        "leaf_sites = [\"branch\"]",
    );
    let branch = Server::start(&branch_cfg, None);
    let hq = Server::start(&hq_cfg, None);
    let send = |first: usize, n: usize| {
        let (st, v) = branch.post("/api/v1/ingest", &[], batch(first, n).as_bytes());
        assert_eq!(st, 200, "the site acknowledges: {v}");
    };

    // Linked: events reach the hub's store through the sourced site stream.
    const PER: usize = 100;
    let mut sent = 0;
    for _ in 0..3 {
        send(sent, PER);
        sent += PER;
    }
    wait_count(&hq, sent as u64, Duration::from_secs(60));

    // Cut: the site keeps acknowledging; nothing crosses.
    relay.cut();
    mamori_cluster::testing::wait_leaf_linked(&hub, false);
    let before_cut = sent;
    let t0 = Instant::now();
    for _ in 0..20 {
        send(sent, PER);
        sent += PER;
    }
    eprintln!(
        "{} events acknowledged by the cut-off site in {:.1} s",
        sent - before_cut,
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&hq),
        before_cut as u64,
        "nothing reaches the hub while the link is cut"
    );

    // Restored: the leaf node relinks and the hub's source catches up, in order, once.
    relay.restore();
    mamori_cluster::testing::wait_leaf_linked(&hub, true);
    wait_count(&hq, sent as u64, Duration::from_secs(120));
    let hits = hq.search_all("message:leaftest");
    assert_eq!(hits.len(), sent);
    let mut by_seq: Vec<(u64, u64, String)> = hits
        .iter()
        .map(|h| {
            (
                h["seq"].as_u64().unwrap(),
                h["fields"]["leaf.n"].as_u64().unwrap(),
                h["fields"]["mamori.site"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    by_seq.sort_unstable();
    let order: Vec<u64> = by_seq.iter().map(|x| x.1).collect();
    assert_eq!(
        order,
        (0..sent as u64).collect::<Vec<_>>(),
        "stream order = the site's order, each event once"
    );
    assert!(by_seq.iter().all(|x| x.2 == "branch"));

    // Detection at the hub sees the cut-off site's events too: one alert per deletion.
    let want = (0..sent).filter(|i| i % 50 == 0).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let leaf_alerts: Vec<_> = all_alerts(&pg)
            .into_iter()
            .filter(|a| {
                a.group_key
                    .as_deref()
                    .is_some_and(|g| g.starts_with("host.name=LEAF-"))
            })
            .collect();
        if leaf_alerts.len() >= want {
            assert_eq!(leaf_alerts.len(), want);
            assert!(leaf_alerts
                .iter()
                .all(|a| a.count == 1 && a.details["site"] == "branch"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {want} alerts",
            leaf_alerts.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = status(&hq_cfg);
    assert_eq!(s["streams"][0]["last_seq"], sent as u64, "{s:#}");
    for srv in [branch, hq] {
        assert_eq!(srv.stop(), Some(0), "clean shutdown on SIGTERM");
    }
    drop((leaf, relay, hub));
}

//! **Run**: connect the built [`Components`](crate::build::Components) to the world — bind
//! every listener (syslog UDP/TCP/TLS, HTTP), start the file tails and the background duties
//! (index refresh, retention, rule reload, disk-full and UDP-loss alerts, incident expiry) —
//! and hand back the [`Running`] server.
//!
//! A listener that cannot bind fails the start with its configuration key and address; the
//! parts already started are stopped by dropping them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use mamori_event::{Level, RuleId};
use mamori_store::NewAlert;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::build::Components;
use crate::metrics::SourceKind;
use crate::{
    api, api_serve, diskfull, incidents, pipeline, reload_and_count, rules, sources, tokens,
    Running, StartError,
};

/// Binds the listeners, starts the background duties, and returns the running server.
pub(crate) async fn run(c: Components) -> Result<Running, StartError> {
    let Components {
        cfg,
        data,
        caps,
        events,
        alerts,
        sealer,
        audit,
        rules,
        metrics,
        alert_tx,
        incident_rx,
        pipeline,
        incidents,
        source_health,
        cluster,
    } = c;
    let sink = pipeline.sink.clone();
    let (stop, stop_rx) = watch::channel(false);
    let mut running = Running {
        syslog_udp: None,
        syslog_tcp: None,
        syslog_tls: None,
        http: None,
        events: Arc::clone(&events),
        alerts: Arc::clone(&alerts),
        metrics: Arc::clone(&metrics),
        rules: rules.clone(),
        alert_tx,
        stop,
        sources: Vec::new(),
        background: Vec::new(),
        pipeline: Some(pipeline),
        sealer,
        source_health: source_health.clone(),
        cluster,
    };
    let mut sources = Vec::new();

    // Syslog over UDP, TCP and TLS.
    if let Some(addr) = cfg.syslog.udp {
        let (sock, granted) = sources::syslog::bind_udp(addr, cfg.syslog.udp_receive_buffer_bytes)
            .map_err(|source| StartError::Bind {
                key: "syslog.udp",
                addr,
                source,
            })?;
        metrics
            .net
            .udp_receive_buffer_bytes
            .store(granted as u64, Relaxed);
        running.syslog_udp = sock.local_addr().ok();
        sources.push(tokio::spawn(sources::syslog::run_udp(
            sock,
            sink.clone(),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    // What every stream listener (TCP, TLS) shares.
    let stream_ctx = |kind, transport| sources::syslog::StreamCtx {
        kind,
        transport,
        sink: sink.clone(),
        metrics: Arc::clone(&metrics),
        max_frame: cfg.syslog.max_frame_bytes,
        stop: stop_rx.clone(),
        idle: Duration::from_secs(cfg.syslog.idle_timeout_secs),
        idle_when_full: Duration::from_secs(cfg.syslog.idle_timeout_when_full_secs),
        load: None,
    };
    if let Some(addr) = cfg.syslog.tcp {
        let l = bind("syslog.tcp", addr).await?;
        running.syslog_tcp = l.local_addr().ok();
        let ctx = stream_ctx(SourceKind::Tcp, mamori_event::Transport::Tcp);
        sources.push(tokio::spawn(sources::syslog::run_tcp(l, ctx, caps.stream)));
    }
    if let Some(tls) = &cfg.syslog.tls {
        let (acceptor, generated) = sources::tls::load_or_generate(tls, &data)
            .map_err(|m| StartError::Tls(format!("[syslog.tls]: {m}")))?;
        if let Some(p) = generated {
            tracing::info!(cert = %p.display(), "syslog TLS uses a generated self-signed certificate; give it to your senders as their CA");
        }
        let l = bind("syslog.tls.listen", tls.listen).await?;
        running.syslog_tls = l.local_addr().ok();
        let ctx = stream_ctx(SourceKind::Tls, mamori_event::Transport::Tls);
        sources.push(tokio::spawn(sources::tls::run_tls(
            l,
            acceptor,
            ctx,
            caps.stream,
        )));
    }

    // Files tailed on this machine.
    for t in &cfg.tail {
        sources.push(tokio::spawn(sources::tail::run_tail(
            t.clone(),
            Arc::clone(&alerts),
            sink.clone(),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }

    // Backup checks: stored results, scheduled and on demand, an alert on failure.
    let backups = Arc::new(
        crate::backups::BackupService::open(
            cfg.backup.clone(),
            cfg.backups.clone(),
            &data,
            Arc::clone(&alerts),
            running.alert_tx.clone(),
        )
        .map_err(|e| StartError::State {
            path: data.join(mamori_backup::HISTORY_FILE),
            message: e.to_string(),
        })?,
    );

    // Scans of the allow-listed targets (`[scan]`): stored, scheduled, new findings alert.
    let scans = Arc::new(
        crate::scans::ScanService::open(
            cfg.scan.clone(),
            &data,
            Arc::clone(&alerts),
            Arc::clone(&events),
            running.alert_tx.clone(),
        )
        .map_err(|e| StartError::State {
            path: data.join(crate::scans::SCANS_FILE),
            message: e.to_string(),
        })?,
    );

    // Rule switches and the response policy saved in the console override the file's.
    {
        let (al, r, i) = (Arc::clone(&alerts), rules.clone(), incidents.clone());
        let _ = tokio::task::spawn_blocking(move || {
            crate::console::manage::apply_saved(&*al, r.as_deref(), i.as_deref())
        })
        .await;
    }
    // The HTTP API: ingest, upload, search, alerts, incidents, metrics.
    if let Some(addr) = cfg.http.listen {
        let tls = crate::tls_api::acceptor(&cfg.http, &data).map_err(StartError::Tls)?;
        let l = bind("http.listen", addr).await?;
        let agents = {
            let (c, al, ev) = (cfg.agents.clone(), Arc::clone(&alerts), Arc::clone(&events));
            let tx = running.alert_tx.clone();
            let a = tokio::task::spawn_blocking(move || {
                crate::agents::Agents::open(c, al, ev).map(|a| a.with_alert_tx(tx))
            })
            .await
            .map_err(|e| StartError::Config(format!("agents: {e}")))?
            .map_err(|message| StartError::State {
                path: data.join("state.db"),
                message,
            })?;
            Arc::new(a)
        };
        running
            .background
            .push(crate::agents::silence_task(Arc::clone(&agents)));
        running.http = l.local_addr().ok();
        let state = Arc::new(api::StateInner {
            events: Arc::clone(&events),
            alerts: Arc::clone(&alerts),
            sink: sink.clone(),
            rules: rules.clone(),
            metrics: Arc::clone(&metrics),
            tokens: tokens::TokenCache::with_audit(&*alerts, audit.clone()),
            http: cfg.http.clone(),
            uploads_dir: data.join("uploads"),
            started: Instant::now(),
            incidents: incidents.clone(),
            console: crate::console::ConsoleState::new(
                audit.clone(),
                tls.is_some(),
                data.join("exports"),
            )
            .with_notify(cfg.notify_config().ok().flatten())
            .with_identities(
                cfg.analytics
                    .identities
                    .clone()
                    .filter(|_| cfg.analytics.enabled),
            ),
            sources: source_health.clone(),
            backups: Arc::clone(&backups),
            scans: Arc::clone(&scans),
            data_dir: data.to_path_buf(),
            agents: Some(Arc::clone(&agents)),
        });
        running.background.push(token_refresh(Arc::clone(&state)));
        let app = api::router(state);
        let http_limits = api_serve::HttpLimits {
            max_connections: caps.http,
            header_read_timeout: Duration::from_secs(cfg.http.header_read_timeout_secs),
        };
        sources.push(tokio::spawn(api_serve::serve(
            l,
            app,
            http_limits,
            stop_rx.clone(),
            tls,
        )));
    }
    drop(sink);
    running.sources = sources;

    // Background duties.
    if let Some(svc) = &incidents {
        running
            .background
            .push(tokio::spawn(incidents::run(Arc::clone(svc), incident_rx)));
        running.background.push(incident_expiry(Arc::clone(svc)));
    }
    running.background.push(index_refresh(&running));
    if let Some(t) = retention(&cfg, &running) {
        running.background.push(t);
    }
    let report_mail = match cfg.notify_config() {
        Ok(Some(n)) => mamori_notify::Notifier::new(&n).ok().map(Arc::new),
        _ => None,
    };
    if let Some(t) = crate::reports::monthly_duty(
        cfg.reports.clone(),
        data.to_path_buf(),
        rules.clone(),
        report_mail,
    ) {
        running.background.push(t);
    }
    if let (Some(h), true) = (rules, cfg.detection.reload_interval_secs > 0) {
        let every = Duration::from_secs(cfg.detection.reload_interval_secs);
        running
            .background
            .push(rule_reload(h, Arc::clone(&metrics), every));
    }
    // Disk full is loud: one alert per episode, `/health` degraded while it lasts.
    running.background.push(tokio::spawn(diskfull::run_monitor(
        Arc::clone(&metrics),
        Arc::clone(&events),
        Arc::clone(&alerts),
        running.alert_tx.clone(),
        Duration::from_secs(1),
    )));
    running.background.push(udp_loss_alerts(&running));
    // Silent or collapsed log sources are alerts (`[sources]`).
    if let Some(h) = &source_health {
        running
            .background
            .push(tokio::spawn(crate::source_health::run(
                Arc::clone(h),
                Arc::clone(&alerts),
                running.alert_tx.clone(),
                Arc::clone(&metrics),
            )));
    }
    if !cfg.backup.is_empty() {
        running.background.push(crate::backups::schedule(
            Arc::clone(&backups),
            running.alert_tx.subscribe(),
        ));
    }
    if scans.enabled() {
        running
            .background
            .push(crate::scans::schedule(Arc::clone(&scans)));
    }
    if data.join("vault").is_dir() {
        for w in crate::witness::Witness::configured(&cfg.vault) {
            running.background.push(crate::witness::run(
                data.join("vault"),
                w,
                Duration::from_secs(1),
            ));
        }
    }
    tracing::info!(
        syslog_udp = ?running.syslog_udp,
        syslog_tcp = ?running.syslog_tcp,
        http = ?running.http,
        data_dir = %data.display(),
        "mamori serve is running"
    );
    Ok(running)
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// Token revocations take effect (and reach the chain of custody) without a request.
fn token_refresh(st: Arc<api::StateInner>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(tokens::REFRESH);
        loop {
            tick.tick().await;
            let st = Arc::clone(&st);
            let _ =
                tokio::task::spawn_blocking(move || st.tokens.refresh_if_due(&*st.alerts)).await;
        }
    })
}

/// Expires suggested response actions and response TTLs.
fn incident_expiry(svc: Arc<incidents::IncidentService>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            let s = Arc::clone(&svc);
            let _ = tokio::task::spawn_blocking(move || s.expire()).await;
        }
    })
}

/// Makes stored events searchable within a second even when no new events arrive.
fn index_refresh(running: &Running) -> JoinHandle<()> {
    let ev = Arc::clone(&running.events);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let ev = Arc::clone(&ev);
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(s) = ev.stats() {
                    if s.last_seq.unwrap_or(0) > s.indexed_seq {
                        if let Err(e) = ev.refresh() {
                            tracing::error!(error = %e, "index refresh failed");
                        }
                    }
                }
            })
            .await;
        }
    })
}

/// Applies `[storage] retention_*` hourly.
fn retention(cfg: &crate::ServerConfig, running: &Running) -> Option<JoinHandle<()>> {
    if cfg.storage.retention_days.is_none() && cfg.storage.retention_bytes.is_none() {
        return None;
    }
    let ev = Arc::clone(&running.events);
    let age = cfg
        .storage
        .retention_days
        .map(|d| TimeDelta::days(i64::from(d)));
    let bytes = cfg.storage.retention_bytes;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let ev = Arc::clone(&ev);
            let r = tokio::task::spawn_blocking(move || ev.apply_retention(Utc::now(), age, bytes))
                .await;
            match r {
                Ok(Ok(r)) if r.removed_events > 0 => tracing::info!(
                    removed = r.removed_events,
                    bytes = r.removed_bytes,
                    "retention removed old events"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                _ => {}
            }
        }
    }))
}

/// Hot reload of the rules when their files change.
fn rule_reload(
    h: Arc<rules::RulesHandle>,
    m: Arc<crate::metrics::Metrics>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let paths = h.paths().to_vec();
        let p2 = paths.clone();
        let mut last = tokio::task::spawn_blocking(move || rules::fingerprint(&p2))
            .await
            .unwrap_or(0);
        loop {
            tokio::time::sleep(every).await;
            let (h2, m2, p2) = (Arc::clone(&h), Arc::clone(&m), paths.clone());
            let r = tokio::task::spawn_blocking(move || {
                let fp = rules::fingerprint(&p2);
                if fp != last {
                    reload_and_count(&h2, &m2);
                }
                fp
            })
            .await;
            if let Ok(fp) = r {
                last = fp;
            }
        }
    })
}

/// Losing logs is a security event: raises an alert when UDP drops (queue or kernel buffer).
fn udp_loss_alerts(running: &Running) -> JoinHandle<()> {
    let (m, al) = (Arc::clone(&running.metrics), Arc::clone(&running.alerts));
    let atx = running.alert_tx.clone();
    tokio::spawn(async move {
        let mut seen = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let now = m.source(SourceKind::Udp).dropped.load(Relaxed)
                + m.net.udp_kernel_drops.load(Relaxed);
            if now > seen {
                let lost = now - seen;
                seen = now;
                let (al, atx) = (Arc::clone(&al), atx.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = pipeline::record_alert(&*al, &atx, &dropped_alert(lost)) {
                        tracing::error!(error = %e, "cannot record drop alert");
                    }
                })
                .await;
            }
        }
    })
}

fn dropped_alert(lost: u64) -> NewAlert {
    let now = Utc::now();
    NewAlert {
        rule_id: RuleId("mamori.pipeline.udp_dropped".into()),
        title: "Syslog messages dropped: the server could not keep up".into(),
        level: Level::High,
        event_time: Some(now),
        received_at: now,
        event_seqs: Vec::new(),
        group_key: Some("source=syslog_udp".into()),
        dedup_key: Some(format!(
            "mamori.pipeline.udp_dropped|{}",
            now.timestamp() / 3600
        )),
        details: serde_json::json!({
            "dropped": lost,
            "description": "UDP syslog messages were dropped because the pipeline queue or the socket's receive buffer was full. Logs may be missing; check the server's load and storage speed, raise syslog.udp_receive_buffer_bytes (and net.core.rmem_max), or send over TCP.",
            "description_ja": "パイプラインのキューまたはソケットの受信バッファが満杯のため、UDPで受信したsyslogメッセージを破棄しました。ログが欠落している可能性があります。サーバーの負荷とストレージ速度を確認するか、syslog.udp_receive_buffer_bytes（および net.core.rmem_max）を増やすか、TCPで送信してください。",
        }),
    }
}

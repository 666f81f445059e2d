//! Internal telemetry: typed counters that the pipeline bumps and `/metrics` renders in the
//! Prometheus text format (no metrics crate: a few atomics and one formatter).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use mamori_event::{Event, Format};
use mamori_ingest::LineInfo;

/// Where events come from; one set of counters each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Udp,
    Tcp,
    Tls,
    Http,
    Upload,
    Tail,
}

impl SourceKind {
    pub const ALL: [SourceKind; 6] = [
        SourceKind::Udp,
        SourceKind::Tcp,
        SourceKind::Tls,
        SourceKind::Http,
        SourceKind::Upload,
        SourceKind::Tail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Udp => "syslog_udp",
            SourceKind::Tcp => "syslog_tcp",
            SourceKind::Tls => "syslog_tls",
            SourceKind::Http => "http",
            SourceKind::Upload => "upload",
            SourceKind::Tail => "file_tail",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events parsed and handed to the pipeline.
    pub events_in: AtomicU64,
    /// Bytes received (frames, bodies).
    pub bytes_in: AtomicU64,
    /// Events lost because the queue was full (UDP only: the others wait).
    pub dropped: AtomicU64,
    /// Frames or lines that could not be parsed.
    pub malformed: AtomicU64,
    /// Frames or requests over the size limit.
    pub oversized: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Read quality (syslog sources): lines read only as generic text.
    pub unparsed: AtomicU64,
    /// Read quality: events without a timestamp (stamped with the receipt time downstream).
    pub no_timestamp: AtomicU64,
    /// Read quality: message bodies that looked like JSON but did not parse (kept as text).
    pub payload_failed: AtomicU64,
    /// Read quality: events per format (indexed like `Format::ALL`).
    pub formats: [AtomicU64; Format::ALL.len()],
    /// Read quality: events whose syslog message carried another format (indexed like
    /// [`PAYLOADS`]).
    pub payloads: [AtomicU64; PAYLOADS.len()],
}

/// Payload formats recognised inside syslog messages, as `LineInfo::payload` names them.
pub const PAYLOADS: [&str; 3] = ["access-log", "json", "error-log"];

impl SourceCounters {
    /// Counts how well one parsed line was understood.
    pub fn record_read_quality(&self, ev: &Event, info: &LineInfo) {
        if info.generic {
            self.unparsed.fetch_add(1, Relaxed);
        }
        if info.no_timestamp {
            self.no_timestamp.fetch_add(1, Relaxed);
        }
        if info.payload_failed.is_some() {
            self.payload_failed.fetch_add(1, Relaxed);
        }
        if let Some(i) = Format::ALL.iter().position(|f| *f == ev.format) {
            self.formats[i].fetch_add(1, Relaxed);
        }
        if let Some(i) = info
            .payload
            .and_then(|p| PAYLOADS.iter().position(|x| *x == p))
        {
            self.payloads[i].fetch_add(1, Relaxed);
        }
    }
}

/// Picks one counter of a source.
type CounterOf = fn(&SourceCounters) -> &AtomicU64;

/// Latency buckets (seconds) of the receipt → alert histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Most latency samples kept for exact percentiles (the bench reads them).
const MAX_SAMPLES: usize = 200_000;

#[derive(Debug, Default)]
pub struct Metrics {
    sources: [SourceCounters; 6],
    /// Events durably stored.
    pub events_stored: AtomicU64,
    /// Store writes (each one fsync under the default policy).
    pub store_writes: AtomicU64,
    pub store_write_micros: AtomicU64,
    pub store_errors: AtomicU64,
    /// Events run through the rules.
    pub events_matched: AtomicU64,
    pub match_micros: AtomicU64,
    pub alerts_created: AtomicU64,
    pub alerts_merged: AtomicU64,
    pub alert_errors: AtomicU64,
    pub rule_reloads: AtomicU64,
    pub rule_reload_failures: AtomicU64,
    /// Disk-full state of the stores (`crate::diskfull`).
    pub storage: crate::diskfull::StorageHealth,
    /// Correlation state, copied from the correlator's counters after each batch.
    pub correlation: CorrelationGauges,
    /// Correlation state saves: full snapshots, change sets, bytes written by both.
    pub correlation_state_snapshots: AtomicU64,
    pub correlation_state_deltas: AtomicU64,
    pub correlation_state_bytes: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    latency_samples: Mutex<Vec<u32>>,
    /// Counters of the exhaustion limits (rendered by the API with the others).
    pub net: crate::limits::NetCounters,
    /// A `[cluster]` node's gauges and counters (rendered by the API after the others).
    pub cluster: std::sync::OnceLock<std::sync::Arc<crate::cluster::ClusterMetrics>>,
    /// Sources by health state, indexed like `source_health::State::ALL` (set by the monitor).
    pub sources_by_state: [AtomicU64; 4],
    /// Entries, limits and drops of the capped per-key structures (`crate::pressure`).
    pub caps: crate::pressure::CapGauges,
}

/// What the correlator holds and what it dropped (absolute values, saved with its state).
#[derive(Debug, Default)]
pub struct CorrelationGauges {
    pub groups: AtomicU64,
    pub fired: AtomicU64,
    pub too_late_window_closed: AtomicU64,
    pub missing_group_by: AtomicU64,
    pub no_timestamp: AtomicU64,
    pub future_dated: AtomicU64,
    pub evicted_groups: AtomicU64,
    pub evicted_entries: AtomicU64,
    pub max_groups: AtomicU64,
    pub under_pressure: AtomicU64,
    pub pressure_episodes: AtomicU64,
}

impl Metrics {
    /// Copies the correlator's figures (cheap: counters and a sum over correlations).
    pub fn set_correlation(&self, c: &mamori_detect::correlation::Correlator) {
        let g = &self.correlation;
        let s = &c.stats;
        g.groups.store(c.group_count() as u64, Relaxed);
        g.fired.store(s.fired, Relaxed);
        g.too_late_window_closed
            .store(s.too_late_window_closed, Relaxed);
        g.missing_group_by.store(s.missing_group_by, Relaxed);
        g.no_timestamp.store(s.no_timestamp, Relaxed);
        g.future_dated.store(s.future_dated, Relaxed);
        g.evicted_groups.store(s.evicted_groups, Relaxed);
        g.evicted_entries.store(s.evicted_entries, Relaxed);
        g.max_groups.store(c.max_groups() as u64, Relaxed);
        g.under_pressure
            .store(u64::from(c.under_pressure()), Relaxed);
        g.pressure_episodes.store(s.pressure_episodes, Relaxed);
    }

    fn render_correlation(&self, s: &mut String) {
        let g = &self.correlation;
        let ld = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            s,
            "# HELP mamori_correlation_groups Open correlation groups (all correlations).\n# TYPE mamori_correlation_groups gauge\nmamori_correlation_groups {}",
            ld(&g.groups)
        );
        let _ = writeln!(
            s,
            "# HELP mamori_correlation_group_limit Most groups per correlation rule ([detection] max_correlation_groups).\n# TYPE mamori_correlation_group_limit gauge\nmamori_correlation_group_limit {}\n# HELP mamori_correlation_state_pressure 1 while a correlation evicts groups at its cap (may miss slow attacks).\n# TYPE mamori_correlation_state_pressure gauge\nmamori_correlation_state_pressure {}\n# HELP mamori_correlation_state_pressure_episodes_total Episodes of correlation state pressure (one alert each).\n# TYPE mamori_correlation_state_pressure_episodes_total counter\nmamori_correlation_state_pressure_episodes_total {}",
            ld(&g.max_groups),
            ld(&g.under_pressure),
            ld(&g.pressure_episodes)
        );
        let _ = writeln!(
            s,
            "# HELP mamori_correlation_episodes_total Correlation episodes opened (alerts raised).\n# TYPE mamori_correlation_episodes_total counter\nmamori_correlation_episodes_total {}",
            ld(&g.fired)
        );
        let name = "mamori_correlation_too_late_total";
        let _ = writeln!(
            s,
            "# HELP {name} Events dropped by correlation as too late, per reason.\n# TYPE {name} counter\n{name}{{reason=\"window_closed\"}} {}",
            ld(&g.too_late_window_closed)
        );
        let name = "mamori_correlation_dropped_total";
        let _ = writeln!(
            s,
            "# HELP {name} Events or state correlation could not use, per reason.\n# TYPE {name} counter"
        );
        for (reason, v) in [
            ("too_late", &g.too_late_window_closed),
            ("missing_group_by", &g.missing_group_by),
            ("no_timestamp", &g.no_timestamp),
            ("group_evicted", &g.evicted_groups),
            ("entry_evicted", &g.evicted_entries),
        ] {
            let _ = writeln!(s, "{name}{{reason=\"{reason}\"}} {}", ld(v));
        }
        let _ = writeln!(
            s,
            "# HELP mamori_correlation_future_dated_total Events dated beyond the tolerance after their receipt (correlated at receipt time).\n# TYPE mamori_correlation_future_dated_total counter\nmamori_correlation_future_dated_total {}",
            ld(&g.future_dated)
        );
        for (name, help, v) in [
            (
                "mamori_correlation_state_snapshots_total",
                "Full correlation state snapshots saved.",
                &self.correlation_state_snapshots,
            ),
            (
                "mamori_correlation_state_deltas_total",
                "Correlation state change sets saved.",
                &self.correlation_state_deltas,
            ),
            (
                "mamori_correlation_state_bytes_total",
                "Bytes of correlation state saved.",
                &self.correlation_state_bytes,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                ld(v)
            );
        }
    }

    pub fn source(&self, k: SourceKind) -> &SourceCounters {
        &self.sources[k.index()]
    }

    /// Records one receipt → alert latency.
    pub fn observe_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Relaxed);
        if let Ok(mut v) = self.latency_samples.lock() {
            if v.len() < MAX_SAMPLES {
                v.push(d.as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }

    /// (p50, p99, count) of the recorded receipt → alert latencies.
    pub fn latency_percentiles(&self) -> Option<(Duration, Duration, usize)> {
        let mut v = self.latency_samples.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            Duration::from_micros(u64::from(v[i]))
        };
        Some((at(0.5), at(0.99), v.len()))
    }

    pub fn reset_latency(&self) {
        if let Ok(mut v) = self.latency_samples.lock() {
            v.clear();
        }
    }

    /// The Prometheus text exposition. `gauges` are extra (name, help, value) lines computed by
    /// the caller at scrape time (queue depth, store size).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut s = String::with_capacity(4096);
        let per_source: [(&str, &str, CounterOf); 6] = [
            (
                "mamori_events_in_total",
                "Events received and parsed, per source.",
                |c| &c.events_in,
            ),
            (
                "mamori_bytes_in_total",
                "Bytes received, per source.",
                |c| &c.bytes_in,
            ),
            (
                "mamori_events_dropped_total",
                "Events lost because the pipeline queue was full (UDP).",
                |c| &c.dropped,
            ),
            (
                "mamori_malformed_total",
                "Frames or records that could not be parsed.",
                |c| &c.malformed,
            ),
            (
                "mamori_oversized_total",
                "Frames or requests over the size limit.",
                |c| &c.oversized,
            ),
            ("mamori_connections_total", "Connections accepted.", |c| {
                &c.connections
            }),
        ];
        self.render_per_source(&mut s, &per_source);
        self.render_read_quality(&mut s);
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "mamori_events_stored_total",
                "Events durably stored.",
                &self.events_stored,
            ),
            (
                "mamori_store_writes_total",
                "Grouped store writes.",
                &self.store_writes,
            ),
            (
                "mamori_store_write_micros_total",
                "Time spent in store writes (microseconds).",
                &self.store_write_micros,
            ),
            (
                "mamori_store_errors_total",
                "Failed store writes.",
                &self.store_errors,
            ),
            (
                "mamori_events_matched_total",
                "Events evaluated against the rules.",
                &self.events_matched,
            ),
            (
                "mamori_match_micros_total",
                "Time spent matching rules (microseconds).",
                &self.match_micros,
            ),
            (
                "mamori_alerts_created_total",
                "Alerts created.",
                &self.alerts_created,
            ),
            (
                "mamori_alerts_merged_total",
                "Alert occurrences merged into an open alert (deduplicated).",
                &self.alerts_merged,
            ),
            (
                "mamori_alert_errors_total",
                "Alerts that could not be recorded.",
                &self.alert_errors,
            ),
            (
                "mamori_rule_reloads_total",
                "Rule reloads.",
                &self.rule_reloads,
            ),
            (
                "mamori_rule_reload_failures_total",
                "Rule files that failed to compile at the last reloads.",
                &self.rule_reload_failures,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "mamori_alert_latency_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time from receipt of an event to the alert it raised.\n# TYPE {name} histogram"
        );
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "{name}_count {count}");
        self.storage.render(&mut s);
        let _ = writeln!(
            s,
            "# HELP mamori_sources Log sources by health state (ok, new, silent, collapsed).\n# TYPE mamori_sources gauge"
        );
        for (st, n) in crate::source_health::State::ALL
            .iter()
            .zip(&self.sources_by_state)
        {
            let _ = writeln!(
                s,
                "mamori_sources{{state=\"{}\"}} {}",
                st.as_str(),
                n.load(Relaxed)
            );
        }
        self.render_correlation(&mut s);
        self.caps.render(&mut s);
        for (name, help, v) in gauges {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        s
    }
}

impl Metrics {
    /// One counter family per table entry, with a sample for every source kind.
    fn render_per_source(&self, s: &mut String, table: &[(&str, &str, CounterOf)]) {
        for (name, help, get) in table {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for k in SourceKind::ALL {
                let _ = writeln!(
                    s,
                    "{name}{{source=\"{}\"}} {}",
                    k.as_str(),
                    get(self.source(k)).load(Relaxed)
                );
            }
        }
    }

    /// What was not fully understood, per source: the operator must not believe unread input
    /// was checked.
    fn render_read_quality(&self, s: &mut String) {
        let per_source: [(&str, &str, CounterOf); 3] = [
            (
                "mamori_events_unparsed_total",
                "Lines read only as generic text (no known format), per source.",
                |c| &c.unparsed,
            ),
            (
                "mamori_events_without_timestamp_total",
                "Events whose record had no readable timestamp, per source.",
                |c| &c.no_timestamp,
            ),
            (
                "mamori_payload_unparsed_total",
                "Syslog message bodies that looked like JSON but did not parse, or in a format whose fields are not read (CEF, LEEF, key=value); kept as text.",
                |c| &c.payload_failed,
            ),
        ];
        self.render_per_source(s, &per_source);
        let name = "mamori_events_by_format_total";
        let _ = writeln!(
            s,
            "# HELP {name} Events read, per source and format.\n# TYPE {name} counter"
        );
        for k in SourceKind::ALL {
            for (i, f) in Format::ALL.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{name}{{source=\"{}\",format=\"{}\"}} {}",
                    k.as_str(),
                    f.as_str(),
                    self.source(k).formats[i].load(Relaxed)
                );
            }
        }
        let name = "mamori_events_embedded_total";
        let _ = writeln!(
            s,
            "# HELP {name} Syslog messages that carried another format, per source and format.\n# TYPE {name} counter"
        );
        for k in SourceKind::ALL {
            for (i, p) in PAYLOADS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{name}{{source=\"{}\",format=\"{p}\"}} {}",
                    k.as_str(),
                    self.source(k).payloads[i].load(Relaxed)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.source(SourceKind::Udp).dropped.fetch_add(3, Relaxed);
        m.observe_latency(Duration::from_millis(20));
        m.observe_latency(Duration::from_millis(700));
        let text = m.render(&[("mamori_queue_depth", "Batches waiting.", 2.0)]);
        assert!(text.contains("mamori_events_dropped_total{source=\"syslog_udp\"} 3"));
        assert!(text.contains("mamori_alert_latency_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("mamori_alert_latency_seconds_bucket{le=\"1\"} 2"));
        assert!(text.contains("mamori_alert_latency_seconds_count 2"));
        assert!(text.contains("mamori_queue_depth 2"));
        let (p50, p99, n) = m.latency_percentiles().unwrap();
        assert_eq!(n, 2);
        assert!(p50 <= p99);
    }

    #[test]
    fn renders_read_quality_per_source_and_format() {
        let m = Metrics::default();
        let mut names = mamori_event::Interner::new();
        let origin = mamori_event::Origin::Network {
            peer: "127.0.0.1:514".parse().unwrap(),
            transport: mamori_event::Transport::Tcp,
        };
        let c = m.source(SourceKind::Tcp);
        for line in [
            "some text the server cannot read",
            r#"<134>Nov 10 01:00:01 web1 nginx: 1.2.3.4 - - [10/Nov/2023:01:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "x""#,
            r#"<14>Nov 10 01:00:01 h app: {"broken": "#,
        ] {
            let (ev, info) = mamori_ingest::parse_syslog_line_info(
                line.as_bytes(),
                origin.clone(),
                &mut names,
                &mut mamori_ingest::YearHint::current(),
            )
            .unwrap();
            c.record_read_quality(&ev, &info);
        }
        let text = m.render(&[]);
        assert!(text.contains("mamori_events_unparsed_total{source=\"syslog_tcp\"} 1"));
        assert!(text.contains("mamori_events_unparsed_total{source=\"syslog_udp\"} 0"));
        assert!(text.contains("mamori_payload_unparsed_total{source=\"syslog_tcp\"} 1"));
        assert!(text.contains(
            "mamori_events_by_format_total{source=\"syslog_tcp\",format=\"access-log\"} 1"
        ));
        assert!(text
            .contains("mamori_events_by_format_total{source=\"syslog_tcp\",format=\"syslog\"} 2"));
        assert!(text.contains(
            "mamori_events_embedded_total{source=\"syslog_tcp\",format=\"access-log\"} 1"
        ));
        assert!(text.contains("mamori_events_without_timestamp_total{source=\"syslog_tcp\"} 1"));
    }
}

//! Capped per-key state: its `/metrics` gauges and one "state under pressure" alert per episode.
//!
//! Every structure of `mamori serve` keyed by something a sender chooses (an address, an account
//! or host name in a log line) has a cap (issue #15): otherwise anyone who can send syslog grows
//! the server's memory without bound. At the cap something is lost — an entry is dropped, or new
//! keys are counted together — and that must never be silent: each structure reports its entries,
//! its limit and what it dropped ([`CapGauges`]), and an [`Episode`] turns the drops into **one
//! alert per episode**, saying what is lost ([`Capped`]). An episode opens with the first drop
//! and ends once nothing was dropped for [`QUIET`]; the next flood is a new alert.
//! The correlation groups have their own, older, equivalent (`mamori_correlation_*`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chrono::{DateTime, TimeDelta, Utc};
use mamori_event::{Level, RuleId};
use mamori_store::NewAlert;

/// Rule id of the pressure alerts (the structure is in the details and the dedup key).
pub const PRESSURE_RULE_ID: &str = "mamori.state.pressure";
/// An episode ends after this long without a drop.
pub const QUIET: TimeDelta = TimeDelta::minutes(10);

/// The capped structures outside correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capped {
    /// Risk entities (`[analytics.risk] max_entities`).
    RiskEntities,
    /// Accounts with a baseline (`[analytics] max_accounts`).
    Accounts,
    /// Source health's distinct external addresses of the day
    /// (`[sources] max_addresses_per_day`).
    SourceAddresses,
    /// Source health's sources (`[sources] max_sources`).
    Sources,
}

impl Capped {
    pub const ALL: [Capped; 4] = [
        Capped::RiskEntities,
        Capped::Accounts,
        Capped::SourceAddresses,
        Capped::Sources,
    ];

    /// The `structure` label of the gauges.
    pub fn label(self) -> &'static str {
        match self {
            Capped::RiskEntities => "risk_entities",
            Capped::Accounts => "analytics_accounts",
            Capped::SourceAddresses => "source_addresses_per_day",
            Capped::Sources => "sources",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Capped::RiskEntities => "[analytics.risk] max_entities",
            Capped::Accounts => "[analytics] max_accounts",
            Capped::SourceAddresses => "[sources] max_addresses_per_day",
            Capped::Sources => "[sources] max_sources",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// (title, title_ja, what is lost, what is lost in Japanese).
    fn texts(self) -> [&'static str; 4] {
        match self {
            Capped::RiskEntities => [
                "Risk state under pressure: risk of quiet entities is being forgotten",
                "リスク状態の逼迫: 最近動きのないエンティティのリスクが失われています",
                "The entities signalled least recently (accounts, hosts, public addresses) are dropped with the risk they had collected: a slow attack whose signals are hours apart may not reach the risk threshold while this lasts.",
                "最も長く兆候のないエンティティ（アカウント・ホスト・公開アドレス）を、蓄積したリスクごと破棄しています。この間、数時間おきに兆候を出す低速な攻撃はリスクのしきい値に届かない可能性があります。",
            ],
            Capped::Accounts => [
                "Account baselines under pressure: baselines of inactive accounts are being forgotten",
                "アカウントのベースラインの逼迫: 活動のないアカウントのベースラインが失われています",
                "The accounts active least recently are forgotten and learn again from scratch: until they have a few active days of history again, their first-seen address and host, off-hours and volume checks do not apply (a slow account takeover may be missed). Forged login lines naming many accounts cause this.",
                "最も長く活動のないアカウントのベースラインを破棄し、最初から学習し直します。数日分の履歴がたまるまで、そのアカウントの初めての接続元・ホスト、時間外、転送量の検知は働きません（低速なアカウント乗っ取りを見逃す可能性があります）。多数のアカウント名を含む偽装ログイン行が原因になります。",
            ],
            Capped::SourceAddresses => [
                "Activity aggregates under pressure: addresses beyond the daily cap are counted together",
                "活動集計の逼迫: 1日の上限を超えたアドレスはまとめて数えられています",
                "Today's external addresses beyond the cap are counted under 0.0.0.0: their events and failed/successful logins are not itemised per address in the activity view and reports (the events themselves are stored and detected as usual). A flood of forged source addresses causes this.",
                "本日の上限を超えた外部アドレスは 0.0.0.0 としてまとめて数えます。活動画面とレポートでアドレスごとのイベント数・ログイン成功/失敗が分かりません（イベント自体は通常どおり保存・検知されます）。偽装した送信元アドレスの大量送信が原因になります。",
            ],
            Capped::Sources => [
                "Source health under pressure: new sources are counted as (other)",
                "送信元監視の逼迫: 新しい送信元は (other) としてまとめて数えられています",
                "Sources beyond the cap are counted together as (other): their silence or collapse is not alerted on, and they are not listed in the source view. Syslog host names are chosen by the sender; many forged names cause this.",
                "上限を超えた送信元は (other) としてまとめて数えます。その送信元の停止・急減はアラートにならず、送信元一覧にも表示されません。syslog のホスト名は送信側が決めるため、多数の偽装ホスト名が原因になります。",
            ],
        }
    }
}

/// Gauges of one capped structure.
#[derive(Debug, Default)]
pub struct CapGauge {
    pub entries: AtomicU64,
    pub limit: AtomicU64,
    /// Entries dropped (or keys counted together) at the cap, since start.
    pub dropped: AtomicU64,
    pub under_pressure: AtomicU64,
    pub episodes: AtomicU64,
}

/// Picks one value of a gauge.
type Pick = fn(&CapGauge) -> &AtomicU64;

/// Gauges of every [`Capped`] structure.
#[derive(Debug, Default)]
pub struct CapGauges([CapGauge; 4]);

impl CapGauges {
    pub fn get(&self, c: Capped) -> &CapGauge {
        &self.0[c.index()]
    }

    /// Sets entries, limit and drops.
    pub fn set(&self, c: Capped, entries: usize, limit: usize, dropped: u64) {
        let g = self.get(c);
        g.entries.store(entries as u64, Relaxed);
        g.limit.store(limit as u64, Relaxed);
        g.dropped.store(dropped, Relaxed);
    }

    pub(crate) fn render(&self, s: &mut String) {
        let families: [(&str, &str, &str, Pick); 5] = [
            (
                "mamori_state_entries",
                "Entries of a capped per-key structure.",
                "gauge",
                |g| &g.entries,
            ),
            (
                "mamori_state_limit",
                "Cap of a per-key structure (its configuration key is in docs/limits.md).",
                "gauge",
                |g| &g.limit,
            ),
            (
                "mamori_state_dropped_total",
                "Entries dropped or counted together at the cap.",
                "counter",
                |g| &g.dropped,
            ),
            (
                "mamori_state_pressure",
                "1 while a per-key structure drops entries at its cap.",
                "gauge",
                |g| &g.under_pressure,
            ),
            (
                "mamori_state_pressure_episodes_total",
                "Pressure episodes of a per-key structure (one alert each).",
                "counter",
                |g| &g.episodes,
            ),
        ];
        for (name, help, kind, pick) in families {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for c in Capped::ALL {
                let _ = writeln!(
                    s,
                    "{name}{{structure=\"{}\"}} {}",
                    c.label(),
                    pick(self.get(c)).load(Relaxed)
                );
            }
        }
    }
}

/// The pressure episode of one structure, fed its drop counter.
#[derive(Debug, Default)]
pub struct Episode {
    seen: u64,
    open: Option<DateTime<Utc>>,
    last_drop: Option<DateTime<Utc>>,
}

impl Episode {
    /// Feeds the structure's drop counter (since start) at `now`; returns the alert when a new
    /// episode opens, and keeps the gauges' pressure flag and episode count.
    pub fn update(
        &mut self,
        c: Capped,
        dropped: u64,
        limit: usize,
        now: DateTime<Utc>,
        gauges: &CapGauges,
    ) -> Option<NewAlert> {
        let g = gauges.get(c);
        let grew = dropped > self.seen;
        let before = self.seen;
        self.seen = dropped;
        let mut raised = None;
        if grew {
            self.last_drop = Some(now);
            if self.open.is_none() {
                self.open = Some(now);
                g.episodes.fetch_add(1, Relaxed);
                raised = Some(pressure_alert(c, limit, before, now));
            }
        } else if self.open.is_some() && self.last_drop.is_none_or(|t| now - t >= QUIET) {
            self.open = None;
        }
        g.under_pressure
            .store(u64::from(self.open.is_some()), Relaxed);
        raised
    }
}

fn pressure_alert(c: Capped, limit: usize, dropped_before: u64, now: DateTime<Utc>) -> NewAlert {
    let [title, title_ja, lost, lost_ja] = c.texts();
    let key = c.key();
    NewAlert {
        rule_id: RuleId(PRESSURE_RULE_ID.into()),
        title: title.into(),
        level: Level::High,
        event_time: Some(now),
        received_at: now,
        event_seqs: Vec::new(),
        group_key: None,
        dedup_key: Some(format!(
            "{PRESSURE_RULE_ID}|{}|{}",
            c.label(),
            now.timestamp_millis()
        )),
        details: serde_json::json!({
            "structure": c.label(),
            "limit": limit,
            "dropped_before": dropped_before,
            "title_ja": title_ja,
            "description": format!(
                "{lost} The cap is {limit} ({key}); mamori_state_entries and mamori_state_dropped_total{{structure=\"{}\"}} show how close it is and what was dropped. Raise it if memory allows and this comes without a flood (docs/limits.md).",
                c.label()
            ),
            "description_ja": format!(
                "{lost_ja}上限は {limit}（{key}）です。mamori_state_entries と mamori_state_dropped_total{{structure=\"{}\"}} で状況を確認できます。攻撃なしでこのアラートが出る場合は、メモリに余裕があれば上限を引き上げてください（docs/limits.md）。",
                c.label()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_episode_and_a_new_one_after_quiet() {
        let g = CapGauges::default();
        let mut e = Episode::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |m: i64| t0 + TimeDelta::minutes(m);
        assert!(e.update(Capped::RiskEntities, 0, 10, at(0), &g).is_none());
        let a = e
            .update(Capped::RiskEntities, 5, 10, at(1), &g)
            .expect("first drop opens an episode");
        assert_eq!(&*a.rule_id.0, PRESSURE_RULE_ID);
        assert!(a.details["description"]
            .as_str()
            .unwrap()
            .contains("max_entities"));
        assert!(a.details["description_ja"]
            .as_str()
            .unwrap()
            .contains("上限"));
        assert!(e.update(Capped::RiskEntities, 9, 10, at(2), &g).is_none());
        assert!(e.update(Capped::RiskEntities, 9, 10, at(8), &g).is_none());
        let gauge = g.get(Capped::RiskEntities);
        assert_eq!(gauge.under_pressure.load(Relaxed), 1);
        // Ten quiet minutes end it; the next drop is a new episode.
        assert!(e.update(Capped::RiskEntities, 9, 10, at(12), &g).is_none());
        assert_eq!(gauge.under_pressure.load(Relaxed), 0);
        let b = e.update(Capped::RiskEntities, 10, 10, at(13), &g).unwrap();
        assert_ne!(a.dedup_key, b.dedup_key);
        assert_eq!(gauge.episodes.load(Relaxed), 2);
        let mut s = String::new();
        g.render(&mut s);
        assert!(s.contains("mamori_state_pressure_episodes_total{structure=\"risk_entities\"} 2"));
    }
}

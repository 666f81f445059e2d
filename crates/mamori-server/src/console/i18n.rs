//! The console's words in Japanese and English. One table, one row per key, so a missing
//! translation is a compile-time gap in a row rather than a key forgotten in one file
//! (a test checks that no row is empty). The page's script receives the same table as JSON.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap};

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The browser's preference (`Accept-Language`): Japanese if it comes before English.
    pub fn from_headers(h: &HeaderMap) -> Lang {
        let v = h
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in v.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("ja") {
                return Lang::Ja;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }

    /// The default time zone: JST for Japanese; for English, none (the browser's own zone).
    pub fn default_tz(self) -> Option<&'static str> {
        match self {
            Lang::Ja => Some("Asia/Tokyo"),
            Lang::En => None,
        }
    }
}

/// (key, English, Japanese)
const WORDS: &[(&str, &str, &str)] = &[
    ("product", "Mamori", "守り"),
    ("nav_overview", "Overview", "概要"),
    ("nav_alerts", "Alerts", "アラート"),
    ("nav_incidents", "Incidents", "インシデント"),
    ("nav_search", "Search", "検索"),
    ("nav_rules", "Rules", "ルール"),
    ("nav_agents", "Agents", "エージェント"),
    ("nav_scans", "Scans", "外部診断"),
    ("nav_settings", "Settings", "設定"),
    ("sign_in", "Sign in", "サインイン"),
    ("sign_out", "Sign out", "サインアウト"),
    ("user_name", "User name", "ユーザー名"),
    ("password", "Password", "パスワード"),
    (
        "login_invalid",
        "Wrong user name or password.",
        "ユーザー名またはパスワードが違います。",
    ),
    (
        "login_locked",
        "Too many wrong passwords: this account is locked for a while.",
        "パスワードの誤りが続いたため、このアカウントはしばらくロックされています。",
    ),
    (
        "login_throttled",
        "Too many failed sign-ins from your address. Try again later.",
        "このアドレスからのサインイン失敗が多すぎます。しばらくしてから再試行してください。",
    ),
    (
        "login_expired",
        "The sign-in form expired. Please try again.",
        "サインインフォームの有効期限が切れました。もう一度お試しください。",
    ),
    ("language", "Language", "言語"),
    ("contact_lang_ja", "Japanese", "日本語"),
    ("contact_lang_en", "English", "英語"),
    ("contact_lang_both", "Japanese and English", "日本語と英語"),
    ("time_zone", "Time zone", "タイムゾーン"),
    ("save", "Save", "保存"),
    ("role", "Role", "ロール"),
    ("role_admin", "Admin", "管理者"),
    ("role_analyst", "Analyst", "アナリスト"),
    ("role_viewer", "Viewer", "閲覧者"),
    (
        "alerts_by_level",
        "Alerts by level (last 24 h)",
        "レベル別アラート（直近24時間）",
    ),
    (
        "incidents_by_phase",
        "Open incidents by NIST phase",
        "NISTフェーズ別の未解決インシデント",
    ),
    (
        "responses_in_force",
        "Response actions in force",
        "実施中の対応アクション",
    ),
    ("source_health", "Source health", "ログ送信元の状態"),
    ("backups", "Backups", "バックアップ"),
    ("backup_last_check", "Last check", "最終確認"),
    ("backup_findings", "Findings", "所見"),
    ("backup_passed", "Passed", "合格"),
    ("backup_warning", "Warning", "警告"),
    ("backup_failed", "Failed", "失敗"),
    ("backup_never", "Not checked yet", "未確認"),
    ("rule321", "3-2-1 rule", "3-2-1ルール"),
    ("rule321_met", "met", "満たしている"),
    ("rule321_missing", "not met", "満たしていない"),
    ("rule321_copies", "copies", "コピー数"),
    ("rule321_media", "kinds of media", "媒体の種類"),
    ("rule321_offsite", "off-site", "遠隔地"),
    (
        "rule321_offline",
        "offline or immutable",
        "オフライン・変更不可",
    ),
    ("level_informational", "informational", "情報"),
    ("level_low", "low", "低"),
    ("level_medium", "medium", "中"),
    ("level_high", "high", "高"),
    ("level_critical", "critical", "重大"),
    ("not_available", "Not available", "利用できません"),
    ("none", "None", "なし"),
    ("loading", "Loading…", "読み込み中…"),
    ("error", "Error", "エラー"),
    (
        "forbidden",
        "Your role does not allow this.",
        "このロールでは実行できません。",
    ),
    ("level", "Level", "レベル"),
    ("status", "Status", "状態"),
    ("rule", "Rule", "ルール"),
    ("host", "Host", "ホスト"),
    ("user", "User", "ユーザー"),
    ("address", "Address", "アドレス"),
    ("time", "Time", "時刻"),
    ("title", "Title", "タイトル"),
    ("count", "Count", "件数"),
    ("all", "All", "すべて"),
    ("open", "Open", "未対応"),
    ("acknowledged", "Acknowledged", "確認済み"),
    ("acknowledge", "Acknowledge", "確認済みにする"),
    (
        "acknowledge_selected",
        "Acknowledge selected",
        "選択したものを確認済みにする",
    ),
    ("filter", "Filter", "絞り込み"),
    ("since", "Since", "開始"),
    ("live", "Live: updates every second", "ライブ：毎秒更新"),
    ("alert", "Alert", "アラート"),
    ("matched_events", "Matched events", "一致したイベント"),
    ("raw", "Raw", "生ログ"),
    ("fields", "Fields", "フィールド"),
    ("why_fired", "Why it fired", "検知理由"),
    ("attack_tags", "ATT&CK tags", "ATT&CKタグ"),
    ("open_incident", "Open its incident", "インシデントを開く"),
    ("search_pivot", "Search for this", "これを検索"),
    ("incident", "Incident", "インシデント"),
    ("phase", "Phase", "フェーズ"),
    (
        "phase_detection_analysis",
        "Detection & Analysis",
        "検知と分析",
    ),
    ("phase_containment", "Containment", "封じ込め"),
    ("phase_eradication", "Eradication", "根絶"),
    ("phase_recovery", "Recovery", "復旧"),
    ("phase_post_incident", "Post-incident", "事後対応"),
    ("phase_closed", "Closed", "クローズ"),
    ("move_to", "Move to", "移動先"),
    (
        "reason",
        "Reason (required when going back)",
        "理由（前のフェーズに戻す場合は必須）",
    ),
    ("change_phase", "Change phase", "フェーズを変更"),
    ("assignee", "Assignee", "担当者"),
    ("assign", "Assign", "割り当て"),
    ("tasks", "Playbook tasks", "プレイブックのタスク"),
    ("done", "Done", "完了"),
    ("timeline", "Timeline", "タイムライン"),
    ("raw_record", "Full record", "記録の全文"),
    ("tl_agent", "agent", "エージェント"),
    ("tl_created", "Created", "作成"),
    ("tl_alert_joined", "Alert joined", "アラート追加"),
    ("tl_severity", "Severity", "重大度"),
    ("tl_kind", "Kind", "種別"),
    ("tl_phase", "Phase", "フェーズ"),
    ("tl_assigned", "Assigned", "担当者"),
    ("tl_note", "Note", "メモ"),
    ("tl_task_done", "Task done", "タスク完了"),
    ("tl_action", "Action", "対応"),
    ("tl_evidence", "Evidence", "証拠"),
    ("tl_closed", "Closed", "クローズ"),
    ("tl_reopened", "Reopened", "再オープン"),
    ("tl_notification", "Notification", "通知"),
    ("tl_response_suggested", "Response suggested", "対応の提案"),
    ("tl_response_executed", "Response executed", "対応を自動実行"),
    ("tl_response_approved", "Response approved", "対応を承認・実行"),
    ("tl_response_refused", "Response not planned", "対応を見送り"),
    ("tl_response_rejected", "Response rejected", "対応を却下"),
    ("tl_response_rolled_back", "Response rolled back", "対応をロールバック"),
    ("tl_agent_response_requested", "Agent action requested", "エージェントへ対応を依頼"),
    (
        "tl_agent_response_rollback_requested",
        "Agent rollback requested",
        "エージェントへロールバックを依頼",
    ),
    ("tl_agent_response_executed", "Agent action done", "エージェントが対応を実行"),
    ("tl_agent_response_rolled_back", "Agent rolled back", "エージェントがロールバック"),
    ("tl_agent_response_failed", "Agent action failed", "エージェントの対応が失敗"),
    ("tl_agent_response_refused", "Agent refused the action", "エージェントが対応を拒否"),
    ("notes", "Notes", "メモ"),
    ("add_note", "Add note", "メモを追加"),
    ("responses", "Response actions", "対応アクション"),
    ("suggested", "Suggested", "提案"),
    ("approve", "Approve", "承認"),
    ("rollback", "Roll back", "ロールバック"),
    ("evidence", "Evidence", "証拠"),
    (
        "export_evidence",
        "Export evidence bundle",
        "証拠バンドルをエクスポート",
    ),
    ("download", "Download", "ダウンロード"),
    ("report", "Incident report", "インシデント報告書"),
    ("entities", "Entities", "エンティティ"),
    ("query", "Query", "クエリ"),
    ("from", "From", "開始"),
    ("to", "To", "終了"),
    ("range_1h", "Last hour", "直近1時間"),
    ("range_24h", "Last 24 hours", "直近24時間"),
    ("range_7d", "Last 7 days", "直近7日間"),
    ("range_all", "All time", "全期間"),
    ("results", "Results", "結果"),
    ("export_csv", "Export CSV", "CSVエクスポート"),
    ("export_jsonl", "Export JSONL", "JSONLエクスポート"),
    ("event", "Event", "イベント"),
    ("source", "Source", "送信元"),
    ("message", "Message", "メッセージ"),
    ("loaded_rules", "Loaded rules", "読み込まれたルール"),
    (
        "failed_rules",
        "Rules that failed to load",
        "読み込みに失敗したルール",
    ),
    ("hits", "Hits", "ヒット数"),
    ("users", "Users", "ユーザー"),
    ("add_user", "Add user", "ユーザーを追加"),
    ("disable", "Disable", "無効化"),
    ("enable", "Enable", "有効化"),
    ("disabled", "Disabled", "無効"),
    ("enabled", "Enabled", "有効"),
    ("preferences", "Preferences", "個人設定"),
    ("tz_default", "Default", "既定"),
    ("last_seen", "Last seen", "最終受信"),
    (
        "events_last_hour",
        "Events (last hour)",
        "イベント数（直近1時間）",
    ),
    ("state", "State", "状態"),
    ("state_ok", "OK", "正常"),
    ("state_silent", "Silent", "途絶"),
    ("state_collapsed", "Volume collapsed", "急減"),
    ("state_new", "New", "新規"),
    ("kind", "Kind", "種別"),
    ("ikind_generic", "Generic", "一般"),
    ("ikind_brute_force", "Brute force", "総当たり攻撃"),
    ("ikind_web_attack", "Web attack", "Web攻撃"),
    ("ikind_account_compromise", "Account compromise", "アカウント侵害"),
    ("ikind_vpn_compromise", "VPN compromise", "VPN侵害"),
    ("ikind_data_exfiltration", "Data exfiltration", "情報の持ち出し"),
    ("ikind_ransomware", "Ransomware", "ランサムウェア"),
    ("outcome_ok", "succeeded", "成功"),
    ("outcome_failed", "failed", "失敗"),
    ("expires", "Expires", "期限"),
    ("action", "Action", "アクション"),
    ("target", "Target", "対象"),
    ("no_results", "Nothing found.", "見つかりませんでした。"),
    ("saved", "Saved.", "保存しました。"),
    ("signed_in_as", "Signed in as", "サインイン中："),
    ("saved_searches", "Saved searches", "保存した検索"),
    ("save_search", "Save search", "検索を保存"),
    ("name", "Name", "名前"),
    ("delete", "Delete", "削除"),
    ("locked", "Locked", "ロック中"),
    ("automatic", "Automatic", "自動"),
    ("dry_run", "Dry run", "ドライラン"),
    ("files", "files", "ファイル"),
    ("assign_selected", "Assign selected to", "選択したアラートの担当者"),
    ("unassigned", "Unassigned", "未割り当て"),
    ("reject", "Reject", "却下"),
    ("reject_reason", "Why is it rejected?", "却下の理由"),
    ("rejected", "Rejected", "却下済み"),
    ("level_override", "Level override", "レベルの上書き"),
    ("level_default", "Rule file's level", "ルールファイルの値"),
    ("test_rule", "Test a rule", "ルールのテスト"),
    ("test_rule_help", "Run a loaded rule, or paste a Sigma rule (YAML), against the latest stored events before enabling it.", "読み込み済みのルール、または貼り付けた Sigma ルール（YAML）を、有効にする前に直近の保存イベントで試します。"),
    ("rule_yaml", "Rule YAML", "ルールの YAML"),
    ("latest_events", "Latest events", "直近のイベント数"),
    ("run_test", "Run test", "テスト実行"),
    ("matched", "Matched", "一致"),
    ("examined", "Examined", "調査したイベント"),
    ("overrides_note", "Changes made on this page are stored in the server's state database (state.db) and override the configuration file (mamori.toml), also after a restart.", "このページでの変更はサーバーの状態データベース（state.db）に保存され、設定ファイル（mamori.toml）の値より優先されます（再起動後も有効）。"),
    ("api_tokens", "API tokens", "API トークン"),
    ("create_token", "Create token", "トークンを作成"),
    ("token_once", "Copy this token now: it is shown only once.", "このトークンを今すぐコピーしてください。表示はこの一度だけです。"),
    ("revoke", "Revoke", "失効"),
    ("created", "Created", "作成日時"),
    ("response_policy", "Response policy", "自動対応ポリシー"),
    ("allow_list", "Allow-list: never blocked (one address or CIDR per line)", "許可リスト：遮断しないアドレス（1行に1つ、CIDR可）"),
    ("default_ttl", "Default block time (seconds)", "既定の遮断時間（秒）"),
    ("max_ttl", "Longest block time (seconds)", "最長の遮断時間（秒）"),
    ("mode_off", "Off", "オフ"),
    ("mode_suggest", "Suggest", "提案"),
    ("mode_automatic", "Automatic", "自動"),
    ("act_block_ip", "Block IP", "IP 遮断"),
    ("act_disable_account", "Disable account", "アカウント無効化"),
    ("act_isolate_host", "Isolate host", "ホスト隔離"),
    ("act_webhook", "Webhook", "Webhook"),
    ("response_not_configured", "Automatic response is not configured ([response] in mamori.toml).", "自動対応は設定されていません（mamori.toml の [response]）。"),
    ("from_console", "Set in the console (overrides mamori.toml)", "コンソールで設定済み（mamori.toml より優先）"),
    ("from_file", "From mamori.toml", "mamori.toml の設定"),
    ("saved_ok", "Saved.", "保存しました。"),
    ("on_off", "On/off", "オン/オフ"),
    ("identity_directory", "Identity directory", "ID ディレクトリ"),
    ("identities_count", "identities", "件の ID"),
    ("identities_note", "Used by the analytics (departed staff, shared accounts). One line per account or key: kind,id,person,status,end_date,created. Saving checks it, then writes the file named by [analytics] identities in mamori.toml (the previous version is kept as .bak); the server applies it within seconds.", "分析（退職者・共有アカウントの検出）で使います。1行に1アカウントまたはキー：kind,id,person,status,end_date,created。保存すると検査の上、mamori.toml の [analytics] identities のファイルに書き込みます（以前の版は .bak に保存）。数秒以内に反映されます。"),
    ("identities_not_configured", "No identity directory is configured ([analytics] identities in mamori.toml).", "ID ディレクトリは設定されていません（mamori.toml の [analytics] identities）。"),
    ("policy_note", "Changes made here are stored in the server's state database (state.db) and override [response.policy] of mamori.toml, also after a restart.", "ここでの変更はサーバーの状態データベース（state.db）に保存され、mamori.toml の [response.policy] より優先されます（再起動後も有効）。"),
    ("contacts_escalation", "Contacts and escalation", "連絡先とエスカレーション"),
    ("channels", "Channels", "通知チャネル"),
    ("escalation", "Escalation", "エスカレーション"),
    ("send_test", "Send test", "テスト送信"),
    ("test_sent", "Test sent", "テスト送信済み"),
    ("min_severity", "Minimum severity", "最低重大度"),
    ("tier", "Tier", "段階"),
    ("after_minutes", "after (minutes)", "経過（分）"),
    ("email", "E-mail", "メール"),
    ("notify_not_configured", "No notification contacts are configured ([notify] in mamori.toml).", "通知の連絡先は設定されていません（mamori.toml の [notify]）。"),
    ("notify_file_note", "Contacts, channels and escalation come from mamori.toml ([notify]); edit them there. Secrets are never shown.", "連絡先・チャネル・エスカレーションは mamori.toml（[notify]）で設定します。秘密情報は表示しません。"),
];

/// The table of `lang`: key → words.
pub fn words(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    WORDS
        .iter()
        .map(|(k, en, ja)| (*k, if lang == Lang::Ja { *ja } else { *en }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_once() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, ja) in WORDS {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!en.is_empty() && !ja.is_empty(), "{k}");
        }
    }

    #[test]
    fn every_incident_kind_reads_in_both_languages() {
        for lang in [Lang::En, Lang::Ja] {
            let w = words(lang);
            for k in mamori_cases::IncidentKind::ALL {
                assert!(
                    w.contains_key(format!("ikind_{}", k.as_str()).as_str()),
                    "incident kind {} has no words",
                    k.as_str()
                );
            }
        }
    }

    #[test]
    fn every_history_action_reads_in_both_languages() {
        let w = words(Lang::Ja);
        for a in [
            "created",
            "alert_joined",
            "severity",
            "kind",
            "phase",
            "assigned",
            "note",
            "task_done",
            "action",
            "evidence",
            "closed",
            "reopened",
        ] {
            assert!(
                w.contains_key(format!("tl_{a}").as_str()),
                "history action {a}"
            );
        }
    }

    #[test]
    fn browser_language_is_the_default() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "ja-JP,ja;q=0.9,en;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::from_headers(&h), Lang::Ja);
        h.insert(header::ACCEPT_LANGUAGE, "en-US,ja;q=0.5".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::En);
    }
}

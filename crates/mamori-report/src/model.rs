//! The report model: plain data (sections of paragraphs, facts, tables and charts) that both
//! renderers walk. Every string in it is text, never markup: the renderers escape it (HTML) or
//! pass it to typst as data (PDF), so log content cannot become markup in either.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

/// The reader's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

    /// Pick the text of this language.
    pub fn t<'a>(self, en: &'a str, ja: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Ja => ja,
        }
    }

    /// The default display zone: JST for Japanese readers, UTC otherwise.
    pub fn default_zone(self) -> Zone {
        match self {
            Lang::En => Zone::utc(),
            Lang::Ja => Zone::jst(),
        }
    }
}

/// A display time zone: a fixed offset and the name printed after times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub offset: FixedOffset,
    pub name: String,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            offset: FixedOffset::east_opt(0).expect("0 is a valid offset"),
            name: "UTC".into(),
        }
    }

    pub fn jst() -> Zone {
        Zone {
            offset: FixedOffset::east_opt(9 * 3600).expect("+9h is a valid offset"),
            name: "JST".into(),
        }
    }

    /// `UTC`, `JST`, `Asia/Tokyo`, or an offset such as `+09:00` / `-05:00`.
    pub fn parse(s: &str) -> Option<Zone> {
        match s {
            "UTC" | "utc" | "Z" | "Etc/UTC" => return Some(Zone::utc()),
            "JST" | "jst" | "Asia/Tokyo" => return Some(Zone::jst()),
            _ => {}
        }
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return None;
        }
        let offset = FixedOffset::east_opt(sign * (h * 3600 + m * 60))?;
        Some(Zone {
            offset,
            name: format!("UTC{s}"),
        })
    }
}

/// Formats times and dates for one reader: `2026年11月3日 14:05 JST` or `3 Nov 2026 14:05 UTC`.
#[derive(Debug, Clone)]
pub struct Locale {
    pub lang: Lang,
    pub zone: Zone,
}

impl Locale {
    pub fn new(lang: Lang, zone: Option<Zone>) -> Locale {
        Locale {
            lang,
            zone: zone.unwrap_or_else(|| lang.default_zone()),
        }
    }

    pub fn t<'a>(&self, en: &'a str, ja: &'a str) -> &'a str {
        self.lang.t(en, ja)
    }

    /// A text that may have a Japanese version (a rule's or incident's `title_ja`): that
    /// version in Japanese when present and not blank, else the English one.
    pub fn pick<'a>(&self, en: &'a str, ja: Option<&'a str>) -> &'a str {
        match (self.lang, ja) {
            (Lang::Ja, Some(ja)) if !ja.trim().is_empty() => ja,
            _ => en,
        }
    }

    /// A stored alert's title in this language (its rule's `title_ja` is in `details`).
    pub fn alert_title<'a>(&self, a: &'a mamori_store::Alert) -> &'a str {
        self.pick(&a.title, a.details.get("title_ja").and_then(|v| v.as_str()))
    }

    pub fn time(&self, t: DateTime<Utc>) -> String {
        let l = t.with_timezone(&self.zone.offset);
        match self.lang {
            Lang::Ja => format!("{} {}", l.format("%Y年%-m月%-d日 %H:%M"), self.zone.name),
            Lang::En => format!("{} {}", l.format("%-d %b %Y %H:%M"), self.zone.name),
        }
    }

    pub fn date(&self, d: chrono::NaiveDate) -> String {
        match self.lang {
            Lang::Ja => d.format("%Y年%-m月%-d日").to_string(),
            Lang::En => d.format("%-d %b %Y").to_string(),
        }
    }

    pub fn month(&self, year: i32, month: u32) -> String {
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        match self.lang {
            Lang::Ja => format!("{year}年{month}月"),
            Lang::En => format!("{} {year}", EN[(month as usize + 11) % 12]),
        }
    }

    /// A duration in minutes, hours or days, in words.
    pub fn duration(&self, d: chrono::TimeDelta) -> String {
        let mins = d.num_minutes().max(0);
        match (self.lang, mins) {
            (Lang::En, m) if m < 120 => format!("{m} min"),
            (Lang::Ja, m) if m < 120 => format!("{m}分"),
            (Lang::En, m) if m < 48 * 60 => format!("{:.1} h", m as f64 / 60.0),
            (Lang::Ja, m) if m < 48 * 60 => format!("{:.1}時間", m as f64 / 60.0),
            (Lang::En, m) => format!("{:.1} days", m as f64 / 1440.0),
            (Lang::Ja, m) => format!("{:.1}日", m as f64 / 1440.0),
        }
    }
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lang: Lang,
    /// Title on the cover line.
    pub title: String,
    /// Second line: the incident's title or the month.
    pub subtitle: String,
    /// "Generated 3 Nov 2026 14:05 UTC by Mamori".
    pub generated: String,
    pub sections: Vec<Section>,
    /// Charts, referred to by index from [`Block::Chart`].
    #[serde(skip)]
    pub charts: Vec<Chart>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub heading: String,
    /// Start this section on a new page in the PDF.
    pub new_page: bool,
    pub blocks: Vec<Block>,
}

impl Section {
    pub fn new(heading: impl Into<String>) -> Section {
        Section {
            heading: heading.into(),
            new_page: false,
            blocks: Vec::new(),
        }
    }

    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }

    /// Adds a sub-heading.
    pub fn heading(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Heading { text: text.into() });
    }

    /// Adds a sentence with a tone: "no data source", "nothing found", a failure.
    pub fn notice(&mut self, tone: Tone, text: impl Into<String>) {
        self.blocks.push(Block::Notice {
            tone,
            text: text.into(),
        });
    }
}

/// How a notice is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Plain information ("no data source", "nothing found").
    Info,
    /// Something the reader should act on.
    Warn,
    /// A failure (a failed backup check, a source gone silent).
    Bad,
    Good,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Block {
    /// A sub-heading inside a section.
    Heading {
        text: String,
    },
    Para {
        text: String,
    },
    /// A highlighted sentence (absence of data, a failure, a good result).
    Notice {
        tone: Tone,
        text: String,
    },
    Bullets {
        items: Vec<String>,
    },
    /// Label / value pairs (summary facts).
    Facts {
        rows: Vec<(String, String)>,
    },
    Table(Table),
    /// Index into [`Report::charts`].
    Chart {
        index: usize,
        caption: String,
    },
    /// Big numbers in a row ("12 alerts", "3 incidents").
    Figures {
        items: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    /// Relative column widths (PDF); empty = automatic.
    pub widths: Vec<u8>,
    /// Columns holding hashes, addresses and identifiers (monospace, breakable anywhere).
    pub mono: Vec<usize>,
    pub rows: Vec<Vec<String>>,
    /// Rows left out past the table's limit (said under the table, never dropped silently).
    pub more: usize,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            widths: Vec::new(),
            mono: Vec::new(),
            rows: Vec::new(),
            more: 0,
        }
    }

    pub fn widths(mut self, w: &[u8]) -> Table {
        self.widths = w.to_vec();
        self
    }

    pub fn mono(mut self, cols: &[usize]) -> Table {
        self.mono = cols.to_vec();
        self
    }

    /// Keep at most `max` rows and count the rest.
    pub fn limit(mut self, max: usize) -> Table {
        if self.rows.len() > max {
            self.more += self.rows.len() - max;
            self.rows.truncate(max);
        }
        self
    }
}

/// A chart, drawn once as SVG (by `plotters`) and embedded by both renderers.
#[derive(Debug, Clone)]
pub struct Chart {
    pub svg: String,
}

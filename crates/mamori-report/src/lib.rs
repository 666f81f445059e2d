//! Mamori's reports: the **incident report** (NIST SP 800-61 phases, with evidence) and the
//! **monthly security audit**, in Japanese or English, as a self-contained HTML file or a PDF.
//!
//! The key decision: a report is first built as a plain [`Report`] *model* — sections of
//! paragraphs, facts, tables and charts, all plain text — and only then rendered. Log content is
//! attacker-controlled, so neither renderer ever treats a value as markup: the HTML renderer
//! escapes every value, and the PDF renderer hands the model to a fixed typst template as a JSON
//! *file* (`json("/data.json")`), so a log line holding `#import` or `]` is only ever text.
//!
//! The PDF is typeset in-process by the `typst` crates through a small [`typst::World`] that
//! serves the template, the data and the charts from memory and fonts found on the machine
//! (`fonts`: a Japanese OFL/IPA font from Debian's packages). Charts are drawn once by
//! `plotters` as SVG and embedded by both renderers.
//!
//! Data comes from the stores (`incident`, `monthly`): incidents from `mamori-cases`, alerts
//! from `mamori-store`, the signed tree head and custody from `mamori-vault`. The monthly report
//! reads aggregates, not events; a source of data that is absent is said, never invented.

mod chart;
mod fonts;
mod html;
pub mod incident;
mod model;
pub mod monthly;
mod pdf;
#[cfg(test)]
mod tests;

pub use fonts::font_dirs;
pub use model::{Block, Chart, Lang, Locale, Report, Section, Table, Tone, Zone};

use std::path::PathBuf;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "html" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no {} font found in {}; install the Debian package fonts-ipaexfont-gothic (or one of {}), or set MAMORI_FONT_DIR to a folder holding an OFL/IPA-licensed Japanese font", if *japanese { "Japanese" } else { "usable" }, display_dirs(searched), fonts::packages())]
    NoFont {
        searched: Vec<PathBuf>,
        japanese: bool,
    },
    #[error("typesetting the PDF failed: {0}")]
    Typeset(String),
    #[error("drawing a chart failed: {0}")]
    Chart(String),
    #[error("{what}: {source}")]
    Store {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Input(String),
}

fn display_dirs(d: &[PathBuf]) -> String {
    d.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub(crate) fn store(
        what: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Store {
            what: what.into(),
            source: Box::new(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Render a report in a format.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Html => Ok(html::render(report).into_bytes()),
        Format::Pdf => pdf::render(report),
    }
}

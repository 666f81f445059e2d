//! PDF through typst, in-process: a [`World`] serving one fixed template, the report as a JSON
//! file and the charts as SVG files, all from memory, plus the fonts found on the machine.

use chrono::Datelike;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::layout::PagedDocument;
use typst::syntax::{FileId, Source, VirtualPath};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, World};

use crate::fonts::{self, Fonts};
use crate::model::{Lang, Report};
use crate::{Error, Result};

const TEMPLATE: &str = include_str!("template.typ");

struct ReportWorld {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    main: Source,
    data: Bytes,
    charts: Vec<Bytes>,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotFound(id.vpath().as_rootless_path().into()))
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        let p = id.vpath().as_rootless_path().to_string_lossy().into_owned();
        if id.package().is_none() {
            if p == "data.json" {
                return Ok(self.data.clone());
            }
            if let Some(i) = p
                .strip_prefix("chart-")
                .and_then(|s| s.strip_suffix(".svg"))
                .and_then(|s| s.parse::<usize>().ok())
            {
                if let Some(c) = self.charts.get(i) {
                    return Ok(c.clone());
                }
            }
        }
        Err(FileError::NotFound(p.into()))
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<i64>) -> Option<Datetime> {
        let now = chrono::Utc::now();
        Datetime::from_ymd(now.year(), now.month() as u8, now.day() as u8)
    }
}

/// The JSON the template reads: the report plus the fonts and the few fixed words.
fn data(report: &Report, fonts: &Fonts) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(report).map_err(|e| Error::Typeset(e.to_string()))?;
    let obj = v.as_object_mut().expect("a report serialises to an object");
    obj.insert("fonts".into(), fonts.text.clone().into());
    obj.insert("mono".into(), fonts.mono.clone().into());
    obj.insert("footer".into(), format!("Mamori — {}", report.title).into());
    obj.insert(
        "more".into(),
        report
            .lang
            .t(
                "… and {n} more rows (see the HTML report or the API)",
                "… ほか {n} 行（HTML 版または API を参照）",
            )
            .into(),
    );
    // Long unbroken tokens (hashes, URLs, base64 in a log line) get break opportunities so a
    // table cell wraps instead of running off the page.
    break_long_tokens(&mut v);
    serde_json::to_vec(&v).map_err(|e| Error::Typeset(e.to_string()))
}

pub(crate) fn break_long_tokens(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.split_whitespace().any(|w| w.chars().count() > 24) => {
            let mut out = String::with_capacity(s.len() + s.len() / 8);
            let mut run = 0;
            for c in s.chars() {
                if c.is_whitespace() {
                    run = 0;
                } else {
                    run += 1;
                    if run > 16 {
                        out.push('\u{200B}');
                        run = 1;
                    }
                }
                out.push(c);
            }
            *s = out;
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(break_long_tokens),
        serde_json::Value::Object(o) => o.values_mut().for_each(break_long_tokens),
        _ => {}
    }
}

pub(crate) fn render(report: &Report) -> Result<Vec<u8>> {
    let fonts = fonts::discover(report.lang == Lang::Ja)?;
    let data = data(report, &fonts)?;
    let book = FontBook::from_fonts(&fonts.fonts);
    let world = ReportWorld {
        library: LazyHash::new(Library::builder().build()),
        book: LazyHash::new(book),
        main: Source::new(
            FileId::new(None, VirtualPath::new("/report.typ")),
            TEMPLATE.to_string(),
        ),
        data: Bytes::new(data),
        charts: report
            .charts
            .iter()
            .map(|c| Bytes::new(c.svg.clone().into_bytes()))
            .collect(),
        fonts: fonts.fonts,
    };
    let doc = typst::compile::<PagedDocument>(&world)
        .output
        .map_err(|errs| Error::Typeset(diagnostics(&errs)))?;
    typst_pdf::pdf(&doc, &typst_pdf::PdfOptions::default())
        .map_err(|errs| Error::Typeset(diagnostics(&errs)))
}

fn diagnostics(errs: &[typst::diag::SourceDiagnostic]) -> String {
    errs.iter()
        .map(|e| e.message.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

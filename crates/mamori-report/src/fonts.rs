//! Fonts for the PDF, found at run time: a Japanese font from Debian's OFL/IPA-licensed
//! packages (IPAex Gothic first) and, when present, DejaVu for Latin text and monospace.
//! Nothing is embedded in the binary and nothing is downloaded.

use std::path::{Path, PathBuf};

use typst::foundations::Bytes;
use typst::text::Font;

use crate::{Error, Result};

/// Japanese font files we know, best first, with the Debian package that ships each.
const JAPANESE: &[(&str, &str)] = &[
    ("ipaexg.ttf", "fonts-ipaexfont-gothic"),
    ("ipag.ttf", "fonts-ipafont-gothic"),
    ("NotoSansCJK-Regular.ttc", "fonts-noto-cjk"),
    ("NotoSansCJKjp-Regular.otf", "fonts-noto-cjk"),
];
const JAPANESE_BOLD: &[&str] = &["NotoSansCJK-Bold.ttc", "NotoSansCJKjp-Bold.otf"];
const LATIN: &[&str] = &["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"];
const MONO: &[&str] = &["DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"];

/// The fonts of one render and the family names the template asks for.
pub(crate) struct Fonts {
    pub(crate) fonts: Vec<Font>,
    /// Body text families, in fallback order.
    pub(crate) text: Vec<String>,
    /// Monospace families (hashes, addresses), in fallback order.
    pub(crate) mono: Vec<String>,
}

/// Folders searched: `MAMORI_FONT_DIR` (colon-separated) first, then the usual system ones.
pub fn font_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("MAMORI_FONT_DIR")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.push("/usr/share/fonts".into());
    dirs.push("/usr/local/share/fonts".into());
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".local/share/fonts"));
        dirs.push(Path::new(&home).join(".fonts"));
    }
    dirs
}

/// Every font file under `dirs` (depth-limited walk; symlink loops cannot trap it).
fn font_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, u8)> = dirs.iter().map(|d| (d.clone(), 0)).collect();
    stack.reverse();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if depth < 6 {
                    stack.push((p, depth + 1));
                }
            } else if matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("ttf" | "otf" | "ttc")
            ) {
                out.push(p);
            }
        }
    }
    out
}

fn load(path: &Path) -> Vec<Font> {
    match std::fs::read(path) {
        Ok(data) => Font::iter(Bytes::new(data)).collect(),
        Err(_) => Vec::new(),
    }
}

fn covers_japanese(f: &Font) -> bool {
    let c = &f.info().coverage;
    c.contains('あ' as u32) && c.contains('漢' as u32)
}

/// Find the fonts. A Japanese font is required when `need_japanese` (a `ja` report); an
/// English report uses one when present (names and log lines may be Japanese).
pub(crate) fn discover(need_japanese: bool) -> Result<Fonts> {
    let dirs = font_dirs();
    let files = font_files(&dirs);
    let by_name = |name: &str| {
        files
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == name))
    };
    let mut fonts = Vec::new();
    let mut text = Vec::new();
    let mut mono = Vec::new();
    let push_family = |list: &mut Vec<String>, f: &Font| {
        if !list.contains(&f.info().family) {
            list.push(f.info().family.clone());
        }
    };
    // Latin first so Latin text uses DejaVu; CJK falls back to the Japanese font.
    for name in LATIN {
        if let Some(p) = by_name(name) {
            for f in load(p) {
                push_family(&mut text, &f);
                fonts.push(f);
            }
        }
    }
    for name in MONO {
        if let Some(p) = by_name(name) {
            for f in load(p) {
                push_family(&mut mono, &f);
                fonts.push(f);
            }
        }
    }
    let mut japanese = None;
    for (name, _) in JAPANESE {
        if let Some(p) = by_name(name) {
            let loaded: Vec<Font> = load(p).into_iter().filter(covers_japanese).collect();
            if let Some(f) = loaded.first() {
                push_family(&mut text, f);
                push_family(&mut mono, f);
                japanese = Some(p.clone());
                fonts.extend(loaded);
                break;
            }
        }
    }
    if japanese.is_some() {
        for name in JAPANESE_BOLD {
            if let Some(p) = by_name(name) {
                fonts.extend(load(p).into_iter().filter(covers_japanese));
            }
        }
    }
    // Any Japanese font in MAMORI_FONT_DIR, whatever its file name.
    if japanese.is_none() {
        let own: Vec<PathBuf> = std::env::var_os("MAMORI_FONT_DIR")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        for p in font_files(&own) {
            let loaded: Vec<Font> = load(&p).into_iter().filter(covers_japanese).collect();
            if let Some(f) = loaded.first() {
                push_family(&mut text, f);
                push_family(&mut mono, f);
                japanese = Some(p.clone());
                fonts.extend(loaded);
                break;
            }
        }
    }
    if japanese.is_none() && (need_japanese || fonts.is_empty()) {
        return Err(Error::NoFont {
            searched: dirs,
            japanese: need_japanese,
        });
    }
    if mono.is_empty() {
        mono = text.clone();
    }
    Ok(Fonts { fonts, text, mono })
}

/// The Debian package names to suggest in an error.
pub(crate) fn packages() -> String {
    let mut p: Vec<&str> = JAPANESE.iter().map(|(_, p)| *p).collect();
    p.dedup();
    p.join(", ")
}

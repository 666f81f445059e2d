//! Signs that a file was encrypted by ransomware, judged from a sample of its first bytes and
//! its name: Shannon entropy, the magic bytes its extension promises, ransom-note names and
//! extensions ransomware appends.

/// Bytes of each file sampled for entropy and magic bytes.
pub const SAMPLE_BYTES: usize = 64 * 1024;
/// Entropy (bits per byte) above which a sample looks encrypted or compressed. Random data
/// scores ≈ 7.8 on 1 KiB and ≈ 8.0 on 64 KiB; text stays under 5.5, office XML under 6.
pub const HIGH_ENTROPY: f64 = 7.5;
/// Shorter samples are not judged by entropy (the estimate is too low on few bytes).
pub const MIN_ENTROPY_SAMPLE: usize = 1024;

/// Shannon entropy of `data` in bits per byte (0 for empty input).
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    // Four histograms so that runs of one byte value do not serialise on one counter; u32
    // lanes per block of 1 GiB cannot overflow.
    let mut counts = [0u64; 256];
    for block in data.chunks(1 << 30) {
        let mut lanes = [[0u32; 256]; 4];
        let mut chunks = block.chunks_exact(4);
        for c in &mut chunks {
            lanes[0][c[0] as usize] += 1;
            lanes[1][c[1] as usize] += 1;
            lanes[2][c[2] as usize] += 1;
            lanes[3][c[3] as usize] += 1;
        }
        for &b in chunks.remainder() {
            lanes[0][b as usize] += 1;
        }
        for (i, c) in counts.iter_mut().enumerate() {
            *c += lanes.iter().map(|l| u64::from(l[i])).sum::<u64>();
        }
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The lowercase extension of a file name (after the last dot), if any.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 12 {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// The file-type signatures an extension promises: `(offset, bytes)` alternatives.
fn expected_magic(ext: &str) -> Option<&'static [&'static [u8]]> {
    const ZIP: &[&[u8]] = &[b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"];
    const OLE: &[&[u8]] = &[b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"];
    Some(match ext {
        "pdf" => &[b"%PDF"],
        "zip" | "docx" | "xlsx" | "pptx" | "odt" | "ods" | "odp" | "jar" | "epub" => ZIP,
        "doc" | "xls" | "ppt" | "msg" => OLE,
        "png" => &[b"\x89PNG\r\n\x1a\n"],
        "jpg" | "jpeg" => &[b"\xFF\xD8\xFF"],
        "gif" => &[b"GIF87a", b"GIF89a"],
        "gz" | "tgz" => &[b"\x1F\x8B"],
        "bz2" => &[b"BZh"],
        "xz" => &[b"\xFD7zXZ\x00"],
        "zst" => &[b"\x28\xB5\x2F\xFD"],
        "7z" => &[b"7z\xBC\xAF\x27\x1C"],
        "rar" => &[b"Rar!\x1A\x07"],
        "sqlite" | "sqlite3" => &[b"SQLite format 3\x00"],
        "bmp" => &[b"BM"],
        "tif" | "tiff" => &[b"II*\x00", b"MM\x00*"],
        _ => return None,
    })
}

/// Whether the file's first bytes are what its extension promises. `None` when the extension
/// promises nothing we know, or the file is empty.
pub fn magic_matches(ext: &str, head: &[u8]) -> Option<bool> {
    let sigs = expected_magic(ext)?;
    if head.is_empty() {
        return None;
    }
    Some(sigs.iter().any(|s| head.starts_with(s)))
}

/// Extensions whose content is normally low-entropy text: a high-entropy sample in one of
/// them means the content was encrypted (or replaced by something else).
pub fn is_text_like(ext: &str) -> bool {
    matches!(
        ext,
        "txt"
            | "csv"
            | "tsv"
            | "log"
            | "md"
            | "json"
            | "jsonl"
            | "xml"
            | "html"
            | "htm"
            | "sql"
            | "conf"
            | "cfg"
            | "ini"
            | "yaml"
            | "yml"
            | "toml"
            | "rtf"
            | "svg"
            | "eml"
            | "ps1"
            | "sh"
            | "bat"
            | "py"
            | "rs"
            | "c"
            | "h"
            | "java"
            | "js"
            | "css"
            | "php"
            | "ldif"
            | "vcf"
            | "ics"
    )
}

/// Extensions ransomware families append to encrypted files.
const RANSOM_EXTENSIONS: &[&str] = &[
    "locked",
    "lock",
    "encrypted",
    "enc",
    "crypt",
    "crypted",
    "crypto",
    "cry",
    "cryptolocker",
    "locky",
    "zepto",
    "odin",
    "cerber",
    "cerber3",
    "wncry",
    "wnry",
    "wcry",
    "ryk",
    "ryuk",
    "conti",
    "lockbit",
    "lockbit3",
    "akira",
    "royal",
    "blackcat",
    "hive",
    "phobos",
    "djvu",
    "stop",
    "makop",
    "dharma",
    "basta",
    "clop",
    "rhysida",
    "medusa",
    "8base",
    "babuk",
    "avaddon",
    "sodinokibi",
    "revil",
    "maze",
    "egregor",
    "ragnar",
    "mallox",
    "pay2key",
];

/// Whether `ext` is one ransomware is known to append.
pub fn is_ransom_extension(ext: &str) -> bool {
    RANSOM_EXTENSIONS.contains(&ext)
}

/// Whether a file name looks like a ransom note (`README_DECRYPT.txt`, `_readme.txt`,
/// `HOW_TO_RECOVER_FILES.html`, `restore-my-files.txt`…). Plain `README.md` is not one.
pub fn is_ransom_note(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let stem = n.rsplit_once('.').map_or(n.as_str(), |(s, _)| s);
    const WORDS: &[&str] = &[
        "decrypt",
        "ransom",
        "how_to_recover",
        "how-to-recover",
        "how_to_restore",
        "how-to-restore",
        "restore-my-files",
        "restore_my_files",
        "restore_files",
        "recover_files",
        "recover-files",
        "your_files",
        "your-files",
        "files_encrypted",
        "files-encrypted",
        "how_to_back_files",
        "readme_to_unlock",
        "unlock_files",
    ];
    if WORDS.iter().any(|w| stem.contains(w)) {
        return true;
    }
    // STOP/Djvu's `_readme.txt`, LockBit's `Restore-My-Files`, notes of the form
    // `!!!READ_ME!!!` or `README.hta`.
    stem == "_readme"
        || (stem.contains("read_me") || stem.contains("readme"))
            && (n.ends_with(".hta") || stem.contains("!!"))
        || stem.contains("readme") && (stem.contains("lock") || stem.contains("crypt"))
}

#[cfg(test)]
mod tests;

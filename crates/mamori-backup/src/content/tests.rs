use super::*;

#[test]
fn entropy_of_text_is_low_and_of_random_bytes_high() {
    let text = "請求書 2026年11月分 / Invoice for November 2026, total ¥1,234,000\n".repeat(200);
    assert!(shannon_entropy(text.as_bytes()) < 5.5);
    let mut random = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::thread_rng(), &mut random[..]);
    assert!(shannon_entropy(&random) > HIGH_ENTROPY);
    let mut small = vec![0u8; MIN_ENTROPY_SAMPLE];
    rand::Rng::fill(&mut rand::thread_rng(), &mut small[..]);
    assert!(
        shannon_entropy(&small) > HIGH_ENTROPY,
        "1 KiB of random bytes is judged"
    );
    assert_eq!(shannon_entropy(b""), 0.0);
    assert_eq!(shannon_entropy(b"aaaa"), 0.0);
    assert!((shannon_entropy(&(0..=255u8).collect::<Vec<_>>()) - 8.0).abs() < 1e-9);
}

#[test]
fn magic_bytes_follow_the_extension() {
    assert_eq!(magic_matches("pdf", b"%PDF-1.7\n"), Some(true));
    assert_eq!(magic_matches("pdf", b"\x8a\x11garbage"), Some(false));
    assert_eq!(magic_matches("docx", b"PK\x03\x04rest"), Some(true));
    assert_eq!(magic_matches("docx", b"Qk\x03\x04rest"), Some(false));
    assert_eq!(magic_matches("png", b"\x89PNG\r\n\x1a\nIHDR"), Some(true));
    assert_eq!(magic_matches("jpg", b"\xFF\xD8\xFF\xE0"), Some(true));
    assert_eq!(magic_matches("jpeg", b"\x00\xD8\xFF\xE0"), Some(false));
    assert_eq!(
        magic_matches("txt", b"anything"),
        None,
        "text promises no magic"
    );
    assert_eq!(
        magic_matches("pdf", b""),
        None,
        "an empty file is not judged"
    );
}

#[test]
fn extensions_and_ransom_names() {
    assert_eq!(extension("report.PDF").as_deref(), Some("pdf"));
    assert_eq!(extension("a.docx.locked").as_deref(), Some("locked"));
    assert_eq!(extension(".bashrc"), None);
    assert_eq!(extension("noext"), None);
    assert!(is_ransom_extension("locked"));
    assert!(!is_ransom_extension("pdf"));
    for note in [
        "README_DECRYPT.txt",
        "_readme.txt",
        "HOW_TO_RECOVER_FILES.html",
        "Restore-My-Files.txt",
        "!!!README!!!.txt",
        "README.hta",
        "readme_locked.txt",
        "#DECRYPT_MY_FILES#.html",
    ] {
        assert!(is_ransom_note(note), "{note}");
    }
    for benign in [
        "README.md",
        "readme.txt",
        "report.pdf",
        "decree.txt",
        "restore.log",
    ] {
        assert!(!is_ransom_note(benign), "{benign}");
    }
    assert!(is_text_like("csv") && !is_text_like("docx"));
}

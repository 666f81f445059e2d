//! The fast path against yaml-rust2: it may give up on any input, but when it answers it must
//! answer exactly what yaml-rust2 answers (trees, positions, typing, quoting, errors).

use std::path::{Path, PathBuf};

use super::{fast, parse_documents, parse_documents_slow, Node, NodeKind, Scalar};

/// Asserts the fast path handles `src` and agrees with yaml-rust2; returns the result.
fn same(src: &str) -> Result<Vec<Node>, super::YamlError> {
    let fast = fast::parse(src).unwrap_or_else(|| panic!("fast path gave up on {src:?}"));
    assert_eq!(fast, parse_documents_slow(src), "differs on {src:?}");
    fast
}

/// Asserts the fast path gives up on `src` (so yaml-rust2 decides).
fn bails(src: &str) {
    assert!(fast::parse(src).is_none(), "fast path answered {src:?}");
    // And the public function still answers as yaml-rust2 does.
    assert_eq!(parse_documents(src), parse_documents_slow(src));
}

/// When the fast path answers, it agrees with yaml-rust2. Returns whether it answered.
/// `None` when yaml-rust2 itself panics on the input (then nothing is compared).
fn agrees(src: &str) -> Option<bool> {
    let fast = std::panic::catch_unwind(|| fast::parse(src))
        .unwrap_or_else(|_| panic!("fast path panicked on {src:?}"));
    let slow = std::panic::catch_unwind(|| parse_documents_slow(src)).ok()?;
    match fast {
        Some(f) => {
            assert_eq!(f, slow, "fast path differs from yaml-rust2 on {src:?}");
            Some(true)
        }
        None => Some(false),
    }
}

fn str_of(n: &Node) -> (&str, bool) {
    match &n.kind {
        NodeKind::Scalar(Scalar::Str { text, quoted }) => (text, *quoted),
        k => panic!("not a string: {k:?}"),
    }
}

#[test]
fn block_mappings_sequences_and_positions() {
    let docs = same(
        "title: Test rule\nid: 1\ntags:\n  - attack.t1\n  - attack.t2\nlogsource:\n    product: windows\n    category: process_creation\ndetection:\n    sel:\n        - Image|endswith: '\\x.exe'\n          CommandLine|contains:\n              - ' -enc '\n              - \"a\\tb\"\n        - OriginalFileName: x.exe\n    condition: sel\nlevel: high\n",
    )
    .unwrap();
    let d = &docs[0];
    // yaml-rust2 marks a block mapping at its first key's `:` (kept as it was).
    assert_eq!(d.pos, super::Pos { line: 1, col: 6 });
    let sel = d.get("detection").unwrap().get("sel").unwrap();
    assert_eq!(sel.pos.line, 11);
    assert_eq!(sel.pos.col, 9);
    assert_eq!(d.get("tags").unwrap().pos, super::Pos { line: 4, col: 3 });
    let first = &sel.as_seq().unwrap()[0];
    assert_eq!(first.pos, super::Pos { line: 11, col: 25 });
    let cl = first.get("CommandLine|contains").unwrap().as_seq().unwrap();
    assert_eq!(str_of(&cl[0]), (" -enc ", true));
    assert_eq!(str_of(&cl[1]), ("a\tb", true));
}

#[test]
fn indentless_sequences_and_compact_items() {
    same("a:\n- x\n- y\nb:\n- k: 1\n  l: 2\n- k: 3\nc: d\n").unwrap();
    same("- a: 1\n  b:\n  - x\n  - y\n  c: 2\n- z\n").unwrap();
    same("a:\n  -   b: 1\n      c: 2\n  -\n    d: 3\n  - # note\n    e: 4\n").unwrap();
    same("a:\n  -\n    - x\n").unwrap();
}

#[test]
fn plain_scalars_typing_and_comments() {
    let d = same(
        "a: on # comment\nb: 0755\nc: 12\nd: -4\ne: 1.5\nf: true\ng: ~\nh: null\ni: C:\\Windows\\x.exe\nj: a#b  \n",
    )
    .unwrap();
    assert_eq!(
        d[0].get("c").unwrap().kind,
        NodeKind::Scalar(Scalar::Int(12))
    );
    // `k: a: b` is a YAML error: yaml-rust2 decides.
    bails("k: a: b is not here\n");
    let d = same("a: x  y # c\n# whole line\n   # indented comment\nb: 'q' # c\nc: [a, 'b'] # c\n")
        .unwrap();
    assert_eq!(str_of(d[0].get("a").unwrap()), ("x  y", false));
    same("n: -1\nm: 007\nf: 1e3\nu: ünï:x\n").unwrap();
    let d = same("ünï: ç\nl: [ä, b]\n").unwrap();
    assert_eq!(d[0].get("l").unwrap().as_seq().unwrap()[1].pos.col, 8);
}

#[test]
fn quoted_scalars_and_escapes() {
    let d = same(
        "a: 'it''s'\nb: \"\\\\ \\\" \\/ \\0 \\a \\b \\t \\n \\v \\f \\r \\e \\  \\N \\_ \\L \\P \\x41 \\u00e9 \\U0001F600\"\n'c d': 1\n\"e\": ''\nf: \"\"\ng: 'a  '\n",
    )
    .unwrap();
    assert_eq!(str_of(d[0].get("a").unwrap()), ("it's", true));
    assert_eq!(
        str_of(d[0].get("b").unwrap()).0,
        "\\ \" / \0 \x07 \x08 \t \n \x0b \x0c \r \x1b   \u{85} \u{a0} \u{2028} \u{2029} A é 😀"
    );
    bails("a: \"\\q\"\n");
    bails("a: \"\\uD800\"\n");
    bails("a: \"\\x4\"\n");
    bails("a: 'multi\n  line'\n");
    bails("a: \"multi\\\n  line\"\n");
    bails("a: 'x'y\n");
}

#[test]
fn block_scalars_with_chomping() {
    for h in ["|", "|-", "|+", ">", ">-", ">+"] {
        for body in [
            "  one\n  two\n",
            "  one\n\n  two\n\n\nb: 1\n",
            "  one\n    more\n  two\n",
            "  one\n  two",
            "  one\n  \n  two\n   \nb: 2\n",
            "  a # not a comment\n  - neither\n# a comment\nb: 3\n",
        ] {
            let src = format!("a: {h}\n{body}");
            if h.starts_with('>') && body.contains("    more") {
                bails(&src);
                continue;
            }
            if body.contains("   \n") {
                bails(&src);
                continue;
            }
            same(&src).unwrap();
        }
        same(&format!("- {h} # c\n  x\n- y\n")).unwrap();
        same(&format!("- k: {h}\n    x\n\n    y\n  l: 1\n")).unwrap();
    }
    let d = same("a: |\n    x\n     y\n").unwrap();
    assert_eq!(str_of(d[0].get("a").unwrap()), ("x\n y\n", true));
    assert_eq!(d[0].get("a").unwrap().pos, super::Pos { line: 2, col: 5 });
    bails("a: |2\n   x\n");
    bails("a: |\n\n  x\n");
    bails("a: |\nb: 1\n");
    bails("a: |\n");
}

#[test]
fn documents_and_duplicates() {
    let d = same("title: a\n---\ntitle: b\nx:\n  - 1\n").unwrap();
    assert_eq!(d.len(), 2);
    same("---\ntitle: a\n---   \ntitle: b\n").unwrap();
    assert!(same("").unwrap().is_empty());
    assert!(same("# only a comment\n\n").unwrap().is_empty());
    let e = same("a: 1\ndetection:\n  condition: x\n  condition: y\n").unwrap_err();
    assert_eq!(e.pos.line, 4);
    // Duplicates differ by quoting: not duplicates (as before).
    same("a: 1\n'a': 2\n").unwrap();
    bails("a: 1\n---\n");
    bails("a: 1\n...\n");
    bails("%YAML 1.2\n---\na: 1\n");
    bails("--- a\n");
}

#[test]
fn outside_the_subset_falls_back() {
    for src in [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: {b: c}\n",
        "a: [b, [c]]\n",
        "a: [b,\n  c]\n",
        "a: b\n  c\n",
        "a:\n  b\n",
        "a:\nb: 1\n",
        "a:\tb\n",
        "a: b\r\n",
        "\u{feff}a: b\n",
        "a: b\0\n",
        "? a\n: b\n",
        "a :\n",
        "a: [b, ]\n",
        "a: [ x -] # c\n",
        "a: [x -, y]\n",
        "  a: b\n",
        "a: 1\n  b: 2\n",
        "a:\n  - x\n  b: y\n",
        "- - a\n",
        "a: - b\n",
        "'a'#: b\n",
        "a: b: c\n",
        "just a scalar\n",
        "[a, b]\n",
    ] {
        bails(src);
    }
}

#[test]
fn syntax_errors_are_left_to_yaml_rust2() {
    for src in [
        "a: [1, 2\nb: c\n",
        "a: 'x\n",
        "a:\n  b: 1\n c: 2\n",
        "a: @x\n",
    ] {
        bails(src);
        assert!(parse_documents(src).is_err(), "{src:?}");
    }
}

/// A small deterministic generator (xorshift), so failures reproduce without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Fragments inside the fast path's subset…
const SCALARS: &[&str] = &[
    "x",
    "a b",
    "C:\\Windows\\",
    "'q'",
    "'it''s'",
    "\"d\\\"q\"",
    "\"\\x41\\u00e9\"",
    "12",
    "-3",
    "0.5",
    "007",
    "true",
    "NULL",
    "~",
    "on",
    "*.exe",
    "a#b",
    "a # c",
    "ü",
    "-x",
    ":x",
    "?x",
    "a:b",
    "''",
    "\"\"",
    "[a, 'b']",
    "[]",
    "[ x ,y ]",
    "|",
    "|-",
    ">+",
    ">",
    "|+",
];
/// …and outside it (or not YAML at all).
const ODD_SCALARS: &[&str] = &[
    "a: b", "@x", "%x", "&a x", "*a", "!!str 1", "{a: b}", "'un", "[a", "\"\\q\"", "- x",
];
const KEYS: &[&str] = &[
    "title",
    "id",
    "a",
    "b",
    "'q k'",
    "\"d\"",
    "sel|contains",
    "1",
    "true",
    "ü",
    "a b",
    "condition",
    "x:y",
    "-k",
];
const ODD_KEYS: &[&str] = &["k ", "'k'#", "? k", "&a k", "[k]"];

/// Mostly `common`, sometimes `odd`.
fn pick2<'a>(r: &mut Rng, common: &[&'a str], odd: &[&'a str]) -> &'a str {
    if r.below(25) == 0 {
        r.pick(odd)
    } else {
        r.pick(common)
    }
}

fn gen_node(r: &mut Rng, out: &mut String, indent: usize, depth: usize) {
    let pad = " ".repeat(indent);
    let n = 1 + r.below(4);
    let seq = depth > 0 && r.below(3) == 0;
    for _ in 0..n {
        if r.below(8) == 0 {
            out.push_str(&" ".repeat(r.below(indent + 3)));
            out.push_str(pick2(r, &["# c", ""], &["   "]));
            out.push('\n');
        }
        out.push_str(&pad);
        if seq {
            out.push_str(pick2(r, &["- ", "-  "], &["-", "-\t"]));
        } else {
            out.push_str(pick2(r, KEYS, ODD_KEYS));
            out.push_str(pick2(r, &[": ", ":  "], &[":", " : "]));
        }
        let nest = depth < 3 && r.below(3) == 0;
        if nest {
            out.push_str(r.pick(&["", "", " # c"]));
            out.push('\n');
            let step = pick2(r, &["2", "4", "3"], &["0", "1"])
                .parse::<usize>()
                .unwrap_or(2);
            gen_node(r, out, indent + step, depth + 1);
        } else {
            let v = pick2(r, SCALARS, ODD_SCALARS);
            out.push_str(v);
            if v.starts_with('|') || v.starts_with('>') {
                out.push('\n');
                let k = indent + 1 + r.below(4);
                for i in 0..1 + r.below(3) {
                    out.push_str(&" ".repeat(k + r.below(2)));
                    let line = pick2(r, &["line", "# hash", "a: b", "x  "], &[" more", "", "  "]);
                    out.push_str(if i == 0 && line.trim().is_empty() {
                        "first"
                    } else {
                        line
                    });
                    out.push('\n');
                    if r.below(4) == 0 {
                        out.push('\n');
                    }
                }
                continue;
            }
            out.push_str(r.pick(&["", "", " # c", "  "]));
            out.push('\n');
            if r.below(40) == 0 {
                out.push_str(&" ".repeat(indent + r.below(4)));
                out.push_str("cont\n");
            }
        }
    }
}

fn mutate(r: &mut Rng, src: &str) -> String {
    const BITS: &[&str] = &[
        " ", "\n", "-", ":", "'", "\"", "#", "[", "]", ",", "|", ">", "\\", "---\n", "  ", "ü",
        "\t", "&", "*", "{", "...", "\"\\", "'", "a",
    ];
    let mut s: Vec<char> = src.chars().collect();
    for _ in 0..1 + r.below(3) {
        let i = r.below(s.len() + 1);
        match r.below(3) {
            0 if i < s.len() => {
                s.remove(i);
            }
            1 if i < s.len() => {
                let end = (i + 1 + r.below(6)).min(s.len());
                s.drain(i..end);
            }
            _ => {
                for (k, c) in r.pick(BITS).chars().enumerate() {
                    s.insert(i + k, c);
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn generated_and_mutated_inputs_never_differ() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut answered, mut total, mut panicked) = (0, 0, 0);
    for _ in 0..20000 {
        let mut src = String::new();
        if r.below(5) == 0 {
            src.push_str("---\n");
        }
        gen_node(&mut r, &mut src, 0, 0);
        if r.below(4) == 0 {
            src.push_str("---\n");
            gen_node(&mut r, &mut src, 0, 0);
        }
        for s in [src.clone(), mutate(&mut r, &src)] {
            total += 1;
            match agrees(&s) {
                Some(true) => answered += 1,
                Some(false) => {}
                None => panicked += 1,
            }
        }
    }
    eprintln!(
        "generated: {total} inputs, fast path answered {answered}, yaml-rust2 panicked on {panicked}"
    );
    // The generator must exercise the fast path, not only its fallbacks.
    assert!(answered > total / 5, "{answered} of {total}");
}

fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    if p.join("sigma").is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: corpus not found at {}", p.display());
        None
    }
}

/// Every `.yml` of the SigmaHQ checkout (all folders), parsed both ways: identical trees and
/// identical errors; then mutated copies of a sample of them.
#[test]
fn sigma_corpus_fast_path_matches_yaml_rust2() {
    let Some(root) = corpus() else { return };
    let mut files = Vec::new();
    crate::yml_files(&root.join("sigma"), &mut files);
    files.sort();
    assert!(files.len() > 1000, "{} files", files.len());
    let (mut fell_back, mut errors) = (Vec::new(), 0);
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let (mut mutated, mut mutated_answered) = (0, 0);
    for f in &files {
        let Ok(src) = std::fs::read_to_string(f) else {
            continue;
        };
        match agrees(&src) {
            Some(true) => {}
            _ => fell_back.push(f.strip_prefix(&root).unwrap_or(f).display().to_string()),
        }
        if parse_documents_slow(&src).is_err() {
            errors += 1;
        }
        if r.below(4) == 0 {
            let m = mutate(&mut r, &src);
            mutated += 1;
            if agrees(&m) == Some(true) {
                mutated_answered += 1;
            }
        }
    }
    eprintln!(
        "sigma corpus: {} files, {} fell back to yaml-rust2, {errors} rejected by yaml-rust2; {mutated} mutated copies, fast path answered {mutated_answered}",
        files.len(),
        fell_back.len()
    );
    for f in fell_back.iter().take(40) {
        eprintln!("  fell back: {f}");
    }
    // Rules are the target: nearly all must take the fast path.
    assert!(
        fell_back.len() * 50 < files.len(),
        "{} of {} fell back",
        fell_back.len(),
        files.len()
    );
}

#[test]
fn unsupported_bytes_are_found_at_every_offset() {
    for n in 0..20 {
        for bad in ["\t", "\r", "\0", "\u{feff}"] {
            let mut s = "a".repeat(n);
            s.push_str(bad);
            s.push_str(&"b".repeat(20 - n));
            assert!(fast::has_unsupported_bytes(s.as_bytes()), "{s:?}");
            assert!(fast::parse(&format!("k: {s}\n")).is_none());
        }
        // Other characters encoded with 0xEF (U+F000..U+FFFF but the BOM) are fine.
        let s = format!("{}\u{ff01}\u{fefe}{}", "a".repeat(n), "b".repeat(20 - n));
        assert!(!fast::has_unsupported_bytes(s.as_bytes()), "{s:?}");
    }
    assert!(!fast::has_unsupported_bytes(b""));
}

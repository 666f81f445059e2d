use super::*;
use crate::format::{encode_frame, EntryRef, RecordKind, GENESIS_CHAIN};
use crate::merkle::Frontier;

fn segment(n: u64) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let h = SegmentHeader {
        version: format::FORMAT_VERSION,
        segment: 0,
        first_seq: 0,
        prev_chain: GENESIS_CHAIN,
        frontier: Frontier::new(),
    };
    let mut b = h.encode();
    let mut prev = GENESIS_CHAIN;
    let mut ranges = Vec::new();
    for seq in 0..n {
        let start = b.len();
        let payload = vec![b'x'; 10 + seq as usize];
        let e = EntryRef {
            seq,
            kind: RecordKind::Event,
            received_at_ns: 0,
            source: "s",
            payload: &payload,
        };
        prev = encode_frame(&e, &prev, &mut b).1;
        ranges.push(start..b.len());
    }
    (b, ranges)
}

fn items(b: &[u8]) -> Vec<String> {
    let (h, mut r) = SegmentReader::open(b, Some(b.len() as u64)).unwrap();
    h.unwrap();
    let mut out = Vec::new();
    while let Some(it) = r.next_item().unwrap() {
        out.push(match it {
            Item::Record { offset, frame } => format!("rec {} @{offset}", frame.seq),
            Item::Garbage { offset, len, .. } => format!("garbage @{offset}+{len}"),
            Item::Tail { offset, len, torn } => format!("tail @{offset}+{len} torn={torn}"),
        });
    }
    out
}

#[test]
fn clean_segment_yields_all_records() {
    let (b, r) = segment(5);
    let got = items(&b);
    assert_eq!(got.len(), 5);
    assert_eq!(got[4], format!("rec 4 @{}", r[4].start));
}

#[test]
fn damaged_magic_resyncs_at_next_record() {
    let (mut b, r) = segment(5);
    b[r[2].start] ^= 0x40;
    let got = items(&b);
    assert_eq!(got[2], format!("garbage @{}+{}", r[2].start, r[2].len()));
    assert_eq!(got[3], format!("rec 3 @{}", r[3].start));
}

#[test]
fn oversized_length_in_the_middle_is_garbage_not_a_torn_tail() {
    let (mut b, r) = segment(5);
    b[r[1].start + 5] = 0x10; // entry_len now ~1 MiB, past the end of the file
    let got = items(&b);
    assert_eq!(got[1], format!("garbage @{}+{}", r[1].start, r[1].len()));
    assert_eq!(got.len(), 5);
}

#[test]
fn torn_last_record_is_a_torn_tail() {
    let (b, r) = segment(5);
    for cut in [1, 7, 20, r[4].len() - 1] {
        let got = items(&b[..r[4].start + cut]);
        assert_eq!(got.len(), 5, "cut {cut}");
        assert_eq!(got[4], format!("tail @{}+{cut} torn=true", r[4].start));
    }
}

#[test]
fn trailing_zeros_are_an_untorn_tail() {
    let (mut b, r) = segment(2);
    b.extend_from_slice(&[0; 100]);
    let got = items(&b);
    assert_eq!(got[2], format!("tail @{}+100 torn=false", r[1].end));
}

use super::*;

fn entry(seq: u64) -> EntryRef<'static> {
    EntryRef {
        seq,
        kind: RecordKind::Event,
        received_at_ns: 1_700_000_000_000_000_000,
        source: "syslog://10.0.0.5",
        payload: b"<13>Jan  1 00:00:00 host sshd[1]: hello",
    }
}

#[test]
fn frame_round_trip_and_chain() {
    let mut buf = Vec::new();
    let (leaf, chain) = encode_frame(&entry(7), &GENESIS_CHAIN, &mut buf);
    let f = decode_frame(&buf).unwrap();
    assert_eq!(f.len, buf.len());
    assert_eq!(f.seq, 7);
    assert_eq!(f.kind(), Some(RecordKind::Event));
    assert_eq!(f.source, b"syslog://10.0.0.5");
    assert_eq!(f.payload, entry(7).payload);
    assert_eq!(f.leaf(), leaf);
    assert_eq!(f.chain, chain);
    assert_eq!(chain_hash(7, &GENESIS_CHAIN, &leaf), chain);
    assert_eq!(f.received_at_ns, 1_700_000_000_000_000_000);
}

#[test]
fn every_strict_prefix_of_a_frame_is_incomplete() {
    let mut buf = Vec::new();
    encode_frame(&entry(1), &GENESIS_CHAIN, &mut buf);
    for n in 0..buf.len() {
        assert!(
            matches!(decode_frame(&buf[..n]), Err(DecodeError::Incomplete { .. })),
            "prefix {n}"
        );
    }
}

#[test]
fn bad_magic_and_lengths_are_invalid() {
    let mut buf = Vec::new();
    encode_frame(&entry(1), &GENESIS_CHAIN, &mut buf);
    let mut b = buf.clone();
    b[0] ^= 1;
    assert!(matches!(decode_frame(&b), Err(DecodeError::Invalid(_))));
    let mut b = buf.clone();
    b[4] = 0xff;
    assert!(matches!(decode_frame(&b), Err(DecodeError::Invalid(_))));
    let mut b = buf;
    b[8 + 17] = 0xff; // source_len
    assert!(matches!(decode_frame(&b), Err(DecodeError::Invalid(_))));
}

#[test]
fn segment_header_round_trip_and_checksum() {
    let mut f = Frontier::new();
    for i in 0..5u8 {
        f.push([i; 32]);
    }
    let h = SegmentHeader {
        version: FORMAT_VERSION,
        segment: 3,
        first_seq: 5,
        prev_chain: [9; 32],
        frontier: f,
    };
    let b = h.encode();
    assert_eq!(b.len(), h.encoded_len());
    assert_eq!(decode_segment_header(&b).unwrap(), (h, b.len()));
    let mut bad = b.clone();
    bad[30] ^= 4;
    assert!(matches!(
        decode_segment_header(&bad),
        Err(DecodeError::Invalid(_))
    ));
    let mut v2 = b;
    v2[9] = 2;
    assert_eq!(
        decode_segment_header(&v2),
        Err(DecodeError::UnsupportedVersion(2))
    );
}

#[test]
fn head_frame_round_trip() {
    let mut b = Vec::new();
    encode_head_frame(b"msg", &[7; 64], &mut b);
    let (m, s, n) = decode_head_frame(&b).unwrap();
    assert_eq!((m, s, n), (&b"msg"[..], [7; 64], b.len()));
    assert!(matches!(
        decode_head_frame(&b[..b.len() - 1]),
        Err(DecodeError::Incomplete { .. })
    ));
}

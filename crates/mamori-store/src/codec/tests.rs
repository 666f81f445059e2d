use super::*;
use crate::testsuite::{assert_same_event, ssh_event, t, windows_event};

fn frame(seq: u64, e: &Event) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(&mut b, seq, t(3), e).unwrap();
    b
}

#[test]
fn frame_roundtrips_every_value_kind_and_both_origins() {
    let mut e = ssh_event(1, "alice", "failure", "203.0.113.5", Some(t(1)));
    e.push(FieldName::new("f"), Value::Float(-0.5));
    e.push(FieldName::new("b"), Value::Bool(false));
    e.push(FieldName::new("n"), Value::Null);
    e.push(
        FieldName::new("l"),
        Value::List(vec![Value::Int(1), Value::List(vec![Value::str("x")])]),
    );
    for e in [e, windows_event(2, r"C:\x.exe", None)] {
        let b = frame(42, &e);
        assert_eq!(b.len(), frame_len(&e));
        let (body, n) = check_frame(&b).unwrap();
        assert_eq!(n, b.len());
        let d = decode_body(body, &mut Interner::new()).unwrap();
        assert_eq!((d.seq, d.received_at), (42, t(3)));
        assert_same_event(&d.event, &e, "codec");
    }
}

#[test]
fn header_roundtrips_and_rejects_damage() {
    let h = encode_segment_header(77);
    assert_eq!(decode_segment_header(&h), Ok(77));
    let mut bad = h;
    bad[0] = b'X';
    assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadMagic));
    let mut bad = h;
    bad[15] ^= 1;
    assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadChecksum));
}

#[test]
fn every_truncation_and_bit_flip_is_detected() {
    let b = frame(
        1,
        &ssh_event(1, "alice", "failure", "203.0.113.5", Some(t(1))),
    );
    for cut in 0..b.len() {
        assert!(check_frame(&b[..cut]).is_err(), "cut at {cut}");
    }
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut c = b.clone();
            c[i] ^= 1 << bit;
            assert!(check_frame(&c).is_err(), "flip byte {i} bit {bit}");
        }
    }
}

/// A CRC-valid body with garbage inside (a bug or a crafted file) is an error, never a panic
/// or a huge allocation.
#[test]
fn garbage_bodies_never_panic() {
    let good = frame(1, &windows_event(1, "a.exe", Some(t(0))));
    let body = &good[FRAME_PREFIX..];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut names = Interner::new();
    for _ in 0..20_000 {
        let mut b = body.to_vec();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let cut = BODY_FIXED + (next() as usize) % (b.len() - BODY_FIXED + 1);
        let _ = decode_body(&b[..cut], &mut names);
    }
    let mut huge_count = body[..BODY_FIXED].to_vec();
    huge_count.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let _ = decode_body(&huge_count, &mut names);
}

/// The end-of-batch mark reads back, and flipping any bit of a marked frame (the mark too) is
/// detected.
#[test]
fn batch_end_mark_roundtrips_and_is_checked() {
    let mut b = frame(
        1,
        &ssh_event(1, "alice", "failure", "203.0.113.5", Some(t(1))),
    );
    assert!(!check_marked_frame(&b).unwrap().2);
    mark_batch_end(&mut b);
    let (body, n, end) = check_marked_frame(&b).unwrap();
    assert!(end);
    assert_eq!(n, b.len());
    assert_eq!(body_header(body).0, 1);
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut c = b.clone();
            c[i] ^= 1 << bit;
            assert!(check_frame(&c).is_err(), "flip byte {i} bit {bit}");
        }
    }
}

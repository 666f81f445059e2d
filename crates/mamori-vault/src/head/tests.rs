use super::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

#[test]
fn message_is_canonical_text_and_round_trips() {
    let ts = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
    let h = SignedTreeHead::sign(&key(), 42, [1; 32], [2; 32], ts);
    let msg = String::from_utf8(h.message()).unwrap();
    assert_eq!(
        msg,
        format!(
            "mamori-vault tree head v1\ntree_size 42\nroot_hash {}\nchain_head {}\ntimestamp 2023-11-14T22:13:20.123Z\n",
            "01".repeat(32),
            "02".repeat(32)
        )
    );
    assert!(h.verify_signature(&key().verifying_key()));
    assert_eq!(
        SignedTreeHead::parse(&h.message(), h.signature),
        Some(h.clone())
    );
    let other = SigningKey::from_bytes(&[4; 32]);
    assert!(!h.verify_signature(&other.verifying_key()));
}

#[test]
fn non_canonical_messages_are_rejected() {
    let h = SignedTreeHead::sign(
        &key(),
        1,
        [0xab; 32],
        [2; 32],
        Utc.timestamp_opt(0, 0).unwrap(),
    );
    let m = String::from_utf8(h.message()).unwrap();
    for bad in [
        m.replace("tree_size 1", "tree_size 01"),
        m.replace(&"ab".repeat(32), &"AB".repeat(32)),
        m.replace(".000Z", "Z"),
        m.trim_end().to_string(),
        m.replace("v1", "v2"),
    ] {
        assert!(
            SignedTreeHead::parse(bad.as_bytes(), h.signature).is_none(),
            "{bad}"
        );
    }
}

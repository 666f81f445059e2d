//! ≥ 1,000 seeded mutations of every kind the issue lists; every one must be detected, with the
//! right classification, and the untouched vault must never produce a finding.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use mamori_vault::format::{self, chain_hash, decode_frame, frame_ranges};
use mamori_vault::merkle::leaf_hash;
use mamori_vault::{verify, FindingKind as K, SignedTreeHead};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::common::*;

const MUTATIONS: usize = 1020;
const RECORDS: u64 = 200;

type Files = BTreeMap<PathBuf, Vec<u8>>;

struct Mutation {
    name: &'static str,
    /// Acceptable classifications; empty = any finding will do (random bit flips).
    expect: &'static [K],
}

#[test]
fn every_mutation_is_detected_and_classified() {
    let base = tempfile::tempdir().unwrap();
    build(base.path(), RECORDS, u64::MAX);
    let pristine = snapshot(base.path());
    let segs = segment_names(&pristine);
    assert!(segs.len() >= 8, "want several segments, got {}", segs.len());
    // Forged vaults: identical up to seq X, different content (same lengths) after it.
    let forged: Vec<Files> = [30u64, 110, 190]
        .iter()
        .map(|&x| {
            let d = tempfile::tempdir().unwrap();
            build(d.path(), RECORDS, x);
            snapshot(d.path())
        })
        .collect();
    // Debug-build signature checks dominate; spread the mutations over the cores.
    let tallies: Vec<BTreeMap<&str, usize>> = (0..CHUNKS)
        .into_par_iter()
        .map(|chunk| run_chunk(chunk, &pristine, &segs, &forged))
        .collect();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tallies {
        for (k, n) in t {
            *tally.entry(k).or_default() += n;
        }
    }
    assert_eq!(tally.values().sum::<usize>(), MUTATIONS);
    assert!(tally.len() >= 12, "every mutation kind ran: {tally:?}");
    eprintln!("fault injection: {MUTATIONS} mutations, all detected and classified: {tally:?}");
}

const CHUNKS: usize = 4;

fn run_chunk(
    chunk: usize,
    pristine: &Files,
    segs: &[PathBuf],
    forged: &[Files],
) -> BTreeMap<&'static str, usize> {
    let dir = tempfile::tempdir().unwrap();
    restore_fresh(dir.path(), pristine);
    let vk = key().verifying_key();
    assert!(verify(dir.path(), &vk).unwrap().is_intact());
    let mut rng = StdRng::seed_from_u64(0x6d61_6d6f_7269 + chunk as u64);
    let mut tally = BTreeMap::new();
    for i in (chunk..MUTATIONS).step_by(CHUNKS) {
        let mut files = pristine.clone();
        let m = mutate(i % 12, &mut files, segs, forged, &mut rng);
        restore(dir.path(), &files);
        let report = verify(dir.path(), &vk).unwrap();
        let kinds: Vec<K> = report.findings.iter().map(|f| f.kind).collect();
        assert!(!kinds.is_empty(), "mutation {i} ({}) NOT DETECTED", m.name);
        let classified = m.expect.is_empty() || kinds.iter().any(|k| m.expect.contains(k));
        assert!(
            classified,
            "mutation {i} ({}): expected one of {:?}, got {:#?}",
            m.name, m.expect, report.findings
        );
        *tally.entry(m.name).or_default() += 1;
        if i % 100 < CHUNKS {
            restore(dir.path(), pristine);
            assert!(
                verify(dir.path(), &vk).unwrap().is_intact(),
                "untouched vault reported after {i}"
            );
        }
    }
    restore(dir.path(), pristine);
    assert!(verify(dir.path(), &vk).unwrap().is_intact());
    tally
}

fn restore_fresh(dir: &std::path::Path, files: &Files) {
    std::fs::create_dir_all(dir.join("segments")).unwrap();
    restore(dir, files);
}

fn pick_frame(
    files: &Files,
    segs: &[PathBuf],
    rng: &mut StdRng,
    min_frames: usize,
) -> (PathBuf, Vec<std::ops::Range<usize>>) {
    loop {
        let s = segs[rng.gen_range(0..segs.len())].clone();
        let r = frame_ranges(&files[&s]);
        if r.len() >= min_frames {
            return (s, r);
        }
    }
}

fn splice(b: &[u8], r: &[std::ops::Range<usize>], order: &[usize]) -> Vec<u8> {
    let mut out = b[..r[0].start].to_vec();
    for &i in order {
        out.extend_from_slice(&b[r[i].clone()]);
    }
    out
}

fn resign_heads(files: &mut Files, attacker: &SigningKey, new_root: Option<[u8; 32]>) {
    let heads = files[&PathBuf::from("heads.log")].clone();
    let mut out = heads[..format::HEADS_HEADER_LEN].to_vec();
    let mut at = format::HEADS_HEADER_LEN;
    while at < heads.len() {
        let (msg, sig, n) = format::decode_head_frame(&heads[at..]).unwrap();
        let h = SignedTreeHead::parse(msg, sig).unwrap();
        let h = SignedTreeHead::sign(
            attacker,
            h.tree_size,
            new_root.unwrap_or(h.root_hash),
            h.chain_head,
            h.timestamp,
        );
        format::encode_head_frame(&h.message(), &h.signature, &mut out);
        at += n;
    }
    files.insert("heads.log".into(), out);
}

fn mutate(
    kind: usize,
    files: &mut Files,
    segs: &[PathBuf],
    forged: &[Files],
    rng: &mut StdRng,
) -> Mutation {
    let last = segs.last().unwrap().clone();
    match kind {
        0 => {
            // A bit flip anywhere in any segment, headers included.
            let s = &segs[rng.gen_range(0..segs.len())];
            let b = files.get_mut(s).unwrap();
            let at = rng.gen_range(0..b.len());
            b[at] ^= 1 << rng.gen_range(0..8);
            Mutation {
                name: "bit flip (anywhere)",
                expect: &[],
            }
        }
        1 => {
            // A bit flip in a record's content (payload or source).
            let (s, r) = pick_frame(files, segs, rng, 1);
            let f = &r[rng.gen_range(0..r.len())];
            let b = files.get_mut(&s).unwrap();
            let at = rng.gen_range(f.start + 8 + 19..f.end - 32);
            b[at] ^= 1 << rng.gen_range(0..8);
            Mutation {
                name: "bit flip (record content)",
                expect: &[K::Modified],
            }
        }
        2 => {
            let (s, r) = pick_frame(files, segs, rng, 2);
            let i = rng.gen_range(0..r.len());
            let is_vault_tail = s == last && i == r.len() - 1;
            let order: Vec<usize> = (0..r.len()).filter(|&j| j != i).collect();
            let b = splice(&files[&s], &r, &order);
            files.insert(s, b);
            if is_vault_tail {
                Mutation {
                    name: "delete last record",
                    expect: &[K::TruncatedTail],
                }
            } else {
                Mutation {
                    name: "delete record",
                    expect: &[K::Deleted],
                }
            }
        }
        3 => {
            let (s, r) = pick_frame(files, segs, rng, 2);
            let i = rng.gen_range(0..r.len());
            let j = rng.gen_range(0..=r.len());
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.insert(j, i);
            let b = splice(&files[&s], &r, &order);
            files.insert(s, b);
            Mutation {
                name: "duplicate record",
                expect: &[K::Inserted],
            }
        }
        4 => {
            let (s, r) = pick_frame(files, segs, rng, 2);
            let i = rng.gen_range(0..r.len() - 1);
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.swap(i, i + 1);
            let b = splice(&files[&s], &r, &order);
            files.insert(s, b);
            Mutation {
                name: "swap adjacent records",
                expect: &[K::Reordered],
            }
        }
        5 => {
            let (s, r) = pick_frame(files, segs, rng, 3);
            let i = rng.gen_range(0..r.len() - 2);
            let j = rng.gen_range(i + 2..r.len());
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.swap(i, j);
            let b = splice(&files[&s], &r, &order);
            files.insert(s, b);
            Mutation {
                name: "swap distant records",
                expect: &[K::Reordered],
            }
        }
        6 => {
            // Cut the tail: anywhere in the last segment, or drop the last segment(s).
            if rng.gen_bool(0.7) {
                let b = files.get_mut(&last).unwrap();
                let hdr = frame_ranges(b)[0].start;
                let cut = rng.gen_range(hdr..b.len());
                b.truncate(cut);
            } else {
                let n = rng.gen_range(1..=2);
                for s in &segs[segs.len() - n..] {
                    files.remove(s);
                }
            }
            Mutation {
                name: "truncate tail",
                expect: &[K::TruncatedTail],
            }
        }
        7 => {
            let attacker = SigningKey::from_bytes(&rng.gen());
            if rng.gen_bool(0.5) {
                resign_heads(files, &attacker, None);
            } else {
                // Change a record and sign "fixed" heads with the wrong key.
                let (s, r) = pick_frame(files, segs, rng, 1);
                let f = r[rng.gen_range(0..r.len())].clone();
                files.get_mut(&s).unwrap()[f.end - 33] ^= 0x10;
                resign_heads(files, &attacker, Some(rng.gen()));
            }
            Mutation {
                name: "re-signed with wrong key",
                expect: &[K::BadSignature],
            }
        }
        8 => {
            // Replace a segment with the same-numbered segment of a forged vault whose chain is
            // internally valid (the attacker recomputed it) but which holds different records.
            let f = &forged[rng.gen_range(0..forged.len())];
            let candidates: Vec<&PathBuf> =
                segs.iter().filter(|s| f.get(*s) != files.get(*s)).collect();
            let s = candidates[rng.gen_range(0..candidates.len())];
            files.insert(s.clone(), f[s].clone());
            Mutation {
                name: "replace segment",
                expect: &[K::SegmentMismatch, K::HeadMismatch],
            }
        }
        9 => {
            // Remove a whole segment from the middle.
            let i = rng.gen_range(0..segs.len() - 1);
            files.remove(&segs[i]);
            Mutation {
                name: "delete segment file",
                expect: &[K::SegmentMissing],
            }
        }
        10 => {
            // Insert a forged record claiming the next seq, correctly chained by the attacker,
            // before the genuine one.
            let (s, r) = pick_frame(files, segs, rng, 2);
            let i = rng.gen_range(1..r.len());
            let b = files[&s].clone();
            let prev = decode_frame(&b[r[i - 1].clone()]).unwrap();
            let real = decode_frame(&b[r[i].clone()]).unwrap();
            let e = format::EntryRef {
                seq: real.seq,
                kind: format::RecordKind::Event,
                received_at_ns: real.received_at_ns,
                source: "udp://10.6.6.6:514",
                payload: b"forged",
            };
            let mut forged_frame = Vec::new();
            format::encode_frame(&e, &prev.chain, &mut forged_frame);
            let mut out = b[..r[i].start].to_vec();
            out.extend_from_slice(&forged_frame);
            out.extend_from_slice(&b[r[i].start..]);
            files.insert(s, out);
            Mutation {
                name: "insert forged record",
                expect: &[K::Inserted],
            }
        }
        _ => {
            // Rewrite one record and recompute the rest of its segment's chain (a capable
            // attacker without the key): the chain is consistent, only the signed head and the
            // next segment's header can tell.
            let (s, r) = pick_frame(files, segs, rng, 1);
            let i = rng.gen_range(0..r.len());
            let b = files[&s].clone();
            let mut out = b[..r[i].start].to_vec();
            let mut prev = if i == 0 {
                format::decode_segment_header(&b).unwrap().0.prev_chain
            } else {
                decode_frame(&b[r[i - 1].clone()]).unwrap().chain
            };
            for (j, range) in r.iter().enumerate().skip(i) {
                let f = decode_frame(&b[range.clone()]).unwrap();
                let mut entry = f.entry.to_vec();
                if j == i {
                    let at = entry.len() - 1;
                    entry[at] ^= 0x01;
                }
                let leaf = leaf_hash(&entry);
                let chain = chain_hash(f.seq, &prev, &leaf);
                out.extend_from_slice(&b[range.start..range.start + 8]);
                out.extend_from_slice(&entry);
                out.extend_from_slice(&chain);
                prev = chain;
            }
            files.insert(s, out);
            Mutation {
                name: "rewrite record and re-chain",
                expect: &[K::HeadMismatch, K::SegmentMismatch],
            }
        }
    }
}

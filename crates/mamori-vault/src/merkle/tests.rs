use super::*;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Straight from the RFC's recursive definition, to check the optimised versions against.
fn reference_root(l: &[Hash]) -> Hash {
    match l.len() {
        0 => empty_root(),
        1 => l[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&reference_root(&l[..k]), &reference_root(&l[k..]))
        }
    }
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn frontier_and_tree_roots_match_reference() {
    let all = leaves(70);
    let tree = MerkleTree::from_leaves(all.clone());
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    for n in 1..=70u64 {
        f.push(all[n as usize - 1]);
        let want = reference_root(&all[..n as usize]);
        assert_eq!(f.root(), want, "frontier n={n}");
        assert_eq!(tree.root(n), Some(want), "tree n={n}");
        let back = Frontier::from_parts(n, &f.hashes().copied().collect::<Vec<_>>()).unwrap();
        assert_eq!(back, f);
    }
    assert!(Frontier::from_parts(3, &[[0; 32]]).is_none());
}

#[test]
fn inclusion_proofs_verify_and_reject_wrong_inputs() {
    let tree = MerkleTree::from_leaves(leaves(37));
    for size in 1..=37u64 {
        let root = tree.root(size).unwrap();
        for i in 0..size {
            let p = tree.inclusion_proof(i, size).unwrap();
            let leaf = tree.leaf(i).unwrap();
            assert!(
                verify_inclusion(leaf, i, size, &p, &root),
                "i={i} size={size}"
            );
            assert!(!verify_inclusion(&[9; 32], i, size, &p, &root));
            if size > 1 {
                assert!(!verify_inclusion(leaf, (i + 1) % size, size, &p, &root));
            }
        }
    }
}

#[test]
fn consistency_proofs_verify_and_reject_wrong_inputs() {
    let tree = MerkleTree::from_leaves(leaves(33));
    for new in 0..=33u64 {
        for old in 0..=new {
            let p = tree.consistency_proof(old, new).unwrap();
            let (ro, rn) = (tree.root(old).unwrap(), tree.root(new).unwrap());
            assert!(verify_consistency(old, new, &ro, &rn, &p), "{old}->{new}");
            if old > 0 && old < new {
                assert!(!verify_consistency(old, new, &[1; 32], &rn, &p));
                assert!(!verify_consistency(old, new, &ro, &[1; 32], &p));
            }
        }
    }
}

#[test]
fn rfc9162_style_known_answer() {
    // The CT test vectors use leaf inputs given as hex; the first one is the empty leaf.
    assert_eq!(
        hex::encode(leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}

//! Mamori's evidence vault: an append-only, hash-chained, Merkle-tree log of raw records with
//! signed tree heads, a verifier that needs nothing but the files and a public key, and an
//! evidence export that outsiders can check with `sha256sum` and `openssl`.
//!
//! # The key design decision
//!
//! Every record is protected **twice, by two structures with different jobs**:
//!
//! * a **hash chain** (`chain_n = SHA-256(0x02 ‖ seq ‖ chain_{n-1} ‖ leaf_n)`, stored after each
//!   record) makes damage *local and nameable*: the verifier checks each record against its
//!   predecessor, so it can say "segment 3, offset 4096, seq 812 was modified" and tell a
//!   modification from a deletion, an insertion or a reordering, and it resynchronises after
//!   damage instead of giving up;
//! * an **RFC 9162 Merkle tree** over the same records, whose root is periodically **signed with
//!   Ed25519** ([`SignedTreeHead`]), makes the log *complete*: a chain alone cannot see a cut
//!   tail (the shortened chain is still a valid chain), but a signed head that says
//!   "tree_size = 10 000" can. The tree also gives compact inclusion proofs for exports and
//!   consistency proofs between heads.
//!
//! Anyone who can write the files can recompute an unkeyed chain, so the chain alone proves
//! nothing against a capable attacker; the signature is what binds the data, and the chain is
//! what makes the report precise. Records written after the last signed head are protected only
//! by the chain (see `docs/vault-format.md`, "Guarantees and limits").
//!
//! Other decisions that follow from "must be checkable without trusting Mamori":
//!
//! * the format is simple, versioned and documented byte by byte (`docs/vault-format.md`); a
//!   frozen fixture vault in `tests/fixtures/` must keep verifying;
//! * [`verify()`] reads only the vault directory and a public key (no database), streams each
//!   segment with bounded memory, verifies segments in parallel with rayon and joins the chain
//!   boundaries in a cheap sequential pass;
//! * the signed head message is plain text and the signature is pure Ed25519, so
//!   `openssl pkeyutl -verify -rawin` can check an exported head;
//! * crash recovery never silently drops bytes: a torn tail is copied to `quarantine/` before
//!   truncation and an audit record naming it is appended to the chain.
//!
//! Time is always passed in by the caller (`now`), so the crate is deterministic under test.

mod audit;
mod bundle;
mod error;
mod export;
pub mod format;
mod head;
mod keys;
pub mod merkle;
mod scan;
mod vault;
mod verify;
mod witness;

/// The key types of the public API, re-exported so callers need no direct ed25519 dependency.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

pub use audit::{AuditAction, AuditEntry};
pub use bundle::{verify_bundle, BundleFinding, BundleReport};
pub use error::{Error, Result};
pub use export::{
    csv_cell, formula_safe, host_of, safe_component, ExportFilter, ExportRequest, ExportSummary,
    IncidentRef,
};
pub use format::{RecordKind, FORMAT_VERSION};
pub use head::SignedTreeHead;
pub use keys::{
    fingerprint, generate_keypair, load_signing_key, load_verifying_key, public_key_pem,
    write_keypair, KeyPaths,
};
pub use merkle::Hash;
pub use vault::{
    event_source, read_custody, read_status, store_seq_of, FsyncPolicy, Receipt, RecordInput,
    Recovery, Vault, VaultConfig, VaultStatus, AUDIT_SOURCE, LOCK_FILE,
};
pub use verify::{verify, Finding, FindingKind, VerifyReport, MAX_FINDINGS_PER_SEGMENT};
pub use witness::{check_witness, head_from_json, parse_witness, WitnessReport};

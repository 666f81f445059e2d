#!/usr/bin/env python3
"""Check the Merkle inclusion proofs of a Mamori evidence bundle (standard library only).

Run from the bundle's root directory, after `sha256sum -c MANIFEST.sha256` and the openssl
signature check of head/tree-head.msg. Recomputes each record's leaf hash from the byte-exact
frames in records/records.bin and custody/audit.bin and checks it against the signed root
(RFC 9162, section 2.1.3.2). Exit status 0 = all proofs valid.
"""
import hashlib
import json
import struct
import sys


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def frames(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        if data[at:at + 4] != b"MVR1":
            raise SystemExit("%s: bad frame magic at offset %d" % (path, at))
        (n,) = struct.unpack(">I", data[at + 4:at + 8])
        entry = data[at + 8:at + 8 + n]
        (seq,) = struct.unpack(">Q", entry[:8])
        yield seq, hashlib.sha256(b"\x00" + entry).digest()
        at += 8 + n + 32


def verify_inclusion(leaf, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    head = dict(line.split(" ", 1) for line in open("head/tree-head.msg").read().splitlines()[1:])
    size, root = int(head["tree_size"]), bytes.fromhex(head["root_hash"])
    proofs = {}
    for line in open("proofs/inclusion.jsonl"):
        p = json.loads(line)
        proofs[p["seq"]] = p
    bad = checked = 0
    for f in ("records/records.bin", "custody/audit.bin"):
        for seq, leaf in frames(f):
            p = proofs.get(seq)
            ok = (p is not None and p["tree_size"] == size
                  and bytes.fromhex(p["leaf_hash"]) == leaf
                  and verify_inclusion(leaf, seq, size, [bytes.fromhex(h) for h in p["audit_path"]], root))
            checked += 1
            if not ok:
                bad += 1
                print("FAILED: record seq %d in %s" % (seq, f))
    print("%d records checked against signed root %s (tree size %d): %d failed"
          % (checked, root.hex(), size, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""pySigma oracle for Mamori's Sigma engine (issue #16).

Converts every SigmaHQ Windows rule of the corpus with pySigma's SQLite backend, loads the
corpus events (`bench/windows-flat.jsonl`, then the SigmaHQ regression samples flattened the same
way) into SQLite, runs every query, and compares rule by rule and event by event with
`mamori hunt --format jsonl` over the same file.

What the oracle shares with Mamori, on purpose, so that only *detection semantics* are compared:
- the logsource binding (category/service -> Channel, EventID, EventType), read from Mamori's
  own data file `crates/mamori-sigma/data/logsources.yml` and turned into SQL here;
- the field groups of `crates/mamori-sigma/data/fields.yml` (a rule's `Image` also reads
  `NewProcessName`), applied when loading: an absent member takes the first present member's
  value, as Mamori's reader copies NewProcessName to Image;
- the `%known_cdcs%` placeholder value.

Event loading mirrors the JSON reader: nested objects become dotted names, JSON null and absent
fields are SQL NULL, booleans are 'true'/'false', a list is its elements joined by newlines (no
rule pattern spans one), field names keep their case (spellings that differ only by case get
columns of their own and the queries are pointed at them), and field-less keywords search the
event's string values through pySigma's `fulltext_field`.

Every divergence must be explained in the known-divergences file (one entry per rule, the spec
clause that makes the oracle wrong, and a reason); anything else fails. Exit status: 0 when
every divergence is explained (and no explanation is stale), 1 otherwise, 2 on setup errors.
"""

import argparse
import collections
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    ValueListPlaceholderTransformation,
)

FULLTEXT = "mamori_oracle_text"
PLACEHOLDERS = {"known_cdcs": ["CN=CDC01"]}
RULE_DIRS = [
    "sigma/rules/windows",
    "sigma/rules-threat-hunting/windows",
    "sigma/rules-emerging-threats",
]


def log(msg):
    print(f"sigma-oracle: {msg}", file=sys.stderr, flush=True)


def windows_rules(corpus):
    """(path, id, text, parsed) of every rule whose logsource product is windows."""
    out = []
    for d in RULE_DIRS:
        root = os.path.join(corpus, d)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".yml"):
                    continue
                path = os.path.join(dirpath, name)
                text = open(path, encoding="utf-8").read()
                try:
                    doc = yaml.load(text, Loader=SafeLoader)
                except yaml.YAMLError:
                    continue
                if not isinstance(doc, dict) or "detection" not in doc:
                    continue
                if (doc.get("logsource") or {}).get("product") != "windows":
                    continue
                out.append((path, str(doc.get("id") or doc.get("title")), text, doc))
    return out


def placeholder_pipeline():
    return ProcessingPipeline(
        name="mamori placeholders",
        priority=20,
        items=[
            ProcessingItem(
                identifier="placeholders",
                transformation=ValueListPlaceholderTransformation(),
            ),
        ],
        vars=PLACEHOLDERS,
    )


def sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def logsource_sql(ls, lsmap):
    """Mamori's logsource binding (crates/mamori-detect/src/logsource.rs) as SQL.

    Returns None when the rule names a category or service the mapping does not know: Mamori
    then needs the reader to have set that logsource, which the flat JSON reader never does,
    so such a rule can match no event of this file on either side.
    """
    win = lsmap["windows"]
    services, categories = win["services"], win["categories"]

    def channels(svc):
        chans = services.get(svc)
        return None if chans is None else "Channel IN (" + ", ".join(map(sql_str, chans)) + ")"

    cat, svc = ls.get("category"), ls.get("service")
    if cat is None and svc is None:
        return "1"
    if cat is None:
        return channels(svc)
    alts = categories.get(cat)
    if alts is None:
        return None
    parts = []
    for alt in alts:
        if svc is not None and alt.get("service") is not None and alt["service"] != svc:
            continue
        conds = []
        if alt.get("service") is not None:
            c = channels(alt["service"])
            conds.append(c if c is not None else "0")
        for k, v in alt.items():
            if k == "service":
                continue
            conds.append(f"{k} = {v}" if isinstance(v, int) else f"{k} = {sql_str(v)}")
        parts.append("(" + " AND ".join(conds or ["1"]) + ")")
    if not parts:
        if svc is not None and services.get(svc) is not None:
            return channels(svc)
        return "0"
    return "(" + " OR ".join(parts) + ")"


def flatten(obj, prefix, out):
    for k, v in obj.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            flatten(v, name, out)
        else:
            out[name] = v


def sql_value(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        return str(v)
    if isinstance(v, (int, float, str)):
        return v
    return json.dumps(v)


def load_events(conn, path, used, groups):
    """One table `logs`, one row per event; column `ev` = the event's line number.

    `used` maps a lowercased name to the spellings the queries use: only those fields get a
    column. Field groups are applied here, not in the queries: every absent member of a group
    takes the value of the first present one (as Mamori's reader copies NewProcessName to
    Image), so `Image: null` means "no member present" as it does in Mamori. A list value is
    stored as its elements joined by a newline, which no rule pattern spans: `contains` (the
    only modifier SigmaHQ uses on the one list field, `Data`) holds when an element contains.
    """
    rows = []
    conflicts = collections.Counter()

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            flat = {}
            flatten(json.loads(line), "", flat)
            for g in groups:
                present = [flat[m] for m in g if flat.get(m) is not None]
                if present:
                    if len({json.dumps(v) for v in present}) > 1:
                        conflicts[tuple(g)] += 1
                    for m in g:
                        if flat.get(m) is None:
                            flat[m] = present[0]
            row = {"ev": line_no}
            for k, v in flat.items():
                if k.lower() not in used:
                    continue
                if isinstance(v, list):
                    v = "\n".join(str(sql_value(x)) for x in v) if v else None
                row[k] = sql_value(v)
            # Keywords (field-less values) search the event's string values, one per line, as
            # Mamori searches each string value.
            row[FULLTEXT] = "\n".join(
                x
                for v in flat.values()
                for x in (v if isinstance(v, list) else [v])
                if isinstance(x, str)
            )
            rows.append(row)
    for g, n in conflicts.items():
        log(f"{n} events carry different values in the field group {list(g)}")
    # SQLite column names ignore case, Mamori's field names do not (SigmaHQ names both
    # `Payload` and `payload`): spellings that differ only by case get columns of their own,
    # and `rename` maps each spelling to its column for rewriting the queries.
    names = sorted({k for r in rows for k in r if k not in ("ev", FULLTEXT)})
    by_lower = collections.defaultdict(list)
    for n in names:
        by_lower[n.lower()].append(n)
    rename = {}
    for low, spellings in by_lower.items():
        if len(spellings) > 1:
            for n in spellings:
                rename[n] = f"{n}#{n.encode().hex()}"
            for n in used.get(low, ()):  # a spelling the rules use that no event has
                rename.setdefault(n, f"{n}#{n.encode().hex()}")
    cols = [FULLTEXT] + names
    col_sql = ", ".join(f'"{rename.get(c, c)}" TEXT COLLATE NOCASE' for c in cols)
    conn.execute(f"CREATE TABLE logs (ev INTEGER, {col_sql})")
    placeholders = ", ".join("?" for _ in range(len(cols) + 1))
    conn.executemany(
        f"INSERT INTO logs VALUES ({placeholders})",
        ([r.get("ev")] + [r.get(c) for c in cols] for r in rows),
    )
    conn.execute("CREATE INDEX logs_eid ON logs (EventID)")
    conn.commit()
    return len(rows), rename


def rewrite(where, rename):
    """Points the identifiers of a query at the columns of their exact spelling."""
    if not rename:
        return where
    out = []
    for i, part in enumerate(re.split(r"('(?:[^']|'')*')", where)):
        if i % 2:  # a string literal
            out.append(part)
            continue

        def sub(m):
            name = next(filter(None, m.groups())).replace("``", "`")
            col = rename.get(name)
            return m.group(0) if col is None else "`" + col.replace("`", "``") + "`"

        out.append(re.sub(r'`((?:[^`]|``)+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b', sub, part))
    return "".join(out)


def select(conn, sql):
    """Runs a query; a field no event carries becomes an all-NULL column (as the backend's
    own runtime does) and the query is run again."""
    while True:
        try:
            return {ev for (ev,) in conn.execute(sql)}
        except sqlite3.OperationalError as e:
            m = re.match(r"no such column: (.+)$", str(e))
            if not m:
                raise
            col = m.group(1).replace('"', '""')
            conn.execute(f'ALTER TABLE logs ADD COLUMN "{col}" TEXT COLLATE NOCASE')


def regexp(pattern, value, cache={}):
    if value is None:
        return 0
    r = cache.get(pattern)
    if r is None:
        r = cache[pattern] = re.compile(pattern)
    return 1 if r.search(str(value)) else 0


def run_oracle(rules, events_path, fields_yml, lsmap):
    groups = yaml.safe_load(open(fields_yml, encoding="utf-8"))["groups"]
    backend = sqliteBackend(
        processing_pipeline=placeholder_pipeline(),
        collect_errors=True,
        fulltext_field=FULLTEXT,
    )
    t = time.time()
    converted, unconverted, words = [], {}, collections.defaultdict(set)
    for path, rid, text, doc in rules:
        ls = logsource_sql(doc.get("logsource") or {}, lsmap)
        try:
            backend.errors = []
            queries = backend.convert(SigmaCollection.from_yaml(text))
            if backend.errors:
                raise RuntimeError("; ".join(str(e) for _, e in backend.errors))
        except Exception as e:  # pySigma raises many exception types; each is reported
            unconverted[rid] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            continue
        wheres = [q.split(" WHERE ", 1)[1] for q in queries]
        converted.append((rid, ls, wheres))
        for w in wheres + [ls or ""]:
            # Identifiers only: string literals are cut out first.
            bare = re.sub(r"'(?:[^']|'')*'", " ", w)
            for x in re.findall(r'"((?:[^"]|"")+)"|`((?:[^`]|``)+)`|([A-Za-z_][A-Za-z0-9_.\-]*)', bare):
                x = next(filter(None, x)).replace("``", "`")
                words[x.lower()].add(x)
    log(f"pySigma converted {len(converted)} rules in {time.time() - t:.1f}s "
        f"({len(unconverted)} not converted)")

    conn = sqlite3.connect(":memory:")
    conn.create_function("REGEXP", 2, regexp, deterministic=True)
    t = time.time()
    for g in groups:  # a group member named by a rule needs every member's value
        if any(m.lower() in words for m in g):
            for m in g:
                words[m.lower()].add(m)
    n_events, rename = load_events(conn, events_path, words, groups)
    log(f"loaded {n_events} events into SQLite in {time.time() - t:.1f}s")

    t = time.time()
    results = {}
    for rid, ls, wheres in converted:
        hits = set()
        if ls is not None:
            for where in wheres:
                where = rewrite(f"({ls}) AND ({where})", rename)
                hits |= select(conn, f"SELECT ev FROM logs WHERE {where}")
        results[rid] = hits
    log(f"ran {len(results)} queries in {time.time() - t:.1f}s")
    return results, unconverted


def run_mamori(mamori, rules, events_path, threads):
    with tempfile.TemporaryDirectory(prefix="sigma-oracle-") as tmp:
        ph = os.path.join(tmp, "placeholders.yml")
        with open(ph, "w") as f:
            yaml.safe_dump(PLACEHOLDERS, f)
        rule_dir = os.path.join(tmp, "rules")
        os.mkdir(rule_dir)
        for i, (path, _, text, _) in enumerate(rules):
            with open(os.path.join(rule_dir, f"{i:05}-{os.path.basename(path)}"), "w") as f:
                f.write(text)
        out = os.path.join(tmp, "timeline.jsonl")
        cmd = [mamori, "hunt", events_path, "--rules", rule_dir, "--format", "jsonl",
               "-o", out, "--placeholders", ph, "--quiet", "--threads", str(threads)]
        t = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode not in (0, 1):
            log(f"mamori hunt failed ({p.returncode}): {p.stderr.strip()[:2000]}")
            sys.exit(2)
        log(f"mamori hunt took {time.time() - t:.1f}s")
        results = collections.defaultdict(set)
        with open(out, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                src = row["source"]
                m = re.search(r":(\d+)$", src)
                if not m:
                    continue
                results[row["rule"]["id"]].add(int(m.group(1)))
        return results


def load_known(path):
    """rule id -> entry (mamori_only / oracle_only: line lists or '*', clause, reason)."""
    if not os.path.exists(path):
        return {}
    doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
    known = {}
    for e in doc.get("divergences", []):
        for key in ("rule", "clause", "reason"):
            if not e.get(key):
                raise SystemExit(f"{path}: entry {e!r} needs `{key}`")
        known[str(e["rule"])] = e
    for e in doc.get("not_converted", []):
        for key in ("rule", "clause", "reason"):
            if not e.get(key):
                raise SystemExit(f"{path}: entry {e!r} needs `{key}`")
        known[str(e["rule"])] = dict(e, not_converted=True)
    return known


def covered(listed, lines):
    if listed == "*":
        return True
    return set(lines) <= set(listed or [])


def regression_event(doc):
    """A SigmaHQ regression sample (evtx crate JSON) in the flat shape of the bench file:
    System fields at the top (`Provider_Name`, `EventID`, `TimeCreated`, `Channel`, …), then
    the EventData (or UserData) fields."""
    ev = doc["Event"]
    sys_ = ev.get("System") or {}
    flat = {}
    for k, v in sys_.items():
        if k == "Provider":
            for a, x in ((v or {}).get("#attributes") or {}).items():
                flat[f"Provider_{a}"] = x
        elif k == "TimeCreated":
            flat["TimeCreated"] = ((v or {}).get("#attributes") or {}).get("SystemTime")
        elif isinstance(v, dict):
            if "#text" in v:
                flat[k] = v["#text"]
        elif v is not None:
            flat[k] = v
    data = ev.get("EventData")
    if data is None and isinstance(ev.get("UserData"), dict):
        inner = [x for x in ev["UserData"].values() if isinstance(x, dict)]
        data = inner[0] if inner else None
    if isinstance(data, dict):
        for k, v in data.items():
            if k != "#attributes":
                flat[k] = v
    return flat


def combined_events(corpus, bench, out_path):
    """The bench file, then every regression sample flattened, in one JSONL file; returns the
    bench's line count and the label of every sample line after it."""
    samples = []
    with open(out_path, "w", encoding="utf-8") as out:
        n_bench = 0
        with open(bench, encoding="utf-8") as f:
            for line in f:
                out.write(line if line.endswith("\n") else line + "\n")
                n_bench += 1
        root = os.path.join(corpus, "sigma/regression_data")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".json"):
                    continue
                path = os.path.join(dirpath, name)
                text = open(path, encoding="utf-8").read()
                dec, pos, k = json.JSONDecoder(), 0, 0
                while True:
                    while pos < len(text) and text[pos].isspace():
                        pos += 1
                    if pos >= len(text):
                        break
                    doc, pos = dec.raw_decode(text, pos)
                    k += 1
                    out.write(json.dumps(regression_event(doc)) + "\n")
                    samples.append(f"{os.path.relpath(path, corpus)}#{k}")
    return n_bench, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--mamori", required=True, help="the mamori binary")
    ap.add_argument("--repo", required=True, help="the Mamori checkout (for its data files)")
    ap.add_argument("--known", required=True, help="known divergences (YAML)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", help="write every divergence as JSON lines here")
    args = ap.parse_args()

    bench = os.path.join(args.corpus, "bench/windows-flat.jsonl")
    tmp = tempfile.TemporaryDirectory(prefix="sigma-oracle-events-")
    events = os.path.join(tmp.name, "events.jsonl")
    n_bench, samples = combined_events(args.corpus, bench, events)
    log(f"events: {n_bench} of bench/windows-flat.jsonl (lines 1-{n_bench}), then "
        f"{len(samples)} of the SigmaHQ regression samples")
    fields_yml = os.path.join(args.repo, "crates/mamori-sigma/data/fields.yml")
    lsmap = yaml.safe_load(open(os.path.join(args.repo, "crates/mamori-sigma/data/logsources.yml")))
    rules = windows_rules(args.corpus)
    log(f"{len(rules)} SigmaHQ Windows rules")
    by_id = {rid: path for path, rid, _, _ in rules}

    oracle, unconverted = run_oracle(rules, events, fields_yml, lsmap)
    mamori = run_mamori(args.mamori, rules, events, args.threads)
    known = load_known(args.known)

    def label(n):
        return f"bench:{n}" if n <= n_bench else f"{samples[n - n_bench - 1]} (line {n})"

    unexplained, explained, stale = [], [], []
    report = []
    agree_rules = agree_hits = 0
    for path, rid, _, _ in rules:
        rel = os.path.relpath(path, args.corpus)
        entry = known.get(rid)
        if rid in unconverted:
            if entry and entry.get("not_converted"):
                explained.append(rid)
            else:
                unexplained.append(f"{rel}: pySigma could not convert it: {unconverted[rid]}")
            continue
        o, m = oracle[rid], mamori.get(rid, set())
        only_m, only_o = sorted(m - o), sorted(o - m)
        report.append({"rule": rid, "file": rel, "mamori_only": only_m, "oracle_only": only_o})
        if not only_m and not only_o:
            agree_rules += 1
            agree_hits += len(m)
            if entry:
                stale.append(f"{rel}: listed as divergent but both agree ({len(m)} matches)")
            continue
        if entry and covered(entry.get("mamori_only"), only_m) and covered(
            entry.get("oracle_only"), only_o
        ):
            explained.append(rid)
            continue
        unexplained.append(
            f"{rel} ({rid}): mamori only {len(only_m)} {list(map(label, only_m[:8]))}, "
            f"oracle only {len(only_o)} {list(map(label, only_o[:8]))}"
        )
    for rid in known:
        if rid not in by_id:
            stale.append(f"{rid}: listed but not a rule of the corpus")

    if args.report:
        with open(args.report, "w") as f:
            for r in report:
                if r["mamori_only"] or r["oracle_only"]:
                    f.write(json.dumps(r) + "\n")

    total_m = sum(len(v) for v in mamori.values())
    total_o = sum(len(v) for v in oracle.values())
    print(f"sigma-oracle: {len(rules)} rules, {len(rules) - len(unconverted)} converted by pySigma; "
          f"{agree_rules} agree event for event ({agree_hits} matches); "
          f"mamori {total_m} rule×event matches, oracle {total_o}")
    print(f"sigma-oracle: {len(explained)} explained divergences, {len(unexplained)} unexplained, "
          f"{len(stale)} stale explanations")
    for u in unexplained:
        print(f"UNEXPLAINED {u}")
    for s in stale:
        print(f"STALE {s}")
    ok = not unexplained and not stale
    print(f"sigma-oracle: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""End-to-end Sigma speed against RSigma, same run (issue #16), and the per-rule differential.

One thread, the SigmaHQ Windows rules (every `product: windows` rule under sigma/rules/windows,
sigma/rules-threat-hunting/windows and sigma/rules-emerging-threats: 2,858), the events of
bench/windows-flat.jsonl repeated N times (10: 250,760 events):

    mamori hunt X --rules R --no-default-rules --threads 1 --format jsonl -o OUT --placeholders P
    rsigma engine eval -r R -p PIPELINE -e @X

CPU seconds (user+sys) and peak RSS from /usr/bin/time -v, best of --runs alternated runs.
RSigma gets a pipeline binding logsource categories to EventIDs as sigma/tests/thor.yml does
(and services to their channels, from the same mapping Mamori uses), so both engines select the
same events for a rule.

The differential runs both over the file once and compares, per rule, the multiset of events
matched (an event is known by its canonical JSON): every difference is printed, named as one of
RSigma 0.23's known errors when the rule's modifiers show it (a wildcard in an `endswith` value
anchored on the wrong side, windash leaving `/` unexpanded) and UNEXPLAINED otherwise. Exit 0
when nothing is unexplained.

Skips (exit 0, saying so) when rsigma, /usr/bin/time or the corpus is absent.

    python3 .ci/sigma-speed.py --mamori target/release/mamori [--repeat 10] [--runs 3]
"""

import argparse
import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

RULE_DIRS = [
    "sigma/rules/windows",
    "sigma/rules-threat-hunting/windows",
    "sigma/rules-emerging-threats",
]
PLACEHOLDERS = {"known_cdcs": ["CN=CDC01"]}


def log(msg):
    print(f"sigma-speed: {msg}", file=sys.stderr, flush=True)


def windows_rules(corpus, out_dir):
    n = 0
    for d in RULE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(corpus, d)):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".yml"):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    doc = yaml.safe_load(open(path, encoding="utf-8"))
                except yaml.YAMLError:
                    continue
                if not isinstance(doc, dict) or "detection" not in doc:
                    continue
                if (doc.get("logsource") or {}).get("product") != "windows":
                    continue
                shutil.copy(path, os.path.join(out_dir, f"{n:05}-{name}"))
                n += 1
    return n


def rsigma_pipeline(corpus, repo):
    """Categories → their conditions in thor.yml (EventID, and EventType for the registry
    categories), services → Channel (Mamori's logsources.yml)."""
    thor = yaml.safe_load(open(os.path.join(corpus, "sigma/tests/thor.yml"), encoding="utf-8"))
    by_cat = collections.OrderedDict()
    for entry in thor["logsources"].values():
        cat = entry.get("category")
        conds = entry.get("conditions") or {}
        if not cat or conds.get("EventID") is None or entry.get("product", "windows") != "windows":
            continue
        by_cat.setdefault(cat, []).append(conds)
    # One condition per category: each field's values from all its entries, for the fields
    # every entry of the category names (registry_delete: EventID 12 and EventType DeleteKey
    # or DeleteValue); a field only some entries name is left out rather than over-restrict.
    merged = collections.OrderedDict()
    for cat, entries in by_cat.items():
        keys = [k for k in entries[0] if all(k in e for e in entries)]
        cond = {}
        for k in keys:
            vals = []
            for e in entries:
                v = e[k] if isinstance(e[k], list) else [e[k]]
                vals.extend(x for x in v if x not in vals)
            cond[k] = vals if len(vals) > 1 else vals[0]
        merged[cat] = cond
    services = yaml.safe_load(
        open(os.path.join(repo, "crates/mamori-sigma/data/logsources.yml"), encoding="utf-8")
    )["windows"]["services"]
    items = []
    for cat, cond in merged.items():
        items.append({
            "id": f"cat_{cat}",
            "type": "add_condition",
            "conditions": cond,
            "rule_conditions": [{"type": "logsource", "category": cat, "product": "windows"}],
        })
    for svc, chans in services.items():
        items.append({
            "id": f"svc_{svc}",
            "type": "add_condition",
            "conditions": {"Channel": chans if len(chans) > 1 else chans[0]},
            "rule_conditions": [{"type": "logsource", "service": svc, "product": "windows"}],
        })
    return {"name": "thor-eventids", "priority": 10, "transformations": items}


def known_rsigma_error(doc):
    """The RSigma 0.23 error a rule's difference comes from, or None. Both are wrong by the
    Sigma specification (modifiers `endswith`, `windash`) and pySigma gets both right; the
    pySigma oracle (.ci/sigma-oracle) checks Mamori on the same rules."""

    def reasons(node):
        if isinstance(node, list):
            for x in node:
                yield from reasons(x)
        elif isinstance(node, dict):
            for key, val in node.items():
                mods = str(key).split("|")[1:]
                vals = val if isinstance(val, list) else [val]
                if "endswith" in mods and "re" not in mods and any(
                        isinstance(v, str) and re.search(r"(?<!\\)[*?]", v) for v in vals):
                    yield ("a wildcard in an `endswith` value is anchored on the wrong side "
                           "(spec: `endswith` is `*value`)")
                if "windash" in mods:
                    yield "`windash` leaves `/` unexpanded (spec: `-` and `/` and the dash look-alikes)"
                yield from reasons(val)

    detection = {k: v for k, v in (doc.get("detection") or {}).items() if k != "condition"}
    return next(reasons(detection), None)


def timed(cmd, stdout):
    """(cpu seconds, peak RSS MiB, exit code) of one run under /usr/bin/time -v."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=stdout, stderr=subprocess.PIPE,
                       text=True)
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", p.stderr).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", p.stderr).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return user + sys_, rss / 1024.0, p.returncode, p.stderr


def canon(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mamori", required=True)
    ap.add_argument("--rsigma", default=shutil.which("rsigma"))
    ap.add_argument("--corpus", default=os.environ.get("MAMORI_CORPUS", "../shared/corpus"))
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-diff", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    bench = os.path.join(args.corpus, "bench/windows-flat.jsonl")
    if not os.path.isfile(bench):
        log(f"skipped: corpus not found at {args.corpus}")
        return 0
    if not args.rsigma or not os.path.exists(args.rsigma):
        log("skipped: rsigma not found (cargo install rsigma --version '~0.23')")
        return 0
    if not os.path.exists("/usr/bin/time"):
        log("skipped: /usr/bin/time not found")
        return 0
    with tempfile.TemporaryDirectory(prefix="sigma-speed-") as tmp:
        rules = os.path.join(tmp, "rules")
        os.mkdir(rules)
        n = windows_rules(args.corpus, rules)
        pipe = os.path.join(tmp, "pipeline.yml")
        with open(pipe, "w") as f:
            yaml.safe_dump(rsigma_pipeline(args.corpus, args.repo), f, sort_keys=False)
        ph = os.path.join(tmp, "placeholders.yml")
        with open(ph, "w") as f:
            yaml.safe_dump(PLACEHOLDERS, f)
        big = os.path.join(tmp, f"windows-flat-x{args.repeat}.jsonl")
        with open(big, "wb") as out, open(bench, "rb") as src:
            data = src.read()
            for _ in range(args.repeat):
                out.write(data)
        events = data.count(b"\n") * args.repeat
        log(f"{n} rules, {events} events")

        def mamori(inp, out):
            return [args.mamori, "hunt", inp, "--rules", rules, "--no-default-rules",
                    "--threads", "1", "--format", "jsonl", "-o", out, "--placeholders", ph,
                    "--quiet"]

        def rsigma(inp):
            return [args.rsigma, "engine", "eval", "-r", rules, "-p", pipe, "-e", "@" + inp]

        status = 0
        if not args.no_speed:
            res = {"mamori": [], "rsigma": []}
            for i in range(args.runs):
                out = os.path.join(tmp, "timeline.jsonl")
                cpu, rss, rc, err = timed(mamori(big, out), subprocess.DEVNULL)
                if rc not in (0, 1):
                    log(f"mamori failed ({rc}): {err[-2000:]}")
                    return 2
                rows = sum(1 for _ in open(out, "rb"))
                os.remove(out)
                res["mamori"].append((cpu, rss, rows))
                with open(os.path.join(tmp, "rsigma.out"), "wb") as o:
                    cpu, rss, rc, err = timed(rsigma(big), o)
                rows = sum(1 for _ in open(os.path.join(tmp, "rsigma.out"), "rb"))
                os.remove(os.path.join(tmp, "rsigma.out"))
                if rc not in (0, 1):
                    log(f"rsigma failed ({rc}): {err[-2000:]}")
                    return 2
                res["rsigma"].append((cpu, rss, rows))
                log(f"run {i + 1}: mamori {res['mamori'][-1][0]:.2f} CPU-s, "
                    f"rsigma {res['rsigma'][-1][0]:.2f} CPU-s")
            m = min(res["mamori"])
            r = min(res["rsigma"])
            print(f"| engine | CPU s (best of {args.runs}) | all runs | peak RSS MiB | rows |")
            print("|---|---:|---|---:|---:|")
            for name, best in (("mamori hunt", m), ("rsigma engine eval", r)):
                runs = ", ".join(f"{x[0]:.2f}" for x in res[name.split()[0]])
                print(f"| {name} | {best[0]:.2f} | {runs} | {best[1]:.0f} | {best[2]} |")
            print(f"mamori / rsigma CPU: {m[0] / r[0]:.3f} (RSigma is {r[0] / m[0]:.1f}x Mamori)")

        if not args.no_diff:
            out = os.path.join(tmp, "timeline.jsonl")
            subprocess.run(mamori(bench, out), stdout=subprocess.DEVNULL, check=False)
            lines = open(bench, encoding="utf-8").read().split("\n")
            key_of_line = {}
            mam = collections.defaultdict(collections.Counter)
            for row in open(out, encoding="utf-8"):
                row = json.loads(row)
                mm = re.search(r":(\d+)$", row["source"])
                ln = int(mm.group(1))
                if ln not in key_of_line:
                    key_of_line[ln] = canon(json.loads(lines[ln - 1]))
                mam[row["rule"]["id"]][key_of_line[ln]] += 1
            p = subprocess.run(rsigma(bench) + ["--include-event"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            rsg = collections.defaultdict(collections.Counter)
            for line in p.stdout.splitlines():
                if not line.startswith("{"):
                    continue
                m = json.loads(line)
                rid = m.get("rule_id") or m.get("id") or m.get("rule_title")
                ev = m.get("event")
                if ev is None:
                    continue
                rsg[rid][canon(ev)] += 1
            diffs = []
            for rid in sorted(set(mam) | set(rsg)):
                only_m = sum((mam[rid] - rsg[rid]).values())
                only_r = sum((rsg[rid] - mam[rid]).values())
                if only_m or only_r:
                    diffs.append((rid, only_m, only_r))
            total_m = sum(sum(c.values()) for c in mam.values())
            total_r = sum(sum(c.values()) for c in rsg.values())
            # Only the rules that differ are read again, to name them and their error.
            differing = {rid for rid, _, _ in diffs}
            docs = {}
            for name in os.listdir(rules) if differing else []:
                doc = yaml.safe_load(open(os.path.join(rules, name), encoding="utf-8"))
                if str(doc.get("id")) in differing:
                    docs[str(doc.get("id"))] = (name, doc)
            print(f"per-rule differential over {len(lines) - 1} events: mamori {total_m} matches, "
                  f"rsigma {total_r}; {len(diffs)} rules differ")
            unexplained = 0
            for rid, a, b in diffs:
                name, doc = docs.get(rid, ("?", {}))
                why = known_rsigma_error(doc)
                print(f"  {rid} ({name}): only mamori {a}, only rsigma {b}: "
                      + (f"RSigma's known error: {why}" if why else "UNEXPLAINED"))
                unexplained += why is None
            print(f"{len(diffs) - unexplained} differences from RSigma's known errors, "
                  f"{unexplained} unexplained")
            if unexplained:
                status = 1
        return status


if __name__ == "__main__":
    sys.exit(main())

# Preview measurement (issue #20): HTTP ingest of 20,000 events, acknowledged, into the embedded
# server vs a cluster (collector + detector + store over a nats-server of its own and the local
# PostgreSQL), same binary, same machine, same run; prints seconds, CPU-seconds and the ratios.
#   MAMORI_BIN=target/debug/mamori python3 crates/mamori-cluster/bench/ingest_vs_embedded.py
# Needs /usr/sbin/nats-server and PostgreSQL at 127.0.0.1:5432 (trust, database test).
# Then a steady load on the cluster: STEADY_RATE events/s (default: half the cluster's measured
# acknowledged rate) for STEADY_SECS seconds (default 300), sampling every second the detectors'
# consumer lag and the store's lag from /metrics (mamori_cluster_consumer_lag_events,
# mamori_cluster_store_lag_events); prints their median, 95th percentile and maximum.
import json, os, re, subprocess, sys, time, urllib.request, socket, shutil, tempfile, threading
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("MAMORI_BIN", os.path.join(HERE, "../../../target/debug/mamori"))
RULES = os.path.normpath(os.path.join(HERE, "../../../rules"))
N_BATCH, PER = int(os.environ.get("N_BATCH", 40)), 500
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def cfg(d, extra):
    p = os.path.join(d, "mamori.toml")
    open(p, "w").write(f'data_dir = "{d}/data"\n{extra}\n[syslog]\nudp = "127.0.0.1:0"\ntcp = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\nmax_body_bytes = 4000000\n[detection]\nrules = ["{RULES}"]\n[vault]\nseal = false\n')
    return p
def start(c, tok=None):
    # A cluster's tokens are shared (PostgreSQL): one token, created on the first node.
    tok = tok or subprocess.run([BIN, "token", "create", "b", "--config", c], capture_output=True, text=True).stdout.strip()
    pr = subprocess.Popen([BIN, "serve", "--config", c], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "MAMORI_LOG": "warn"})
    for line in pr.stderr:
        m = re.match(r"mamori: API on http://([^/]+)/", line)
        if m: return pr, m.group(1), tok
def post(addr, tok, body):
    r = urllib.request.Request(f"http://{addr}/api/v1/ingest", data=body, headers={"Authorization": f"Bearer {tok}"}, method="POST")
    with urllib.request.urlopen(r, timeout=120) as resp: assert resp.status == 200
def total(addr, tok, q="message:bench"):
    r = urllib.request.Request(f"http://{addr}/api/v1/search?limit=0&q={q}", headers={"Authorization": f"Bearer {tok}"})
    return json.load(urllib.request.urlopen(r))["total"]
def load(addr, tok):
    t0 = time.time()
    for b in range(N_BATCH):
        body = "".join(json.dumps({"message": "bench", "b": b, "n": n, "user.name": f"u{n%50}", "source.ip": f"198.51.100.{n%200}"}) + "\n" for n in range(PER)).encode()
        post(addr, tok, body)
    return time.time() - t0
def wait_total(addr, tok, want):
    t0 = time.time()
    while total(addr, tok) < want: time.sleep(0.1)
    return time.time() - t0
def cpu(pids):
    s = 0
    for p in pids:
        f = open(f"/proc/{p}/stat").read().split(")")[1].split()
        s += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return s
N = N_BATCH * PER
root = tempfile.mkdtemp()
# Embedded baseline.
d = os.path.join(root, "emb"); os.makedirs(d)
pr, addr, tok = start(cfg(d, ""))
time.sleep(3); c0 = cpu([pr.pid])
t_ack = load(addr, tok); t_srch = t_ack + wait_total(addr, tok, N)
c_emb = cpu([pr.pid]) - c0; pr.terminate(); pr.wait()
# Cluster: own nats-server, collector, detector (owns both partitions), store.
port = free_port(); nd = os.path.join(root, "nats")
nats = subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", nd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1)
schema = f"bench_{os.getpid()}"
def ccfg(name, roles, owns="[]"):
    d = os.path.join(root, name); os.makedirs(d)
    return cfg(d, f'[cluster]\nnats = ["nats://127.0.0.1:{port}"]\npostgres = "host=127.0.0.1 user=postgres dbname=test"\npostgres_schema = "{schema}"\nsite = "s1"\nroles = {roles}\npartitions = 2\nowns = {owns}\nnode = "{name}"\n')
first = start(ccfg("col", '["collector"]'))
procs = [first, start(ccfg("det", '["detector"]', "[0, 1]"), first[2]), start(ccfg("sto", '["store"]'), first[2])]
(cp, caddr, ctok), _, (sp, saddr, stok) = procs
time.sleep(3); c0 = cpu([p[0].pid for p in procs]); n0 = cpu([nats.pid])
t_cack = load(caddr, ctok); t_csrch = t_cack + wait_total(saddr, stok, N)
c_cl = cpu([p[0].pid for p in procs]) - c0; c_nats = cpu([nats.pid]) - n0
def metric(addr, tok, name):
    r = urllib.request.Request(f"http://{addr}/metrics", headers={"Authorization": f"Bearer {tok}"})
    for line in urllib.request.urlopen(r, timeout=30).read().decode().splitlines():
        if line.startswith(name + " "): return float(line.split()[1])
    return None
steady_secs = float(os.environ.get("STEADY_SECS", 300))
rate = float(os.environ.get("STEADY_RATE", 0)) or round(0.5 * N / t_cack)
(dp, daddr, dtok) = procs[1]
lags, slags, sent = [], [], [0]
stop = threading.Event()
def sender():
    t0 = time.time(); per = 100; b = 0
    while not stop.is_set():
        due = t0 + b * per / rate
        wait = due - time.time()
        if wait > 0: time.sleep(wait); continue
        body = "".join(json.dumps({"message": "steady", "b": b, "n": n, "user.name": f"u{n%50}", "source.ip": f"198.51.100.{n%200}"}) + "\n" for n in range(per)).encode()
        post(caddr, ctok, body); sent[0] += per; b += 1
th = threading.Thread(target=sender); c1 = cpu([p[0].pid for p in procs]) + cpu([nats.pid])
th.start(); t0 = time.time()
while time.time() - t0 < steady_secs:
    time.sleep(1)
    l = metric(daddr, dtok, "mamori_cluster_consumer_lag_events"); s_ = metric(saddr, stok, "mamori_cluster_store_lag_events")
    if l is not None: lags.append(l)
    if s_ is not None: slags.append(s_)
stop.set(); th.join(); el = time.time() - t0
c_steady = cpu([p[0].pid for p in procs]) + cpu([nats.pid]) - c1
def pct(xs, q): xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
for p in procs: p[0].terminate(); p[0].wait()
nats.terminate(); nats.wait()
subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", f"DROP SCHEMA {schema} CASCADE"])
shutil.rmtree(root)
print(f"events {N}")
print(f"embedded: acked in {t_ack:.2f}s ({N/t_ack:.0f} ev/s), searchable after {t_srch:.2f}s, CPU {c_emb:.1f}s")
print(f"cluster : acked in {t_cack:.2f}s ({N/t_cack:.0f} ev/s), searchable on the store after {t_csrch:.2f}s, CPU mamori {c_cl:.1f}s + nats {c_nats:.1f}s")
print(f"ratio ack throughput cluster/embedded = {t_ack/t_cack:.2f}; CPU-seconds per event cluster/embedded = {(c_cl+c_nats)/c_emb:.2f}")
print(f"events/s per CPU-second: embedded {N/c_emb:.0f}, cluster {N/(c_cl+c_nats):.0f} (mamori {N/c_cl:.0f}, nats alone {N/max(c_nats, 1e-9):.0f})")
print(f"steady load: {sent[0]} events at {rate:.0f} ev/s target ({sent[0]/el:.0f} achieved) for {el:.0f}s, cluster CPU {c_steady:.1f}s ({c_steady/el*100:.0f}% of a core)")
print(f"  detectors' consumer lag (events): median {pct(lags, .5):.0f}, p95 {pct(lags, .95):.0f}, max {max(lags or [float('nan')]):.0f} over {len(lags)} samples")
print(f"  store lag (events): median {pct(slags, .5):.0f}, p95 {pct(slags, .95):.0f}, max {max(slags or [float('nan')]):.0f} over {len(slags)} samples")

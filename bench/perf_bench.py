"""How fast ccemu itself is: every case of the performance issue, one subprocess each.

``python -m bench.perf_bench [--skip-16k]`` prints, per case, the wall time of the timed part, that
time over an in-run reference (``np.add`` of two 64 MiB float32 arrays into a third, measured in
the same run, so that a slower or busier host shows as a larger reference rather than a larger
ratio), and the case's peak RSS. Topology builds and JIT are outside the timed call (the cases
run it once first) and reported beside it; the cold case compiles into an empty Numba cache
(``NUMBA_CACHE_DIR`` set to a new folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

# Each case: a name and the Python code of its subprocess, which prints one JSON line with
# "timed_s", optionally "setup_s" and "note".
_PRELUDE = """
import json, resource, time
import collectives
from topologies import preset
def warm():  # compile the jitted model once, outside the timed call
    collectives.simulate("allreduce", 1 << 20, preset("dgx-h100", nodes=2), algorithm="ring")
def built(name, **kw):
    t0 = time.perf_counter(); t = preset(name, **kw); t.arrays.routing; t.peak_bw_GBps()
    return t, time.perf_counter() - t0
def timed(fn):
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0
def report(**kw):
    kw["rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(kw))
"""

CASES = {
    "hierarchical allreduce, 16384 devices (dgx-h100 x2048)": """
warm(); t, setup = built("dgx-h100", nodes=2048)
r, s = timed(lambda: collectives.simulate("allreduce", 1 << 28, t, algorithm="hierarchical"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.1f} GB/s")
""",
    "hierarchical allreduce, 4096 devices (dgx-h100 x512)": """
warm(); t, setup = built("dgx-h100", nodes=512)
r, s = timed(lambda: collectives.simulate("allreduce", 1 << 28, t, algorithm="hierarchical"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.1f} GB/s")
""",
    "direct all-to-all, 1024 devices (dgx-h100 x128)": """
warm(); t, setup = built("dgx-h100", nodes=128)
r, s = timed(lambda: collectives.simulate("alltoall", 1 << 30, t, algorithm="direct"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.2f} GB/s")
""",
    "pairwise all-to-all, 1024 devices (dgx-h100 x128)": """
warm(); t, setup = built("dgx-h100", nodes=128)
r, s = timed(lambda: collectives.simulate("alltoall", 1 << 30, t, algorithm="pairwise"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.2f} GB/s")
""",
    "direct all-to-all, 16384 devices (dgx-h100 x2048)": """
warm(); t, setup = built("dgx-h100", nodes=2048)
r, s = timed(lambda: collectives.simulate("alltoall", 1 << 30, t, algorithm="direct"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.2f} GB/s")
""",
    "pairwise all-to-all, 16384 devices (dgx-h100 x2048)": """
warm(); t, setup = built("dgx-h100", nodes=2048)
r, s = timed(lambda: collectives.simulate("alltoall", 1 << 30, t, algorithm="pairwise"))
report(timed_s=s, setup_s=setup, note=f"busbw {r.busbw_GBps:.2f} GB/s")
""",
    "best allreduce, 1440 devices (gb200-nvl72 x20), per size": """
warm(); t, setup = built("gb200-nvl72", nodes=20)
times = []
for nb in (1 << 20, 1 << 28):
    r, s = timed(lambda: collectives.simulate("allreduce", nb, t, algorithm="best", candidates=True))
    times.append(s)
why = [c.skipped or "" for c in r.candidates if c.result is None]
pruned = sum(1 for w in why if w.startswith("pruned"))
skipped = sum(1 for w in why if not w.startswith("pruned") and "reducing switch" not in w)
report(timed_s=max(times), setup_s=setup, note=f"1M {times[0]:.1f} s, 256M {times[1]:.1f} s; {len(r.candidates)} "
       f"candidates: {pruned} pruned by their lower bound, {skipped} skipped (in_network cannot run there)")
""",
    "20-size sweep vs one size, ring allreduce, 1024 devices": """
warm(); t, setup = built("dgx-h100", nodes=128)
collectives.simulate("allreduce", 1 << 20, t, algorithm="ring")
sizes = [int(1024 * 1.9 ** i) // 4 * 4 for i in range(20)]
_, one = timed(lambda: collectives.simulate("allreduce", sizes[-1] + 4, t, algorithm="ring"))
_, all20 = timed(lambda: [collectives.simulate("allreduce", n, t, algorithm="ring") for n in sizes])
report(timed_s=all20, setup_s=setup, note=f"one size {one:.2f} s; sweep / one = {all20 / one:.1f}")
""",
    "local run(), ring allreduce 8 x 16 MiB, vs the memory-traffic bound": """
import numpy as np
data = np.ones((8, 4 << 20), np.float32)
collectives.run("allreduce", data[:, :1024], algorithm="ring")
out = np.empty_like(data)
def bound():
    t0 = time.perf_counter(); np.copyto(out, data); return time.perf_counter() - t0
b = min(bound() for _ in range(5))
s = min(timed(lambda: collectives.run("allreduce", data, algorithm="ring"))[1] for _ in range(5))
report(timed_s=s, note=f"input read and output written once: {b * 1e3:.1f} ms; run / bound = {s / b:.1f}")
""",
}

CLI_CASES = {
    "main job, ccemu bench allreduce -b 8 -e 128M -f 2 (warm)": ["bench", "allreduce", "-b", "8", "-e", "128M",
                                                                   "-f", "2"],
    "ccemu compare --nodes 1,4 (no data)": ["compare", "--nodes", "1,4"],
}


def _reference_s() -> float:
    a = np.ones(16 << 20, np.float32)
    b = np.ones_like(a)
    c = np.empty_like(a)
    np.add(a, b, out=c)
    best = np.inf
    for _ in range(7):
        t0 = time.perf_counter()
        np.add(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return best


def _python(code: str, env=None, timeout=1800) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_PRELUDE) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(argv, env=None, timeout=1800) -> dict:
    code = ("import resource, subprocess, sys, time, json\n"
            f"t0 = time.perf_counter(); p = subprocess.run([sys.executable, '-m', 'bench', *{argv!r}], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
            "s = time.perf_counter() - t0\n"
            "print(json.dumps({'timed_s': s, 'rc': p.returncode, "
            "'rss_MB': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--skip-16k", action="store_true", help="leave out the 16384-device cases")
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this text")
    args = ap.parse_args(argv)
    ref = _reference_s()
    print(f"# in-run reference: np.add of 2 x 64 MiB float32 into a third, {ref * 1e3:.2f} ms (best of 7)")
    print(f"# {'case':<66s} {'timed s':>8s} {'/ ref':>8s} {'setup s':>8s} {'peak RSS MB':>12s}  note")
    rows = []
    with tempfile.TemporaryDirectory() as cold_cache:
        cold_env = dict(os.environ, NUMBA_CACHE_DIR=cold_cache)
        cases = [(f"first simulate in a fresh install (JIT into an empty cache)", "py",
                  'r, s = timed(lambda: collectives.simulate("allreduce", 1 << 20, "atlas800t-a2"))\n'
                  'report(timed_s=s, note="compile and first call")', cold_env),
                 ("main job cold (empty Numba cache)", "cli", CLI_CASES[next(iter(CLI_CASES))],
                  dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=cold_cache)))]
        cases += [(name, "cli", argv, None) for name, argv in CLI_CASES.items()]
        cases += [(name, "py", code, None) for name, code in CASES.items()]
        for name, kind, what, env in cases:
            if args.skip_16k and "16384" in name or (args.only and args.only not in name):
                continue
            r = _python(what, env) if kind == "py" else _cli(what, env)
            rows.append((name, r))
            if "error" in r:
                print(f"  {name:<66s} failed: {r['error']}")
                continue
            setup = f"{r['setup_s']:.2f}" if "setup_s" in r else "-"
            print(f"  {name:<66s} {r['timed_s']:8.2f} {r['timed_s'] / ref:8.0f} {setup:>8s} {r['rss_MB']:12.0f}  "
                  f"{r.get('note', '')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long ccemu takes to time one training step of a 1024-device DeepSeek-V3-like workload.

``python -m bench.workload_bench`` runs, each in a fresh process (the Numba cache already warm),
the built-in ``deepseek-v3`` workload (PP 8, EP 8, ZeRO-1 data parallelism over the rest; see
``workloads/data/models.json``) on

- ``hgx-h20`` with ``nodes=128`` (1024 GPUs), and
- the first 1024 NPUs of three CloudMatrix 384 supernodes,
  ``take_devices(preset("cloudmatrix384", nodes=3), 1024)``,

and prints per case the time to build the topology, the time to time the step (every collective
of every group on the whole fabric, the compute, the overlap rules), their sum, the peak RSS and
the step's emulated figures. ``--set KEY=VALUE`` changes the workload (as ``ccemu workload --set``);
``--json FILE`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CASES = {
    "hgx-h20 nodes=128 (1024 GPUs)": 'preset("hgx-h20", nodes=128)',
    "cloudmatrix384 nodes=3, first 1024 NPUs": 'take_devices(preset("cloudmatrix384", nodes=3), 1024)',
}

_CODE = """
import json, resource, sys, time
from topologies import preset
from topologies.whatif import take_devices
from workloads import load_workload
from workloads.step import simulate_step
w = load_workload("deepseek-v3")
over = json.loads(sys.argv[1])
if over:
    w = w.with_overrides(over)
t0 = time.perf_counter()
topo = {topo}
topo.arrays.routing
t1 = time.perf_counter()
r = simulate_step(w, topo)
t2 = time.perf_counter()
print(json.dumps({{"topology_s": t1 - t0, "step_s_wall": t2 - t1, "total_s": t2 - t0, "system": r.system,
                  "devices": r.devices, "emulated_step_s": r.step_s, "tokens_per_s": r.tokens_per_s,
                  "exposed_comm_share": r.exposed_comm_s / r.step_s, "mfu": r.mfu,
                  "rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(overrides: dict | None = None) -> list[dict]:
    rows = []
    for name, topo in CASES.items():
        code = textwrap.dedent(_CODE.format(topo=topo))
        out = subprocess.run([sys.executable, "-c", code, json.dumps(overrides or {})], capture_output=True,
                             text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"{name}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
        rows.append({"case": name, **json.loads(out.stdout.strip().splitlines()[-1])})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.workload_bench", description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the workload")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    from .workload_cmd import overrides
    rows = run(overrides(args.set))
    print("# deepseek-v3 (built-in workload) on 1024 devices: wall seconds on this host (one fresh process each)")
    print(f"{'case':42s} {'topology':>9s} {'step':>7s} {'total':>7s} {'RSS MB':>7s}  emulated step, tokens/s, "
          f"exposed comm, MFU")
    for r in rows:
        print(f"{r['case']:42s} {r['topology_s']:9.1f} {r['step_s_wall']:7.1f} {r['total_s']:7.1f} {r['rss_MB']:7.0f}  "
              f"{r['emulated_step_s']:.2f} s, {r['tokens_per_s']:,.0f}, {r['exposed_comm_share']:.1%}, {r['mfu']:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

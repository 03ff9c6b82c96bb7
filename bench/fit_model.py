"""Fit the NVLink constants of the network model on the published measurements.

``python -m bench.fit_model`` fits the constants of link kind ``nvlink`` on the data sets of
``bench/data/calibration.json`` that measure NVLink systems. Link bandwidths and latencies stay
those of the presets (hardware.md); only the link kind's constants move, and they apply to every
NVLink preset alike (no per-preset factor):

1. Simple's ``efficiency`` from the two peak figures alone: the 8x A100 allreduce plateau
   (231.6 GB/s busbw on 300 GB/s per GPU) and the 8x H100 ring peak (365-370 on 450). NVLink3
   reaches a little less of its line rate than NVLink4, and one constant serves both: the value
   that makes the two relative errors equal and opposite.
2. The per-message and per-call costs of the three protocol regimes (six constants) on the A100
   allreduce curve and the DGX-A100 ring latency by GPU count, with that efficiency fixed.

It prints the constants to paste into ``NVLINK`` in ``topologies/model.py``.

The objective is the mean over data sets of each one's mean squared log error (a measured range
counts as exact inside it), so small and large messages, and the two data sets, weigh alike.
Nelder-Mead from the committed constants, deterministic; ``--check`` runs a short fit from the committed constants and exits 1
if it lowers the objective by more than 0.1%, i.e. if the committed constants are not (locally)
the fit's (what the tests run; flat directions, such as a regime that never wins, may drift freely).
"""

from __future__ import annotations

import argparse
import math
import sys

from topologies.model import LINK_DEFAULTS

from . import calibration

KIND = "nvlink"
NAMES = ("msg_us", "ll128_msg_us", "ll_msg_us", "call_us", "ll128_call_us", "ll_call_us")
DATASETS = ("a100_allreduce_curve", "dgx_a100_ring_latency")


def peak_efficiency(datasets) -> float:
    """Efficiency e with 300 e / A100 plateau - 1 = 1 - 450 e / H100 ring peak (range midpoint):
    equal and opposite relative errors on the two peak figures."""
    a100 = datasets["a100_allreduce_curve"]["points"][-1][1]  # the 8 GiB plateau
    h100 = sum(datasets["h100_ring_peak"]["range"]) / 2
    return 2.0 / (300.0 / a100 + 450.0 / h100)  # hardware.md: 300 and 450 GB/s per GPU, uni


def objective(theta, data, efficiency) -> float:
    if any(v < 0 for v in theta):
        return math.inf
    params = dict(zip(NAMES, theta), efficiency=efficiency)
    preds = calibration.predictions({KIND: params}, data)
    per_set = []
    for rows in preds.values():
        errs = [math.log(r["predicted"] / r["measured"]) ** 2 for r in rows]
        per_set.append(sum(errs) / len(errs))
    return sum(per_set) / len(per_set)


def nelder_mead(f, x0, step=0.1, iters=200, tol=1e-7):
    """Plain Nelder-Mead (relative initial steps); returns (best x, best f)."""
    n = len(x0)
    pts = [list(x0)]
    for i in range(n):
        x = list(x0)
        x[i] = x[i] * (1 + step) if x[i] else step
        pts.append(x)
    vals = [f(p) for p in pts]
    for _ in range(iters):
        order = sorted(range(n + 1), key=lambda i: vals[i])
        pts = [pts[i] for i in order]
        vals = [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) <= tol * max(1.0, abs(vals[0])):
            break
        centroid = [sum(p[j] for p in pts[:-1]) / n for j in range(n)]
        refl = [c + (c - w) for c, w in zip(centroid, pts[-1])]
        fr = f(refl)
        if fr < vals[0]:
            exp = [c + 2 * (c - w) for c, w in zip(centroid, pts[-1])]
            fe = f(exp)
            pts[-1], vals[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = refl, fr
        else:
            con = [c + 0.5 * (w - c) for c, w in zip(centroid, pts[-1])]
            fc = f(con)
            if fc < vals[-1]:
                pts[-1], vals[-1] = con, fc
            else:
                pts = [pts[0]] + [[b + 0.5 * (x - b) for b, x in zip(pts[0], p)] for p in pts[1:]]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    best = min(range(n + 1), key=lambda i: vals[i])
    return pts[best], vals[best]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fit_model", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--check", action="store_true", help="short fit; exit 1 if it improves on the committed constants")
    args = ap.parse_args(argv)
    all_data = calibration.load()
    data = {k: all_data[k] for k in DATASETS}
    eff = round(peak_efficiency(all_data), 4)
    committed_eff = LINK_DEFAULTS[KIND]["efficiency"]
    x0 = [LINK_DEFAULTS[KIND][k] for k in NAMES]
    f0 = objective(x0, data, eff)
    x, fx = nelder_mead(lambda t: objective(t, data, eff), x0, step=0.02 if args.check else 0.15,
                        iters=30 if args.check else args.iters)
    print(f"efficiency from the peak figures: {eff:.4f} (committed {committed_eff})")
    print(f"objective (mean squared log error): committed {f0:.6f}, fitted {fx:.6f}")
    print(f'NVLINK = {{"efficiency": {eff:.4g}, ' + ", ".join(f'"{k}": {v:.4g}' for k, v in zip(NAMES, x)) + "}")
    if args.check and abs(committed_eff - eff) > 1e-4:
        print(f"committed efficiency {committed_eff} is not the peak figures' {eff:.4f}")
        return 1
    if args.check:
        if fx < f0 * (1 - 1e-3):
            print("committed constants are not the fit's: a short fit improves the objective by "
                  f"{(1 - fx / f0) * 100:.2f}%")
            return 1
        print("committed constants reproduced: a short fit improves the objective by less than 0.1%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

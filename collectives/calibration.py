"""Calibration: the published measurements against the model, and the fit of the model's constants.

The measurements live in ``topologies/data/calibration.json`` (each data set with its source); the
constants in ``topologies/data/model.json`` (:mod:`topologies.model`). :func:`predictions`
evaluates every data set under given model parameters and returns, per point, what was measured
and what the model predicts; :func:`summary` gives the median and maximum absolute relative error
per data set. ``ccemu validate`` prints both.

:func:`fit` fits the constants of link kind ``nvlink`` on the data sets that measure NVLink
systems. Link bandwidths and latencies stay those of the presets (docs/hardware.md); only the link
kind's constants move, and they apply to every NVLink preset alike (no per-preset factor):

1. Simple's ``efficiency`` from the two peak figures alone: the 8x A100 allreduce plateau
   (231.6 GB/s busbw on 300 GB/s per GPU) and the 8x H100 ring peak (365-370 on 450). NVLink3
   reaches a little less of its line rate than NVLink4, and one constant serves both: the value
   that makes the two relative errors equal and opposite.
2. The per-message and per-call costs of the three protocol regimes (six constants) on the A100
   allreduce curve and the DGX-A100 ring latency by GPU count, with that efficiency fixed.

The objective is the mean over data sets of each one's mean squared log error (a measured range
counts as exact inside it), so small and large messages, and the two data sets, weigh alike.
Nelder-Mead from the committed constants, deterministic. ``ccemu fit --write`` writes the result
(and the entries derived from it) into the model data file; ``ccemu fit --check`` runs a short fit
from the committed constants and fails if it lowers the objective by more than 0.1%, i.e. if the
committed constants are not (locally) the fit's (flat directions, such as a regime that never
wins, may drift freely).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
from dataclasses import dataclass

from topologies import model as _model
from topologies import preset
from topologies.network import simulate_transfers
from topologies.whatif import take_devices

from .timing import simulate

DATA_FILE = os.path.join(os.path.dirname(_model.__file__), "data", "calibration.json")


def load(path: str = DATA_FILE) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if doc.get("schema") != "ccemu-calibration" or doc.get("version") != 1:
        raise ValueError(f"{path}: not a ccemu-calibration version 1 file")
    return doc["datasets"]


def _topology(name, cache):
    if name not in cache:
        cache[name] = preset(name)
    return cache[name]


def predictions(model: dict | None = None, datasets: dict | None = None) -> dict[str, list[dict]]:
    """``{dataset: [{"x", "measured", "predicted", "unit"}, ...]}`` under model overrides ``model``.

    A measured range (``[lo, hi]``) counts as its midpoint; its points carry ``lo``/``hi`` too.
    """
    datasets = datasets or load()
    topos = {}
    out = {}
    for name, ds in datasets.items():
        rows = []
        if name == "a100_allreduce_curve":
            t = _topology(ds["topology"], topos)
            for size, busbw in ds["points"]:
                r = simulate(ds["collective"], size, t, algorithm="ring", model=model)
                rows.append(_row(size, busbw, r.busbw_GBps, "GB/s"))
        elif name == "dgx_a100_ring_latency":
            base = _topology(ds["topology"], topos)
            for k, lat_us in ds["points_by_devices"]:
                sub = take_devices(base, k)
                r = simulate(ds["collective"], ds["nbytes"], sub, algorithm=ds["algorithm"],
                                         channels=ds["channels"], model=model)
                rows.append(_row(k, lat_us, r.time_s * 1e6, "us"))
        elif name == "h100_ring_peak":
            t = _topology(ds["topology"], topos)
            r = simulate(ds["collective"], ds["nbytes"], t, algorithm=ds["algorithm"], model=model)
            rows.append(_row(ds["nbytes"], ds["range"], r.busbw_GBps, "GB/s"))
        elif name in ("mi300x_link", "ascend_910b_link"):
            t = _topology(ds["topology"], topos)
            rows.append(_row("one link", ds["single_range"], _link_GBps(t, [(0, 1)], model), "GB/s"))
            if "all_links_range" in ds:
                pairs = [(0, j) for j in range(1, t.num_devices)]
                rows.append(_row("all links", ds["all_links_range"], _link_GBps(t, pairs, model), "GB/s"))
        else:
            raise ValueError(f"calibration data set {name!r} has no case")
        out[name] = rows
    return out


def _link_GBps(topo, pairs, model, nbytes=1 << 30):
    """Per-transfer bandwidth of large one-sided transfers from device 0 to each peer at once."""
    src = [a for a, _ in pairs]
    dst = [b for _, b in pairs]
    r = simulate_transfers(topo, src, dst, [nbytes] * len(pairs), model=model)
    return nbytes / float(r.end_s.max()) / 1e9


def _row(x, measured, predicted, unit):
    row = {"x": x, "predicted": float(predicted), "unit": unit}
    if isinstance(measured, (list, tuple)):
        row["lo"], row["hi"] = measured
        row["measured"] = (measured[0] + measured[1]) / 2
        # Inside the published range counts as no error.
        lo, hi = measured
        row["error"] = 0.0 if lo <= predicted <= hi else min(abs(predicted - lo), abs(predicted - hi)) / row["measured"]
    else:
        row["measured"] = float(measured)
        row["error"] = abs(predicted - measured) / measured
    return row


def summary(preds: dict[str, list[dict]]) -> dict[str, dict]:
    """Median and maximum absolute relative error per data set (the A100 curve also by size band)."""
    out = {}
    for name, rows in preds.items():
        groups = {name: rows}
        if name == "a100_allreduce_curve":
            groups = {f"{name} >= 1 MiB": [r for r in rows if r["x"] >= 1 << 20],
                      f"{name} 64 KiB..1 MiB": [r for r in rows if (64 << 10) <= r["x"] <= 1 << 20],
                      f"{name} < 64 KiB": [r for r in rows if r["x"] < 64 << 10]}
        for g, rs in groups.items():
            errs = [r["error"] for r in rs]
            out[g] = {"points": len(errs), "median": statistics.median(errs), "max": max(errs)}
    return out


# -- the fit --------------------------------------------------------------------------------------

KIND = "nvlink"
NAMES = ("msg_us", "ll128_msg_us", "ll_msg_us", "call_us", "ll128_call_us", "ll_call_us")
DATASETS = ("a100_allreduce_curve", "dgx_a100_ring_latency")


def peak_efficiency(datasets) -> float:
    """Efficiency e with 300 e / A100 plateau - 1 = 1 - 450 e / H100 ring peak (range midpoint):
    equal and opposite relative errors on the two peak figures."""
    a100 = datasets["a100_allreduce_curve"]["points"][-1][1]  # the 8 GiB plateau
    h100 = sum(datasets["h100_ring_peak"]["range"]) / 2
    return 2.0 / (300.0 / a100 + 450.0 / h100)  # docs/hardware.md#nvidia-nvlink: 300 and 450 GB/s per GPU, uni


def objective(theta, data, efficiency) -> float:
    if any(v < 0 for v in theta):
        return math.inf
    params = dict(zip(NAMES, theta), efficiency=efficiency)
    preds = predictions({KIND: params}, data)
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


@dataclass
class FitResult:
    """What :func:`fit` found: the ``nvlink`` constants, and the objective before and after."""

    efficiency: float
    committed_efficiency: float
    costs: dict
    committed_objective: float
    objective: float

    @property
    def reproduces_committed(self) -> bool:
        """Whether the committed constants are the fit's: the same efficiency, and a fit from them
        that improves the objective by less than 0.1%."""
        return (abs(self.committed_efficiency - self.efficiency) <= 1e-4
                and self.objective >= self.committed_objective * (1 - 1e-3))


def fit(iters: int = 300, short: bool = False, datasets: dict | None = None) -> FitResult:
    """Fit the ``nvlink`` constants (see the module docstring); ``short`` is the quick check's fit."""
    all_data = datasets or load()
    data = {k: all_data[k] for k in DATASETS}
    eff = round(peak_efficiency(all_data), 4)
    committed = _model.LINK_DEFAULTS[KIND]
    x0 = [committed[k] for k in NAMES]
    f0 = objective(x0, data, eff)
    x, fx = nelder_mead(lambda t: objective(t, data, eff), x0, step=0.02 if short else 0.15,
                        iters=30 if short else iters)
    return FitResult(eff, committed["efficiency"], {k: float(f"{v:.4g}") for k, v in zip(NAMES, x)}, f0, fx)


def write_model(result: FitResult, path: str = _model.DATA_FILE) -> None:
    """Write ``result`` into the model data file, with every entry derived from ``nvlink`` updated."""
    from topologies.io import write_text_atomic

    doc = copy.deepcopy(_model.load_data(path))
    kinds = doc["link_kinds"]
    kinds[KIND]["efficiency"]["value"] = result.efficiency
    for k, v in result.costs.items():
        kinds[KIND][k]["value"] = v
    derive(doc)
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")


def derive(doc: dict) -> dict:
    """Set every entry that declares ``derived: {from, factor}`` to its source's value times the factor."""
    kinds = doc["link_kinds"]
    for kind, params in kinds.items():
        for name, entry in params.items():
            d = entry.get("derived")
            if d:
                entry["value"] = kinds[d["from"]][name]["value"] * d["factor"]
    return doc

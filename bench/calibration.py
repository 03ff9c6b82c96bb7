"""Calibration cases: the published measurements of ``bench/data/calibration.json`` against the model.

:func:`predictions` evaluates every data set under given model parameters and returns, per point,
what was measured and what the model predicts; :func:`summary` gives the median and maximum
absolute relative error per data set. ``ccemu validate`` prints both; ``bench/fit_model.py`` fits
the free parameters on the same cases.
"""

from __future__ import annotations

import json
import os
import statistics

import collectives
from topologies import preset
from topologies.network import simulate_transfers
from topologies.whatif import take_devices

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "calibration.json")


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
                r = collectives.simulate(ds["collective"], size, t, algorithm="ring", model=model)
                rows.append(_row(size, busbw, r.busbw_GBps, "GB/s"))
        elif name == "dgx_a100_ring_latency":
            base = _topology(ds["topology"], topos)
            for k, lat_us in ds["points_by_devices"]:
                sub = take_devices(base, k)
                r = collectives.simulate(ds["collective"], ds["nbytes"], sub, algorithm=ds["algorithm"],
                                         channels=ds["channels"], model=model)
                rows.append(_row(k, lat_us, r.time_s * 1e6, "us"))
        elif name == "h100_ring_peak":
            t = _topology(ds["topology"], topos)
            r = collectives.simulate(ds["collective"], ds["nbytes"], t, algorithm=ds["algorithm"], model=model)
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

"""Calibration: the published measurements against the model, and the fit of the model's constants.

The measurements live in ``topologies/data/calibration.json``: each data set names its source and,
under ``conditions``, how it was measured: the library and version that ran (``library``,
``version``, the one libraries.md documents nearest to ``measured_version``), any algorithm forced
through the library's environment (``env``, e.g. ``NCCL_ALGO=NVLS``; the tuner is then checked
only where nothing is forced), and how many GPUs one process drove (``gpus_per_process``:
nccl-tests ``-g 8`` launches 8 kernels from one thread, a cost of the measurement, ``launch``
``us_per_extra_gpu`` per GPU after the first, never a library constant). :func:`predictions`
evaluates every data set under those conditions, through the library model's own pick
(``simulate(..., algorithm="auto", library=...)``), and says per point what ran; :func:`summary`
gives the median and maximum absolute relative error per data set and size band, against the
``targets`` the data file sets. ``ccemu validate`` prints both.

The constants live in ``topologies/data/model.json`` (:mod:`topologies.model`). :func:`fit` fits
them group by group, each group on the data sets that measure its hardware. Link bandwidths and
latencies stay those of the presets (docs/hardware.md); only per-link-kind, per-switch-generation
and per-library constants move, and they apply to every preset alike (no per-preset factor):

- ``nvlink``: Simple's ``efficiency`` from the two peak figures (the 8x A100 plateau and the 8x
  H100 ring peak: equal and opposite relative errors), then the six per-message and per-call
  costs, the launch cost of ``-g`` runs and NVSwitch gen3's in-network reduction rate on the A100
  curve (A), the ring latency by GPU count (B) and the H100 NVLS curve (D).
- ``xgmi``: the efficiency and the Simple and LL per-message and per-call costs on the MI300X
  RCCL curve and its small-message times (E) with the xGMI link figures (C: one link alone, and
  all 7 busy); RCCL runs no LL128 there, so LL128's stay NVLink's (derived).
- ``hccl``: HCCL's ``bw_efficiency`` on the 910B peaks by card count (F), the value with the
  smallest largest relative error.

The objective of a group is the mean over its data sets of each one's mean squared log error (a
measured range counts as exact inside it), so small and large messages, and data sets, weigh
alike. Nelder-Mead from the committed constants, deterministic. ``ccemu fit --write`` writes the
result (and the entries derived from it) into the data files; ``ccemu fit --check`` runs a short fit
from the committed constants and fails if it lowers an objective by more than 0.1%, i.e. if the
committed constants are not (locally) the fit's (flat directions, such as a regime that never
wins, may drift freely).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import statistics
from dataclasses import dataclass

from topologies import Topology, preset
from topologies import model as _model
from topologies.network import simulate_transfers
from topologies.whatif import take_devices

from .timing import simulate

DATA_FILE = os.path.join(os.path.dirname(_model.__file__), "data", "calibration.json")


def load_document(path: str = DATA_FILE) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if doc.get("schema") != "ccemu-calibration" or doc.get("version") != 1:
        raise ValueError(f"{path}: not a ccemu-calibration version 1 file")
    return doc


def load(path: str = DATA_FILE) -> dict:
    return load_document(path)["datasets"]


# -- the constants a fit moves, by name ------------------------------------------------------------
# "<link kind>.<param>" (model.json link_kinds), "switch.<generation>.reduce_GBps" (model.json
# switches), "library.<name>.bw_efficiency" (model.json libraries), "launch.us_per_extra_gpu"
# (calibration.json launch: a property of the measurements).

def committed(model_path: str = _model.DATA_FILE, data_path: str = DATA_FILE) -> dict:
    """Every named constant with its committed value."""
    doc = _model.load_data(model_path)
    out = {f"{k}.{p}": float(e["value"]) for k, ps in doc["link_kinds"].items() for p, e in ps.items()}
    out.update({f"switch.{k}.{p}": float(e["value"]) for k, ps in doc.get("switches", {}).items() for p, e in ps.items()})
    out.update({f"library.{k}.{p}": float(e["value"]) for k, ps in doc.get("libraries", {}).items() for p, e in ps.items()})
    out["launch.us_per_extra_gpu"] = float(load_document(data_path)["launch"]["us_per_extra_gpu"]["value"])
    return out


class _Context:
    """The constants of one evaluation, applied: model overrides, rebuilt topologies, the launch cost."""

    def __init__(self, constants: dict):
        base = committed()
        self.c = {**base, **constants}
        self.model = {}
        for name, v in constants.items():
            kind, _, param = name.partition(".")
            if kind in _model.LINK_DEFAULTS and param in _model.LINK_PARAMS:
                self.model.setdefault(kind, {})[param] = v
        self.launch_us = self.c["launch.us_per_extra_gpu"]
        self.libraries = {n.split(".")[1]: v for n, v in self.c.items() if n.startswith("library.")}
        self.switches = {n.split(".")[1]: v for n, v in self.c.items() if n.startswith("switch.")}
        self._topos = {}

    def topology(self, name):
        if name not in self._topos:
            t = preset(name)
            # A reducing switch's rate comes from its generation's constant: rebuild with this one.
            g = t.graph
            gens = {n: d["switch_generation"] for n, d in g.nodes(data=True) if d.get("switch_generation")}
            if any(self.switches.get(gen) != _model.SWITCH_DEFAULTS[gen]["reduce_GBps"] for gen in gens.values()):
                g = g.copy()
                for n, gen in gens.items():
                    g.nodes[n]["reduce_bw_GBps"] = self.switches[gen]
                t = Topology(g, name=t.name)
            self._topos[name] = t
        return self._topos[name]

    @contextlib.contextmanager
    def library_efficiency(self):
        """The libraries' ``bw_efficiency`` of these constants, for the calls inside."""
        saved = copy.deepcopy(_model.LIBRARY_DEFAULTS)
        try:
            for lib, v in self.libraries.items():
                _model.LIBRARY_DEFAULTS.setdefault(lib, {})["bw_efficiency"] = v
            yield
        finally:
            _model.LIBRARY_DEFAULTS.clear()
            _model.LIBRARY_DEFAULTS.update(saved)


def _call(ds, nbytes, topo, ctx):
    """``(time_us, busbw_GBps, what ran)`` of one measured call under the data set's conditions."""
    cond = ds.get("conditions", {})
    if "algorithm" in ds:   # a ccemu algorithm forced (the condition has no library override for it)
        kw = {"algorithm": ds["algorithm"], **({"channels": ds["channels"]} if "channels" in ds else {})}
    else:
        kw = {"algorithm": "auto", "library": cond["library"], "library_version": cond.get("version"),
              "library_env": cond.get("env")}
    with ctx.library_efficiency():
        r = simulate(ds["collective"], nbytes, topo, model=ctx.model or None, **kw)
    t_us = r.time_s * 1e6
    launch = ctx.launch_us * (cond.get("gpus_per_process", 1) - 1)
    busbw = r.busbw_GBps * t_us / (t_us + launch) if t_us + launch > 0 else 0.0
    c = r.library_choice
    ran = r.algorithm if c is None else f"{c.algorithm}/{c.protocol}/{c.channels or '-'}ch as {r.algorithm}"
    return t_us + launch, busbw, ran


def predictions(constants: dict | None = None, datasets: dict | None = None) -> dict[str, list[dict]]:
    """``{dataset: [{"x", "measured", "predicted", "unit", "error", "ran"}, ...]}`` with ``constants``
    (named as :func:`committed` names them) replacing the committed ones.

    A measured range (``[lo, hi]``) counts as its midpoint; its points carry ``lo``/``hi`` too.
    """
    datasets = datasets or load()
    ctx = _Context(dict(constants or {}))
    out = {}
    for name, ds in datasets.items():
        metric = ds["metric"]
        rows = []
        if metric == "link_GBps":
            t = ctx.topology(ds["topology"])
            rows.append(_row("one link", ds["single_range"], _link_GBps(t, [(0, 1)], ctx.model), "GB/s"))
            if "all_links_range" in ds:
                pairs = [(0, j) for j in range(1, t.num_devices)]
                rows.append(_row("all links", ds["all_links_range"], _link_GBps(t, pairs, ctx.model), "GB/s"))
        elif "range" in ds:
            t = ctx.topology(ds["topology"])
            _, bw, ran = _call(ds, ds["nbytes"], t, ctx)
            rows.append(_row(ds["nbytes"], ds["range"], bw, "GB/s", ran))
        elif "points_by_devices" in ds:
            base = ctx.topology(ds["topology"])
            for k, measured in ds["points_by_devices"]:
                sub = take_devices(base, k)
                if metric == "peak_busbw_GBps":   # the best busbw over the measured sweep (powers of two)
                    lo, hi = ds["conditions"]["sweep"]
                    sizes = [1 << e for e in range(max(0, lo - 1).bit_length(), hi.bit_length())]
                    best = max((_call(ds, s, sub, ctx) for s in sizes), key=lambda x: x[1])
                    rows.append(_row(k, measured, best[1], "GB/s", best[2]))
                else:
                    t_us, _, ran = _call(ds, ds["nbytes"], sub, ctx)
                    rows.append(_row(k, measured, t_us, "us", ran))
        else:
            t = ctx.topology(ds["topology"])
            for size, measured in ds["points"]:
                t_us, bw, ran = _call(ds, size, t, ctx)
                if metric == "time_us":
                    rows.append(_row(size, measured, t_us, "us", ran))
                else:
                    rows.append(_row(size, measured, bw, "GB/s", ran))
        out[name] = rows
    return out


def _link_GBps(topo, pairs, model, nbytes=1 << 30):
    """Per-transfer bandwidth of large one-sided transfers from device 0 to each peer at once."""
    src = [a for a, _ in pairs]
    dst = [b for _, b in pairs]
    r = simulate_transfers(topo, src, dst, [nbytes] * len(pairs), model=model or None)
    return nbytes / float(r.end_s.max()) / 1e9


def _row(x, measured, predicted, unit, ran=None):
    row = {"x": x, "predicted": float(predicted), "unit": unit}
    if ran is not None:
        row["ran"] = ran
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


#: Size bands of the curves (A, D, E), as the acceptance targets name them.
BANDS = ((">= 1 MiB", 1 << 20, math.inf), ("64 KiB..1 MiB", 64 << 10, 1 << 20), ("< 64 KiB", 0, (64 << 10) - 1))


def summary(preds: dict[str, list[dict]], datasets: dict | None = None) -> dict[str, dict]:
    """Median and maximum absolute relative error per data set (a curve's also by size band), with
    the data set's target for it (``datasets[...]["targets"]``: ``{band or "all": {"median"|"max": x}}``)
    and whether it is met."""
    datasets = datasets or load()
    out = {}
    for name, rows in preds.items():
        targets = datasets.get(name, {}).get("targets", {})
        if datasets.get(name, {}).get("metric") == "busbw_GBps" and "points" in datasets.get(name, {}):
            groups = {band: [r for r in rows if lo <= r["x"] <= hi] for band, lo, hi in BANDS}
        else:
            groups = {"all": rows}
        for band, rs in groups.items():
            if not rs:
                continue
            errs = [r["error"] for r in rs]
            s = {"points": len(errs), "median": statistics.median(errs), "max": max(errs)}
            target = targets.get(band)
            if target:
                s["target"] = target
                s["met"] = all(s[k] <= v + 1e-12 for k, v in target.items())
            out[name if band == "all" else f"{name} {band}"] = s
    return out


# -- the fit --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """Constants fitted together on the data sets that measure their hardware."""

    name: str
    datasets: tuple
    params: tuple
    provenance: str


GROUPS = (
    Group("nvlink", ("a100_allreduce_curve", "dgx_a100_ring_latency", "h100_nvls_curve"),
          ("nvlink.msg_us", "nvlink.ll128_msg_us", "nvlink.ll_msg_us", "nvlink.call_us", "nvlink.ll128_call_us",
           "nvlink.ll_call_us", "launch.us_per_extra_gpu", "switch.nvswitch3.reduce_GBps"),
          "fitted (ccemu fit) on calibration sets A (8x A100 curve, NCCL's picks), B (ring latency by GPU count) "
          "and D (8x H100 NVLS curve)"),
    Group("xgmi", ("mi300x_rccl_curve", "mi300x_rccl_small", "mi300x_link"),
          ("xgmi.efficiency", "xgmi.msg_us", "xgmi.ll_msg_us", "xgmi.call_us", "xgmi.ll_call_us"),
          "fitted (ccemu fit) on calibration set E (8x MI300X RCCL curve and small-message times, RCCL's picks) "
          "and set C's xGMI link figures (one link alone, all 7 busy)"),
    Group("hccl", ("ascend_910b_by_cards",), ("library.hccl.bw_efficiency",),
          "fitted (ccemu fit) on calibration set F (910B allreduce peak by card count): the value with the smallest "
          "largest relative error; HCCL's collective data rate as a fraction of the HCCS links' one-sided rate "
          "(set C, 19-26 GB/s); HCCL's own level-0 constant is 18.3 GB/s per link (libraries.md 3.3)"),
)

KIND = "nvlink"


def peak_efficiency(datasets) -> float:
    """Efficiency e with 300 e / A100 plateau - 1 = 1 - 450 e / H100 ring peak (range midpoint):
    equal and opposite relative errors on the two peak figures."""
    a100 = datasets["a100_allreduce_curve"]["points"][-1][1]  # the 8 GiB plateau
    h100 = sum(datasets["h100_ring_peak"]["range"]) / 2
    return 2.0 / (300.0 / a100 + 450.0 / h100)  # docs/hardware.md#nvidia-nvlink: 300 and 450 GB/s per GPU, uni


def objective(values, group, data, fixed) -> float:
    if any(v < 0 for v in values):
        return math.inf
    preds = predictions({**fixed, **dict(zip(group.params, values))}, data)
    per_set = []
    for rows in preds.values():
        errs = [math.log(max(r["predicted"], 1e-12) / r["measured"]) ** 2 for r in rows]
        per_set.append(sum(errs) / len(errs))
    return sum(per_set) / len(per_set)


def max_error(values, group, data, fixed) -> float:
    preds = predictions({**fixed, **dict(zip(group.params, values))}, data)
    return max(r["error"] for rows in preds.values() for r in rows)


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


def golden_min(f, lo, hi, tol=1e-4):
    """The minimum of a unimodal ``f`` on ``[lo, hi]`` (golden-section search): ``(x, f(x))``."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    x = (a + b) / 2
    return x, f(x)


@dataclass
class GroupFit:
    """One group's fit: its constants, and its objective with the committed and the fitted ones."""

    group: Group
    values: dict
    committed_objective: float
    objective: float


@dataclass
class FitResult:
    """What :func:`fit` found: NVLink's efficiency from the peaks, and every group's constants."""

    efficiency: float
    committed_efficiency: float
    groups: list

    @property
    def constants(self) -> dict:
        out = {f"{KIND}.efficiency": self.efficiency}
        for g in self.groups:
            out.update(g.values)
        return out

    @property
    def reproduces_committed(self) -> bool:
        """Whether the committed constants are the fit's: the same efficiency, and fits from them that
        improve each group's objective by less than 0.1%."""
        return (abs(self.committed_efficiency - self.efficiency) <= 1e-4
                and all(g.objective >= g.committed_objective * (1 - 1e-3) for g in self.groups))


def fit(iters: int = 300, short: bool = False, datasets: dict | None = None, groups=GROUPS) -> FitResult:
    """Fit every group's constants in turn (see the module docstring); ``short`` is the quick check's fit."""
    all_data = datasets or load()
    eff = round(peak_efficiency(all_data), 4)
    base = committed()
    fixed = {f"{KIND}.efficiency": eff}
    out = []
    for group in groups:
        data = {k: all_data[k] for k in group.datasets}
        x0 = [base[p] for p in group.params]
        if len(group.params) == 1:     # one factor: the smallest largest relative error
            f0 = max_error(x0, group, data, fixed)
            span = 0.02 if short else 0.5
            x, fx = golden_min(lambda v: max_error([v], group, data, fixed), x0[0] * (1 - span),
                               min(1.0, x0[0] * (1 + span)))
            x = [x]
        else:
            f0 = objective(x0, group, data, fixed)
            x, fx = nelder_mead(lambda t: objective(t, group, data, fixed), x0, step=0.02 if short else 0.15,
                                iters=30 if short else iters)
        values = {p: float(f"{v:.4g}") for p, v in zip(group.params, x)}
        out.append(GroupFit(group, values, f0, fx))
        fixed.update(values)
    return FitResult(eff, base[f"{KIND}.efficiency"], out)


def write_model(result: FitResult, path: str = _model.DATA_FILE, data_path: str = DATA_FILE) -> None:
    """Write ``result`` into the model data file (and the launch cost into the calibration file),
    with every entry derived from a fitted one updated."""
    from topologies.io import write_text_atomic

    doc = copy.deepcopy(_model.load_data(path))
    cal = load_document(data_path)
    doc["link_kinds"][KIND]["efficiency"]["value"] = result.efficiency
    for g in result.groups:
        for name, v in g.values.items():
            head, _, rest = name.partition(".")
            if head == "launch":
                entry = cal["launch"][rest]
            elif head == "switch":
                gen, param = rest.split(".")
                entry = doc["switches"][gen][param]
            elif head == "library":
                lib, param = rest.split(".")
                entry = doc["libraries"][lib][param]
            else:
                entry = doc["link_kinds"][head][rest]
                entry.pop("derived", None)   # fitted on its own data now
            entry["value"] = v
            entry["provenance"] = g.group.provenance
    derive(doc)
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")
    write_text_atomic(data_path, json.dumps(cal, indent=1) + "\n")


def derive(doc: dict) -> dict:
    """Set every entry that declares ``derived: {from, factor}`` to its source's value times the factor."""
    for section in ("link_kinds", "switches"):
        entries = doc.get(section, {})
        for kind, params in entries.items():
            for name, entry in params.items():
                d = entry.get("derived")
                if d:
                    entry["value"] = entries[d["from"]][name]["value"] * d["factor"]
    return doc

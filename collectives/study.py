"""The study: one collective on one or more systems, over device counts and message sizes.

:func:`sweep` simulates (time plane only, no data) every combination of system variant and size and
returns a :class:`Study`: rows of time, algbw, busbw, peak, bus efficiency, busbw ratio and scaling
loss and the algorithm used, printable as a table (:meth:`Study.table`) and as JSON
(:meth:`Study.as_dict`). :func:`compare` runs several collectives over several systems.
``ccemu scaling`` and ``ccemu compare`` (:mod:`bench.scaling_cmd`) are their command-line faces.

How the device count varies
---------------------------
- ``devices=[2, 4, 8]``: the first ``k`` devices of one system, with the switches, NICs and CPUs
  that join them (:func:`topologies.whatif.take_devices`): a 2-GPU job on an 8-GPU server.
- ``nodes=[1, 2, 4]``: a multi-node preset built with that many servers.

Message sizes (the ``size`` column)
-----------------------------------
One convention everywhere, as in ``ccemu bench``: by default ``size`` is nccl-tests' size S
(``nbytes``). ``per_device=True`` takes ``size`` as what one device holds instead, which keeps the
per-device message the same as P grows, and S follows from it:

- allreduce, broadcast, reduce: ``nbytes = size`` (every device holds the whole buffer);
- allgather, reduce_scatter, alltoall (collectives declaring ``per_device_blocks``):
  ``nbytes = P x size``: ``size`` is one device's block (allgather: its input; reduce_scatter: its
  output; alltoall: what it sends to *each* peer).

Every table header states the convention used.

Scaling loss
------------
For the same system and size, with ``P0`` the smallest device count of the sweep on that system:
``busbw_ratio = busbw(P) / busbw(P0)`` (above 1: busbw grew), ``scaling_loss = max(0, 1 - ratio)``
(the fraction of busbw lost; 0 where nothing was lost) and ``scaling_gain = max(0, ratio - 1)``.

>>> from topologies import switch
>>> s = sweep("allreduce", [switch(8, bw_GBps=100.0, lat_us=0.0)], [2**20], devices=[2, 4], algorithm="ring")
>>> [(r["P"], r["nbytes"], round(r["busbw_GBps"], 6), round(r["busbw_ratio"], 9), round(r["scaling_loss"], 9))
...  for r in s.rows]
[(2, 1048576, 100.0, 1.0, 0.0), (4, 1048576, 100.0, 1.0, 0.0)]
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from topologies import Topology
from topologies.whatif import take_devices

from . import registry, select
from .registry import AlgorithmUnavailable
from .timing import SELECTIONS, simulate

SCHEMA = "ccemu-scaling"
VERSION = 1

ROW_KEYS = ("topology", "system", "nodes", "P", "size", "nbytes", "algorithm", "protocol", "time_s", "algbw_GBps",
            "busbw_GBps", "peak_GBps", "bus_efficiency", "busbw_ratio", "scaling_loss", "scaling_gain")


#: Sizes beyond a pebibyte per call are typing mistakes, not what-ifs.
MAX_SIZE = 2**50


def parse_size(text) -> int:
    """nccl-tests sizes: a whole number of bytes with an optional K/M/G suffix (binary: 1K = 1024).

    >>> parse_size("128M"), parse_size("8"), parse_size("1g")
    (134217728, 8, 1073741824)
    """
    t = str(text).strip()
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:].upper(), 1)
    digits = t[:-1] if mult > 1 else t
    if not digits.isdigit():
        raise ValueError(f"size {text!r} is not a whole number of bytes with an optional K/M/G suffix")
    return int(digits) * mult


def size_sweep(lo: int, hi: int, factor: float | None = None, step: int | None = None, names=None) -> list[int]:
    """Sizes from ``lo`` to ``hi`` as nccl-tests steps them: times ``factor`` (rounding down, at
    least one byte more each time), or else plus ``step``. ``names`` (four strings) name the four
    arguments in error messages, e.g. the command-line flags that gave them.

    >>> size_sweep(8, 128, factor=2)
    [8, 16, 32, 64, 128]
    >>> size_sweep(1024, 4096, step=1024)
    [1024, 2048, 3072, 4096]
    >>> size_sweep(8, 4, names=("-b 8", "-e 4", "-f", "-i"))
    Traceback (most recent call last):
    ...
    ValueError: -b 8 is larger than -e 4
    """
    n_lo, n_hi, n_factor, n_step = names or (f"smallest size {lo}", f"largest size {hi}", f"size factor {factor}",
                                             f"size increment {step}")
    if hi > MAX_SIZE:
        raise ValueError(f"{n_hi} is larger than the largest size ccemu takes (1P = {MAX_SIZE} bytes)")
    if lo > hi:
        raise ValueError(f"{n_lo} is larger than {n_hi}")
    if factor is not None:
        if not (factor > 1 and math.isfinite(factor)):
            raise ValueError(f"{n_factor} must be a factor greater than 1")
        out, s = [], lo
        while s <= hi:
            out.append(s)
            s = max(s + 1, int(s * factor))
        return out
    if step is None or step <= 0:
        raise ValueError(f"{n_step} must be positive")
    return list(range(lo, hi + 1, step)) if lo > 0 or hi > 0 else [0]


def nbytes_for(collective: str, size: int, P: int, per_device: bool = False) -> int:
    """nccl-tests' size S of a call of ``size`` bytes (per device with ``per_device``) on ``P`` devices.

    >>> nbytes_for("allreduce", 1024, 8, True), nbytes_for("allgather", 1024, 8, True), nbytes_for("alltoall", 1024, 8)
    (1024, 8192, 1024)
    """
    return registry.collective(collective).nbytes_for_size(size, P, per_device)


# -- one point --------------------------------------------------------------------------------------

def candidates(collective: str, P: int) -> tuple[list[str], list[str]]:
    """Algorithms a choice (``auto``/``best``) times on ``P`` devices, and a note on the ones it
    leaves out there (:data:`collectives.select.LARGE_P` and the algorithms' ``large_scale``).

    >>> names, notes = candidates("alltoall", 384)
    >>> "pairwise" in names, "direct" in names, notes[0].startswith("best leaves out alltoall")
    (False, True, True)
    >>> candidates("alltoall", 8)[1]
    []
    """
    names = registry.list_algorithms(collective)
    if P <= select.LARGE_P:
        return names, []
    slow = [a for a in names if not registry.info(collective, a).large_scale]
    note = (f"best leaves out {collective} {', '.join(slow)} at P > {select.LARGE_P}: "
            "collectives.select times only quick-to-emulate schedules there")
    return [a for a in names if a not in slow], [note] if slow else []


# -- system variants -------------------------------------------------------------------------------

@dataclass
class Variant:
    """One system of the sweep: ``label`` as the user named it, at ``P`` devices (and ``nodes`` servers)."""

    label: str
    topology: Topology
    nodes: int | None = None

    @property
    def P(self) -> int:
        return self.topology.num_devices


def variants(spec, devices=None, nodes=None, nic=None) -> list[Variant]:
    """The systems a sweep runs on for one ``spec`` (preset name, topology file or Topology).

    ``devices`` (first k devices, :func:`take_devices`) and ``nodes`` (servers of a preset) are
    lists of counts; give at most one of them as a list of several values (``nodes`` may be one
    value alongside ``devices``: the first k devices of that many servers).

    >>> [v.P for v in variants("hgx-h20", devices=[2, 4])], [v.P for v in variants("hgx-h20", nodes=[1, 2])]
    ([2, 4], [8, 16])
    """
    from topologies.presets import load_topology

    devices = _counts("devices", devices)
    nodes = _counts("nodes", nodes)
    if devices and nodes and len(nodes) > 1:
        raise ValueError("vary either the device count (devices) or the node count (nodes), not both")
    if isinstance(spec, Topology):
        if nodes:
            raise ValueError(f"nodes applies to presets; {spec.name!r} is a built topology")
        base, label = [(None, spec)], spec.name
    else:
        label = str(spec)
        base = [(n, load_topology(spec, nodes=n, nic=nic if n not in (None, 1) else None)) for n in (nodes or [None])]
    if not devices:
        return [Variant(label, t, n) for n, t in base]
    (n, topo), = base
    too_many = [k for k in devices if k > topo.num_devices]
    if too_many:
        hint = " (vary nodes to add servers)" if n in (None, 1) and not isinstance(spec, Topology) else ""
        raise ValueError(f"{too_many[0]} devices asked of {topo.name!r}, which has {topo.num_devices}{hint}")
    return [Variant(label, take_devices(topo, k), n) for k in devices]


def _counts(name, values):
    if values is None:
        return []
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} count {v!r}; expected an integer >= 1")
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} counts {out} repeat a value")
    return sorted(out)


# -- the sweep --------------------------------------------------------------------------------------

class Progress:
    """A one-line text progress bar on ``stream`` (redrawn with ``\\r``), silent unless ``enabled``.

    ``enabled=None`` means: only when ``stream`` is a terminal.
    """

    def __init__(self, total: int, stream=None, enabled: bool | None = None, width: int = 30):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled, self.total, self.done, self.width = enabled, max(int(total), 1), 0, width
        self._last = 0

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"[{bar}] {self.done}/{self.total} {label}"
        pad = " " * max(0, self._last - len(text))  # wipe the rest of a longer previous line
        self._last = len(text)
        self.stream.write("\r" + text + pad)
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


@dataclass
class Study:
    """Rows of one sweep (keys :data:`ROW_KEYS`; unavailable points carry ``unavailable`` and None figures)."""

    collective: str
    algorithm: str
    per_device: bool
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """The JSON document (``schema`` ``ccemu-scaling``, ``version`` 1)."""
        return {"schema": SCHEMA, "version": VERSION, "collective": self.collective, "algorithm": self.algorithm,
                "size_convention": "per-device" if self.per_device else "total", "notes": list(self.notes),
                "rows": [{k: _json_number(v) for k, v in r.items()} for r in self.rows]}

    def table(self, markdown: bool = False) -> str:
        """The rows as an aligned text table, or a markdown table with ``markdown=True``."""
        size_text = ("size = per-device message (nbytes = nccl-tests size S)" if self.per_device
                     else "size = nccl-tests size S")
        header = [f"ccemu scaling: {self.collective}, algorithm {self.algorithm}; {size_text}",
                  "ratio = busbw(P)/busbw(P0) at the same size, P0 = the smallest device count per topology; "
                  "loss = 1 - ratio where busbw fell (0 where it held or grew)"]
        header += self.notes
        cols = ["topology", "nodes", "P", "size", "nbytes", "algorithm", "time_us", "algbw GB/s", "busbw GB/s",
                "peak GB/s", "buseff", "ratio", "loss"]
        body = [[r["topology"], "-" if r["nodes"] is None else str(r["nodes"]), str(r["P"]), byte_label(r["size"]),
                 str(r["nbytes"]), r["algorithm"] if not r.get("unavailable") else "n/a",
                 _fmt(r["time_s"], 1e6, ".2f"), _fmt(r["algbw_GBps"], 1, ".2f"), _fmt(r["busbw_GBps"], 1, ".2f"),
                 _fmt(r["peak_GBps"], 1, ".1f"), _fmt(r["bus_efficiency"], 1, ".3f"),
                 _fmt(r["busbw_ratio"], 1, ".3f"), _fmt(r["scaling_loss"], 1, ".3f")] for r in self.rows]
        if any("p99_s" in r for r in self.rows):  # under an instability profile: time_us is the median
            cols.insert(7, "p99_us")
            for row, r in zip(body, self.rows):
                row.insert(7, _fmt(r.get("p99_s"), 1e6, ".2f"))
        return format_table(cols, body, header, markdown)


def sweep(collective: str, topologies, sizes, devices=None, nodes=None, algorithm: str = "auto",
          per_device: bool = False, model=None, dtype="float32", progress: Progress | None = None,
          jitter=None, seed: int = 0, iters: int = 20) -> Study:
    """Simulate ``collective`` on every system variant and size; see the module docstring.

    Parameters
    ----------
    collective : str
    topologies : list of str, topologies.Topology or Variant
        Preset names, topology files or built topologies (varied by ``devices`` / ``nodes``), or
        ready :class:`Variant` objects (used as they are).
    sizes : list of int
        Message sizes in bytes: nccl-tests' S, or per device with ``per_device=True``.
    devices, nodes : list of int, optional
        Device counts (first k devices) or server counts; see :func:`variants`.
    algorithm : str
        An algorithm name, ``"auto"`` or ``"best"`` (see :func:`collectives.simulate`).
    model : dict, optional
        Network-model overrides for every call (:func:`topologies.model.resolve`).
    jitter, seed, iters : optional
        Instability profile: each point is the median of ``iters`` seeded calls; rows also carry
        ``p99_s`` (see :func:`collectives.simulate`).
    progress : Progress, optional
        Stepped once per simulated point.

    Returns
    -------
    Study
    """
    registry.collective(collective)
    if algorithm not in SELECTIONS:
        registry.info(collective, algorithm)  # unknown names fail before any work
    if not sizes:
        raise ValueError("no message sizes given")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"message size {s!r}; expected a whole number of bytes >= 1")
    if isinstance(topologies, (str, Topology, Variant)):
        topologies = [topologies]
    # Variants given as such are used as they are: routes are cached per Topology object, and
    # building them is most of an emulated call on a big system, so callers share them.
    systems = [v for spec in topologies for v in ([spec] if isinstance(spec, Variant) else
                                                  variants(spec, devices, nodes))]
    small = [v for v in systems if v.P < 2]
    if small:
        raise ValueError(f"{small[0].label} at {small[0].P} device: busbw is 0 on one device; use 2 or more")
    study = Study(collective, algorithm, per_device)
    if algorithm in SELECTIONS:
        for v in systems:
            for note in candidates(collective, v.P)[1]:
                if note not in study.notes:
                    study.notes.append(note)
    progress = progress or Progress(len(systems) * len(sizes), enabled=False)
    for v in systems:
        for size in sizes:
            nb = nbytes_for(collective, size, v.P, per_device)
            row = {"topology": v.label, "system": v.topology.name, "nodes": v.nodes, "P": v.P, "size": size,
                   "nbytes": nb}
            try:
                r = simulate(collective, nb, v.topology, algorithm=algorithm, dtype=dtype, model=model, jitter=jitter,
                             seed=seed, iters=iters)
            except AlgorithmUnavailable as exc:
                row.update(algorithm=algorithm, protocol=None, time_s=None, algbw_GBps=None, busbw_GBps=None,
                           peak_GBps=None, bus_efficiency=None, unavailable=str(exc))
            else:
                row.update(nbytes=r.nbytes, algorithm=r.algorithm, protocol=getattr(r, "protocol", None),
                           time_s=r.time_s, algbw_GBps=r.algbw_GBps, busbw_GBps=r.busbw_GBps, peak_GBps=r.peak_GBps,
                           bus_efficiency=r.bus_efficiency)
                if jitter is not None:
                    row["p99_s"] = r.time_stats()["p99"]
            study.rows.append(row)
            progress.step(f"{v.label} P={v.P} {byte_label(size)}")
    add_scaling_loss(study.rows)
    return study


def add_scaling_loss(rows: list) -> None:
    """Set ``busbw_ratio``, ``scaling_loss`` and ``scaling_gain`` of every row against the row of the
    smallest P of the same topology and size (see the module docstring).

    >>> rows = [{"topology": "t", "size": 8, "P": p, "busbw_GBps": b} for p, b in ((4, 90.0), (2, 100.0), (8, 125.0))]
    >>> add_scaling_loss(rows); [(r["busbw_ratio"], round(r["scaling_loss"], 3), r["scaling_gain"]) for r in rows]
    [(0.9, 0.1, 0.0), (1.0, 0.0, 0.0), (1.25, 0.0, 0.25)]
    """
    base = {}
    for r in rows:
        key = (r["topology"], r["size"])
        if key not in base or r["P"] < base[key]["P"]:
            base[key] = r
    for r in rows:
        b0 = base[(r["topology"], r["size"])]["busbw_GBps"]
        b = r["busbw_GBps"]
        ratio = b / b0 if (b is not None and b0) else None
        r["busbw_ratio"] = ratio
        r["scaling_loss"] = None if ratio is None else max(0.0, 1.0 - ratio)
        r["scaling_gain"] = None if ratio is None else max(0.0, ratio - 1.0)


# -- formatting ------------------------------------------------------------------------------------

def byte_label(n: int) -> str:
    """``1K``, ``256M``, ``1G`` for binary multiples, else the byte count.

    >>> byte_label(1024), byte_label(3 * 2**20), byte_label(2**30), byte_label(1000), byte_label(1536)
    ('1K', '3M', '1G', '1000', '1536')
    """
    for unit, mult in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


def format_table(cols, body, header=(), markdown=False) -> str:
    """An aligned table with ``# `` header lines, or a markdown table (header lines as plain text)."""
    if markdown:
        # Title, then the notes as a list (plain lines would run together into one paragraph).
        lines = [header[0], *[f"- {h}" for h in header[1:]], ""] if header else []
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---:" if body and all(_numeric(row[i]) for row in body) else "---"
                                    for i in range(len(cols))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(cols)]
    lines = [f"# {h}" for h in header]
    lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
    for row in body:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    """Whether a table cell is a number (or a size label, or n/a): such columns align right."""
    t = text.strip()
    return t in ("n/a", "-") or t.lstrip("+-").replace(".", "", 1).isdigit() or (t[:-1].isdigit() and t[-1:] in "KMG")


def _fmt(value, scale, spec) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value * scale, spec)


def _json_number(v):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# -- the seed comparison ---------------------------------------------------------------------------

SEED_SYSTEMS = ("hgx-h20", "hgx-h800", "dgx-h100", "mi308x-8", "atlas800t-a2", "cloudmatrix384")
SEED_COLLECTIVES = ("allreduce", "allgather", "alltoall")
#: Systems larger than this are left out of a comparison unless asked for: at 768 devices one
#: emulated direct call takes about a minute on a 2-core host (routing every device pair).
MAX_DEVICES = 512

COMPARE_SCHEMA = "ccemu-compare"


@dataclass
class Comparison:
    """One :class:`Study` per collective over the same systems, and notes on what was left out."""

    studies: list
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"schema": COMPARE_SCHEMA, "version": VERSION, "notes": list(self.notes),
                "studies": [s.as_dict() for s in self.studies]}

    def table(self, markdown: bool = False) -> str:
        """One row per collective and system: busbw at every size, bus efficiency at the largest,
        and the algorithms chosen (with the sizes they won at)."""
        first = self.studies[0]
        sizes = sorted({r["size"] for s in self.studies for r in s.rows})
        size_text = "per-device message" if first.per_device else "nccl-tests size S"
        header = [f"ccemu compare: busbw GB/s (emulated) by {size_text}; algorithm {first.algorithm}; "
                  f"buseff = busbw / peak at {byte_label(sizes[-1])}", *self.notes]
        cols = ["collective", "system", "nodes", "P", "peak GB/s", *[byte_label(s) for s in sizes],
                f"buseff@{byte_label(sizes[-1])}", "algorithm (sizes)"]
        body = []
        for s in self.studies:
            for (topo, nodes), rs in _group(s.rows, ("topology", "nodes")).items():
                by_size = {r["size"]: r for r in rs}
                last = by_size.get(sizes[-1], {})
                peak = next((r["peak_GBps"] for r in rs if r.get("peak_GBps") is not None), None)
                body.append([s.collective, topo, "-" if nodes is None else str(nodes), str(rs[0]["P"]),
                             _fmt(peak, 1, ".1f"),
                             *[_fmt(by_size.get(z, {}).get("busbw_GBps"), 1, ".1f") for z in sizes],
                             _fmt(last.get("bus_efficiency"), 1, ".3f"), algorithm_runs(rs)])
        return format_table(cols, body, header, markdown)


def _group(rows, keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def algorithm_runs(rows) -> str:
    """The algorithms of ``rows`` (one system, several sizes) in size order, with their size ranges.

    >>> algorithm_runs([{"size": 2**20, "algorithm": "tree"}, {"size": 2**22, "algorithm": "direct"},
    ...                 {"size": 2**24, "algorithm": "direct"}])
    'tree 1M, direct 4M-16M'
    >>> algorithm_runs([{"size": 2**20, "algorithm": "ring"}, {"size": 2**22, "algorithm": "ring"}])
    'ring'
    """
    runs = []
    for r in sorted(rows, key=lambda r: r["size"]):
        name = "n/a" if r.get("unavailable") else r["algorithm"]
        if runs and runs[-1][0] == name:
            runs[-1][2] = r["size"]
        else:
            runs.append([name, r["size"], r["size"]])
    if len(runs) == 1:
        return runs[0][0]
    return ", ".join(f"{n} {byte_label(a)}" + (f"-{byte_label(b)}" if b != a else "") for n, a, b in runs)


def compare(systems=SEED_SYSTEMS, collectives=SEED_COLLECTIVES, sizes=None, nodes=None, algorithm: str = "auto",
            per_device: bool = False, max_devices: int | None = MAX_DEVICES, model=None,
            progress_enabled: bool | None = False, nic=None) -> Comparison:
    """Every system (and its multi-node forms, ``nodes``) on every collective and size.

    Sizes default to 1M, 4M, ..., 1G, taken as nccl-tests' S (``per_device=False``), as
    ``ccemu bench`` would run on each system. System variants with more than ``max_devices``
    devices are left out with a note (None: keep all). Topologies are built once and shared by the
    collectives (routes are cached per topology).
    """
    from topologies.presets import load_topology

    sizes = list(sizes or [2**20 * 4**i for i in range(6)])
    for c in collectives:
        registry.collective(c)
        if algorithm not in SELECTIONS:
            registry.info(c, algorithm)
    notes = []
    chosen = []
    for spec in systems:
        one = load_topology(spec)
        for n in _counts("nodes", nodes) or [None]:
            P = one.num_devices * (n or 1)  # servers repeat the one-server system
            if max_devices is not None and P > max_devices:
                notes.append(f"{spec} x{n} ({P} devices) left out: more than {max_devices} devices "
                             f"(raise --max-devices to include it; expect minutes per call)")
                continue
            chosen.append(Variant(str(spec), one if n in (None, 1) else load_topology(spec, nodes=n, nic=nic), n))
    if not chosen:
        raise ValueError("no system left to compare (all above max_devices)")
    if algorithm in SELECTIONS:
        # One note per collective, naming the systems it concerns.
        for c in collectives:
            big = [v for v in chosen if candidates(c, v.P)[1]]
            if big:
                notes.append(candidates(c, big[0].P)[1][0] + f" ({', '.join(v.label for v in big)})")
    progress = Progress(len(chosen) * len(sizes) * len(collectives), enabled=progress_enabled)
    studies = [sweep(c, chosen, sizes, algorithm=algorithm, per_device=per_device, model=model, progress=progress)
               for c in collectives]
    return Comparison(studies, notes)

"""The performance regression suite: declared cases, recorded metrics, and a comparison that fails on drift.

``ccemu regress run --cases FILE -o results.json`` (:mod:`bench.regress_cmd`) runs the cases of a
case file and records two kinds of metrics:

- **emulated** (deterministic): per case, ``time_s``, ``algbw_GBps``, ``busbw_GBps``,
  ``bus_efficiency`` and the ``algorithm`` that ran (what ``auto`` chose). They depend only on the
  code and the model, never on this host, so any change is a change of the emulator;
- **host** (noisy): this host's Numba reduce-into throughput beside ``np.add(a, b, out=a)`` on the
  same float32 arrays (64 MiB by default), and the local executor's wall time for a small
  allreduce beside ``np.add.reduce`` over the same data; interleaved repetitions, medians, and the
  ratios to the numpy reference measured in the same run (a slow or busy host slows both).

``ccemu regress compare BASE NEW`` exits 1 when an emulated metric differs by more than ``rtol``
(default 1e-9, relative) or a host ratio dropped by more than ``max(25%, 3 x spread)``, the spread
being the larger relative inter-quartile range of the two runs' samples.

Case files
----------
JSON (or YAML when PyYAML is installed)::

    {"schema": "ccemu-cases", "version": 1,
     "host": {"reduce_mib": 64, "repeat": 7, "allreduce_devices": 8, "allreduce_kib": 256},
     "cases": [
       {"presets": ["hgx-h20", "atlas800t-a2"], "collectives": ["allreduce"],
        "algorithms": ["ring", "auto"], "sizes": ["1K", "1M", "256M"]},
       {"presets": ["hgx-h20"], "nodes": [2], "collectives": ["allreduce"], "algorithms": ["auto"],
        "sizes": ["256M"], "model": {"ib": {"efficiency": 0.8}}, "tag": "slow-ib"}
     ]}

Each block is the product presets x nodes x collectives x algorithms x sizes (nccl-tests sizes
S, as ``ccemu bench``), optionally under model overrides (``model``, named by ``tag``; a tag is made
from the overrides when absent). Every name is checked before anything runs: a bad case is an error
and no results file is written.

The committed baseline
----------------------
``bench/baselines/default.json`` holds the emulated metrics of ``bench/cases/default.json``;
``tests/test_regress.py`` re-runs those cases and compares (this is what CI checks). When a change
of the model or of an algorithm moves the numbers on purpose, regenerate it and commit it with the
change::

    ccemu regress run --cases bench/cases/default.json --emulated-only -o bench/baselines/default.json

Results files carry ``"schema": "ccemu-regress", "version": 1``; other versions are refused.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

from .errors import UsageError

SCHEMA = "ccemu-regress"
VERSION = 1
CASES_SCHEMA = "ccemu-cases"
EMULATED_METRICS = ("time_s", "algbw_GBps", "busbw_GBps", "bus_efficiency", "algorithm")
HOST_RATIOS = ("reduce_into_ratio", "allreduce_ratio")
HOST_DEFAULTS = {"reduce_mib": 64, "repeat": 7, "allreduce_devices": 8, "allreduce_kib": 256,
                 "allreduce_algorithm": "ring"}
DEFAULT_RTOL = 1e-9
#: A host ratio must drop by more than this fraction (or 3 x the observed spread, if larger) to fail.
HOST_MIN_DROP = 0.25
BLOCK_KEYS = ("presets", "collectives", "algorithms", "sizes", "nodes", "model", "tag")


# -- case files --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One emulated measurement: ``collective`` of ``size`` bytes with ``algorithm`` on a preset."""

    preset: str
    nodes: int
    collective: str
    algorithm: str
    size: int
    model: str | None = None   # JSON text of the overrides (hashable), None for the defaults
    tag: str | None = None

    @property
    def key(self) -> str:
        """``preset/nN/collective/algorithm/size[/tag]``, the name results and comparisons use.

        >>> Case("hgx-h20", 1, "allreduce", "ring", 2**20).key
        'hgx-h20/n1/allreduce/ring/1M'
        """
        from collectives.study import byte_label
        key = f"{self.preset}/n{self.nodes}/{self.collective}/{self.algorithm}/{byte_label(self.size)}"
        return key + (f"/{self.tag}" if self.tag else "")


def read_case_file(path: str) -> dict:
    """The case document in ``path`` (JSON; YAML when the name ends in .yaml/.yml and PyYAML is installed)."""
    text = _read(path, "case file")
    if path.lower().endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"case file {path!r}: reading YAML needs PyYAML (pip install pyyaml); "
                             "or write the cases as JSON") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"case file {path!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"case file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"case file {path!r}: expected an object with a 'cases' list")
    return doc


def expand_cases(doc: dict, where: str = "case file") -> list[Case]:
    """Every :class:`Case` of a case document, checked (see the module docstring for the layout).

    Raises
    ------
    UsageError
        Naming the block (1-based) and what is wrong: unknown key, preset, collective or algorithm,
        a bad size, node count or model override, duplicate case keys.

    >>> cs = expand_cases({"cases": [{"presets": ["hgx-h20"], "collectives": ["allreduce"],
    ...                               "algorithms": ["ring", "auto"], "sizes": ["1K", 1048576]}]})
    >>> for c in cs:
    ...     print(c.key)
    hgx-h20/n1/allreduce/ring/1K
    hgx-h20/n1/allreduce/ring/1M
    hgx-h20/n1/allreduce/auto/1K
    hgx-h20/n1/allreduce/auto/1M
    >>> expand_cases({"cases": [{"presets": ["hgx-h2O"], "collectives": ["allreduce"], "algorithms": ["ring"],
    ...                          "sizes": ["1K"]}]})
    Traceback (most recent call last):
    ...
    bench.errors.UsageError: case file, case 1: unknown preset 'hgx-h2O'; valid presets: ...
    """
    from collectives import registry
    from topologies.model import resolve
    from topologies.presets import preset_info

    schema = doc.get("schema", CASES_SCHEMA)
    if schema != CASES_SCHEMA or doc.get("version", 1) != 1:
        raise UsageError(f"{where}: schema {schema!r} version {doc.get('version')!r}; expected "
                         f"{CASES_SCHEMA!r} version 1")
    blocks = doc.get("cases")
    if not isinstance(blocks, list) or not blocks:
        raise UsageError(f"{where}: 'cases' must be a non-empty list of case blocks")
    out, seen = [], {}
    for i, block in enumerate(blocks, 1):
        at = f"{where}, case {i}"
        if not isinstance(block, dict):
            raise UsageError(f"{at}: expected an object with {', '.join(BLOCK_KEYS[:4])}")
        unknown = sorted(set(block) - set(BLOCK_KEYS))
        if unknown:
            raise UsageError(f"{at}: unknown key {unknown[0]!r}; expected {', '.join(BLOCK_KEYS)}")
        presets = _str_list(block, "presets", at)
        collectives = _str_list(block, "collectives", at)
        algorithms = _str_list(block, "algorithms", at)
        for name in presets:
            try:
                preset_info(name)
            except ValueError as exc:
                raise UsageError(f"{at}: {exc}") from None
        for c in collectives:
            try:
                valid = registry.list_algorithms(c)
            except ValueError as exc:
                raise UsageError(f"{at}: {exc}") from None
            bad = [a for a in algorithms if a != "auto" and a not in valid]
            if bad:
                raise UsageError(f"{at}: unknown algorithm {bad[0]!r} for {c}; expected auto or one of "
                                 f"{', '.join(valid)}")
        sizes = [_size(s, at) for s in _list(block, "sizes", at)]
        nodes = block.get("nodes", [1])
        if not isinstance(nodes, list) or not nodes:
            raise UsageError(f"{at}: 'nodes' must be a non-empty list of server counts")
        nodes = [_count(n, at) for n in nodes]
        model, tag = block.get("model"), block.get("tag")
        if model is not None:
            if not isinstance(model, dict):
                raise UsageError(f"{at}: 'model' must be an object of overrides, "
                                 "e.g. {\"nvlink\": {\"efficiency\": 0.75}}")
            try:
                resolve(None, model)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{at}: {exc}") from None
            tag = tag or model_tag(model)
        if tag is not None and (not isinstance(tag, str) or not tag or "/" in tag):
            raise UsageError(f"{at}: 'tag' must be a non-empty string without '/'")
        model_text = json.dumps(model, sort_keys=True) if model is not None else None
        for p in presets:
            for n in nodes:
                for c in collectives:
                    for a in algorithms:
                        for s in sizes:
                            case = Case(p, n, c, a, s, model_text, tag)
                            if case.key in seen:
                                raise UsageError(f"{at}: case {case.key} is also in case {seen[case.key]} "
                                                 "(give one of the blocks a distinct tag)")
                            seen[case.key] = i
                            out.append(case)
    return out


def model_tag(model: dict) -> str:
    """A short readable name for model overrides.

    >>> model_tag({"nvlink": {"efficiency": 0.75, "msg_us": 2.0}})
    'nvlink.efficiency=0.75,nvlink.msg_us=2.0'
    """
    parts = []
    for k in sorted(model):
        v = model[k]
        if isinstance(v, dict):
            parts += [f"{k}.{pk}={pv}" for pk, pv in sorted(v.items())]
        else:
            parts.append(f"{k}={v}")
    return ",".join(parts)


# Upper bounds of the host settings: a repetition of the default reduce-into takes tens of ms.
MAX_HOST_REPEAT = 1000
MAX_HOST_DEVICES = 1024


def max_host_mib() -> float:
    """The largest host-metric array (MiB): a sixteenth of this machine's memory (the reduce-into run
    holds about four such arrays at once)."""
    from topologies.presets._common import physical_memory_bytes

    memory = physical_memory_bytes()
    return 65536.0 if memory is None else float(memory // 4 // 4 // 2**20)


def host_config(doc: dict, **overrides) -> dict:
    """The host-metric settings: :data:`HOST_DEFAULTS`, the case file's ``host``, then ``overrides``."""
    cfg = dict(HOST_DEFAULTS)
    given = doc.get("host") or {}
    if not isinstance(given, dict):
        raise UsageError("case file: 'host' must be an object")
    unknown = sorted(set(given) - set(HOST_DEFAULTS))
    if unknown:
        raise UsageError(f"case file: unknown host setting {unknown[0]!r}; expected {', '.join(HOST_DEFAULTS)}")
    cfg.update(given)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    most = {"reduce_mib": max_host_mib(), "repeat": MAX_HOST_REPEAT, "allreduce_devices": MAX_HOST_DEVICES,
            "allreduce_kib": max_host_mib() * 1024}
    for k in ("reduce_mib", "repeat", "allreduce_devices", "allreduce_kib"):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise UsageError(f"host setting {k}={v!r}; expected a positive number")
        if not v <= most[k]:
            raise UsageError(f"host setting {k}={v!r}; expected at most {most[k]:g}")
    if cfg["allreduce_devices"] * cfg["allreduce_kib"] > most["allreduce_kib"]:
        raise UsageError(f"host settings allreduce_devices={cfg['allreduce_devices']!r} x "
                         f"allreduce_kib={cfg['allreduce_kib']!r}; expected at most {most['allreduce_kib']:g} KiB "
                         "in all")
    from collectives import registry
    try:
        registry.builder("allreduce", cfg["allreduce_algorithm"])
    except ValueError as exc:
        raise UsageError(f"host setting allreduce_algorithm: {exc}") from None
    if cfg["repeat"] < 3:
        raise UsageError(f"host setting repeat={cfg['repeat']!r}; expected at least 3 (a median and a spread)")
    return cfg


def _list(block, key, at):
    v = block.get(key)
    if not isinstance(v, list) or not v:
        raise UsageError(f"{at}: {key!r} must be a non-empty list")
    return v


def _str_list(block, key, at):
    v = _list(block, key, at)
    if not all(isinstance(x, str) and x for x in v):
        raise UsageError(f"{at}: {key!r} must be a list of names")
    if len(set(v)) != len(v):
        raise UsageError(f"{at}: {key!r} repeats a name")
    return v


def _size(s, at) -> int:
    from collectives.study import parse_size
    if isinstance(s, bool):
        raise UsageError(f"{at}: size {s!r} is not a number of bytes")
    if isinstance(s, int):
        n = s
    else:
        try:
            n = parse_size(s)
        except ValueError as exc:
            raise UsageError(f"{at}: {exc}") from None
    if n < 4 or n % 4:
        raise UsageError(f"{at}: size {s!r} is not a whole number of float32 elements (4 bytes each)")
    return n


def _count(n, at) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"{at}: node count {n!r}; expected an integer >= 1")
    return n


# -- running -----------------------------------------------------------------------------------------

def run_emulated(cases, model=None, progress=None) -> dict:
    """``{case.key: record}`` for every case: the emulated metrics, or ``unavailable`` with the reason.

    ``model`` overrides apply on top of each case's own (they are not part of the key, so a run
    under a changed model compares against an unchanged one).
    """
    from collectives.registry import AlgorithmUnavailable
    from topologies.presets import preset

    from collectives import simulate

    topologies = {}
    out = {}
    for case in cases:
        if (case.preset, case.nodes) not in topologies:
            topologies[(case.preset, case.nodes)] = preset(case.preset, nodes=case.nodes)
        topo = topologies[(case.preset, case.nodes)]
        merged = merge_models(json.loads(case.model) if case.model else None, model)
        rec = {"preset": case.preset, "nodes": case.nodes, "collective": case.collective,
               "algorithm": case.algorithm, "size": case.size, "tag": case.tag, "P": topo.num_devices}
        try:
            r = simulate(case.collective, case.size, topo, algorithm=case.algorithm, model=merged)
        except AlgorithmUnavailable as exc:
            rec["unavailable"] = str(exc)
        else:
            rec["nbytes"] = r.nbytes
            rec["protocol"] = getattr(r, "protocol", None)
            rec["metrics"] = {"time_s": r.time_s, "algbw_GBps": r.algbw_GBps, "busbw_GBps": r.busbw_GBps,
                              "bus_efficiency": r.bus_efficiency, "algorithm": r.algorithm}
        out[case.key] = rec
        if progress is not None:
            progress.step(case.key)
    return out


def merge_models(base: dict | None, top: dict | None) -> dict | None:
    """Overrides ``top`` on top of ``base``, per link kind.

    >>> merge_models({"nvlink": {"efficiency": 0.7, "msg_us": 1.0}}, {"nvlink": {"efficiency": 0.5}})
    {'nvlink': {'efficiency': 0.5, 'msg_us': 1.0}}
    """
    if not base and not top:
        return None
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()}
    for k, v in (top or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = dict(v) if isinstance(v, dict) else v
    return out


def _stats(samples) -> dict:
    """Median and relative inter-quartile spread of ``samples`` (kept too)."""
    s = sorted(samples)
    med = statistics.median(s)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) >= 2 else [s[0]] * 3
    spread = (q[2] - q[0]) / med if med else math.inf
    return {"median": med, "spread": spread, "samples": list(samples)}


def run_host(cfg: dict) -> dict:
    """This host's data-plane speed beside numpy in the same run (see the module docstring).

    Each repetition times the Numba call and the numpy reference back to back, so the ratio of a
    pair sees the same host load; the ratios' median and spread are what ``compare`` uses.
    """
    import numpy as np

    import collectives
    from collectives import kernels

    n = int(cfg["reduce_mib"] * 2**20) // 4
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    # Compile (or load from the cache), then one untimed full-size pass of each: the first touches
    # the pages and starts Numba's thread pool.
    kernels.reduce_into(a[:1024], b[:1024])
    kernels.reduce_into(a, b)
    np.add(a, b, out=a)
    moved_GB = 3 * a.nbytes / 1e9           # two reads and one write, as docs/hardware.md counts
    numba_GBps, numpy_GBps, ratio = [], [], []
    for _ in range(int(cfg["repeat"])):
        t_nb = _time(lambda: kernels.reduce_into(a, b))
        t_np = _time(lambda: np.add(a, b, out=a))
        numba_GBps.append(moved_GB / t_nb)
        numpy_GBps.append(moved_GB / t_np)
        ratio.append(t_np / t_nb)
    P = int(cfg["allreduce_devices"])
    per_dev = max(1, int(cfg["allreduce_kib"] * 1024) // 4)
    data = rng.integers(-3, 4, size=(P, per_dev)).astype(np.float32)
    alg = cfg["allreduce_algorithm"]
    collectives.run("allreduce", data[:, :64], algorithm=alg)  # compile
    wall, ref, ar_ratio = [], [], []
    for _ in range(int(cfg["repeat"])):
        t_run = _time(lambda: collectives.run("allreduce", data, algorithm=alg))
        t_ref = _time(lambda: np.add.reduce(data, axis=0))
        wall.append(t_run)
        ref.append(t_ref)
        ar_ratio.append(t_ref / t_run)
    return {"config": dict(cfg), "machine": machine_info(),
            "reduce_into_GBps": _stats(numba_GBps), "np_add_GBps": _stats(numpy_GBps),
            "reduce_into_ratio": _stats(ratio),
            "allreduce_wall_s": _stats(wall), "allreduce_np_ref_s": _stats(ref), "allreduce_ratio": _stats(ar_ratio)}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-9)


def machine_info() -> dict:
    import numba
    import numpy as np
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "threads": numba.get_num_threads()}


def run(cases, host_cfg: dict | None = None, model=None, cases_file: str | None = None, progress=None) -> dict:
    """The results document: emulated metrics of ``cases`` and, unless ``host_cfg`` is None, host metrics."""
    doc = {"schema": SCHEMA, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "cases_file": cases_file, "model": model, "emulated": run_emulated(cases, model, progress)}
    doc["host"] = run_host(host_cfg) if host_cfg is not None else None
    return doc


# -- results files -----------------------------------------------------------------------------------

def load_results(path: str) -> dict:
    """A results document, checked: it exists, is JSON, and is ``ccemu-regress`` version 1."""
    try:
        doc = json.loads(_read(path, "results file"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"results file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise UsageError(f"results file {path!r} has schema {got!r}; expected {SCHEMA!r} (made by ccemu regress run)")
    if doc.get("version") != VERSION:
        raise UsageError(f"results file {path!r} is {SCHEMA} version {doc.get('version')!r}; this ccemu reads "
                         f"version {VERSION}: regenerate it with ccemu regress run")
    if not isinstance(doc.get("emulated"), dict):
        raise UsageError(f"results file {path!r} has no 'emulated' section")
    return doc


def _read(path, what) -> str:
    if not os.path.exists(path):
        raise UsageError(f"{what} {path!r} not found")
    if os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a folder, not a file")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path!r} is not UTF-8 text") from None


# -- comparing ---------------------------------------------------------------------------------------

@dataclass
class Report:
    """What :func:`compare` found: ``failures`` make ``ccemu regress compare`` exit 1; ``notes`` do not."""

    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self, limit: int = 60) -> str:
        lines = list(self.notes)
        shown = self.failures[:limit]
        lines += [f"FAIL {f}" for f in shown]
        if len(self.failures) > limit:
            lines.append(f"FAIL ... and {len(self.failures) - limit} more")
        lines.append(("OK" if self.ok else "REGRESSION") + f": {self.compared} emulated cases compared, "
                     f"{len(self.failures)} failure(s)")
        return "\n".join(lines)


def relative_change(base: float, new: float) -> float:
    """``(new - base) / |base|``; 0 when both are 0, infinite when only ``base`` is.

    >>> relative_change(100.0, 95.0), relative_change(0.0, 0.0)
    (-0.05, 0.0)
    """
    if base == new:
        return 0.0
    if base == 0:
        return math.copysign(math.inf, new)
    return (new - base) / abs(base)


def compare(base: dict, new: dict, rtol: float = DEFAULT_RTOL, emulated_only: bool = False,
            host_min_drop: float = HOST_MIN_DROP) -> Report:
    """Differences between two results documents (see the module docstring for the rules).

    Emulated: a case of ``base`` missing from ``new``, a change of availability, of the algorithm
    or of a number beyond ``rtol`` fails; cases only in ``new`` are noted. Host: a ratio that
    dropped by more than ``max(host_min_drop, 3 x spread)`` fails; host metrics missing on either
    side are noted and skipped.
    """
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol >= 0):
        raise UsageError(f"rtol={rtol!r}; expected a finite number >= 0")
    rep = Report()
    b_em, n_em = base["emulated"], new["emulated"]
    if base.get("model") != new.get("model"):
        rep.notes.append(f"note: run-level model overrides differ: {base.get('model')} -> {new.get('model')}")
    added = [k for k in n_em if k not in b_em]
    if added:
        rep.notes.append(f"note: {len(added)} case(s) only in NEW (not compared): " + ", ".join(added[:5])
                         + (" ..." if len(added) > 5 else ""))
    for key, b in b_em.items():
        n = n_em.get(key)
        if n is None:
            rep.failures.append(f"{key}: missing from NEW")
            continue
        rep.compared += 1
        if ("unavailable" in b) != ("unavailable" in n):
            was = "unavailable" if "unavailable" in b else "ran"
            now = f"unavailable ({n['unavailable']})" if "unavailable" in n else "ran"
            rep.failures.append(f"{key}: {was} -> {now}")
            continue
        if "unavailable" in b:
            continue
        bm, nm = b["metrics"], n["metrics"]
        for m in EMULATED_METRICS:
            bv, nv = bm.get(m), nm.get(m)
            if isinstance(bv, str) or isinstance(nv, str) or bv is None or nv is None:
                if bv != nv:
                    rep.failures.append(f"{key}: {m} {bv} -> {nv}")
                continue
            ch = relative_change(float(bv), float(nv))
            if abs(ch) > rtol:
                rep.failures.append(f"{key}: {m} {bv:.6g} -> {nv:.6g} ({ch:+.2%})")
    if emulated_only:
        rep.notes.append("host metrics: skipped (--emulated-only)")
    elif not base.get("host") or not new.get("host"):
        which = " and ".join(w for w, d in (("BASE", base), ("NEW", new)) if not d.get("host"))
        rep.notes.append(f"host metrics: not in {which}; skipped")
    else:
        for m in HOST_RATIOS:
            bh, nh = base["host"].get(m), new["host"].get(m)
            if not bh or not nh:
                rep.notes.append(f"host {m}: missing on one side; skipped")
                continue
            spread = max(bh.get("spread", 0.0), nh.get("spread", 0.0))
            limit = max(host_min_drop, 3 * spread)
            ch = relative_change(bh["median"], nh["median"])
            line = (f"host {m}: {bh['median']:.3f} -> {nh['median']:.3f} ({ch:+.1%}; "
                    f"fails below -{limit:.0%} = max({host_min_drop:.0%}, 3 x spread {spread:.1%}))")
            if ch < -limit:
                rep.failures.append(line)
            else:
                rep.notes.append(line)
    return rep

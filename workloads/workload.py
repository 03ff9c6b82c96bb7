"""A workload: a model, its parallelism and placement, the mode of the step and the compute model.

From Python::

    from workloads import Workload, builtin_workload, load_workload
    w = builtin_workload("deepseek-v3")                    # or load_workload("my.json" / "my.yaml")
    w = w.with_overrides({"pp": 16, "ep": 64, "compute.mfu": 0.35})

A workload file (JSON, or YAML: PyYAML when installed, else the block-mapping subset read here)::

    {
      "name": "my-moe",
      "model": "deepseek-v3",                     # a built-in name, or a mapping of Model fields
                                                  # ({"base": "deepseek-v3", "seq_len": 8192} changes some)
      "parallel": {"tp": 1, "pp": 8, "ep": 8, "zero": 1, "micro_batches": 16},
      "placement": {"order": ["tp", "cp", "ep", "dp", "pp"]},
      "mode": "train",                            # train, prefill or decode
      "compute": {"mfu": 0.4, "mem_efficiency": 0.8},
      "routing": {"skew": 0.5, "seed": 0},        # collectives.moe.topk_counts
      "overlap": {"dp": true, "cp": true, "fsdp": true, "param_gather": true}
    }

``"base": "<built-in workload>"`` starts from a built-in workload. Unknown keys, bad values and
parallelism that does not fit the model or the device count raise a one-line ``ValueError``.

>>> w = builtin_workload("llama3-70b").resolved(64)
>>> w.parallel.dp, w.stage_layers(0), w.group_size("tp"), w.groups("tp")[1]
(2, range(0, 20), 8, [8, 9, 10, 11, 12, 13, 14, 15])
>>> builtin_workload("llama3-70b").with_overrides({"tp": 4, "model.seq_len": 4096}).parallel.tp
4
>>> load_workload("no-such-model")
Traceback (most recent call last):
...
ValueError: workload 'no-such-model' is neither a file nor a built-in workload; expected a JSON or YAML file ...
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field, replace

from collectives import dtypes

from . import model as _model
from .compute import ComputeModel, compute_from_dict
from .parallel import MODES, Parallelism, parallel_from_dict
from .placement import Layout, Placement, placement_from_dict

OVERLAPS = ("dp", "cp", "fsdp", "param_gather")
TOP_KEYS = ("name", "base", "model", "parallel", "placement", "mode", "compute", "routing", "overlap", "note")


@dataclass(frozen=True)
class Workload:
    """A model, its parallelism and placement, the step's mode and the compute model.

    ``overlap`` turns the overlap rules on or off (all on by default): ``dp`` (gradient reduction
    behind the last micro-batch's backward pass), ``cp`` (the ring exchange behind the attention
    core), ``fsdp`` (ZeRO-3's per-layer parameter gathers behind the previous layer's compute),
    ``param_gather`` (the distributed optimizer's parameter allgather behind the next step's first
    forward pass). ``skew`` and ``seed``: the MoE routing's (:func:`collectives.moe.topk_counts`).
    """

    name: str
    model: _model.Model
    parallel: Parallelism = field(default_factory=Parallelism)
    placement: Placement = field(default_factory=Placement)
    mode: str = "train"
    compute: ComputeModel = field(default_factory=ComputeModel)
    skew: float = 0.5
    seed: int = 0
    overlap: tuple = (("dp", True), ("cp", True), ("fsdp", True), ("param_gather", True))
    note: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; expected one of {', '.join(MODES)}")
        if isinstance(self.skew, bool) or not isinstance(self.skew, numbers.Real) or not math.isfinite(self.skew) \
                or self.skew < 0:
            raise ValueError(f"routing.skew={self.skew!r}; expected a finite number >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"routing.seed={self.seed!r}; expected an integer >= 0")
        ov = dict(self.overlap)
        bad = sorted(set(ov) - set(OVERLAPS))
        if bad:
            raise ValueError(f"overlap: unknown rule {bad[0]!r}; expected one of {', '.join(OVERLAPS)}")
        for k, v in ov.items():
            if not isinstance(v, bool):
                raise ValueError(f"overlap.{k}={v!r}; expected true or false")
        object.__setattr__(self, "overlap", tuple((k, ov.get(k, True)) for k in OVERLAPS))

    # -- derived ---------------------------------------------------------------------------------
    def overlaps(self, rule: str) -> bool:
        return dict(self.overlap)[rule]

    @property
    def grad_dtype(self) -> str:
        return dtypes.canonical(self.parallel.grad_dtype or self.model.dtype)

    @property
    def devices(self) -> int | None:
        return self.parallel.devices if self.parallel.dp is not None else None

    def resolved(self, devices: int) -> "Workload":
        """This workload on ``devices`` devices (``dp`` filled in and every constraint checked)."""
        return replace(self, parallel=self.parallel.resolve(self.model, devices, self.mode))

    def _layout(self) -> Layout:
        cache = self.__dict__.get("_lay")
        if cache is None:
            cache = Layout(self.parallel, self.placement)
            object.__setattr__(self, "_lay", cache)
        return cache

    def groups(self, kind: str) -> list:
        return self._layout().groups(kind)

    def group_size(self, kind: str) -> int:
        return self._layout().group_size(kind)

    def stage_layers(self, stage: int) -> range:
        """Layers of pipeline stage ``stage``: split as evenly as possible, earlier stages one more."""
        pp, L = self.parallel.pp, self.model.layers
        base, extra = divmod(L, pp)
        lo = stage * base + min(stage, extra)
        return range(lo, lo + base + (1 if stage < extra else 0))

    def with_overrides(self, overrides: dict) -> "Workload":
        """A copy with ``{"tp": 8, "model.seq_len": 8192, "compute.mfu": 0.3, "mode": "decode",
        "routing.skew": 1.0, "overlap.dp": False, "placement.order": [...]}`` applied (a bare key
        is a ``parallel`` field)."""
        doc = self.as_dict()
        doc["model"] = {k: v for k, v in doc["model"].items()}
        for key, value in overrides.items():
            section, _, name = key.rpartition(".")
            if not section:
                if name in ("mode", "name", "note"):
                    doc[name] = value
                    continue
                section = "parallel"
            if section not in ("model", "parallel", "placement", "compute", "routing", "overlap"):
                raise ValueError(f"override {key!r}: unknown section {section!r}; expected model, parallel, "
                                 f"placement, compute, routing or overlap")
            doc.setdefault(section, {})
            doc[section] = dict(doc[section] or {})
            doc[section][name] = value
        return workload_from_dict(doc)

    def as_dict(self) -> dict:
        return {"name": self.name, "model": self.model.as_dict(), "parallel": self.parallel.as_dict(),
                "placement": self.placement.as_dict(), "mode": self.mode, "compute": self.compute.as_dict(),
                "routing": {"skew": self.skew, "seed": self.seed}, "overlap": dict(self.overlap), "note": self.note}


def workload_from_dict(doc: dict, name: str | None = None) -> Workload:
    """A :class:`Workload` from the mapping of a workload file (see the module docstring)."""
    if not isinstance(doc, dict):
        raise ValueError(f"a workload must be a mapping with keys {', '.join(TOP_KEYS)}; got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"workload: unknown key {unknown[0]!r}; expected one of {', '.join(TOP_KEYS)}")
    if "base" in doc:
        base = _builtin_doc(doc["base"])
        merged = {**base, **{k: v for k, v in doc.items() if k != "base"}}
        for k in ("parallel", "compute", "routing", "overlap", "placement"):
            if isinstance(base.get(k), dict) and isinstance(doc.get(k), dict):
                merged[k] = {**base[k], **doc[k]}
        doc = merged
    if "model" not in doc:
        raise ValueError("workload: no model; expected model: a built-in name or a mapping of its sizes")
    m = doc["model"]
    model = _model.builtin_model(m) if isinstance(m, str) else _model.model_from_dict(
        {k: v for k, v in m.items()}, m.get("name") if isinstance(m, dict) else None)
    par = doc.get("parallel") or {}
    if isinstance(par, dict):
        par = {k: v for k, v in par.items() if not (k == "dp" and v is None)}
    routing = doc.get("routing") or {}
    if not isinstance(routing, dict) or set(routing) - {"skew", "seed"}:
        bad = sorted(set(routing) - {"skew", "seed"})[0] if isinstance(routing, dict) else type(routing).__name__
        raise ValueError(f"routing: unknown key {bad!r}; expected skew, seed")
    overlap = doc.get("overlap") or {}
    if not isinstance(overlap, dict):
        raise ValueError(f"overlap must be a mapping of {', '.join(OVERLAPS)} to true/false")
    mode = doc.get("mode", "train")
    return Workload(name=str(doc.get("name") or name or model.name), model=model, parallel=parallel_from_dict(par),
                    placement=placement_from_dict(doc.get("placement")), mode=mode,
                    compute=compute_from_dict(doc.get("compute")), skew=routing.get("skew", 0.5),
                    seed=routing.get("seed", 0), overlap=tuple(overlap.items()), note=str(doc.get("note", "")))


def builtin_workloads() -> list[str]:
    return sorted(_model._data()["workloads"])


def _builtin_doc(name) -> dict:
    table = _model._data()["workloads"]
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(sorted(table))}")
    return {"name": name, **table[name]}


def builtin_workload(name: str) -> Workload:
    """A built-in workload (``workloads/data/models.json``): llama3-70b, deepseek-v3, gpt3-175b, tiny-*."""
    return workload_from_dict(_builtin_doc(name))


def load_workload(spec) -> Workload:
    """A workload from a file path (``.json``, ``.yaml``/``.yml``), a built-in name, or a mapping."""
    if isinstance(spec, Workload):
        return spec
    if isinstance(spec, dict):
        return workload_from_dict(spec)
    path = os.fspath(spec)
    if not os.path.exists(path):
        if path in builtin_workloads():
            return builtin_workload(path)
        raise ValueError(f"workload {path!r} is neither a file nor a built-in workload; expected a JSON or YAML "
                         f"file or one of {', '.join(builtin_workloads())}")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"workload file {path}: cannot be read ({exc})") from None
    if path.lower().endswith((".yaml", ".yml")):
        doc = load_yaml(text, path)
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"workload file {path}: not valid JSON ({exc})") from None
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        return workload_from_dict(doc, name)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"workload file {path}: {exc}") from None


# -- YAML -----------------------------------------------------------------------------------------

def load_yaml(text: str, path: str = "<yaml>"):
    """YAML through PyYAML when installed, else the subset a workload file needs: block mappings by
    indentation, ``key: value`` scalars (numbers, true/false, null, plain or quoted strings), flow
    lists ``[a, b]`` and ``- item`` lists, ``#`` comments.

    >>> load_yaml('''model: deepseek-v3
    ... parallel:
    ...   tp: 1    # inside a server
    ...   pp: 8
    ... placement:
    ...   order: [tp, cp, ep, dp, pp]
    ... ''')
    {'model': 'deepseek-v3', 'parallel': {'tp': 1, 'pp': 8}, 'placement': {'order': ['tp', 'cp', 'ep', 'dp', 'pp']}}
    """
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"workload file {path}: not valid YAML ({' '.join(str(exc).split())})") from None
    lines = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).rstrip()
        if line.strip():
            if "\t" in line[:len(line) - len(line.lstrip())]:
                raise ValueError(f"workload file {path}, line {no}: tab in the indentation; expected spaces")
            lines.append((no, len(line) - len(line.lstrip()), line.strip()))
    value, pos = _block(lines, 0, 0, path)
    if pos != len(lines):
        no = lines[pos][0]
        raise ValueError(f"workload file {path}, line {no}: unexpected indentation")
    return value


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _block(lines, pos, indent, path):
    if pos >= len(lines):
        return None, pos
    no, ind, text = lines[pos]
    if text.startswith("- ") or text == "-":
        out = []
        while pos < len(lines) and lines[pos][1] == ind and (lines[pos][2].startswith("- ") or lines[pos][2] == "-"):
            item = lines[pos][2][1:].strip()
            pos += 1
            if item:
                out.append(_scalar(item, lines[pos - 1][0], path))
            else:
                v, pos = _block(lines, pos, ind + 1, path)
                out.append(v)
        return out, pos
    out = {}
    while pos < len(lines) and lines[pos][1] == ind:
        no, _, text = lines[pos]
        key, sep, rest = text.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"workload file {path}, line {no}: expected 'key: value'")
        key = key.strip().strip("'\"")
        pos += 1
        rest = rest.strip()
        if rest:
            out[key] = _scalar(rest, no, path)
        elif pos < len(lines) and lines[pos][1] > ind:
            out[key], pos = _block(lines, pos, lines[pos][1], path)
        else:
            out[key] = None
    return out, pos


def _scalar(text, no, path):
    if text.startswith("[") :
        if not text.endswith("]"):
            raise ValueError(f"workload file {path}, line {no}: unclosed list")
        inner = text[1:-1].strip()
        return [_scalar(t.strip(), no, path) for t in inner.split(",")] if inner else []
    if text.startswith("{"):
        raise ValueError(f"workload file {path}, line {no}: flow mappings need PyYAML; write a block mapping")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text

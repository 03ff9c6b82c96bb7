"""Parameters of the network model, in one place.

Per link kind:

- ``efficiency``: the fraction of a link's line rate that carries data (protocol headers, flow
  control, CRC) in the full-bandwidth regime. A link of ``bw_GBps`` moves data at
  ``bw_GBps * efficiency * PROTOCOL_EFFICIENCY[protocol]``.
- ``msg_us`` / ``ll128_msg_us`` / ``ll_msg_us``: fixed cost of one message that crosses links of
  this kind (software and DMA setup, synchronisation) in each protocol regime, added once per
  transfer on top of the links' ``lat_us``; a path through several kinds pays the largest.

- ``call_us`` / ``ll128_call_us`` / ``ll_call_us``: fixed cost of one collective call (kernel
  launch, bookkeeping) in each regime, paid once; a topology pays the largest among its link kinds
  (it belongs to the vendor's software stack, which the link kinds stand for).

A call runs in one regime; ``simulate(..., protocol="auto")`` picks the fastest, as NCCL's tuner does.

The values live in one data file the library owns, ``topologies/data/model.json``, each with its
provenance (fitted on which calibration set, or estimated and why); ``ccemu fit --write``
(:mod:`collectives.calibration`) writes it and ``ccemu fit --check`` proves the fitted entries are
the fit's. ``generic`` is an ideal link (no overhead) for textbook topologies and closed-form
checks. Override them per topology (:func:`topologies.whatif.set_model`) or per call (``model=``
argument), e.g. ``{"nvlink": {"efficiency": 0.75, "call_us": 5.0}}``.
"""

from __future__ import annotations

import json
import math
import os

# Protocol regimes, after NCCL's (docs/hardware.md#nccl-model): LL carries 8 data bytes per 16-byte
# line, LL128 120 of 128; Simple sends the data as is but pays more per message. The factor scales a
# link's ``efficiency``; each regime has its own per-message (``*msg_us``) and per-call costs.
PROTOCOLS = ("simple", "ll128", "ll")
PROTOCOL_EFFICIENCY = {"simple": 1.0, "ll128": 120 / 128, "ll": 8 / 16}
MSG_KEY = {"simple": "msg_us", "ll128": "ll128_msg_us", "ll": "ll_msg_us"}
CALL_KEY = {"simple": "call_us", "ll128": "ll128_call_us", "ll": "ll_call_us"}

#: Link kinds of scale-out networks (NICs and their fabric); the others are scale-up or host links:
#: InfiniBand, RoCE, GPUDirect-TCPX (TCP-based GPU networking) and AWS EFA, each with its own constants
#: in the data file. (Kept equal to ``collectives.libraries.SCALE_OUT_KINDS``: a test checks it.)
SCALE_OUT_KINDS = ("ib", "roce", "tcpx", "efa")

#: The transports a preset's NIC may be (``preset(..., nic="tcpx:200")``).
NIC_KINDS = SCALE_OUT_KINDS

#: The kind whose constants time a copy through host memory (a staged host path, see
#: :mod:`topologies.network`); it is no link of the graph.
HOST_MEMORY_KIND = "host_memory"

# Costs of one message (per transfer) and of one call, per regime, in microseconds.
COST_KEYS = ("msg_us", "ll128_msg_us", "ll_msg_us", "call_us", "ll128_call_us", "ll_call_us")
LINK_PARAMS = ("efficiency",) + COST_KEYS

#: The data file of the model's constants.
DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "model.json")


def load_data(path: str = DATA_FILE) -> dict:
    """The model data document: ``{"link_kinds": {kind: {param: {"value", "provenance"[, "derived"]}}}}``."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if doc.get("schema") != "ccemu-model" or doc.get("version") != 1:
        raise ValueError(f"{path}: not a ccemu-model version 1 file")
    for kind, params in doc["link_kinds"].items():
        missing = [k for k in LINK_PARAMS if k not in params]
        if missing:
            raise ValueError(f"{path}: link kind {kind!r} has no {missing[0]!r}")
    return doc


def values(doc: dict) -> dict:
    """``{kind: {param: value}}`` of a model data document."""
    return {kind: {k: float(e["value"]) for k, e in params.items()} for kind, params in doc["link_kinds"].items()}


_DOC = load_data()   # read once at import: the three tables below come from it

#: Per link kind, the constants the model runs with (from :data:`DATA_FILE`).
LINK_DEFAULTS = values(_DOC)


def _section_values(doc: dict, section: str) -> dict:
    return {k: {n: float(e["value"]) for n, e in v.items()} for k, v in doc.get(section, {}).items()}


#: Per switch generation, ``reduce_GBps``: the bytes of incoming data one switch chip reduces per
#: second in the network (NVLS). Presets put it on their reducing switches as ``reduce_bw_GBps``.
SWITCH_DEFAULTS = _section_values(_DOC, "switches")

#: Per collective library, ``bw_efficiency``: the fraction of the links' rate (``efficiency``) its
#: collectives reach; ``simulate(..., library=...)`` scales every link kind's efficiency by it.
LIBRARY_DEFAULTS = _section_values(_DOC, "libraries")


#: How switches spread a flow over equal-cost paths (see :mod:`topologies.routing`): ``"adaptive"``
#: splits every flow over all of them in proportion to bandwidth; ``"ecmp"`` hashes each flow onto one.
ROUTINGS = ("adaptive", "ecmp")

#: Per link kind, the routing its switches use where it is not ``"adaptive"`` (from :data:`DATA_FILE`,
#: each with its provenance): ECMP on Ethernet scale-out fabrics, adaptive on InfiniBand and inside
#: scale-up domains. :func:`topologies.whatif.set_routing` overrides it per topology.
ROUTING_DEFAULTS = {kind: e["value"] for kind, e in _DOC.get("routing", {}).items()}


def routing_mode(kind: str, overrides=None) -> str:
    """The routing of link kind ``kind``: ``overrides`` (a topology's, ``{kind: mode}``), else the data
    file's, else ``"adaptive"``.

    >>> routing_mode("roce"), routing_mode("ib"), routing_mode("nvlink"), routing_mode("roce", {"roce": "adaptive"})
    ('ecmp', 'adaptive', 'adaptive', 'adaptive')
    """
    return (overrides or {}).get(kind) or ROUTING_DEFAULTS.get(kind, "adaptive")


def switch_reduce_GBps(generation: str) -> float:
    """The in-network reduction rate of one switch chip of ``generation`` (``ValueError`` if unknown)."""
    if generation not in SWITCH_DEFAULTS:
        raise ValueError(f"unknown switch generation {generation!r}; expected one of {', '.join(SWITCH_DEFAULTS)}")
    return SWITCH_DEFAULTS[generation]["reduce_GBps"]


def library_efficiency(library: str) -> float:
    """``bw_efficiency`` of a collective library (1.0 for one the data file does not list)."""
    return LIBRARY_DEFAULTS.get(library, {}).get("bw_efficiency", 1.0)


def resolve(topology_model: dict | None = None, call_model: dict | None = None) -> dict:
    """Merge defaults, the topology's overrides and the call's overrides into one parameter dict.

    >>> p = resolve({"nvlink": {"efficiency": 0.5}}, {"nvlink": {"call_us": 3.0}})
    >>> p["nvlink"]["efficiency"], p["generic"]["msg_us"], p["nvlink"]["call_us"]
    (0.5, 0.0, 3.0)
    """
    params = {k: dict(v) for k, v in LINK_DEFAULTS.items()}
    for layer in (topology_model or {}), (call_model or {}):
        if not isinstance(layer, dict):
            raise TypeError(f"model overrides must be a dict, got {type(layer).__name__}")
        for key, value in layer.items():
            if key in LINK_PARAMS:
                raise ValueError(f"model parameter {key!r} needs a link kind, e.g. {{'nvlink': {{{key!r}: ...}}}}")
            if not isinstance(value, dict):
                raise ValueError(f"model override for link kind {key!r} must be a dict of "
                                 f"{', '.join(LINK_PARAMS)}; got {value!r}")
            entry = params.setdefault(key, dict(LINK_DEFAULTS["generic"]))
            for pk, pv in value.items():
                if pk not in LINK_PARAMS and pk != "jitter":
                    raise ValueError(f"unknown model parameter {pk!r} for link kind {key!r}; "
                                     f"expected one of {', '.join(LINK_PARAMS)}")
                entry[pk] = pv if pk == "jitter" else _check(pk, pv, f"{key}.{pk}")
    return params


def link_param(params: dict, kind: str, name: str) -> float:
    """A link kind's parameter; kinds without an entry behave as ``generic``."""
    return params.get(kind, params["generic"])[name]


def _check(name, value, label):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"model parameter {label}={value!r}; expected a finite number")
    if name == "efficiency" and not 0 < value <= 1:
        raise ValueError(f"model parameter {label}={value!r}; expected 0 < efficiency <= 1")
    if name != "efficiency" and value < 0:
        raise ValueError(f"model parameter {label}={value!r}; expected a number >= 0")
    return float(value)

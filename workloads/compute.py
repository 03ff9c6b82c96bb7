"""Compute time of a layer from its FLOPs and memory traffic on a chip.

A piece of work of ``F`` FLOPs that moves ``B`` bytes of device memory takes
``max(F / (peak x mfu), B / (hbm x mem_efficiency))``: a roofline with an MFU-style efficiency on
the dense 16-bit matrix rate (default 0.4) and one on the HBM line rate (default 0.8), both
assumptions stated in ``workloads/data/chips.json`` and settable per workload. The chips' figures
(``workloads/data/chips.json``, each with its source; docs/hardware.md#compute) are found from the
topology's preset.

What is counted, per device and micro-batch (T tokens on the device: micro_batch x seq_len / cp,
one per sequence when decoding):

- matrix FLOPs ``2 x T x parameters / tp`` for attention projections and dense FFNs (or shared
  experts and the router); the routed experts at the busiest device of the expert-parallel group
  (``2 x pairs x expert parameters``, ``pairs``: the (token, expert) pairs it receives, from the
  routing counts), so routing imbalance is a straggler;
- attention scores and values ``T x keys x heads / tp x 2 x (qk_dim + v_dim)``, with ``keys`` half
  the sequence under the causal mask (``seq_len`` when decoding, over the KV cache);
- memory: the weights read once per pass, the KV cache when decoding, and activations estimated as
  14 hidden-sized reads or writes per token plus twice the FFN's intermediate (an estimate);
- the backward pass: twice the forward's FLOPs and bytes; no recomputation;
- the LM head (``2 x T x hidden x vocab / tp``) on the last pipeline stage;
- the optimizer step (training): ``optimizer_bytes_per_param`` bytes of memory traffic per
  parameter the device updates (its ZeRO shard), memory-bound.

>>> c = chip("h800")
>>> c.bf16_tflops, c.hbm_GBps
(989.4, 3350.0)
>>> chip_for("hgx-h20").key, chip_for("cloudmatrix384").key
('h20', 'ascend-910c')
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
CHIPS_FILE = os.path.join(DATA_DIR, "chips.json")

_DATA = None


def _data() -> dict:
    global _DATA
    if _DATA is None:
        with open(CHIPS_FILE, encoding="utf-8") as fh:
            _DATA = json.load(fh)
    return _DATA


@dataclass(frozen=True)
class Chip:
    """A device's compute figures: dense 16-bit TFLOPS, HBM GB/s and GB, and their source."""

    key: str
    name: str
    bf16_tflops: float
    hbm_GBps: float
    hbm_GB: float
    source: str = ""


def chips() -> list[str]:
    return sorted(_data()["chips"])


def chip(key: str) -> Chip:
    table = _data()["chips"]
    if key not in table:
        raise ValueError(f"unknown chip {key!r}; expected one of {', '.join(sorted(table))}")
    e = table[key]
    return Chip(key, e["name"], float(e["bf16_tflops"]), float(e["hbm_GBps"]), float(e["hbm_GB"]), e["source"])


def chip_for(topology) -> Chip:
    """The chip of a topology's devices, from its preset (``ValueError`` when no figures are known)."""
    if isinstance(topology, str):
        preset, die = topology, False
    else:
        g = topology.graph
        preset = g.graph.get("preset")
        die = bool(topology.devices) and "package" in g.nodes[topology.devices[0]]
    table = _data()["presets"]
    if preset not in table:
        raise ValueError(f"no compute figures for the devices of {preset or getattr(topology, 'name', topology)!r}; "
                         f"expected a system of {', '.join(sorted(table))} (or add its chip to "
                         f"workloads/data/chips.json, or give compute.chip)")
    key = table[preset]
    if die and key + "-die" in _data()["chips"]:
        key += "-die"
    return chip(key)


def default(name: str) -> float:
    """A default of the compute model (``mfu``, ``mem_efficiency``, ``optimizer_bytes_per_param``)."""
    return float(_data()["efficiency"][name]["value"])


@dataclass(frozen=True)
class ComputeModel:
    """Efficiencies of the roofline (see the module docstring); ``chip`` overrides the preset's."""

    mfu: float = 0.4
    mem_efficiency: float = 0.8
    optimizer_bytes_per_param: float = 32.0
    chip: str | None = None

    def __post_init__(self):
        for f in ("mfu", "mem_efficiency"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1:
                raise ValueError(f"compute.{f}={v!r}; expected a number above 0 and at most 1")
        v = self.optimizer_bytes_per_param
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"compute.optimizer_bytes_per_param={v!r}; expected a number >= 0")
        if self.chip is not None:
            chip(self.chip)

    def time(self, flops: float, nbytes: float, c: Chip) -> float:
        """Roofline time of ``flops`` and ``nbytes`` on chip ``c``."""
        return max(flops / (c.bf16_tflops * 1e12 * self.mfu), nbytes / (c.hbm_GBps * 1e9 * self.mem_efficiency))

    def as_dict(self) -> dict:
        return {"mfu": self.mfu, "mem_efficiency": self.mem_efficiency,
                "optimizer_bytes_per_param": self.optimizer_bytes_per_param, "chip": self.chip}


def compute_from_dict(doc) -> ComputeModel:
    keys = ("mfu", "mem_efficiency", "optimizer_bytes_per_param", "chip")
    if doc is None:
        return ComputeModel(default("mfu"), default("mem_efficiency"), default("optimizer_bytes_per_param"))
    if not isinstance(doc, dict) or set(doc) - set(keys):
        bad = sorted(set(doc) - set(keys))[0] if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"compute: unknown key {bad!r}; expected one of {', '.join(keys)}")
    return ComputeModel(doc.get("mfu", default("mfu")), doc.get("mem_efficiency", default("mem_efficiency")),
                        doc.get("optimizer_bytes_per_param", default("optimizer_bytes_per_param")), doc.get("chip"))


# -- the work of one layer --------------------------------------------------------------------------

@dataclass
class Work:
    """FLOPs and memory bytes of one pass of one layer on one device, split into the attention core
    (which context parallelism's ring exchange overlaps) and the rest."""

    core_flops: float = 0.0
    core_bytes: float = 0.0
    flops: float = 0.0
    nbytes: float = 0.0

    def time(self, cm: ComputeModel, c: Chip) -> tuple[float, float]:
        """``(core seconds, rest seconds)``."""
        return cm.time(self.core_flops, self.core_bytes, c), cm.time(self.flops, self.nbytes, c)

    @property
    def total_flops(self) -> float:
        return self.core_flops + self.flops


def tokens(model, par, mode) -> int:
    """Tokens of one micro-batch on one device of a tensor-parallel group (before sequence parallelism)."""
    seq = 1 if mode == "decode" else model.seq_len
    return model.micro_batch * seq // par.cp


def layer_work(model, par, kind: str, mode: str, pairs_max: float = 0.0) -> Work:
    """The forward pass of one ``kind`` layer (``"dense"`` or ``"moe"``) on one device; ``pairs_max``:
    the routed (token, expert) pairs the busiest device of its expert-parallel group receives."""
    T = tokens(model, par, mode)
    tp, e, h = par.tp, model.dtype_bytes, model.hidden
    heads = model.heads / tp
    if mode == "decode":
        keys = model.seq_len
        kv_shard = tp if (model.attention == "gqa" and model.kv_heads_ % tp == 0) else 1
        kv_bytes = model.micro_batch * model.seq_len * model.kv_per_token_per_layer * e / kv_shard
    else:
        keys = model.seq_len / 2
        kv_bytes = 0.0
    w = Work()
    w.core_flops = T * keys * heads * 2 * (model.qk_dim + model.v_dim)
    w.core_bytes = T * heads * 2 * (model.qk_dim + model.v_dim) * e + kv_bytes
    p = model.layer_params(kind)
    dense = p["attn"] + p["mlp"]
    w.flops = 2 * T * dense / tp
    w.nbytes = dense / tp * e + T * 14 * h * e
    if kind == "dense":
        w.nbytes += 2 * T * model.ffn_matrices * model.ffn / tp * e
    else:
        w.nbytes += 2 * T * model.ffn_matrices * model.moe_ffn * model.shared_experts / tp * e
        w.flops += 2 * pairs_max * model.expert_params
        local = model.experts // par.ep
        touched = min(local, math.ceil(pairs_max * tp)) if pairs_max else 0
        w.nbytes += touched * model.expert_params / tp * e + 2 * pairs_max * model.ffn_matrices * model.moe_ffn * e
    return w


def head_work(model, par, mode) -> Work:
    """The LM head (last stage) of one micro-batch; the embedding lookup is memory traffic only."""
    T = tokens(model, par, mode)
    e = model.dtype_bytes
    w = Work()
    w.flops = 2 * T * model.hidden * model.vocab / par.tp
    w.nbytes = model.embedding_params / par.tp * e + 2 * T * model.vocab / par.tp * e
    return w


def embed_work(model, par, mode) -> Work:
    T = tokens(model, par, mode)
    w = Work()
    w.nbytes = 2 * T * model.hidden * model.dtype_bytes
    return w

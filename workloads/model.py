"""The model of a workload: a dense transformer or a mixture-of-experts one, its sizes and counts.

A :class:`Model` holds what the step's collectives and compute depend on: layers, hidden size,
attention heads (and key-value heads for grouped-query attention), the FFN size and its matrices
(3 for SwiGLU, 2 for GELU), the experts of an MoE (routed, shared, top-k, their FFN size, how many
leading layers stay dense), the vocabulary, and the run's sequence length, micro-batch and 16-bit
dtype. Parameters and FLOPs are counted from these: norms, biases and rotary embeddings are not
counted. Multi-head latent attention (``attention="mla"``) is given by its parameter count, its
query/key and value head sizes and the elements it caches per token (``attn_params``,
``qk_head_dim``, ``v_head_dim``, ``kv_per_token``): attention of the same FLOPs and KV bytes.

Built-in models (``workloads/data/models.json``, each with its source and simplifications):
``llama3-70b``, ``deepseek-v3``, ``gpt3-175b`` and the test models ``tiny-dense``, ``tiny-moe``.

>>> m = builtin_model("llama3-70b")
>>> round(m.total_params() / 1e9, 2), m.attn_params_per_layer, m.kv_per_token_per_layer
(70.55, 150994944, 2048)
>>> d = builtin_model("deepseek-v3")
>>> round(d.total_params() / 1e9, 1), round(d.active_params_per_token() / 1e9, 1), d.layer_kind(2), d.layer_kind(3)
(671.0, 36.6, 'dense', 'moe')
>>> builtin_model("llama-4")
Traceback (most recent call last):
...
ValueError: unknown model 'llama-4'; expected one of deepseek-v3, gpt3-175b, llama3-70b, tiny-dense, tiny-moe
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field, fields

from collectives import dtypes

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
MODELS_FILE = os.path.join(DATA_DIR, "models.json")

ATTENTIONS = ("gqa", "mla")


@dataclass(frozen=True)
class Model:
    """A transformer's sizes (see the module docstring). Integers are element counts."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int = 0
    kv_heads: int | None = None
    head_dim: int | None = None
    ffn_matrices: int = 3
    experts: int = 0
    top_k: int = 0
    shared_experts: int = 0
    moe_ffn: int = 0
    dense_layers: int = 0
    attention: str = "gqa"
    attn_params: int | None = None
    qk_head_dim: int | None = None
    v_head_dim: int | None = None
    kv_per_token: int | None = None
    tied_embeddings: bool = False
    seq_len: int = 4096
    micro_batch: int = 1
    dtype: str = "bfloat16"
    source: str = ""
    simplifications: tuple = field(default_factory=tuple)

    def __post_init__(self):
        for f in ("layers", "hidden", "heads", "seq_len", "micro_batch"):
            _check_int(f, getattr(self, f), 1, self.name)
        for f in ("ffn", "vocab", "experts", "top_k", "shared_experts", "moe_ffn", "dense_layers"):
            _check_int(f, getattr(self, f), 0, self.name)
        for f in ("kv_heads", "head_dim", "attn_params", "qk_head_dim", "v_head_dim", "kv_per_token"):
            if getattr(self, f) is not None:
                _check_int(f, getattr(self, f), 1, self.name)
        if self.ffn_matrices not in (2, 3):
            raise ValueError(f"model {self.name!r}: ffn_matrices={self.ffn_matrices!r}; expected 2 (GELU) or 3 "
                             f"(SwiGLU)")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"model {self.name!r}: attention={self.attention!r}; expected one of "
                             f"{', '.join(ATTENTIONS)}")
        if self.attention == "mla" and None in (self.attn_params, self.qk_head_dim, self.v_head_dim, self.kv_per_token):
            raise ValueError(f"model {self.name!r}: attention='mla' needs attn_params, qk_head_dim, v_head_dim and "
                             f"kv_per_token")
        if self.head_dim is None and self.attention == "gqa" and self.hidden % self.heads:
            raise ValueError(f"model {self.name!r}: heads={self.heads} does not divide hidden={self.hidden}; "
                             f"expected a divisor, or give head_dim")
        kv = self.kv_heads or self.heads
        if self.heads % kv:
            raise ValueError(f"model {self.name!r}: kv_heads={kv} does not divide heads={self.heads}; "
                             f"expected a divisor")
        if self.experts:
            if not 1 <= self.top_k <= self.experts:
                raise ValueError(f"model {self.name!r}: top_k={self.top_k}; expected 1..experts={self.experts}")
            if self.moe_ffn < 1:
                raise ValueError(f"model {self.name!r}: an MoE needs moe_ffn >= 1 (the experts' FFN size)")
            if self.dense_layers >= self.layers:
                raise ValueError(f"model {self.name!r}: dense_layers={self.dense_layers}; expected fewer than "
                                 f"layers={self.layers}")
        elif self.top_k or self.shared_experts or self.dense_layers:
            raise ValueError(f"model {self.name!r}: top_k, shared_experts and dense_layers need experts >= 1")
        if self.ffn < 1 and (not self.experts or self.dense_layers):
            raise ValueError(f"model {self.name!r}: ffn={self.ffn}; dense layers need ffn >= 1")
        dtypes.canonical(self.dtype)
        if dtypes.itemsize(self.dtype) != 2:
            raise ValueError(f"model {self.name!r}: dtype={self.dtype!r}; expected a 16-bit type (bfloat16, float16)")

    # -- shape ----------------------------------------------------------------------------------
    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def kv_heads_(self) -> int:
        return self.kv_heads or self.heads

    @property
    def head_dim_(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def qk_dim(self) -> int:
        """Elements of one query/key head (scores cost 2 x this per query-key pair and head)."""
        return self.qk_head_dim or self.head_dim_

    @property
    def v_dim(self) -> int:
        return self.v_head_dim or self.head_dim_

    @property
    def dtype_bytes(self) -> int:
        return dtypes.itemsize(self.dtype)

    def layer_kind(self, i: int) -> str:
        """``"dense"`` or ``"moe"`` for layer ``i`` (0-based)."""
        return "moe" if self.moe and i >= self.dense_layers else "dense"

    def layer_counts(self, layers=None) -> dict:
        """``{"dense": n, "moe": n}`` over ``layers`` (indices; all by default)."""
        idx = range(self.layers) if layers is None else layers
        out = {"dense": 0, "moe": 0}
        for i in idx:
            out[self.layer_kind(i)] += 1
        return out

    # -- parameters ------------------------------------------------------------------------------
    @property
    def attn_params_per_layer(self) -> int:
        """Q, K, V and output projections (or MLA's given count)."""
        if self.attn_params is not None:
            return self.attn_params
        hd = self.head_dim_
        return 2 * self.hidden * self.heads * hd + 2 * self.hidden * self.kv_heads_ * hd

    @property
    def kv_per_token_per_layer(self) -> int:
        """K and V elements one token adds per layer: the KV cache, and what context parallelism passes."""
        if self.kv_per_token is not None:
            return self.kv_per_token
        return 2 * self.kv_heads_ * self.head_dim_

    @property
    def mlp_params(self) -> int:
        """A dense layer's FFN."""
        return self.ffn_matrices * self.hidden * self.ffn

    @property
    def expert_params(self) -> int:
        """One expert's FFN (routed or shared)."""
        return self.ffn_matrices * self.hidden * self.moe_ffn

    @property
    def router_params(self) -> int:
        return self.hidden * self.experts

    def layer_params(self, kind: str) -> dict:
        """``{"attn", "mlp" (dense FFN or shared experts + router), "experts" (routed)}`` of one layer."""
        if kind == "dense":
            return {"attn": self.attn_params_per_layer, "mlp": self.mlp_params, "experts": 0}
        return {"attn": self.attn_params_per_layer,
                "mlp": self.shared_experts * self.expert_params + self.router_params,
                "experts": self.experts * self.expert_params}

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def total_params(self) -> int:
        c = self.layer_counts()
        per = sum(n * sum(self.layer_params(k).values()) for k, n in c.items())
        return per + self.embedding_params * (1 if self.tied_embeddings else 2)

    def active_params_per_token(self) -> int:
        """Parameters one token's forward pass multiplies (top-k of the routed experts), head included."""
        c = self.layer_counts()
        out = 0
        for k, n in c.items():
            p = self.layer_params(k)
            routed = self.top_k * self.expert_params if k == "moe" else 0
            out += n * (p["attn"] + p["mlp"] + routed)
        return out + self.embedding_params

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["simplifications"] = list(self.simplifications)
        return out


FIELDS = tuple(f.name for f in fields(Model))


def _check_int(name, value, low, model):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)) or value < low:
        raise ValueError(f"model {model!r}: {name}={value!r}; expected an integer >= {low}")


def model_from_dict(doc: dict, name: str | None = None) -> Model:
    """A :class:`Model` from a mapping of its fields (a workload file's ``model`` section)."""
    if not isinstance(doc, dict):
        raise ValueError(f"model must be a mapping of {', '.join(FIELDS[:6])}, ... or a built-in name; "
                         f"got {type(doc).__name__}")
    base = {}
    if "base" in doc:     # a built-in model with some sizes changed
        base = builtin_model(doc["base"]).as_dict()
        doc = {k: v for k, v in doc.items() if k != "base"}
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ValueError(f"model: unknown key {unknown[0]!r}; expected base or one of {', '.join(FIELDS)}")
    merged = {**base, **doc}
    merged.setdefault("name", name or merged.get("name") or "model")
    if "simplifications" in merged:
        merged["simplifications"] = tuple(merged["simplifications"])
    missing = [k for k in ("layers", "hidden", "heads", "ffn") if k not in merged]
    if missing:
        raise ValueError(f"model {merged['name']!r}: missing {missing[0]!r}; a model needs layers, hidden, heads, ffn")
    return Model(**merged)


_DATA = None


def _data() -> dict:
    global _DATA
    if _DATA is None:
        with open(MODELS_FILE, encoding="utf-8") as fh:
            _DATA = json.load(fh)
    return _DATA


def builtin_models() -> list[str]:
    return sorted(_data()["models"])


def builtin_model(name: str) -> Model:
    """A built-in model by name (see the module docstring)."""
    models = _data()["models"]
    if not isinstance(name, str) or name not in models:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(models))}")
    return model_from_dict({**models[name]}, name)

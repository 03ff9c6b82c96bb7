"""The collectives of a step: for each layer and phase, what each group runs and how much.

Sizes are nccl-tests' S (what :func:`collectives.simulate` takes); ``A = T x hidden x dtype bytes``
is one micro-batch's activations on a tensor-parallel group (``T = micro_batch x seq_len / cp``
tokens, one per sequence when decoding), ``e`` the dtype's bytes.

Per layer and micro-batch (forward; the backward pass runs each one's transpose, of the same size):

- tensor parallelism (``tp > 1``): with sequence parallelism an allgather (S = A) before attention
  and before the FFN and a reduce-scatter (S = A) after each; without it an allreduce (S = A) after
  each (the backward's allreduces come before each instead: Megatron-LM's f and g operators). In an
  MoE layer the FFN's pair is around the routed experts: the tokens each device received, allgathered
  over its tensor-parallel group and reduce-scattered back (S = tp x received tokens x hidden x e,
  by expert-parallel rank), each expert split over the group as the dense FFN is;
- expert parallelism (``ep > 1``, MoE layers): the dispatch, an ``alltoallv`` of the routing counts
  (:func:`collectives.moe.topk_counts`: each device routes its ``T / tp`` sequence-parallel tokens
  to ``top_k`` experts, ``hidden`` elements per (token, expert) pair), and the combine, its
  transpose; the backward sends the gradients back the same two ways;
- context parallelism (``cp > 1``): the ring exchange of keys and values, a ring allgather of
  ``cp`` blocks of ``T x kv_per_token x e`` (split over ``tp`` when the KV heads are), overlapped
  with the attention core; the backward passes K, V and their gradients (twice the bytes);
- ZeRO-3 / FSDP: each layer's parameters allgathered over the data-parallel group (dense) and the
  expert-data-parallel group (experts) before its forward and again before its backward, and the
  gradients reduce-scattered after the backward, per micro-batch.

Per micro-batch and stage boundary: the pipeline's send of activations (forward) and of their
gradients (backward), ``A / tp`` with sequence parallelism, else ``A``.

Per step (training, ``zero`` 0 to 2): the gradients of each stage's dense weights over the
data-parallel group (S = parameters / tp x gradient bytes; allreduce with ``zero=0``, else
reduce-scatter) and of its expert weights over the expert-data-parallel group (S = expert
parameters / (ep x tp) x gradient bytes), and with ``zero`` 1 or 2 the updated parameters
allgathered back (S in the dtype). Groups of one device communicate nothing.

>>> from workloads.workload import builtin_workload
>>> w = builtin_workload("tiny-dense").resolved(8)
>>> [(o.group, o.collective, o.where, o.nbytes) for o in layer_ops(w, "dense") if o.phase == "fwd"]
[('tp', 'allgather', 'attn.in', 32768), ('tp', 'reduce_scatter', 'attn.out', 32768),
 ('tp', 'allgather', 'mlp.in', 32768), ('tp', 'reduce_scatter', 'mlp.out', 32768)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives import dtypes
from collectives.alltoallv import Counts
from collectives.moe import topk_counts

from .compute import tokens


@dataclass(frozen=True)
class Op:
    """One collective of a step, run by every group of kind ``group``.

    ``nbytes``: nccl-tests' S for every group, a tuple of S by the group's expert-parallel rank
    (tensor-parallel collectives around the routed experts), or the :class:`Counts` of an
    ``alltoallv`` (elements). ``per``: ``"layer"`` (once per layer and micro-batch), ``"boundary"``
    (per micro-batch and stage boundary), ``"step"``. ``overlap``: ``"exposed"`` (on the critical
    path), ``"core"`` (hidden behind the attention core), ``"prefetch"`` (behind the previous
    layer's compute), ``"backward"`` (behind the last micro-batch's backward pass), ``"forward"``
    (behind the next step's first forward pass). ``stage``: the pipeline stage of a per-step op.
    """

    group: str
    collective: str
    nbytes: object
    phase: str
    where: str
    per: str = "layer"
    overlap: str = "exposed"
    dtype: str = "bfloat16"
    algorithm: str = "auto"
    stage: int | None = None

    @property
    def kind(self) -> str:
        """``"<group> <collective>"``, the breakdown's key (``"pp p2p"`` for the pipeline's sends)."""
        return f"{self.group} {'p2p' if self.group == 'pp' else self.collective}"

    def size_for(self, ep_rank: int = 0):
        if isinstance(self.nbytes, tuple):
            return self.nbytes[ep_rank]
        return self.nbytes

    def total_bytes(self) -> int:
        """Bytes of one group's call (the largest over expert-parallel ranks; an alltoallv's total)."""
        if isinstance(self.nbytes, tuple):
            return max(self.nbytes)
        if isinstance(self.nbytes, Counts):
            return self.nbytes.total * dtypes.itemsize(self.dtype)
        return int(self.nbytes)


def dispatch_tokens(w) -> int:
    """Tokens each device routes at an MoE layer (its sequence-parallel share)."""
    T = tokens(w.model, w.parallel, w.mode)
    return T // w.parallel.tp if w.parallel.sp else T


def routing(w):
    """``(counts, pairs received per expert-parallel rank)``: the dispatch :class:`Counts` of one
    expert-parallel group (None without expert parallelism) and the routed (token, expert) pairs
    each of its devices receives."""
    m, par = w.model, w.parallel
    if not m.moe:
        return None, np.zeros(1)
    n = dispatch_tokens(w)
    if par.ep == 1:
        return None, np.array([float(n * m.top_k)])
    counts = topk_counts(par.ep, n, m.hidden, m.experts, m.top_k, skew=w.skew, seed=w.seed)
    return counts, counts.recv.astype(np.float64) / m.hidden


def layer_ops(w, kind: str, counts=None, pairs=None) -> list:
    """The collectives of one ``kind`` layer (``"dense"``/``"moe"``) per micro-batch, forward then
    backward (training only); see the module docstring."""
    m, par = w.model, w.parallel
    e = m.dtype_bytes
    dt = m.dtype
    T = tokens(m, par, w.mode)
    A = T * m.hidden * e
    phases = ("fwd", "bwd") if w.mode == "train" else ("fwd",)
    if kind == "moe" and counts is None and pairs is None:
        counts, pairs = routing(w)
    out = []
    for ph in phases:
        ops = []
        if par.tp > 1:
            if par.sp:
                first, second = ("allgather", "reduce_scatter") if ph == "fwd" else ("reduce_scatter", "allgather")
                ops += [Op("tp", first, A, ph, "attn.in", dtype=dt), Op("tp", second, A, ph, "attn.out", dtype=dt)]
                if kind == "dense":
                    ops += [Op("tp", first, A, ph, "mlp.in", dtype=dt), Op("tp", second, A, ph, "mlp.out", dtype=dt)]
            else:
                where = ("attn.out", "mlp.out") if ph == "fwd" else ("attn.in", "mlp.in")
                ops += [Op("tp", "allreduce", A, ph, x, dtype=dt) for x in where]
        if par.cp > 1:
            kv_shard = par.tp if (m.attention == "gqa" and m.kv_heads_ % par.tp == 0) else 1
            block = T * m.kv_per_token_per_layer * e // kv_shard
            ops.append(Op("cp", "allgather", par.cp * block * (1 if ph == "fwd" else 2), ph, "attn.kv",
                          overlap="core", dtype=dt, algorithm="ring"))
        if kind == "moe":
            if par.ep > 1:
                first, second = (counts, Counts(counts.matrix.T)) if ph == "fwd" else (counts, Counts(counts.matrix.T))
                ops.append(Op("ep", "alltoallv", first, ph, "moe.dispatch" if ph == "fwd" else "moe.combine.grad",
                              dtype=dt))
            if par.tp > 1:
                sizes = tuple(int(par.tp * round(r) * m.hidden * e) for r in pairs)
                a, b = ("allgather", "reduce_scatter") if ph == "fwd" else ("reduce_scatter", "allgather")
                ops += [Op("tp", a, sizes, ph, "moe.expert.in", dtype=dt),
                        Op("tp", b, sizes, ph, "moe.expert.out", dtype=dt)]
            if par.ep > 1:
                ops.append(Op("ep", "alltoallv", second, ph, "moe.combine" if ph == "fwd" else "moe.dispatch.grad",
                              dtype=dt))
        if par.zero == 3 and w.mode == "train":
            p = m.layer_params(kind)
            dense = (p["attn"] + p["mlp"]) // par.tp * e
            expert = p["experts"] // (par.ep * par.tp) * e
            g = dtypes.itemsize(w.grad_dtype)
            if w.group_size("dp") > 1:
                ops.append(Op("dp", "allgather", dense, ph, "fsdp.params", overlap="prefetch", dtype=dt))
                if ph == "bwd":
                    ops.append(Op("dp", "reduce_scatter", dense // e * g, ph, "fsdp.grads", overlap="prefetch",
                                  dtype=w.grad_dtype))
            if expert and w.group_size("edp") > 1:
                ops.append(Op("edp", "allgather", expert, ph, "fsdp.params", overlap="prefetch", dtype=dt))
                if ph == "bwd":
                    ops.append(Op("edp", "reduce_scatter", expert // e * g, ph, "fsdp.grads", overlap="prefetch",
                                  dtype=w.grad_dtype))
        out += ops
    return out


def boundary_ops(w) -> list:
    """The pipeline's sends per micro-batch and stage boundary (none without pipelining)."""
    par = w.parallel
    if par.pp == 1:
        return []
    m = w.model
    A = tokens(m, par, w.mode) * m.hidden * m.dtype_bytes
    elems = (A // par.tp if par.sp else A) // m.dtype_bytes
    c = Counts([[0, elems], [0, 0]])
    phases = ("fwd", "bwd") if w.mode == "train" else ("fwd",)
    return [Op("pp", "alltoallv", c, ph, "act" if ph == "fwd" else "act.grad", per="boundary", dtype=m.dtype)
            for ph in phases]


def stage_params(w, stage: int) -> dict:
    """``{"dense": n, "experts": n}``: the parameters of one pipeline stage (its layers, the
    embedding on the first stage, the LM head on the last; the head shares the embedding when tied)."""
    m = w.model
    out = {"dense": 0, "experts": 0}
    for i in w.stage_layers(stage):
        p = m.layer_params(m.layer_kind(i))
        out["dense"] += p["attn"] + p["mlp"]
        out["experts"] += p["experts"]
    if stage == 0:
        out["dense"] += m.embedding_params
    if stage == w.parallel.pp - 1 and (not m.tied_embeddings or w.parallel.pp > 1):
        out["dense"] += m.embedding_params
    return out


def step_ops(w) -> list:
    """The per-step data-parallel collectives of every stage (training with ``zero`` 0 to 2)."""
    par, m = w.parallel, w.model
    if w.mode != "train" or par.zero == 3:
        return []
    e, g = m.dtype_bytes, dtypes.itemsize(w.grad_dtype)
    out = []
    for s in range(par.pp):
        p = stage_params(w, s)
        for group, n in (("dp", p["dense"] // par.tp), ("edp", p["experts"] // (par.ep * par.tp))):
            if not n or w.group_size(group) < 2:
                continue
            grads = "allreduce" if par.zero == 0 else "reduce_scatter"
            out.append(Op(group, grads, n * g, "step", "grads", per="step", overlap="backward", dtype=w.grad_dtype,
                          stage=s))
            if par.zero in (1, 2):
                out.append(Op(group, "allgather", n * e, "step", "params", per="step", overlap="forward", dtype=m.dtype,
                              stage=s))
    return out

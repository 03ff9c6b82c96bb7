"""Ring algorithms: data flows around devices 0 -> 1 -> ... -> P-1 -> 0 in P-1 steps per phase.

Reduce-scatter: in step k device i sends chunk (i-1-k) mod P to i+1, which reduces it; after P-1
steps device i holds the full reduction of chunk i. Allgather: in step k device i forwards chunk
(i-k) mod P. Allreduce is the two back to back over P chunks of the buffer (NCCL's Ring).
"""

from __future__ import annotations

import numpy as np

from ..registry import algorithm
from ..schedule import Phase, Schedule, split


def _pairs(P):
    src = np.arange(P, dtype=np.int64)
    return src, (src + 1) % P


def reduce_scatter_phase(P, name="reduce-scatter"):
    src, dst = _pairs(P)
    return Phase(name, src, dst, lambda k: ((src - 1 - k) % P,) * 2, reduce=True, repeat=P - 1)


def allgather_phase(P, name="allgather"):
    src, dst = _pairs(P)
    return Phase(name, src, dst, lambda k: ((src - k) % P,) * 2, reduce=False, repeat=P - 1)


@algorithm("allreduce", "ring")
def ring_allreduce(spec, P, count, root=0, topology=None):
    off, ln = split(count, P)
    phases = [reduce_scatter_phase(P), allgather_phase(P)] if P > 1 else []
    return Schedule(spec.name, "ring", P, count, count, off, ln, phases, root)


@algorithm("reduce_scatter", "ring")
def ring_reduce_scatter(spec, P, count, root=0, topology=None):
    off, ln = split(P * count, P)
    phases = [reduce_scatter_phase(P)] if P > 1 else []
    return Schedule(spec.name, "ring", P, count, P * count, off, ln, phases, root)


@algorithm("allgather", "ring")
def ring_allgather(spec, P, count, root=0, topology=None):
    off, ln = split(P * count, P)
    phases = [allgather_phase(P)] if P > 1 else []
    return Schedule(spec.name, "ring", P, count, P * count, off, ln, phases, root)

"""Direct (mesh) algorithms: every device talks to every other at once, filling a full mesh or a
switch's ports in one step; and pairwise exchange, one peer per step.

- allreduce ``direct`` (HCCL Mesh, RCCL "allpairs"): step 1 every device sends chunk j of its buffer
  to device j, which reduces the P-1 pieces; step 2 device j sends the reduced chunk j to all.
- allgather ``direct``: every device sends its block to every other in one step.
- reduce_scatter ``direct``: every device sends block j to device j, which reduces them.
- alltoall ``direct``: all P(P-1) blocks in one step; ``pairwise``: in step k device i sends to
  i+k and receives from i-k (k = 1..P-1), as MPI and HCCL's Pairwise do.
- alltoallv ``direct`` and ``pairwise``: the same steps with each pair's own block (its count);
  pairs with nothing to send are left out, and so is a step left empty. Pairwise's step k lasts as
  long as its largest block, HCCL's documented ``(p-1) alpha + beta sum_k max_i n(i, i+k)``.
- gather ``direct``: every device sends its block to the root in one step; scatter ``direct``: the
  root sends block j to device j in one step. What nccl-tests' ``gather_perf`` / ``scatter_perf``
  run: one group of ``ncclSend``/``ncclRecv`` (the root's own block stays where it is).
- sendrecv ``direct``: device i sends its buffer to ``i+1`` (mod P) in one step, nccl-tests'
  ``sendrecv_perf`` (one device: a local copy, as NCCL's send to itself).
"""

from __future__ import annotations

import numpy as np

from ..registry import algorithm, resolve_params
from ..schedule import Phase, Schedule, fixed, split


def _all_pairs(P):
    """Every ordered pair (i, j), i != j: src i, dst j."""
    i, j = np.divmod(np.arange(P * P, dtype=np.int64), P)
    keep = i != j
    return i[keep], j[keep]


def _scatter_reduce(P, name="scatter-reduce"):
    src, dst = _all_pairs(P)
    return Phase(name, src, dst, fixed(dst), reduce=True)


def _gather_all(P, name="gather"):
    src, dst = _all_pairs(P)
    return Phase(name, src, dst, fixed(src), reduce=False)


@algorithm("allreduce", "direct", large_scale=True, sub_name="direct")
def direct_allreduce(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(count, P)
    phases = [_scatter_reduce(P), _gather_all(P)] if P > 1 else []
    return Schedule(spec.name, "direct", P, count, count, off, ln, phases, root)


@algorithm("reduce_scatter", "direct", sub_name="direct")
def direct_reduce_scatter(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(P * count, P)
    phases = [_scatter_reduce(P)] if P > 1 else []
    return Schedule(spec.name, "direct", P, count, P * count, off, ln, phases, root)


@algorithm("allgather", "direct", large_scale=True, sub_name="direct")
def direct_allgather(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(P * count, P)
    phases = [_gather_all(P)] if P > 1 else []
    return Schedule(spec.name, "direct", P, count, P * count, off, ln, phases, root)


def _alltoall_chunks(P, count):
    # chunk j (< P): send block j; chunk P + i: receive block i.
    return split(2 * P * count, 2 * P)


def _self_copy(P):
    d = np.arange(P, dtype=np.int64)
    return Phase("local-copy", d, d, fixed(d, P + d))


class PatternPhase(Phase):
    """A phase whose transfers follow a symmetric pattern (``pattern``, a
    :class:`topologies.symmetry.Circulant`): the time plane solves it on the topology's quotient
    (:meth:`topologies.network.StepTimer.time_pattern`) without building its arrays, which are made
    on first use (the data plane, the checker, a fallback to the general timing)."""

    __slots__ = ("pattern",)

    def __init__(self, name, pattern, expand, chunks, reduce=False, repeat=1):
        super().__init__(name, expand, None, chunks, reduce, repeat)
        self.pattern = pattern


def _lazy_chunks(make):
    """A ``chunks`` callable for a one-step phase whose chunk arrays ``make()`` builds on first use."""
    made = []

    def chunks(k):
        if not made:
            made.append(make())
        return made[0]
    return chunks


@algorithm("alltoall", "direct", large_scale=True)
def direct_alltoall(spec, P, count, root=0, topology=None, **params):
    from topologies.symmetry import Circulant

    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = _alltoall_chunks(P, count)

    def expand():
        src, dst = _all_pairs(P)
        return np.concatenate([np.arange(P), src]), np.concatenate([np.arange(P), dst])

    def chunks():
        src, dst = _all_pairs(P)
        return (np.concatenate([np.arange(P), dst]), np.concatenate([P + np.arange(P), P + src]))

    # Every ordered pair (and each device's own block, a local copy): P^2 transfers, built only if asked for.
    send = PatternPhase("exchange", Circulant(P, range(P)), expand, _lazy_chunks(chunks))
    return Schedule(spec.name, "direct", P, count, 2 * P * count, off, ln, [send], root)


@algorithm("alltoall", "pairwise")
def pairwise_alltoall(spec, P, count, root=0, topology=None, **params):
    from topologies.symmetry import Circulant

    resolve_params(spec.name, "pairwise", params)  # no parameters: reject unknown ones
    off, ln = _alltoall_chunks(P, count)
    phases = [_self_copy(P)]
    for k in range(1, P):
        def expand(k=k):
            src = np.arange(P, dtype=np.int64)
            return src, (src + k) % P

        def chunks(k=k):
            src = np.arange(P, dtype=np.int64)
            return (src + k) % P, P + src
        phases.append(PatternPhase(f"exchange{k}", Circulant(P, k), expand, _lazy_chunks(chunks)))
    return Schedule(spec.name, "pairwise", P, count, 2 * P * count, off, ln, phases, root)


# -- alltoallv: chunk i * P + j is device i's block for j, chunk P * P + i its own block received
#    (collectives.alltoallv.PairPlacement); every builder takes the call's counts.

def _alltoallv_counts(spec, P, count, name, params):
    return spec.counts_for(P, count, resolve_params(spec.name, name, params)["counts"])


def _v_phase(name, counts, src, dst):
    """The transfers src[i] -> dst[i] that carry something, as one phase (None if none does)."""
    P = counts.P
    keep = counts.matrix[src, dst] > 0
    src, dst = src[keep], dst[keep]
    if not len(src):
        return None
    chunk = src * P + dst
    return Phase(name, src, dst, fixed(chunk, np.where(src == dst, P * P + src, chunk)))


@algorithm("alltoallv", "direct", params={"counts": None}, large_scale=True)
def direct_alltoallv(spec, P, count, root=0, topology=None, **params):
    counts = _alltoallv_counts(spec, P, count, "direct", params)
    src, dst = np.divmod(np.arange(P * P, dtype=np.int64), P)
    phases = [ph for ph in [_v_phase("exchange", counts, src, dst)] if ph is not None]
    return spec.schedule("direct", counts, phases, root)


@algorithm("alltoallv", "pairwise", params={"counts": None})
def pairwise_alltoallv(spec, P, count, root=0, topology=None, **params):
    counts = _alltoallv_counts(spec, P, count, "pairwise", params)
    src = np.arange(P, dtype=np.int64)
    phases = [_v_phase("local-copy", counts, src, src)]
    phases += [_v_phase(f"exchange{k}", counts, src, (src + k) % P) for k in range(1, P)]
    return spec.schedule("pairwise", counts, [ph for ph in phases if ph is not None], root)


# -- nccl-tests' point-to-point collectives: one group of ncclSend/ncclRecv, all transfers in one step

@algorithm("gather", "direct", large_scale=True)
def direct_gather(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(P * count, P)                # chunk d: device d's slot
    src = np.delete(np.arange(P, dtype=np.int64), root)
    phases = [Phase("gather", src, np.full(P - 1, root, dtype=np.int64), fixed(src))] if P > 1 else []
    return Schedule(spec.name, "direct", P, count, P * count, off, ln, phases, root)


@algorithm("scatter", "direct", large_scale=True)
def direct_scatter(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(P * count, P)                # chunk d: device d's slot
    dst = np.delete(np.arange(P, dtype=np.int64), root)
    phases = [Phase("scatter", np.full(P - 1, root, dtype=np.int64), dst, fixed(dst))] if P > 1 else []
    return Schedule(spec.name, "direct", P, count, P * count, off, ln, phases, root)


@algorithm("sendrecv", "direct", large_scale=True)
def direct_sendrecv(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "direct", params)  # no parameters: reject unknown ones
    off, ln = split(2 * count, 2)                # chunk 0: the send block, chunk 1: the receive block
    src = np.arange(P, dtype=np.int64)
    shift = Phase("shift", src, (src + 1) % P, fixed(np.zeros(P, np.int64), np.ones(P, np.int64)))
    return Schedule(spec.name, "direct", P, count, 2 * count, off, ln, [shift], root)

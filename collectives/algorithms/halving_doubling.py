"""Recursive halving and doubling (Thakur, Rabenseifner and Gropp 2005; MPICH; HCCL's H-D_R).

The power-of-two core works on ``p' = 2^floor(log2 P)`` *virtual ranks*. For other P, the
``r = P - p'`` extra devices are folded in first, as MPICH does: among the first ``2r`` devices,
each even device ``2i`` hands its data to ``2i+1`` (which becomes virtual rank ``i``); devices
``2r..P-1`` become virtual ranks ``r..p'-1``. After the core, ``2i+1`` hands the result back to
``2i``. One extra step before and one after.

- allreduce ``recursive_doubling``: in step k virtual ranks ``v`` and ``v xor 2^k`` exchange their
  whole buffers and reduce: ``lg p' (alpha + n beta + n gamma)``. A device cannot reduce into the
  buffer it is sending in the same step, so each device receives into a scratch buffer (an endpoint
  at the device itself, see :func:`~collectives.algorithms.pipeline.scratch_endpoints`) and then
  reduces locally in a step of its own, as MPICH's ``sendrecv`` + local reduce does.
- allreduce ``halving_doubling`` (Rabenseifner): reduce-scatter by recursive halving over ``p'``
  blocks (step k: partners at distance ``p'/2^(k+1)`` swap halves of what they are responsible for
  and reduce), then allgather by recursive doubling: ``2 lg p' alpha + 2 (p'-1)/p' n beta +
  (p'-1)/p' n gamma`` for a power of two.
- reduce_scatter ``recursive_halving``: the first half of the above on the P slots.
- allgather ``recursive_doubling``: step k: partners at distance ``2^k`` swap everything they hold:
  ``lg p' alpha + (p'-1)/p' n beta`` for a power of two.
- hypercube ``recursive_doubling``: the same exchanges on a power of two (the collective takes no
  other P): nccl-tests' ``hypercube_perf``, whose step ``mask = 2^k`` sends the ``mask`` blocks from
  ``rank & ~(mask-1)`` to ``rank ^ mask``, one group of ``ncclSend``/``ncclRecv`` per step.
"""

from __future__ import annotations

import numpy as np

from ..registry import algorithm, resolve_params
from ..schedule import Phase, Schedule, fixed, split
from .pipeline import pow2_floor, scratch_endpoints


class Fold:
    """Virtual ranks of the power-of-two core and the devices they stand for."""

    def __init__(self, P):
        self.P = P
        self.p2 = pow2_floor(P)
        self.r = P - self.p2
        v = np.arange(self.p2, dtype=np.int64)
        self.vdev = np.where(v < self.r, 2 * v + 1, v + self.r)     # virtual rank -> its device
        self.extra = 2 * np.arange(self.r, dtype=np.int64)           # devices folded into 2i+1
        self.levels = self.p2.bit_length() - 1
        # Slots (devices) a virtual rank answers for: 2v and 2v+1 for v < r, else v + r.
        self.slot1 = np.where(v < self.r, 2 * v, v + self.r)
        self.slot2 = np.where(v < self.r, 2 * v + 1, -1)

    def slots_of(self, owner, w):
        """Transfer arrays for "``owner[i]`` handles the slots of virtual rank ``w[i]``":
        ``(index into owner, slot)`` over every slot of every ``w``."""
        idx = np.arange(len(w), dtype=np.int64)
        two = self.slot2[w] >= 0
        return (np.concatenate([idx, idx[two]]), np.concatenate([self.slot1[w], self.slot2[w][two]]))

    def fold(self, name, chunks_for, reduce):
        """Devices ``2i -> 2i+1`` sending the chunks ``chunks_for(i)`` (one phase)."""
        return self._pairs(name, chunks_for, 0, reduce)

    def unfold(self, name, chunks_for):
        """Devices ``2i+1 -> 2i`` copying the chunks ``chunks_for(i)`` (one phase)."""
        return self._pairs(name, chunks_for, 1, False)

    def _pairs(self, name, chunks_for, first, reduce):
        if not self.r:
            return []
        parts = [np.asarray(chunks_for(i), dtype=np.int64) for i in range(self.r)]
        src = np.concatenate([np.full(len(p), 2 * i + first, dtype=np.int64) for i, p in enumerate(parts)])
        c = np.concatenate(parts)
        return [Phase(name, src, src + 1 - 2 * first, fixed(c), reduce=reduce)]


def _ranges(p2, levels, halving):
    """For each step: ``(distance, start of the range of virtual ranks v sends, for every v)``.

    Halving (reduce-scatter): distances p'/2, p'/4, ..., 1; v sends the half of its current range
    that does not contain v. Doubling (allgather): distances 1, 2, ..., p'/2; v sends all it has.
    """
    v = np.arange(p2, dtype=np.int64)
    out = []
    for k in range(levels):
        d = (p2 >> (k + 1)) if halving else (1 << k)
        if halving:
            start = (v & ~(2 * d - 1)) + np.where(v & d, 0, d)     # the partner's half
        else:
            start = v & ~(d - 1)                                   # the block of d that v holds
        out.append((d, start))
    return out


def _block_steps(fold: Fold, name, halving, reduce, slots_mode):
    """Phases of recursive halving / doubling over chunks named by virtual rank.

    ``slots_mode``: chunks are the P device slots (a virtual rank answers for one or two);
    otherwise chunk ``w`` is block ``w`` of the ``p'`` blocks.
    """
    phases = []
    p2 = fold.p2
    v = np.arange(p2, dtype=np.int64)
    for k, (d, start) in enumerate(_ranges(p2, fold.levels, halving)):
        owner = np.repeat(v, d)
        w = (start[:, None] + np.arange(d, dtype=np.int64)[None, :]).ravel()
        if slots_mode:
            i, chunk = fold.slots_of(owner, w)
            owner = owner[i]
        else:
            chunk = w
        src, dst = fold.vdev[owner], fold.vdev[owner ^ d]
        phases.append(Phase(f"{name}{k}", src, dst, fixed(chunk), reduce=reduce))
    return phases


@algorithm("allreduce", "halving_doubling", large_scale=True, sub_name="halving_doubling")
def halving_doubling_allreduce(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "halving_doubling", params)
    fold = Fold(P)
    off, ln = split(count, fold.p2)
    blocks = np.arange(fold.p2)
    phases = (fold.fold("fold", lambda i: blocks, reduce=True)
              + _block_steps(fold, "halving", True, True, slots_mode=False)
              + _block_steps(fold, "doubling", False, False, slots_mode=False)
              + fold.unfold("unfold", lambda i: blocks))
    return Schedule(spec.name, "halving_doubling", P, count, count, off, ln, phases, root)


@algorithm("allreduce", "recursive_doubling", large_scale=True)
def recursive_doubling_allreduce(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "recursive_doubling", params)
    fold = Fold(P)
    off, ln = np.array([0], dtype=np.int64), np.array([count], dtype=np.int64)
    phases = fold.fold("fold", lambda i: [0], reduce=True)
    v = np.arange(fold.p2, dtype=np.int64)
    zero = np.zeros(fold.p2, dtype=np.int64)
    dev = fold.vdev
    for k in range(fold.levels):
        partner = dev[v ^ (1 << k)]
        # Into the partner's scratch row (P + device), then reduce it in locally.
        phases.append(Phase(f"exchange{k}", dev, P + partner, fixed(zero)))
        phases.append(Phase(f"reduce{k}", P + dev, dev, fixed(zero), reduce=True))
    phases += fold.unfold("unfold", lambda i: [0])
    endpoints = scratch_endpoints(P, topology) if fold.levels else []
    return Schedule(spec.name, "recursive_doubling", P, count, count, off, ln, phases, root, endpoints=endpoints)


@algorithm("reduce_scatter", "recursive_halving", large_scale=True, sub_name="halving_doubling")
def recursive_halving_reduce_scatter(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "recursive_halving", params)
    fold = Fold(P)
    off, ln = split(P * count, P)
    phases = (fold.fold("fold", lambda i: np.arange(P), reduce=True)
              + _block_steps(fold, "halving", True, True, slots_mode=True)
              + fold.unfold("unfold", lambda i: [2 * i]))
    return Schedule(spec.name, "recursive_halving", P, count, P * count, off, ln, phases, root)


@algorithm("allgather", "recursive_doubling", large_scale=True, sub_name="halving_doubling")
def recursive_doubling_allgather(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "recursive_doubling", params)
    fold = Fold(P)
    off, ln = split(P * count, P)
    everything = np.arange(P)
    phases = (fold.fold("fold", lambda i: [2 * i], reduce=False)
              + _block_steps(fold, "doubling", False, False, slots_mode=True)
              + fold.unfold("unfold", lambda i: everything[everything != 2 * i]))
    return Schedule(spec.name, "recursive_doubling", P, count, P * count, off, ln, phases, root)


@algorithm("hypercube", "recursive_doubling", large_scale=True)
def recursive_doubling_hypercube(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "recursive_doubling", params)
    fold = Fold(P)                               # a power of two (spec.check_devices): nothing to fold
    off, ln = split(P * count, P)
    phases = _block_steps(fold, "hypercube", False, False, slots_mode=True)
    return Schedule(spec.name, "recursive_doubling", P, count, P * count, off, ln, phases, root)

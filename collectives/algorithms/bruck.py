"""Bruck's algorithms (Bruck et al. 1997; TRG 2005): ceil(log2 P) steps for any P, for small messages.

- allgather ``bruck``: in step k device r sends the ``min(2^k, P - 2^k)`` blocks it holds
  (``r, r+1, ...``) to ``r - 2^k`` and receives the next ones from ``r + 2^k``:
  ``ceil(lg P) alpha + (P-1)/P n beta``. Blocks keep their place in the output, so the rotations of
  the textbook version (which packs into a contiguous buffer) are not needed.
- reduce_scatter ``bruck``: the same steps in reverse order and direction, reducing (the dual of
  the allgather): ``ceil(lg P) alpha + (P-1)/P n (beta + gamma)``.
- alltoall ``bruck``: local rotation (block j of device r is the one for ``r + j``), then in step k
  every device sends the blocks whose index has bit k set to ``r + 2^k``, then the inverse rotation
  into the receive slots: ``ceil(lg P) alpha + (about n/2 per step) beta``. Rotations are local
  copies; the exchanges ping-pong between the send and receive halves of the buffer because no chunk
  may be read and written in one step, and the inverse rotation is folded into the last exchange
  when the parity allows.
"""

from __future__ import annotations

import numpy as np

from ..registry import algorithm, resolve_params
from ..schedule import Phase, Schedule, fixed, split
from .direct import _alltoall_chunks
from .pipeline import ceil_log2


def _bruck_steps(P):
    """``(distance 2^k, blocks per step min(2^k, P - 2^k))`` for k = 0..ceil(lg P)-1."""
    return [(1 << k, min(1 << k, P - (1 << k))) for k in range(ceil_log2(P))]


@algorithm("allgather", "bruck", sub_name="bruck")
def bruck_allgather(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "bruck", params)
    off, ln = split(P * count, P)
    r = np.arange(P, dtype=np.int64)
    phases = []
    for k, (dist, cnt) in enumerate(_bruck_steps(P)):
        src = np.repeat(r, cnt)
        slot = (src + np.tile(np.arange(cnt), P)) % P
        phases.append(Phase(f"bruck{k}", src, (src - dist) % P, fixed(slot)))
    return Schedule(spec.name, "bruck", P, count, P * count, off, ln, phases, root)


@algorithm("reduce_scatter", "bruck", sub_name="bruck")
def bruck_reduce_scatter(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "bruck", params)
    off, ln = split(P * count, P)
    q = np.arange(P, dtype=np.int64)
    phases = []
    for k, (dist, cnt) in reversed(list(enumerate(_bruck_steps(P)))):
        # Dual of allgather step k: q sends the partial sums of slots q + 2^k + j (j < cnt) to q + 2^k.
        src = np.repeat(q, cnt)
        slot = (src + dist + np.tile(np.arange(cnt), P)) % P
        phases.append(Phase(f"bruck{k}", src, (src + dist) % P, fixed(slot), reduce=True))
    return Schedule(spec.name, "bruck", P, count, P * count, off, ln, phases, root)


@algorithm("alltoall", "bruck")
def bruck_alltoall(spec, P, count, root=0, topology=None, **params):
    resolve_params(spec.name, "bruck", params)
    off, ln = _alltoall_chunks(P, count)        # chunk j: send block j; chunk P + i: receive block i
    S, R = 0, P                                  # chunk offsets of the two halves
    r = np.arange(P, dtype=np.int64)
    steps = ceil_log2(P)
    rr = np.repeat(r, P)                         # device of each (device, position) pair
    jj = np.tile(r, P)                           # position j in the rotated order
    final = R + (rr - jj) % P                    # where position j ends on device rr: receive slot r - j
    # Rotation: position j of device r is its send block r + j, destined to r + j.
    phases = [Phase("rotate", rr, rr, fixed(S + (rr + jj) % P, R + jj))]
    here = R                                     # the half holding positions (chunk here + j)
    for k in range(steps):
        bit = (jj >> k) & 1
        dst = np.where(bit == 1, (rr + (1 << k)) % P, rr)     # bit set: on to r + 2^k; else keep (local copy)
        last = k == steps - 1
        there = S if here == R else R
        # A device receives position j from its source, which is dst's own position j.
        if last and there == R:
            dchunk = R + (dst - jj) % P                         # inverse rotation folded in
        else:
            dchunk = there + jj
        phases.append(Phase(f"bruck{k}", rr, dst, fixed(here + jj, dchunk)))
        here = there
    if steps and here == S:             # (P = 1: the rotation already wrote the receive slot)
        phases.append(Phase("unrotate", rr, rr, fixed(here + jj, final)))
    return Schedule(spec.name, "bruck", P, count, 2 * P * count, off, ln, phases, root)

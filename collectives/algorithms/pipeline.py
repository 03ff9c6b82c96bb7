"""Building blocks shared by the algorithm modules: chunked pipelines, ring orders, scratch rows.

A *pipeline* is a set of transfers ``src[i] -> dst[i]`` that each carry chunks ``0, 1, ..., C-1`` one
per step, transfer ``i`` starting ``lag[i]`` steps late: in step ``t`` it moves chunk ``t - lag[i]``.
Chain broadcast (lag = position in the chain), tree reduce (lag = depth below the deepest leaf) and
tree broadcast (lag = depth) are all pipelines. :func:`pipeline_phases` turns one into phases whose
steps share their (src, dst) arrays, so the network model times the steady state once.
"""

from __future__ import annotations

import math

import numpy as np

from ..schedule import Phase

#: Pipeline depth (``chunks``) of pipelined algorithms when nothing tunes it (the data plane, which
#: has no topology): small, but enough to exercise the pipelines.
DATA_PLANE_CHUNKS = 3


# Pipeline shapes the time plane sizes ``chunks`` from (see ``collectives.registry.Algorithm.pipeline``).
def chain_pipeline(P, channels):
    """A chain root -> ... -> last (ring broadcast and reduce): P-2 hops after the first, one
    link per sender, each channel's chain carrying 1/channels of the data."""
    return P - 2, 1.0 / channels, "pair", 1.0


def tree_pipeline(P, channels):
    """Up then down a double binary tree: half the data per tree, two trees sharing each link."""
    return 2 * max(1, ceil_log2(P)), 1.0 / (2 * channels), "pair", 0.5


def switch_pipeline(P, channels):
    """Up to a reducing switch and down one step later, at a device's whole injection rate."""
    return 1, 1.0, "inject", 1.0


def pipeline_phases(name, src, dst, lag, nchunks, chunk_of, reduce=False) -> list[Phase]:
    """Phases of a pipeline (see the module docstring).

    Parameters
    ----------
    src, dst, lag : array_like of int
        Transfer ``i`` goes ``src[i] -> dst[i]`` and moves chunk ``t - lag[i]`` in step ``t``.
    nchunks : int
        Chunks ``C`` every transfer carries.
    chunk_of : callable
        ``chunk_of(i, j) -> (src_chunk, dst_chunk)`` for arrays of transfer indices ``i`` and chunk
        numbers ``j``.
    reduce : bool
        Whether the receivers reduce.

    Steps in which the set of active transfers is the same form one phase with a ``repeat`` count;
    steps with no active transfer are left out.
    """
    src, dst, lag = (np.asarray(a, dtype=np.int64) for a in (src, dst, lag))
    if len(src) == 0 or nchunks < 1:
        return []
    # The active set only changes when some transfer starts (t = lag) or ends (t = lag + C).
    events = np.unique(np.concatenate([lag, lag + nchunks]))
    phases = []
    for a, b in zip(events[:-1], events[1:]):
        active = np.flatnonzero((lag <= a) & (a < lag + nchunks))
        if len(active) == 0:
            continue
        act_lag = lag[active]

        def chunks(k, a=a, active=active, act_lag=act_lag):
            return chunk_of(active, a + k - act_lag)

        phases.append(Phase(name, src[active], dst[active], chunks, reduce=reduce, repeat=int(b - a)))
    return phases


# -- rings over different links ------------------------------------------------------------------

def coprime_strides(P: int) -> list[int]:
    """Strides ``s`` with ``gcd(s, P) == 1``: ``i -> i + s mod P`` is one ring through all devices.

    Ordered 1, P-1 (the two directions of the index ring), then the others upward, so that the
    first channels also suit a physical ring.

    >>> coprime_strides(8)
    [1, 7, 3, 5]
    """
    if P <= 2:
        return [1]
    rest = [s for s in range(2, P - 1) if math.gcd(s, P) == 1]
    return [1, P - 1] + rest


def ring_orders(P: int, channels: int, start: int = 0) -> np.ndarray:
    """``(channels, P)`` device orders: channel ``c`` visits ``start, start + s_c, start + 2 s_c, ...``.

    On a full mesh each stride uses its own set of directed links, so channels do not share links
    until the coprime strides run out (then strides repeat and channels share rings).

    >>> ring_orders(5, 2).tolist()
    [[0, 1, 2, 3, 4], [0, 4, 3, 2, 1]]
    """
    strides = coprime_strides(P)
    s = np.array([strides[c % len(strides)] for c in range(channels)], dtype=np.int64)
    return (start + s[:, None] * np.arange(P, dtype=np.int64)[None, :]) % P


def mesh_rings(P: int) -> np.ndarray:
    """Directed rings through all P devices that together use every device pair's link alike.

    On a full mesh a ring on index strides uses 2 of a device's P-1 links, and the coprime strides
    reach only some of them (4 of 7 links at P = 8). These rings are Hamiltonian cycles from
    Walecki's construction: device ``P-1``, then the zig-zag path ``0, 1, -1, 2, -2, ...`` over the
    others (mod P-1), rotated. For odd P the ``(P-1)/2`` rotations
    cover every pair once; for even P the ``P-1`` rotations cover every pair twice (RCCL's 8-GPU
    xGMI model lists 7 such orders). Each cycle is taken in both directions, so every directed link
    carries the same number of rings: ``P-1`` rings for odd P, ``2(P-1)`` for even P.

    >>> mesh_rings(4).tolist()     # each of the 12 directed links of 4 devices in 2 of the 6 rings
    [[3, 0, 1, 2], [3, 1, 2, 0], [3, 2, 0, 1], [2, 1, 0, 3], [0, 2, 1, 3], [1, 0, 2, 3]]
    """
    if P <= 2:
        return np.array([[0, 1], [1, 0]] if P == 2 else [[0]], dtype=np.int64)
    m = P - 1                               # devices on the zig-zag; device P-1 is the fixed point
    zig = [0]
    for k in range(1, m):
        zig.append((k + 1) // 2 if k % 2 else -(k // 2))
    zig = np.array(zig, dtype=np.int64)
    rotations = m if P % 2 == 0 else m // 2
    cycles = [np.concatenate([[P - 1], (zig + r) % m]) for r in range(rotations)]
    out = cycles + [c[::-1] for c in cycles]
    return np.array(out, dtype=np.int64)


def check_count_param(name: str, value, minimum: int = 1) -> int:
    """An integer parameter (channels, chunks) or ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")
    return int(value)


# -- scratch rows ----------------------------------------------------------------------------------

def scratch_endpoints(P: int, topology=None) -> list:
    """Endpoint names for one scratch buffer per device, at the device itself.

    Algorithms that exchange and reduce whole buffers (recursive doubling) need somewhere to receive
    the partner's data before reducing it in: a schedule's endpoint ``P + d`` named after device
    ``d``'s node is such a buffer. Transfers between ``d`` and ``P + d`` stay on the device (the
    network model sees the same node at both ends).
    """
    if topology is None:
        return [f"scratch{d}" for d in range(P)]
    return [topology.device_node(d) for d in range(P)]


def pow2_floor(P: int) -> int:
    """The largest power of two not above ``P`` (``P >= 1``)."""
    return 1 << (int(P).bit_length() - 1)


def ceil_log2(P: int) -> int:
    return (int(P) - 1).bit_length()

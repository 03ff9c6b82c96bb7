"""Ring algorithms: data flows around a ring of devices, one neighbour per step.

Reduce-scatter: in step k the device at ring position p sends block (p-1-k) mod P to position p+1,
which reduces it; after P-1 steps position p holds the full reduction of block p. Allgather: in
step k position p forwards block (p-k) mod P. Allreduce is the two back to back (NCCL's Ring).

Parameters (tuned for a topology by :func:`collectives.tuning.default_params`):

- ``channels``: rings run at once, ring ``c`` visiting ``i, i + s_c, i + 2 s_c, ...`` for the
  ``c``-th stride coprime with P, each carrying ``1/channels`` of the data. On a full mesh the
  strides use disjoint links, so ``channels`` rings use ``channels`` links per device.
- ``orders`` (allreduce, reduce-scatter, allgather): ``"strides"`` (default) for the rings above;
  ``"mesh"`` for the rings of :func:`~collectives.algorithms.pipeline.mesh_rings`, which together
  use every link of a full mesh alike (RCCL's 8-GPU xGMI rings); channel ``c`` is mesh ring
  ``c mod R``, so ``channels = R`` spreads the data evenly. The tuned default on a full mesh.
  ``"rails"`` (servers of equal size joined by a NIC fabric): every channel crosses between servers
  rail to rail, as NCCL's rings do on a rail-optimised fabric. Inside a server of ``L`` devices
  channel ``c`` steps by ``s_c``; it walks an even server from local rank ``c + s_c`` to ``c`` and an
  odd server backwards from ``c`` to ``c + s_c``, so each hop between servers joins the two NICs of
  one rail (with an odd server count the hop that closes the ring crosses rails). Channels
  ``0..L-1`` alternate the strides ``1`` and ``L - 1``, channels ``L..2L-1`` the next pair of
  coprime strides, and so on: the rails ``c`` (even servers send) and ``c + s_c`` (odd servers send)
  of channels ``0..L-1`` are each one of every rail, so those channels send over every NIC of every
  server, and on a full mesh inside the servers more channels take more of its links. Needs the
  topology.
- ``chunks``: the data of each channel is cut into ``chunks`` pieces that go round the ring one
  after the other (NCCL's loop over ``nranks * chunkSize`` slices). Every link is busy in every step
  anyway, so more chunks only add steps; 1 by default.

On a topology where a link was lost and the library falls back to a ring that avoids it
(``topologies.whatif.fail_link(..., on_lost="ring")``), the stride rings are laid over the devices in
an order in which no two ring neighbours are a lost pair (the ``"mesh"`` rings use every link, so
they are unavailable there).

Broadcast and reduce (``ring``): a chain root -> root+s -> root+2s -> ... (one per channel), the
message cut into ``chunks`` pieces pipelined down (broadcast) or up (reduce) the chain:
P-1 + chunks-1 steps.
"""

from __future__ import annotations

import numpy as np

from ..registry import AlgorithmUnavailable, algorithm, resolve_params
from ..schedule import Phase, Schedule, split
from .pipeline import (DATA_PLANE_CHUNKS, chain_pipeline, check_count_param, coprime_strides, mesh_rings,
                       pipeline_phases, ring_orders)

ORDERS = ("strides", "mesh", "rails")


def _ring_params(collective, P, count, topology, params):
    p = resolve_params(collective, "ring", params)
    return check_count_param("channels", p["channels"]), check_count_param("chunks", p["chunks"])


def _orders(collective, params):
    orders = resolve_params(collective, "ring", params)["orders"]
    if orders not in ORDERS:
        raise ValueError(f"orders={orders!r}; expected one of {', '.join(ORDERS)}")
    return orders


def _avoid(topology) -> set:
    """Device pairs the rings must not join on ``topology`` (lost links the library rings around)."""
    if topology is None or not topology.graph.graph.get("lost_links"):
        return set()
    from topologies.whatif import ring_avoids
    return ring_avoids(topology)


def _around(orders, avoid, tries=4096):
    """``orders`` relabelled by a permutation of the devices (the identity if it serves) so that no two
    ring neighbours form a pair of ``avoid``; ``AlgorithmUnavailable`` when none is found."""
    P = orders.shape[1]
    bad = np.zeros((P, P), bool)
    for i, j in avoid:
        bad[i, j] = bad[j, i] = True
    rng = np.random.default_rng(0)
    perm = np.arange(P)
    for _ in range(tries):
        o = perm[orders]
        if not bad[o, np.roll(o, -1, axis=1)].any():
            return o
        perm = rng.permutation(P)
    raise AlgorithmUnavailable(f"no order of {P} devices keeps the lost device pairs {sorted(avoid)} apart on "
                               f"{orders.shape[0]} ring(s)")


class _Rings:
    """``channels`` rings of P devices as flat transfer arrays (channel-major)."""

    def __init__(self, P, channels, orders="strides", avoid=(), topology=None):
        self.P = P
        if orders == "rails":
            if avoid:
                raise AlgorithmUnavailable("orders='rails' with a lost link: use orders='strides', whose rings "
                                           "are laid around it")
            self.orders = rail_rings(topology, P, channels)
        elif orders == "mesh":
            if avoid:
                raise AlgorithmUnavailable("orders='mesh': the mesh rings use every link, and a lost link is "
                                           "avoided (on_lost='ring'); use orders='strides'")
            rings = mesh_rings(P)
            self.orders = rings[np.arange(channels) % len(rings)]
        else:
            self.orders = ring_orders(P, channels)
            if avoid:
                self.orders = _around(self.orders, avoid)
        self.src = self.orders.ravel()
        self.dst = np.roll(self.orders, -1, axis=1).ravel()
        self.pos = np.tile(np.arange(P, dtype=np.int64), channels)
        self.chan = np.repeat(np.arange(channels, dtype=np.int64), P)

    def phase(self, name, chunk_id, reduce, first=None):
        """P-1 steps; ``chunk_id(chan, block_position)`` names the chunk of a ring block, or, when
        ``first`` (per transfer) is given, block ``b`` of a transfer's ring is chunk ``first + b``.

        Reduce-scatter (``reduce``) sends block (p-1-k) in step k, allgather block (p-k).
        """
        P, pos, chan = self.P, self.pos, self.chan
        shift = 1 if reduce else 0
        at = (pos - shift) % P

        def chunks(k):
            b = at - k           # (pos - shift - k) mod P, for 0 <= k < P
            b[b < 0] += P
            c = chunk_id(chan, b) if first is None else first + b
            return c, c

        return Phase(name, self.src, self.dst, chunks, reduce=reduce, repeat=P - 1)


def rail_rings(topology, P, channels) -> np.ndarray:
    """``(channels, P)`` ring orders crossing between servers rail to rail (module doc, ``"rails"``).

    >>> from topologies import preset
    >>> o = rail_rings(preset("hgx-h20", nodes=2), 16, 2)
    >>> o[0].tolist()                  # stride 1: 0 -> 8 on rail 0, 9 -> 1 on rail 1
    [1, 2, 3, 4, 5, 6, 7, 0, 8, 15, 14, 13, 12, 11, 10, 9]
    >>> o[1].tolist()                  # stride 7: 1 -> 9 on rail 1, 8 -> 0 on rail 0
    [0, 7, 6, 5, 4, 3, 2, 1, 9, 10, 11, 12, 13, 14, 15, 8]
    """
    if topology is None:
        raise AlgorithmUnavailable("orders='rails' needs the topology (which devices share a server)")
    from .hierarchical import node_groups
    groups = node_groups(topology, P)           # (servers, L); AlgorithmUnavailable on one or uneven servers
    L = groups.shape[1]
    strides = coprime_strides(L)                 # 1, L - 1, then the other pairs s, L - s
    pairs = [(s, L - s) for s in strides if s <= L - s] if L % 2 == 0 else [(1, 1)]
    out = np.empty((channels, P), dtype=np.int64)
    for c in range(channels):
        pair = pairs[(c // L) % len(pairs)]
        s = pair[c % 2]
        even = (c + s + s * np.arange(L)) % L     # from c + s to c
        odd = (c - s * np.arange(L)) % L          # from c back to c + s
        out[c] = np.concatenate([groups[n, even if n % 2 == 0 else odd] for n in range(len(groups))])
    return out


def _slot_chunks(P, count, pieces):
    """Every slot of ``count`` elements cut into ``pieces`` chunks: chunk ``slot * pieces + i``."""
    off, ln = split(count, pieces)
    slots = np.arange(P, dtype=np.int64)[:, None] * count
    return (slots + off[None, :]).ravel(), np.tile(ln, P)


RING_PARAMS = {"channels": 1, "chunks": 1, "orders": "strides"}


@algorithm("allreduce", "ring", params=RING_PARAMS, channels="strides", large_scale=True, sub_name="ring")
def ring_allreduce(spec, P, count, root=0, topology=None, **params):
    channels, chunks = _ring_params("allreduce", P, count, topology, params)
    orders = _orders("allreduce", params)
    off, ln = split(count, chunks * channels * P)
    phases = []
    if P > 1:
        rings = _Rings(P, channels, orders, _avoid(topology), topology)
        for loop in range(chunks):
            first = (loop * channels + rings.chan) * P      # block b of channel chan: chunk first + b
            phases += [rings.phase("reduce-scatter", None, True, first), rings.phase("allgather", None, False, first)]
    return Schedule(spec.name, "ring", P, count, count, off, ln, phases, root,
                    info={"channels": channels, "chunks": chunks, "orders": orders})


def _slot_ring(spec, P, count, root, topology, params, reduce):
    channels, chunks = _ring_params(spec.name, P, count, topology, params)
    orders = _orders(spec.name, params)
    pieces = chunks * channels
    off, ln = _slot_chunks(P, count, pieces)
    phases = []
    if P > 1:
        rings = _Rings(P, channels, orders, _avoid(topology), topology)
        for loop in range(chunks):
            # Ring position p must end with (reduce-scatter) / start from (allgather) its own slot.
            def cid(chan, b, loop=loop):
                return rings.orders[chan, b] * pieces + loop * channels + chan
            phases.append(rings.phase("reduce-scatter" if reduce else "allgather", cid, reduce))
    return Schedule(spec.name, "ring", P, count, P * count, off, ln, phases, root,
                    info={"channels": channels, "chunks": chunks, "orders": orders})


@algorithm("reduce_scatter", "ring", params=RING_PARAMS, channels="strides", large_scale=True, sub_name="ring")
def ring_reduce_scatter(spec, P, count, root=0, topology=None, **params):
    return _slot_ring(spec, P, count, root, topology, params, reduce=True)


@algorithm("allgather", "ring", params=RING_PARAMS, channels="strides", large_scale=True, sub_name="ring")
def ring_allgather(spec, P, count, root=0, topology=None, **params):
    return _slot_ring(spec, P, count, root, topology, params, reduce=False)


# -- chains: broadcast and reduce -------------------------------------------------------------------

def _chain(spec, P, count, root, topology, params, towards_root):
    channels, chunks = _ring_params(spec.name, P, count, topology, params)
    off, ln = split(count, channels * chunks)
    phases = []
    if P > 1:
        orders = ring_orders(P, channels, start=root)      # position 0 is the root in every channel
        pos = np.tile(np.arange(P - 1, dtype=np.int64), channels)
        chan = np.repeat(np.arange(channels, dtype=np.int64), P - 1)
        near, far = orders[chan, pos], orders[chan, pos + 1]

        def chunk_of(i, j):
            c = chan[i] * chunks + j
            return c, c

        if towards_root:   # the far end starts; each hop reduces into the next device nearer the root
            phases = pipeline_phases("chain-reduce", far, near, (P - 2) - pos, chunks, chunk_of, reduce=True)
        else:
            phases = pipeline_phases("chain-broadcast", near, far, pos, chunks, chunk_of, reduce=False)
    return Schedule(spec.name, "ring", P, count, count, off, ln, phases, root,
                    info={"channels": channels, "chunks": chunks})


@algorithm("broadcast", "ring", params={"channels": 1, "chunks": DATA_PLANE_CHUNKS}, channels="strides", pipeline=chain_pipeline, large_scale=True)
def ring_broadcast(spec, P, count, root=0, topology=None, **params):
    return _chain(spec, P, count, root, topology, params, towards_root=False)


@algorithm("reduce", "ring", params={"channels": 1, "chunks": DATA_PLANE_CHUNKS}, channels="strides", pipeline=chain_pipeline, large_scale=True)
def ring_reduce(spec, P, count, root=0, topology=None, **params):
    return _chain(spec, P, count, root, topology, params, towards_root=True)

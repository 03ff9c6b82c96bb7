"""Parameters of the algorithms tuned for a topology and size (the time plane's side of them).

Schedules are pure: a builder takes its parameters or its declared defaults
(:attr:`collectives.registry.Algorithm.params`). :func:`default_params` is what
:func:`collectives.simulate` fills in for the parameters a caller did not give, from what the
algorithm declares:

- ``channels`` (algorithms declaring ``channels="strides"``): concurrent rings (or trees, chains)
  over different device orders, each carrying ``1/channels`` of the data. On a full mesh, channel
  ``c`` is the ring ``i -> i + s_c`` for the strides ``s_c`` coprime with P
  (:func:`~collectives.algorithms.pipeline.coprime_strides`), which use disjoint links: default one
  channel per such stride. Rings that take ``orders`` run on a full mesh as ``orders="mesh"``
  instead, one channel per ring of :func:`~collectives.algorithms.pipeline.mesh_rings`, which use
  every link (the strides reach 4 of 7 links at P = 8). On servers of equal size joined by a NIC
  fabric they run as ``orders="rails"``, one channel per local rank and stride pair
  (:func:`rail_channels`), so that every NIC of every server carries a channel, as NCCL's rings do.
  Elsewhere (switch, ring, uneven clusters) 1.
- ``chunks`` of a pipelined algorithm (one declaring a ``pipeline`` shape ``E`` steps deep): the
  ``C`` minimising ``(E + C) * (alpha + n / C * beta)``, that is ``C = sqrt(E * n * beta / alpha)``,
  clamped to ``1..MAX_CHUNKS``. Other algorithms keep their declared ``chunks`` (ring allreduce,
  reduce-scatter and allgather already keep every link busy in every step).
- anything else (``intra`` / ``inter`` of ``hierarchical``): the declared default.
"""

from __future__ import annotations

import math

import numpy as np

from . import registry
from .algorithms.pipeline import coprime_strides, mesh_rings

#: Upper bound of the tuned pipeline depth (more chunks only add steps and latency).
MAX_CHUNKS = 64


def default_params(collective: str, algorithm: str, topology, nbytes: int | None = None) -> dict:
    """The parameters ``algorithm`` runs with by default for ``nbytes`` (nccl-tests' size) on ``topology``.

    Parameters the builder derives itself (declared ``None``, such as ``per_node``) are left out.

    >>> from topologies import full_mesh, switch
    >>> default_params("allreduce", "ring", full_mesh(8))
    {'channels': 14, 'chunks': 1, 'orders': 'mesh'}
    >>> default_params("allreduce", "ring", switch(8))
    {'channels': 1, 'chunks': 1, 'orders': 'strides'}
    >>> default_params("broadcast", "ring", switch(8, lat_us=1.0, bw_GBps=100.0), 64 << 20)
    {'channels': 1, 'chunks': 45}
    """
    alg = registry.info(collective, algorithm)
    out = {k: v for k, v in alg.params.items() if v is not None}
    if "channels" in out and alg.channels == "strides":
        P = topology.num_devices
        rails = rail_channels(topology) if "orders" in out else 0
        if rails:
            out["orders"] = "rails"
            out["channels"] = rails
        elif P > 2 and is_full_mesh(topology):
            if "orders" in out:
                out["orders"] = "mesh"
                out["channels"] = len(mesh_rings(P))
            else:
                out["channels"] = len(coprime_strides(P))
    if "chunks" in out and alg.pipelined:
        out["chunks"] = pipeline_chunks(alg, topology, nbytes, out.get("channels", 1))
    return out


def rail_channels(topology) -> int:
    """Channels of ``orders="rails"`` rings on ``topology`` (:func:`rail_channel_count` of its server
    size); 0 when it is not several servers of equal size.

    >>> from topologies import preset
    >>> rail_channels(preset("hgx-h20", nodes=2)), rail_channels(preset("hgx-h20"))
    (16, 0)
    """
    cache = topology.__dict__.get("_ccemu_rail_channels")
    if cache is None:
        from .algorithms.hierarchical import node_groups
        try:
            cache = rail_channel_count(node_groups(topology, topology.num_devices).shape[1])
        except registry.AlgorithmUnavailable:
            cache = 0
        topology.__dict__["_ccemu_rail_channels"] = cache
    return cache


def rail_channel_count(L: int) -> int:
    """Rail rings that use every NIC of servers of ``L`` devices and, on full-mesh servers, every pair
    of coprime strides: ``L`` per pair ``(s, L - s)`` (module :mod:`collectives.algorithms.ring`).

    >>> rail_channel_count(8), rail_channel_count(16), rail_channel_count(3)
    (16, 64, 3)
    """
    pairs = len([s for s in coprime_strides(L) if s <= L - s]) if L % 2 == 0 else 1
    return L * max(1, pairs)


def pipeline_chunks(alg, topology, nbytes, channels=1) -> int:
    """The tuned ``chunks`` of pipelined algorithm ``alg`` run with ``channels`` (see the module docstring)."""
    P = topology.num_devices
    if not nbytes or P < 2:
        return 1
    depth, share, rate_name, rate_share = alg.pipeline(P, channels)
    if depth <= 0:
        return 1
    alpha, pair_Bps, inject_Bps = link_estimate(topology)
    if alpha <= 0:
        return MAX_CHUNKS
    rate = (pair_Bps if rate_name == "pair" else inject_Bps) * rate_share
    c = math.sqrt(depth * nbytes * share / rate / alpha)
    return int(min(MAX_CHUNKS, max(1, round(c))))


def is_full_mesh(topology) -> bool:
    """Whether every pair of devices has a direct link (no switch in between)."""
    cache = topology.__dict__.get("_ccemu_full_mesh")
    if cache is None:
        g = topology.graph
        devs = set(topology.devices)
        P = len(devs)
        cache = all(sum(1 for v in g.successors(d) if v in devs) == P - 1 for d in devs)
        topology.__dict__["_ccemu_full_mesh"] = cache
    return cache


def link_estimate(topology) -> tuple[float, float, float]:
    """``(alpha_s, pair_Bps, inject_Bps)`` between devices 0 and 1 of ``topology``.

    ``alpha_s``: hop latencies plus the per-message cost on the path; ``pair_Bps``: the rate one
    flow 0 -> 1 reaches alone (the least capacity / share over its links); ``inject_Bps``: device
    0's usable injection rate (all its links). Used to size pipelines, not to time them.
    """
    cache = topology.__dict__.get("_ccemu_link_estimate")
    if cache is not None:
        return cache
    from topologies.network import LinkParams, flow_latency_s
    from topologies.routing import route_pairs

    link = LinkParams(topology)
    r = route_pairs(topology, np.array([0]), np.array([1]))
    edges, frac = r.edge, r.frac
    alpha = float(flow_latency_s(r, link, topology.arrays.edge_kind)[0])
    pair = float(np.min(link.capacity_Bps[edges] / frac)) if len(edges) else math.inf
    a = topology.arrays
    out0 = np.flatnonzero(a.edge_src == 0)
    inject = float(link.capacity_Bps[out0].sum()) if len(out0) else pair
    cache = (alpha, pair, inject)
    topology.__dict__["_ccemu_link_estimate"] = cache
    return cache

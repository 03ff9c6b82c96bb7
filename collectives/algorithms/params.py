"""Default parameters of the algorithms (channels, chunks, sub-algorithms), per topology and size.

:func:`default_params` is what :func:`collectives.simulate` fills in for parameters the caller did
not give, and what the builders fall back to when they are called without them (the data plane,
which has no topology, gets small values that still exercise the pipelines).

- ``channels``: concurrent rings (or trees, chains) over different device orders, each carrying
  ``1/channels`` of the data. On a full mesh, channel ``c`` is the ring ``i -> i + s_c`` for the
  strides ``s_c`` coprime with P (:func:`~collectives.algorithms.pipeline.coprime_strides`), which
  use disjoint links: default one channel per such stride. Elsewhere (switch, ring, clusters) 1.
- ``chunks``: pipelining granularity. Ring allreduce / reduce-scatter / allgather already keep every
  link busy in every step, so 1. Pipelines (chain broadcast and reduce, trees, in-network) take the
  ``C`` minimising ``(E + C) * (alpha + n / C * beta)`` for a pipeline ``E`` steps deep:
  ``C = sqrt(E * n * beta / alpha)``, clamped to ``1..MAX_CHUNKS``.
- ``intra`` / ``inter``: the algorithms inside a node and across nodes of ``hierarchical``.
"""

from __future__ import annotations

import math

from .pipeline import ceil_log2, coprime_strides

#: Upper bound of the default pipeline depth (more chunks only add steps and latency).
MAX_CHUNKS = 64
#: Pipelines' chunks when there is no topology to tune against (the data plane).
DATA_PLANE_CHUNKS = 3

#: Which parameters each (collective, algorithm) takes; anything else is rejected by the builder.
PARAMS = {
    ("allreduce", "ring"): ("channels", "chunks"),
    ("reduce_scatter", "ring"): ("channels", "chunks"),
    ("allgather", "ring"): ("channels", "chunks"),
    ("broadcast", "ring"): ("channels", "chunks"),
    ("reduce", "ring"): ("channels", "chunks"),
    ("allreduce", "tree"): ("channels", "chunks"),
    ("allreduce", "in_network"): ("chunks",),
    ("allreduce", "hierarchical"): ("intra", "inter", "per_node"),
    ("reduce_scatter", "hierarchical"): ("intra", "inter", "per_node"),
    ("allgather", "hierarchical"): ("intra", "inter", "per_node"),
    ("alltoall", "hierarchical"): ("per_node",),
}


def default_params(collective: str, algorithm: str, topology=None, nbytes: int | None = None) -> dict:
    """The parameters ``algorithm`` runs with by default for ``nbytes`` (nccl-tests' size) on ``topology``.

    Returns an empty dict for algorithms without parameters.

    >>> from topologies import full_mesh, switch
    >>> default_params("allreduce", "ring", full_mesh(8))
    {'channels': 4, 'chunks': 1}
    >>> default_params("allreduce", "ring", switch(8))
    {'channels': 1, 'chunks': 1}
    >>> default_params("broadcast", "ring", switch(8, lat_us=1.0, bw_GBps=100.0), 64 << 20)
    {'channels': 1, 'chunks': 45}
    """
    names = PARAMS.get((collective, algorithm), ())
    if not names:
        return {}
    P = topology.num_devices if topology is not None else None
    out = {}
    if "channels" in names:
        out["channels"] = len(coprime_strides(P)) if (topology is not None and P > 2 and is_full_mesh(topology)) else 1
    if "chunks" in names:
        out["chunks"] = pipeline_chunks(collective, algorithm, topology, nbytes, out.get("channels", 1))
    if "intra" in names:
        out["intra"] = "direct"
        out["inter"] = "ring"
    # ``per_node`` (grouping without a topology) has no default here: the builder derives it.
    return out


def resolve(collective: str, algorithm: str, topology, count: int, given: dict) -> dict:
    """``given`` completed with defaults; unknown parameter names raise ``ValueError``.

    Builders call this; without ``nbytes`` the size is estimated as ``count`` 4-byte elements.
    """
    names = PARAMS.get((collective, algorithm), ())
    unknown = sorted(set(given) - set(names))
    if unknown:
        takes = f"takes {', '.join(names)}" if names else "takes no parameters"
        raise ValueError(f"{collective}/{algorithm} has no parameter {unknown[0]!r}; it {takes}")
    missing = [n for n in names if given.get(n) is None]
    if not missing:
        return dict(given)
    spec_bytes = _nbytes_estimate(collective, topology, count)
    defaults = default_params(collective, algorithm, topology, spec_bytes)
    return {n: (given[n] if given.get(n) is not None else defaults.get(n)) for n in names}


def _nbytes_estimate(collective, topology, count):
    P = topology.num_devices if topology is not None else 1
    per = 4 * count
    return per * P if collective in ("allgather", "reduce_scatter", "alltoall") else per


def pipeline_chunks(collective, algorithm, topology, nbytes, channels=1) -> int:
    """The default ``chunks`` of an algorithm run with ``channels`` channels (see the module docstring)."""
    if algorithm == "ring" and collective not in ("broadcast", "reduce"):
        return 1
    if topology is None or not nbytes:
        return DATA_PLANE_CHUNKS if topology is None else 1
    P = topology.num_devices
    if P < 2:
        return 1
    alpha, pair_Bps, inject_Bps = link_estimate(topology)
    if algorithm == "ring":          # chain root -> ... : P-1 hops deep, one link per sender
        depth, n, rate = P - 2, nbytes / channels, pair_Bps
    elif algorithm == "tree":        # up then down a double binary tree, half the data per tree
        depth, n, rate = 2 * max(1, ceil_log2(P)), nbytes / (2 * channels), pair_Bps / 2
    else:                            # in_network: up to the switch, down one step later
        depth, n, rate = 1, nbytes, inject_Bps
    if depth <= 0:
        return 1
    if alpha <= 0:
        return MAX_CHUNKS
    c = math.sqrt(depth * n / rate / alpha)
    return int(min(MAX_CHUNKS, max(1, round(c))))


# -- looking at a topology -------------------------------------------------------------------------

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
    import numpy as np

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

"""Two-level (hierarchical) algorithms, as HCCL and NCCL compose them across servers.

The devices of a topology are grouped by their node attribute ``node`` (the server index that
``two_level`` and the presets set); every server must hold the same number ``L`` of devices. Device
``(n, l)`` is the ``l``-th device (by index) of server ``n``; the devices with the same ``l`` form
*rail* ``l`` (they share a NIC rail on rail-optimised fabrics).

- allreduce: reduce-scatter inside every server (device ``(n, l)`` gets part ``l`` reduced over its
  server), allreduce of part ``l`` along rail ``l`` across servers, allgather inside every server.
- reduce_scatter: reduce-scatter inside the servers (``(n, l)`` gets, reduced over its server, the
  slots of every device of rail ``l``), then along the rails.
- allgather: allgather along the rails, then inside the servers.
- alltoall: inside every server, ``(n, l)`` hands ``(n, l')`` the blocks for rail ``l'`` (every
  server's device ``l'``); then along the rails each device sends every other server the blocks for
  it; a last local copy puts the blocks in the receive slots. Traffic crossing servers travels once.

Parameters ``intra`` and ``inter`` name the flat algorithms used inside a server and across servers
(``direct``, ``ring``, ``halving_doubling`` (recursive halving / doubling for the reduce-scatter and
allgather parts), ``bruck`` for the reduce-scatter and allgather parts); defaults ``direct`` inside,
``ring`` across. Those flat schedules are embedded: built once for the group size on abstract *units*
and replayed on every server (or rail) at once, so the steps keep shared transfer arrays.

Without a topology (the data plane), ``per_node`` sets the grouping of consecutive devices (default:
the largest divisor of P not above sqrt(P)).
"""

from __future__ import annotations

import math

import numpy as np

from .. import registry
from ..registry import AlgorithmUnavailable, algorithm, resolve_params
from ..schedule import Phase, Schedule, split

HIERARCHICAL_PARAMS = {"intra": "direct", "inter": "ring", "per_node": None}
#: ``(intra, inter)`` combinations ``best`` tries besides the defaults.
SUB_CHOICES = (("direct", "ring"), ("direct", "halving_doubling"), ("direct", "direct"), ("ring", "ring"))


def sub_variants(topology):
    return [{"intra": intra, "inter": inter} for intra, inter in SUB_CHOICES]


def node_groups(topology, P: int, per_node=None) -> np.ndarray:
    """``(nodes, L)`` device indices: row n is server n's devices in index order.

    Raises
    ------
    AlgorithmUnavailable
        When a device has no ``node`` attribute or the servers hold different numbers of devices.
    """
    if topology is None:
        if per_node is None:
            per_node = max(d for d in range(1, math.isqrt(P) + 1) if P % d == 0)
        if isinstance(per_node, bool) or not isinstance(per_node, (int, np.integer)) or per_node < 1 or P % per_node:
            raise ValueError(f"per_node={per_node!r}; expected a divisor of the device count {P}")
        return np.arange(P, dtype=np.int64).reshape(P // per_node, per_node)
    if per_node is not None:
        raise ValueError("per_node applies only without a topology; with one, devices are grouped by their "
                         "'node' attribute")
    g = topology.graph
    by_node = {}
    for i, dev in enumerate(topology.devices):
        n = g.nodes[dev].get("node")
        if n is None:
            raise AlgorithmUnavailable(f"hierarchical needs to know which devices share a server (device attribute "
                                       f"'node', set by two_level and the presets); device {dev!r} of topology "
                                       f"{topology.name!r} has none")
        by_node.setdefault(n, []).append(i)
    sizes = sorted({len(v) for v in by_node.values()})
    if len(sizes) > 1:
        raise AlgorithmUnavailable(f"hierarchical needs the same number of devices on every server; topology "
                                   f"{topology.name!r} has servers of {', '.join(map(str, sizes))} devices")
    if len(by_node) == 1 or sizes == [1]:
        what = "one server" if len(by_node) == 1 else "one device per server"
        raise AlgorithmUnavailable(f"hierarchical composes two levels, but topology {topology.name!r} has {what} "
                                   "(the flat algorithm is the same thing)")
    rows = sorted(by_node.values(), key=min)
    return np.array(rows, dtype=np.int64)


def embed(sub: Schedule, groups: np.ndarray, unit_map: np.ndarray, prefix: str) -> list[Phase]:
    """Phases running the flat schedule ``sub`` on every row of ``groups`` at once.

    ``sub`` was built on ``groups.shape[1]`` devices with its buffer measured in *units*: its chunk
    ``c`` covers units ``chunk_off[c] .. chunk_off[c] + chunk_len[c] - 1``. ``unit_map[g, u]`` is the
    global chunk that unit ``u`` of group ``g`` stands for, so a sub-transfer of a chunk of ``w``
    units becomes ``w`` transfers of global chunks. Sub-phases whose chunk widths stay the same in
    every step stay one phase with their repeat count.
    """
    if sub.endpoints:
        raise ValueError(f"{sub.collective}/{sub.algorithm} uses extra endpoints and cannot be embedded")
    phases = []
    for ph in sub.phases:
        steps = [ph.chunks(k) for k in range(ph.repeat)]
        widths = [sub.chunk_len[sc] for sc, _ in steps]
        uniform = all(np.array_equal(w, widths[0]) for w in widths[1:])
        runs = [(0, ph.repeat)] if uniform else [(k, 1) for k in range(ph.repeat)]
        for first, repeat in runs:
            w = widths[first]
            rep = np.repeat(np.arange(len(w)), w)
            within = np.arange(int(w.sum())) - np.repeat(np.cumsum(w) - w, w)

            def expand(rep=rep, ph=ph):
                return groups[:, ph.src[rep]].ravel(), groups[:, ph.dst[rep]].ravel()

            def chunks(k, first=first, rep=rep, within=within, steps=steps):
                sc, dc = steps[first + k]
                su = sub.chunk_off[sc][rep] + within
                du = sub.chunk_off[dc][rep] + within
                return unit_map[:, su].ravel(), unit_map[:, du].ravel()

            # The time plane takes the sub-transfers between server pairs, each of w units, without
            # building one transfer per unit (hierarchical steps have about P x units of them).
            pairs = (groups[:, ph.src].ravel(), groups[:, ph.dst].ravel(), np.tile(w, len(groups)).astype(np.float64))
            phases.append(Phase(f"{prefix}-{ph.name}", expand, None, chunks, reduce=ph.reduce, repeat=repeat,
                                pairs=pairs))
    return phases


def _flat(collective, choice, role, G, units):
    """The flat schedule of ``collective`` by the ``intra`` / ``inter`` name ``choice`` on G devices."""
    names = registry.sub_algorithms(collective)
    if choice not in names:
        raise ValueError(f"{role}={choice!r} for the {collective} part; expected one of {', '.join(names)}")
    # Declared defaults (one ring channel, no pipelining): the units are the chunks.
    return registry.build_schedule(collective, names[choice], G, units)


def _setup(spec, P, count, topology, params):
    p = resolve_params(spec.name, "hierarchical", params)
    groups = node_groups(topology, P, p.get("per_node"))
    return p, groups


def _sched(spec, P, count, length, off, ln, phases, root, groups, p):
    info = {"nodes": groups.shape[0], "per_node": groups.shape[1], "intra": p["intra"], "inter": p["inter"]}
    return Schedule(spec.name, "hierarchical", P, count, length, off, ln, phases, root, info=info)


@algorithm("allreduce", "hierarchical", params=HIERARCHICAL_PARAMS, large_scale=True, variants=sub_variants)
def hierarchical_allreduce(spec, P, count, root=0, topology=None, **params):
    p, groups = _setup(spec, P, count, topology, params)
    N, L = groups.shape
    inter = p["inter"]
    if inter not in registry.sub_algorithms("allreduce"):
        raise ValueError(f"inter={inter!r} for the allreduce part; expected one of "
                         f"{', '.join(registry.sub_algorithms('allreduce'))}")
    # Units per part: what the flat cross-server allreduce cuts a part into (one unit per block).
    V = (1 << (N.bit_length() - 1)) if inter == "halving_doubling" else N
    off, ln = split(count, L * V)                  # global chunk = unit: part l is units l*V .. l*V+V-1
    rails = groups.T                               # (L, N): rail l
    ident = np.tile(np.arange(L * V, dtype=np.int64), (N, 1))
    rail_units = np.arange(L, dtype=np.int64)[:, None] * V + np.arange(V, dtype=np.int64)[None, :]
    phases = (embed(_flat("reduce_scatter", p["intra"], "intra", L, V), groups, ident, "intra")
              + embed(_flat("allreduce", inter, "inter", N, V), rails, rail_units, "inter")
              + embed(_flat("allgather", p["intra"], "intra", L, V), groups, ident, "intra"))
    return _sched(spec, P, count, count, off, ln, phases, root, groups, p)


def _rail_slot_maps(groups):
    """Unit maps for slot collectives (one unit per slot = device).

    Inside a server, sub-slot ``l`` stands for the slots of rail ``l`` (unit ``l*N + n`` is device
    ``(n, l)``); along rail ``l``, sub-slot ``n`` is device ``(n, l)``.
    """
    N, L = groups.shape
    intra = np.tile(groups.T.ravel(), (N, 1))      # same for every server
    inter = groups.T.copy()                        # (L, N)
    return intra, inter


@algorithm("reduce_scatter", "hierarchical", params=HIERARCHICAL_PARAMS, large_scale=True, variants=sub_variants)
def hierarchical_reduce_scatter(spec, P, count, root=0, topology=None, **params):
    p, groups = _setup(spec, P, count, topology, params)
    N, L = groups.shape
    off, ln = split(P * count, P)
    intra_map, inter_map = _rail_slot_maps(groups)
    phases = (embed(_flat("reduce_scatter", p["intra"], "intra", L, N), groups, intra_map, "intra")
              + embed(_flat("reduce_scatter", p["inter"], "inter", N, 1), groups.T, inter_map, "inter"))
    return _sched(spec, P, count, P * count, off, ln, phases, root, groups, p)


@algorithm("allgather", "hierarchical", params=HIERARCHICAL_PARAMS, large_scale=True, variants=sub_variants)
def hierarchical_allgather(spec, P, count, root=0, topology=None, **params):
    p, groups = _setup(spec, P, count, topology, params)
    N, L = groups.shape
    off, ln = split(P * count, P)
    intra_map, inter_map = _rail_slot_maps(groups)
    phases = (embed(_flat("allgather", p["inter"], "inter", N, 1), groups.T, inter_map, "inter")
              + embed(_flat("allgather", p["intra"], "intra", L, N), groups, intra_map, "intra"))
    return _sched(spec, P, count, P * count, off, ln, phases, root, groups, p)


@algorithm("alltoall", "hierarchical", params={"per_node": None}, large_scale=True)
def hierarchical_alltoall(spec, P, count, root=0, topology=None, **params):
    p = resolve_params(spec.name, "hierarchical", params)
    groups = node_groups(topology, P, p.get("per_node"))
    N, L = groups.shape
    off, ln = split(2 * P * count, 2 * P)           # chunk j: send block j; chunk P + i: receive block i
    n, l, n2, l2 = np.meshgrid(*(np.arange(x, dtype=np.int64) for x in (N, L, N, L)), indexing="ij")
    n, l, n2, l2 = n.ravel(), l.ravel(), n2.ravel(), l2.ravel()
    # 1. (n, l) -> (n, l2): its block for (n2, l2), into receive slot (n2, l) of (n, l2).
    phases = [Phase("intra", groups[n, l], groups[n, l2], lambda k, a=groups[n2, l2], b=P + groups[n2, l]: (a, b))]
    if N > 1:
        # 2. (n, l2) -> (n2, l2), n2 != n: what (n, l) sent for (n2, l2), into send slot (n, l) of (n2, l2)
        #    (free since step 1 read it). Here (n, l, n2, l2) reads as (holder's server, original
        #    sender's local rank, destination server, rail).
        x = n != n2
        a, b = P + groups[n2, l][x], groups[n, l][x]
        phases.append(Phase("inter", groups[n, l2][x], groups[n2, l2][x], lambda k, a=a, b=b: (a, b)))
        # 3. local copy into the receive slots of the blocks from other servers.
        d, s = groups[n2, l2][x], groups[n, l][x]
        phases.append(Phase("local", d, d, lambda k, s=s: (s, P + s)))
    return Schedule(spec.name, "hierarchical", P, count, 2 * P * count, off, ln, phases, root,
                    info={"nodes": N, "per_node": L})

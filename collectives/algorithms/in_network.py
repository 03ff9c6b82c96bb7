"""In-network allreduce (NVLink SHARP / NVLS, InfiniBand SHARP): the switch does the reduction.

Every device sends its buffer to a switch with ``reduce=True`` that all devices reach; the switch
reduces the P contributions and sends the result to every device. The data is cut into ``chunks``
pieces and pipelined: in step t each device sends piece t up while the switch sends the reduced
piece t-1 down, so upward and downward traffic (opposite link directions) overlap and a large
message takes about ``n / link bandwidth``: algbw near the link rate, busbw near ``2 (P-1)/P`` of
it, which is why NVLS beats a ring on NVSwitch.

How it is written as a schedule: the switch is a schedule endpoint. A synchronous step either
copies or reduces, and a reduction needs data to reduce into, so the switch takes every device's
piece into a buffer of its own (one endpoint row per device port, all at the switch's node:
copies, no reduction yet) and reduces them into the first row in a local step that costs no network
time (only the switch's ``reduce_bw_GBps`` if it has one). The down copies of piece t-1 share the
step with the up copies of piece t.

With several reducing switches that all devices reach (one node per NVSwitch chip), shard ``k``
of the data goes through switch ``k``, sized in proportion to the device's bandwidth to that
switch, as NVLS spreads over the chips.
"""

from __future__ import annotations

import numpy as np

from ..registry import AlgorithmUnavailable, algorithm, resolve_params
from ..schedule import Phase, Schedule, split
from .pipeline import DATA_PLANE_CHUNKS, check_count_param, switch_pipeline


def reducing_switches(topology) -> tuple[list, np.ndarray]:
    """``(switch nodes, weights)``: the switches with ``reduce=True`` that every device reaches.

    Raises
    ------
    AlgorithmUnavailable
        When the topology has no reducing switch, or none that every device reaches.
    """
    g = topology.graph
    cands = [n for n, d in g.nodes(data=True) if d.get("kind") == "switch" and d.get("reduce")]
    if not cands:
        raise AlgorithmUnavailable(f"in_network needs a switch with reduce=True (NVLS / SHARP) that every device "
                                   f"reaches; topology {topology.name!r} has no reducing switch")
    P = topology.num_devices
    good, best = [], 0
    for sw in cands:
        reached = _devices_reached(g, sw)
        best = max(best, reached)
        if reached == P:
            good.append(sw)
    if not good:
        raise AlgorithmUnavailable(f"in_network needs a reducing switch that every device reaches; the reducing "
                                   f"switches of topology {topology.name!r} ({', '.join(map(str, cands[:4]))}"
                                   f"{', ...' if len(cands) > 4 else ''}) reach at most {best} of its {P} devices")
    dev0 = topology.device_node(0)
    w = np.array([g[dev0][sw]["bw_GBps"] if g.has_edge(dev0, sw) else 1.0 for sw in good])
    return good, w / w.sum()


def _devices_reached(g, sw) -> int:
    """Devices reachable from ``sw`` through nodes that relay (switches, NICs, forwarding devices)."""
    seen, stack, devices = {sw}, [sw], 0
    while stack:
        x = stack.pop()
        for y in g.successors(x):
            if y in seen:
                continue
            seen.add(y)
            d = g.nodes[y]
            if d.get("kind") == "device":
                devices += 1
                if not d.get("forward"):
                    continue
            stack.append(y)
    return devices


def _shards(count, weights, chunks):
    """Chunk table: shard k (``weights[k]`` of the data, largest remainder) cut into ``chunks`` pieces."""
    bounds = np.rint(np.cumsum(np.concatenate([[0.0], weights])) * count).astype(np.int64)
    bounds[-1] = count
    offs, lens = [], []
    for k in range(len(weights)):
        o, n = split(int(bounds[k + 1] - bounds[k]), chunks, offset=int(bounds[k]))
        offs.append(o)
        lens.append(n)
    return np.concatenate(offs), np.concatenate(lens)


@algorithm("allreduce", "in_network", params={"chunks": DATA_PLANE_CHUNKS}, pipeline=switch_pipeline, large_scale=True)
def in_network_allreduce(spec, P, count, root=0, topology=None, **params):
    p = resolve_params(spec.name, "in_network", params)
    chunks = check_count_param("chunks", p["chunks"])
    if topology is None:    # data plane without a topology: one abstract reducing switch
        switches, weights = ["switch"], np.array([1.0])
    else:
        switches, weights = reducing_switches(topology)
    K = len(switches)
    off, ln = _shards(count, weights, chunks)        # chunk (shard k, piece j) = k * chunks + j
    if P == 1:
        return Schedule(spec.name, "in_network", P, count, count, off, ln, [], root)
    dev = np.tile(np.arange(P, dtype=np.int64), K)
    shard = np.repeat(np.arange(K, dtype=np.int64), P)
    port = P + shard * P + dev                        # endpoint row of (switch k, port of device d)
    head = P + shard * P                              # row the switch reduces into (device 0's port)
    up_src, up_dst = dev, port
    down_src, down_dst = head, dev
    others = dev != 0
    red_src, red_dst, red_shard = port[others], head[others], shard[others]
    both_src, both_dst = np.concatenate([up_src, down_src]), np.concatenate([up_dst, down_dst])
    phases = []
    for t in range(chunks + 1):
        if t == 0:
            c = shard * chunks
            phases.append(Phase("up", up_src, up_dst, lambda k, c=c: (c, c)))
        elif t < chunks:
            c = np.concatenate([shard * chunks + t, shard * chunks + t - 1])
            phases.append(Phase("up+down", both_src, both_dst, lambda k, c=c: (c, c)))
        else:
            c = shard * chunks + t - 1
            phases.append(Phase("down", down_src, down_dst, lambda k, c=c: (c, c)))
        if t < chunks:
            c = red_shard * chunks + t
            phases.append(Phase("switch-reduce", red_src, red_dst, lambda k, c=c: (c, c), reduce=True))
    endpoints = [sw for sw in switches for _ in range(P)]
    return Schedule(spec.name, "in_network", P, count, count, off, ln, phases, root, endpoints=endpoints,
                    info={"chunks": chunks, "switches": list(switches)})

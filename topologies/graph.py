"""The `Topology` type: a validated ``networkx.DiGraph`` of devices, switches, NICs and links.

Nodes carry ``kind`` (one of :data:`NODE_KINDS`). Device nodes also carry ``index`` (dense,
0..P-1), optionally ``forward`` (may relay traffic for others, default False),
``mem_bw_GBps`` (HBM bandwidth, sets how fast the device reduces) and ``name``. Switches may carry
``reduce=True`` (in-network reduction, as NVSwitch NVLS or InfiniBand SHARP).

Each link is two directed edges, one per direction, each with ``bw_GBps`` (per direction, all lanes
together; GB = 1e9 bytes as in nccl-tests), ``lat_us`` (per hop), ``link`` (its kind, e.g.
``"nvlink"``) and ``lanes`` (parallel physical links it stands for).
"""

from __future__ import annotations

import math
from functools import cached_property

import networkx as nx
import numpy as np

NODE_KINDS = ("device", "switch", "nic", "cpu")


def add_link(graph, u, v, *, bw_GBps, lat_us=0.0, link="generic", lanes=1, **extra):
    """Add a bidirectional link between ``u`` and ``v`` (two directed edges).

    ``bw_GBps`` is the bandwidth of each direction with all ``lanes`` together.

    >>> import networkx as nx
    >>> g = nx.DiGraph()
    >>> add_link(g, "a", "b", bw_GBps=25.0, lat_us=0.5, link="nvlink", lanes=2)
    >>> g["a"]["b"]["bw_GBps"], g["b"]["a"]["lanes"]
    (25.0, 2)
    """
    attrs = dict(bw_GBps=float(bw_GBps), lat_us=float(lat_us), link=str(link), lanes=int(lanes), **extra)
    graph.add_edge(u, v, **attrs)
    graph.add_edge(v, u, **dict(attrs))


class Topology:
    """A validated hardware graph.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes and edges with the attributes described in the module docstring. The topology keeps
        its own copy, so later edits to ``graph`` do not reach it.
    name : str, optional
        Shown in tables; defaults to ``graph.graph["name"]`` or ``"custom"``.

    Raises
    ------
    ValueError
        Naming the first offending node or edge: unknown node kind, missing or duplicate device
        index, bandwidth not positive and finite, negative or non-finite latency, a link with only
        one direction, devices that cannot reach each other.

    Examples
    --------
    >>> from topologies import ring
    >>> t = ring(4, bw_GBps=50.0, lat_us=1.0)
    >>> t.num_devices, t.name
    (4, 'ring4')
    """

    def __init__(self, graph: nx.DiGraph, name: str | None = None):
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"Topology needs a networkx.DiGraph, got {type(graph).__name__}")
        self.graph = graph.copy()
        self.name = name or self.graph.graph.get("name") or "custom"
        self.graph.graph["name"] = self.name
        self._devices = _validate_nodes(self.graph)
        _validate_edges(self.graph)
        _validate_reachability(self.graph, self._devices)

    # -- basic views ---------------------------------------------------------------------------
    @property
    def num_devices(self) -> int:
        return len(self._devices)

    @property
    def devices(self) -> list:
        """Device node ids ordered by device index."""
        return list(self._devices)

    def device_node(self, index: int):
        """The graph node of device ``index``."""
        if not 0 <= int(index) < len(self._devices):
            raise ValueError(f"device index {index} out of range 0..{len(self._devices) - 1}")
        return self._devices[int(index)]

    @property
    def link_kinds(self) -> list[str]:
        return sorted({d["link"] for _, _, d in self.graph.edges(data=True)})

    @property
    def model(self) -> dict:
        """Per-link-kind overrides of the network model's parameters stored with the topology."""
        return self.graph.graph.setdefault("model", {})

    def copy(self, name: str | None = None) -> "Topology":
        return Topology(self.graph, name=name or self.name)

    def __repr__(self):
        return (f"Topology({self.name!r}, devices={self.num_devices}, nodes={self.graph.number_of_nodes()}, "
                f"links={self.graph.number_of_edges() // 2}, kinds={self.link_kinds})")

    def injection_bw_GBps(self, index: int = 0) -> float:
        """Sum of the line rates of the links leaving device ``index`` (GB/s, one direction)."""
        node = self.device_node(index)
        return float(sum(d["bw_GBps"] for _, _, d in self.graph.out_edges(node, data=True)))

    def peak_bw_GBps(self):
        """Per-device peak bandwidth (GB/s, one direction); see :func:`topologies.peak.peak_bw_GBps`."""
        from .peak import peak_bw_GBps
        return peak_bw_GBps(self)

    # -- compact arrays for the jitted routing and network model ----------------------------
    @cached_property
    def arrays(self) -> "TopologyArrays":
        return TopologyArrays(self)


class TopologyArrays:
    """Integer-indexed view of a topology: node i < P is device i; edges in CSR by source node."""

    def __init__(self, topo: Topology):
        g = topo.graph
        others = [n for n in g.nodes if g.nodes[n]["kind"] != "device"]
        self.nodes = list(topo._devices) + others
        node_id = {n: i for i, n in enumerate(self.nodes)}
        self.node_id = node_id
        n = len(self.nodes)
        edges = list(g.edges(data=True))
        src = np.fromiter((node_id[u] for u, _, _ in edges), np.int64, len(edges))
        dst = np.fromiter((node_id[v] for _, v, _ in edges), np.int64, len(edges))
        order = np.lexsort((dst, src))
        self.edge_src, self.edge_dst = src[order], dst[order]
        self.edges = [edges[i][:2] for i in order]
        data = [edges[i][2] for i in order]
        self.bw_GBps = np.array([d["bw_GBps"] for d in data], np.float64)
        self.lat_us = np.array([d["lat_us"] for d in data], np.float64)
        self.link_kinds = sorted({d["link"] for d in data})
        kind_id = {k: i for i, k in enumerate(self.link_kinds)}
        self.edge_kind = np.array([kind_id[d["link"]] for d in data], np.int64)
        self.out_ptr = np.searchsorted(self.edge_src, np.arange(n + 1)).astype(np.int64)
        rorder = np.lexsort((self.edge_src, self.edge_dst))
        self.in_edges = rorder.astype(np.int64)
        self.in_ptr = np.searchsorted(self.edge_dst[rorder], np.arange(n + 1)).astype(np.int64)
        kinds = [g.nodes[x]["kind"] for x in self.nodes]
        # A node relays traffic unless it is a device that was not allowed to forward.
        self.transit = np.array([k != "device" or bool(g.nodes[x].get("forward", False))
                                 for k, x in zip(kinds, self.nodes)], np.bool_)
        self.num_devices = topo.num_devices


# -- validation ------------------------------------------------------------------------------

def _validate_nodes(g) -> list:
    by_index = {}
    for node, d in g.nodes(data=True):
        kind = d.get("kind")
        if kind not in NODE_KINDS:
            raise ValueError(f"node {node!r} has kind {kind!r}; expected one of {', '.join(NODE_KINDS)}")
        if kind != "device":
            continue
        idx = d.get("index")
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise ValueError(f"device node {node!r} has index {idx!r}; expected an integer 0..P-1")
        if int(idx) in by_index:
            raise ValueError(f"duplicate device index {idx}: nodes {by_index[int(idx)]!r} and {node!r}")
        by_index[int(idx)] = node
    if not by_index:
        raise ValueError("topology has no device nodes (nodes with kind='device')")
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise ValueError(f"device indices must be dense 0..{len(by_index) - 1}; missing index {missing[0]}"
                         f" (largest index is {max(by_index)})")
    return [by_index[i] for i in range(len(by_index))]


def _validate_edges(g):
    for u, v, d in g.edges(data=True):
        bw = d.get("bw_GBps")
        if not _is_number(bw) or not (math.isfinite(bw) and bw > 0):
            raise ValueError(f"link {u!r}->{v!r} has bw_GBps={bw!r}; expected a positive finite number")
        lat = d.get("lat_us", 0.0)
        if not _is_number(lat) or not (math.isfinite(lat) and lat >= 0):
            raise ValueError(f"link {u!r}->{v!r} has lat_us={lat!r}; expected a finite number >= 0")
        if not isinstance(d.get("link", "generic"), str):
            raise ValueError(f"link {u!r}->{v!r} has link kind {d.get('link')!r}; expected a string")
        lanes = d.get("lanes", 1)
        if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
            raise ValueError(f"link {u!r}->{v!r} has lanes={lanes!r}; expected an integer >= 1")
        d.setdefault("lat_us", 0.0)
        d.setdefault("link", "generic")
        d.setdefault("lanes", 1)
        if not g.has_edge(v, u):
            raise ValueError(f"link {u!r}->{v!r} has no reverse edge {v!r}->{u!r}; links are bidirectional")


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _validate_reachability(g, devices):
    """Every device must reach every other through links and relaying (non-device or forwarding) nodes."""
    unreachable = unreachable_pairs(g, devices, limit=1)
    if unreachable:
        a, b = unreachable[0]
        raise ValueError(f"devices {a} and {b} cannot reach each other (devices {g.nodes[devices[a]].get('name', devices[a])!r} "
                         f"and {g.nodes[devices[b]].get('name', devices[b])!r}; devices relay traffic only with forward=True)")


def unreachable_pairs(g, devices, limit=None) -> list[tuple[int, int]]:
    """Pairs of device indices (i < j) with no path between them, up to ``limit`` pairs."""
    relay = [n for n in g.nodes if g.nodes[n]["kind"] != "device" or g.nodes[n].get("forward", False)]
    comp_of = {}
    for c, comp in enumerate(nx.connected_components(g.subgraph(relay).to_undirected(as_view=True))):
        for n in comp:
            comp_of[n] = c
    P = len(devices)
    # Components each device touches (its own, if it relays; else those of its neighbours).
    touches = []
    for node in devices:
        if node in comp_of:
            touches.append({comp_of[node]})
        else:
            touches.append({comp_of[n] for n in g.successors(node) if n in comp_of})
    members = {}
    for i, cs in enumerate(touches):
        for c in cs:
            members.setdefault(c, set()).add(i)
    if any(len(m) == P for m in members.values()):
        return []
    index_of = {node: i for i, node in enumerate(devices)}
    ok = np.eye(P, dtype=bool)
    for m in members.values():
        idx = np.fromiter(m, np.int64)
        ok[np.ix_(idx, idx)] = True
    for i, node in enumerate(devices):
        for n in g.successors(node):
            if n in index_of:
                ok[i, index_of[n]] = ok[index_of[n], i] = True
    bad = np.argwhere(np.triu(~ok, 1))
    if limit is not None:
        bad = bad[:limit]
    return [(int(a), int(b)) for a, b in bad]

"""The `Topology` type: a validated ``networkx.DiGraph`` of devices, switches, NICs and links.

Nodes carry ``kind`` (one of :data:`NODE_KINDS`). Device nodes also carry ``index`` (dense,
0..P-1), optionally ``forward`` (may relay traffic for others, default False),
``mem_bw_GBps`` (HBM bandwidth, sets how fast the device reduces) and ``name``. Switches may carry
``reduce=True`` (in-network reduction, as NVSwitch NVLS or InfiniBand SHARP).

Each link is two directed edges, one per direction, each with ``bw_GBps`` (per direction, all lanes
together; GB = 1e9 bytes as in nccl-tests), ``lat_us`` (per hop), ``link`` (its kind, e.g.
``"nvlink"``) and ``lanes`` (parallel physical links it stands for).

A ``Topology`` is a value: it is sealed when built, so that the routes, timers and tuned
parameters cached on it can never go stale. Its ``graph`` and ``model`` are read-only (an edit
raises :class:`ReadOnlyTopologyError` naming the what-if to use); what-ifs
(:mod:`topologies.whatif`) and builders return new topologies, and ``t.graph.copy()`` is a plain,
editable ``networkx.DiGraph`` to build one from. (A version counter could not see in-place edits
of networkx's attribute dicts without hashing the graph on every call.)
"""

from __future__ import annotations

import math
from functools import cached_property

import networkx as nx
import numpy as np
from . import model as _model

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


class ReadOnlyTopologyError(TypeError):
    """An edit of a sealed topology's graph or model."""


_HOW_TO_EDIT = ("use a what-if that returns a new topology (topologies.whatif.set_model for model overrides; "
                "scale_links, fail_link, fail_node, take_devices for links and nodes), or edit t.graph.copy() "
                "and build Topology(...) from it")


def _read_only(*args, **kwargs):
    raise ReadOnlyTopologyError(f"a Topology is read-only, so that its cached routes and timings stay valid: "
                                f"{_HOW_TO_EDIT}")


class _Attrs(dict):
    """An attribute dict of a sealed graph: any edit raises :class:`ReadOnlyTopologyError`."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    update = pop = popitem = setdefault = clear = _read_only

    def __copy__(self):
        return _thaw(self)

    def __deepcopy__(self, memo):
        return _thaw(self)

    def __reduce__(self):
        return (dict, (_thaw(self),))


def _thaw(value):
    """A plain, editable copy of an attribute value (nested dicts included)."""
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value


def _freeze(value):
    if isinstance(value, dict):
        out = _Attrs()
        dict.update(out, {k: _freeze(v) for k, v in value.items()})
        return out
    return value


class SealedDiGraph(nx.DiGraph):
    """The read-only ``networkx.DiGraph`` of a :class:`Topology`: every reading networkx function
    works on it; an edit raises :class:`ReadOnlyTopologyError`; ``copy()`` is a plain ``DiGraph``."""

    add_node = add_nodes_from = remove_node = remove_nodes_from = _read_only
    add_edge = add_edges_from = add_weighted_edges_from = remove_edge = remove_edges_from = _read_only
    update = clear = clear_edges = _read_only

    @classmethod
    def seal(cls, graph: nx.DiGraph) -> "SealedDiGraph":
        """A sealed copy of ``graph`` (its attribute dicts frozen, nested dicts included)."""
        g = cls.__new__(cls)
        nx.DiGraph.__init__(g)
        nx.DiGraph.add_nodes_from(g, graph.nodes(data=True))
        nx.DiGraph.add_edges_from(g, graph.edges(data=True))
        g.graph = _freeze(dict(graph.graph))
        for n, d in g._node.items():
            g._node[n] = _freeze(d)
        for u, nbrs in g._succ.items():
            for v, d in nbrs.items():
                nbrs[v] = g._pred[v][u] = _freeze(d)  # one dict per edge, seen from both ends
        return g

    def __deepcopy__(self, memo):
        return self.copy()

    def copy(self, as_view=False):
        if as_view:
            return nx.graphviews.generic_graph_view(self)
        g = nx.DiGraph()
        g.graph.update(_thaw(self.graph))
        g.add_nodes_from((n, _thaw(d)) for n, d in self.nodes(data=True))
        g.add_edges_from((u, v, _thaw(d)) for u, v, d in self.edges(data=True))
        return g


class Topology:
    """A validated, read-only hardware graph.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes and edges with the attributes described in the module docstring. The topology keeps
        its own sealed copy (see the module docstring), so later edits to ``graph`` do not reach it.
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
    >>> a, b = t.devices[:2]
    >>> t.graph.edges[a, b]["bw_GBps"] = 25.0
    Traceback (most recent call last):
    ...
    topologies.graph.ReadOnlyTopologyError: a Topology is read-only, ...
    """

    def __init__(self, graph: nx.DiGraph, name: str | None = None):
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"Topology needs a networkx.DiGraph, got {type(graph).__name__}")
        g = graph.copy()
        name = name or g.graph.get("name") or "custom"
        g.graph["name"] = name
        devices = _validate_nodes(g)
        _validate_edges(g)
        _validate_reachability(g, devices)
        self.__dict__["_devices"] = devices
        self.__dict__["graph"] = SealedDiGraph.seal(g)
        self.__dict__["name"] = name

    def __setattr__(self, key, value):
        if key in ("graph", "name", "_devices"):
            _read_only()
        object.__setattr__(self, key, value)

    def __reduce__(self):  # pickled as its plain graph; the caches are rebuilt where it lands
        return (Topology, (self.graph.copy(), self.name))

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
    def routing(self) -> dict:
        """How this system's switches route: ``{"modes": {link kind: "ecmp" | "adaptive"}, "seed": int}``,
        the overrides :func:`topologies.whatif.set_routing` stored (kinds not named follow
        :data:`topologies.model.ROUTING_DEFAULTS`); see :mod:`topologies.routing`."""
        r = self.graph.graph.get("routing") or {}
        return {"modes": dict(r.get("modes", {})), "seed": int(r.get("seed", 0))}

    def routing_text(self) -> str:
        """The routing of the link kinds this system has, e.g. ``"ecmp on roce (seed 0), adaptive elsewhere"``."""
        modes = self.arrays.link_routing
        ecmp = [k for k in sorted(modes) if modes[k] == "ecmp"]
        if not ecmp:
            return "adaptive"
        rest = ", adaptive elsewhere" if len(ecmp) < len(modes) else ""
        return f"ecmp on {', '.join(ecmp)} (seed {self.routing['seed']}){rest}"

    @property
    def model(self) -> dict:
        """Per-link-kind overrides of the network model's parameters stored with the topology
        (read-only; :func:`topologies.whatif.set_model` returns a topology with others)."""
        return self.graph.graph.get("model", _EMPTY)

    def copy(self, name: str | None = None) -> "Topology":
        """The same system under another name (topologies are values: there is nothing else to copy)."""
        return Topology(self.graph, name=name or self.name)

    def __repr__(self):
        return (f"Topology({self.name!r}, devices={self.num_devices}, nodes={self.graph.number_of_nodes()}, "
                f"links={self.graph.number_of_edges() // 2}, kinds={self.link_kinds})")

    def injection_bw_GBps(self, index: int = 0) -> float:
        """Sum of the line rates of the links leaving device ``index`` (GB/s, one direction)."""
        node = self.device_node(index)
        return float(sum(d["bw_GBps"] for _, _, d in self.graph.out_edges(node, data=True)))

    def peak_bw_GBps(self):
        """Per-device peak bandwidth (GB/s, one direction); see :func:`topologies.peak.peak_bw_GBps`
        (after a what-if that degrades the system: the original system's, the denominator of its bus
        efficiency; :func:`topologies.peak.own_peak_bw_GBps` gives the degraded system's own)."""
        if "_peak_GBps" not in self.__dict__:  # a value of the sealed graph: computed once
            from .peak import peak_bw_GBps
            self.__dict__["_peak_GBps"] = peak_bw_GBps(self)
        return self.__dict__["_peak_GBps"]

    # -- compact arrays for the jitted routing and network model ----------------------------
    @cached_property
    def arrays(self) -> "TopologyArrays":
        return TopologyArrays(self)


_EMPTY = _Attrs()


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
        self._kinds = kinds
        # Routing (topologies.routing): the edges on which a switch hashes each flow onto one of them (ECMP
        # kinds, out of switches only: a NIC spreads its flows over its ports, or planes), and the seed.
        routing = topo.routing
        self.link_routing = {k: _model.routing_mode(k, routing["modes"]) for k in self.link_kinds}
        ecmp_kind = np.array([self.link_routing[k] == "ecmp" for k in self.link_kinds], np.bool_)
        is_switch = np.array([k == "switch" for k in kinds], np.bool_)
        self.ecmp_edge = (ecmp_kind[self.edge_kind] & is_switch[self.edge_src] if len(data)
                          else np.zeros(0, np.bool_))
        self.routing_seed = int(routing["seed"])

    @cached_property
    def routing(self) -> "TopologyArrays | AggregatedArrays":
        """The arrays routes and the network model run on: twin switches merged (see
        :class:`AggregatedArrays`), or these arrays themselves when no node has a twin."""
        groups = _twin_groups(self)
        return AggregatedArrays(self, groups) if groups else self

    # Identity mapping of edges, so that code can treat these as the routing arrays of themselves.
    @cached_property
    def edge_of(self) -> np.ndarray:
        return np.arange(len(self.edges), dtype=np.int64)

    @cached_property
    def share(self) -> np.ndarray:
        return np.ones(len(self.edges))


class AggregatedArrays:
    """Routing arrays with every group of twin switches merged into one node (an exact reduction).

    Twins are non-device nodes with the same neighbours and, to each neighbour, links of the same
    kind and latency whose bandwidths are one vector scaled per twin (the spines of a fat tree, or
    switch chips reached by 5, 5, 4 and 4 links). Every fewest-hop path through one twin has a
    sibling through each other, and the bandwidth-weighted split sends each twin a share of the
    traffic in proportion to its links' bandwidth; so every twin link between the same two
    neighbours carries the same fraction of its capacity, and max-min fair rates are those of one
    merged node whose links have the summed bandwidth. Routes and max-min solves then handle one
    edge where the graph has one per twin.

    ``edge_of[e]`` is the merged edge of original edge ``e`` and ``share[e]`` the fraction of the
    merged edge's traffic (and capacity) it stands for. Node ids below P (the devices) are kept.
    """

    def __init__(self, base: TopologyArrays, groups: list[list[int]]):
        n = len(base.nodes)
        rep = np.arange(n)
        for grp in groups:
            rep[grp] = grp[0]
        keep = np.flatnonzero(rep == np.arange(n))
        new_id = np.full(n, -1, np.int64)
        new_id[keep] = np.arange(len(keep))
        node_of = new_id[rep]
        self.num_devices = base.num_devices
        self.nodes = [base.nodes[i] for i in keep]
        self.link_kinds = base.link_kinds
        src, dst = node_of[base.edge_src], node_of[base.edge_dst]
        pair = src * len(keep) + dst
        uniq, inverse = np.unique(pair, return_inverse=True)
        self.edge_of = inverse.astype(np.int64)
        self.edge_src, self.edge_dst = (uniq // len(keep)).astype(np.int64), (uniq % len(keep)).astype(np.int64)
        self.bw_GBps = np.bincount(inverse, weights=base.bw_GBps, minlength=len(uniq))
        self.share = base.bw_GBps / self.bw_GBps[inverse]
        # Original edges of each merged edge (CSR), to spread a merged edge's bytes back.
        order = np.argsort(self.edge_of, kind="stable")
        self.members = order.astype(np.int64)
        self.members_ptr = np.searchsorted(self.edge_of[order], np.arange(len(uniq) + 1)).astype(np.int64)
        first = np.zeros(len(uniq), np.int64)
        first[inverse[::-1]] = np.arange(len(inverse))[::-1]
        self.lat_us = base.lat_us[first]
        self.edge_kind = base.edge_kind[first]
        m = len(keep)
        self.out_ptr = np.searchsorted(self.edge_src, np.arange(m + 1)).astype(np.int64)
        rorder = np.lexsort((self.edge_src, self.edge_dst))
        self.in_edges = rorder.astype(np.int64)
        self.in_ptr = np.searchsorted(self.edge_dst[rorder], np.arange(m + 1)).astype(np.int64)
        self.transit = base.transit[keep]
        self.merged = len(base.nodes) - m
        self.link_routing, self.routing_seed = base.link_routing, base.routing_seed
        self.ecmp_edge = base.ecmp_edge[first]


def _twin_groups(a: TopologyArrays) -> list[list[int]]:
    """Groups (of two or more) of twin non-device nodes; see :class:`AggregatedArrays`.

    A node's signature is its kind and its out- and in-edges as (neighbour, link kind, latency,
    bandwidth / the node's largest out-bandwidth) codes; nodes with one signature are twins.
    """
    n = len(a.nodes)
    if len(a.edge_src) == 0:
        return []
    scale = np.zeros(n)
    np.maximum.at(scale, a.edge_src, a.bw_GBps)
    scale[scale == 0] = 1.0
    out_norm = np.round(a.bw_GBps / scale[a.edge_src], 12)
    in_norm = np.round(a.bw_GBps / scale[a.edge_dst], 12)
    _, out_code = np.unique(np.rec.fromarrays([a.edge_dst, a.edge_kind, a.lat_us, out_norm]), return_inverse=True)
    _, in_code = np.unique(np.rec.fromarrays([a.edge_src, a.edge_kind, a.lat_us, in_norm]), return_inverse=True)
    in_code = in_code.astype(np.int64)[a.in_edges]
    out_code = out_code.astype(np.int64)
    groups = {}
    for u in range(a.num_devices, n):
        lo, hi, ilo, ihi = a.out_ptr[u], a.out_ptr[u + 1], a.in_ptr[u], a.in_ptr[u + 1]
        if not a.transit[u] or lo == hi or ilo == ihi:
            continue
        if a.ecmp_edge[a.in_edges[ilo:ihi]].any():  # an ECMP hash picks one twin: they are not one node
            continue
        key = (a._kinds[u], out_code[lo:hi].tobytes(), in_code[ilo:ihi].tobytes())
        groups.setdefault(key, []).append(u)
    return [g for g in groups.values() if len(g) > 1]


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

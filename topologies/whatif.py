"""What-if edits of a topology: scale links, fail a link or a node, change the node count, add jitter.

Every function returns a modified *copy* and never touches its input. Devices are named by index
(``int``) or by node id (``str``); switches, NICs and CPUs by node id. Each edit is recorded, one
line per edit, in ``topo.graph.graph["whatifs"]``.

An edit that leaves some devices unable to reach each other raises ``ValueError`` naming the cut-off
device pairs; naming a link or node that does not exist raises ``ValueError`` too. Devices relay
traffic only if they have ``forward=True``, so a failed direct link is survivable only through a
switch or host path:

>>> from topologies import preset
>>> a2 = preset("atlas800t-a2")
>>> b = fail_link(a2, 0, 1)
>>> lost_direct_paths(a2, b)
[(0, 1)]
>>> print(b.graph.graph["whatifs"][-1])
fail_link(n0.npu0, n0.npu1): pairs that lost their direct link: (0, 1); on_lost='host': (0, 1) now routes n0.npu0 -> n0.cpu0 -> n0.npu1, staged through host memory at n0.cpu0

What the collective library does about a pair that lost its direct link is ``fail_link``'s
``on_lost``: ``"host"`` (the default) sends its traffic over what is left (the host path above,
staged through host memory: PCIe down, a copy in host memory, PCIe up, see
:mod:`topologies.network`); ``"ring"``: the library falls back to a ring that avoids the lost link
(every algorithm that would use the pair is unavailable, so ``best`` picks another, and ``ring``
orders its rings around it); ``"fail"``: it stops with an error (:class:`LostLinkError`) when a
collective needs the pair.

A system degraded by ``fail_link``, ``fail_node`` or ``scale_links`` keeps the peak of the system it
came from as its peak (``graph["reference_peak"]``, :func:`topologies.peak.reference_peak`): its bus
efficiency is measured against what the system had, and ``ccemu topo show`` says so.
"""

from __future__ import annotations

import copy
import math

import networkx as nx
import numpy as np

from . import model as _model
from .graph import Topology, unreachable_pairs

__all__ = ["scale_links", "fail_link", "fail_node", "set_nodes", "set_jitter", "lost_direct_paths", "take_devices", "select_devices",
           "set_routing",
           "lost_links", "LostLinkError", "ON_LOST"]

_MAX_LISTED = 8     # device pairs named in a message before "... and N more"

#: What the collective library does on a lost link (``fail_link(..., on_lost=...)``, module doc).
ON_LOST = ("host", "ring", "fail")


class LostLinkError(ValueError):
    """A collective needs a device pair whose link a what-if removed, and the library stops on a lost
    link (``fail_link(..., on_lost="fail")``)."""


def scale_links(topo: Topology, factor_bw: float = 1.0, factor_lat: float = 1.0, kind: str | None = None,
                links=None, name: str | None = None) -> Topology:
    """Multiply bandwidth by ``factor_bw`` and latency by ``factor_lat`` on the chosen links.

    Parameters
    ----------
    kind : str, optional
        Only links of this kind (``"nvlink"``, ``"hccs"``, ...).
    links : pair or list of pairs, optional
        Only these links, each ``(u, v)`` of device indices or node ids (both directions change).
        Without ``kind`` and ``links`` every link is scaled.

    >>> from topologies import ring
    >>> t = scale_links(ring(4, bw_GBps=10.0), factor_bw=0.5, links=[(0, 1)])
    >>> t.graph["dev0"]["dev1"]["bw_GBps"], t.graph["dev1"]["dev0"]["bw_GBps"], t.graph["dev1"]["dev2"]["bw_GBps"]
    (5.0, 5.0, 10.0)
    """
    if isinstance(factor_bw, bool) or not isinstance(factor_bw, (int, float)) or not (
            math.isfinite(factor_bw) and factor_bw > 0):
        raise ValueError(f"factor_bw={factor_bw!r}; expected a positive finite number (fail_link removes a link)")
    if isinstance(factor_lat, bool) or not isinstance(factor_lat, (int, float)) or not (
            math.isfinite(factor_lat) and factor_lat >= 0):
        raise ValueError(f"factor_lat={factor_lat!r}; expected a finite number >= 0")
    if kind is not None and kind not in topo.link_kinds:
        raise ValueError(f"topology {topo.name!r} has no {kind!r} links; its link kinds: {', '.join(topo.link_kinds)}")
    chosen = None
    if links is not None:
        pairs = [links] if _is_pair(links) else list(links)
        chosen = set()
        for pair in pairs:
            if not _is_pair(pair):
                raise ValueError(f"links entry {pair!r}; expected a pair (u, v) of device indices or node ids")
            u, v = _node(topo, pair[0]), _node(topo, pair[1])
            if not topo.graph.has_edge(u, v):
                raise ValueError(f"no link between {u!r} and {v!r} in topology {topo.name!r}")
            chosen.add(frozenset((u, v)))
    g = topo.graph.copy()
    count = 0
    for u, v, d in g.edges(data=True):
        if kind is not None and d["link"] != kind:
            continue
        if chosen is not None and frozenset((u, v)) not in chosen:
            continue
        d["bw_GBps"] = d["bw_GBps"] * float(factor_bw)
        d["lat_us"] = d["lat_us"] * float(factor_lat)
        count += 1
    if count == 0:
        raise ValueError(f"no link of topology {topo.name!r} matches kind={kind!r} and links={links!r}")
    what = ", ".join(x for x in (f"kind={kind}" if kind else "", f"{count // 2} links" if chosen else "") if x)
    note = f"scale_links({what or 'all links'}): bandwidth x{factor_bw:g}, latency x{factor_lat:g}"
    return _derive(topo, g, note, name, keep_peak=True)


def fail_link(topo: Topology, u, v, name: str | None = None, on_lost: str = "host") -> Topology:
    """Remove the link between ``u`` and ``v`` (both directions).

    The note recorded in ``result.graph.graph["whatifs"]`` names the device pairs that lost their direct link
    (:func:`lost_direct_paths`) and the route they take now. ``on_lost`` says what the collective library
    does about those pairs (module doc): ``"host"`` (default) reroutes over what is left, ``"ring"`` falls
    back to a ring that avoids them, ``"fail"`` stops with :class:`LostLinkError` when a collective needs
    one; the pairs and the choice are kept in ``graph["lost_links"]`` (:func:`lost_links`).

    >>> from topologies import full_mesh
    >>> fail_link(full_mesh(3), 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: failing link dev0-dev1 of topology 'mesh3' cuts off device pairs (0, 1) (pairs that lost ...
    """
    if on_lost not in ON_LOST:
        raise ValueError(f"on_lost={on_lost!r}; expected 'host' (reroute through the host, the default), 'ring' "
                         "(the library falls back to a ring that avoids the lost link) or 'fail' (the library stops "
                         "with an error)")
    a, b = _node(topo, u), _node(topo, v)
    if not topo.graph.has_edge(a, b):
        raise ValueError(f"no link between {a!r} and {b!r} in topology {topo.name!r}")
    g = topo.graph.copy()
    g.remove_edge(a, b)
    if g.has_edge(b, a):
        g.remove_edge(b, a)
    lost = _lost(topo.devices, topo.graph, g)
    _check_reachable(topo, g, f"failing link {a}-{b}", lost)
    note = f"fail_link({a}, {b})"
    if lost:
        note += f": pairs that lost their direct link: {_pairs_text(lost)}; on_lost={on_lost!r}: "
        if on_lost == "host":
            note += "; ".join(f"{p} now routes {_route_text(g, topo.devices, *p)}" for p in lost[:_MAX_LISTED])
        elif on_lost == "ring":
            note += "the library falls back to a ring that avoids them (algorithms that need them are unavailable)"
        else:
            note += "the library stops with an error when a collective needs them"
        g.graph["lost_links"] = list(g.graph.get("lost_links", [])) + [[i, j, on_lost] for i, j in lost]
    return _derive(topo, g, note, name, keep_peak=True)


def lost_links(topo: Topology) -> dict:
    """``{(i, j): on_lost}``: device pairs (``i < j``) whose direct link :func:`fail_link` removed, and what
    the library does about each (module doc); empty for a system as built.

    >>> from topologies import preset
    >>> lost_links(fail_link(preset("atlas800t-a2"), 1, 0, on_lost="ring"))
    {(0, 1): 'ring'}
    """
    return {(int(i), int(j)): str(p) for i, j, p in topo.graph.graph.get("lost_links", [])}


def lost_link_use(topo: Topology, schedule):
    """The first transfer of ``schedule`` between a pair in :func:`lost_links` whose library does not
    reroute (``on_lost`` ``"ring"`` or ``"fail"``): ``(i, j, on_lost, phase name)``, or None."""
    blocked = {p: w for p, w in lost_links(topo).items() if w != "host"}
    if not blocked:
        return None
    for ph in schedule.phases:
        src, dst, _ = ph.pair_form()
        for (i, j), w in blocked.items():
            if np.any(((src == i) & (dst == j)) | ((src == j) & (dst == i))):
                return i, j, w, ph.name
    return None


def ring_avoids(topo: Topology) -> set:
    """Device pairs a ring must not use on ``topo``: those lost with ``on_lost="ring"``."""
    return {p for p, w in lost_links(topo).items() if w == "ring"}


def fail_node(topo: Topology, node, name: str | None = None) -> Topology:
    """Remove a switch, NIC or CPU node and its links, or several at once (a list: a switch plane, all the
    NICs of a rail). Devices cannot be failed (indices stay dense). Traffic reroutes over what is left
    (other spines, the other sub-planes, a device's other NICs); a device left with no way out raises
    ``ValueError`` naming the cut-off pairs (devices relay only with ``forward=True``).

    >>> from topologies import preset
    >>> from topologies.peak import own_peak_bw_GBps
    >>> t = fail_node(preset("dgx-h100"), "n0.nvs0")
    >>> own_peak_bw_GBps(t), t.peak_bw_GBps()        # its own links; the original's, for bus efficiency
    (325.0, 450.0)
    >>> plane = [f"s0.l2.p0.{m}" for m in range(16)]   # one of CloudMatrix 384's 7 L2 sub-planes
    >>> fail_node(preset("cloudmatrix384"), plane).graph.graph["whatifs"][-1]
    'fail_node(s0.l2.p0.0, ... (16 nodes: switch))'
    """
    many = isinstance(node, (list, set, frozenset)) or (isinstance(node, tuple) and node not in topo.graph)
    nodes = list(node) if many else [node]
    if not nodes:
        raise ValueError("fail_node([]): expected a node id or a non-empty list of node ids")
    for x in nodes:
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            raise ValueError(f"fail_node({x!r}): devices cannot be failed (device indices must stay dense); "
                             "fail their links with fail_link, or name a switch, NIC or CPU node")
        if x not in topo.graph:
            raise ValueError(f"no node {x!r} in topology {topo.name!r}")
        if topo.graph.nodes[x]["kind"] == "device":
            raise ValueError(f"fail_node({x!r}): {x!r} is a device; devices cannot be failed (device indices "
                             "must stay dense); fail their links with fail_link")
    kinds = sorted({topo.graph.nodes[x]["kind"] for x in nodes})
    g = topo.graph.copy()
    g.remove_nodes_from(nodes)
    lost = _lost(topo.devices, topo.graph, g)
    what = f"{kinds[0]} {nodes[0]}" if len(nodes) == 1 else f"{len(nodes)} nodes ({'/'.join(kinds)}) from {nodes[0]}"
    _check_reachable(topo, g, f"failing {what}", lost)
    note = (f"fail_node({nodes[0]}, a {kinds[0]})" if len(nodes) == 1
            else f"fail_node({nodes[0]}, ... ({len(nodes)} nodes: {'/'.join(kinds)}))")
    if lost:
        note += f": pairs that lost their direct link: {_pairs_text(lost)}"
    return _derive(topo, g, note, name, keep_peak=True)


def set_nodes(name_or_preset_fn, nodes: int, **options) -> Topology:
    """The same system with ``nodes`` servers: ``preset(name, nodes=nodes, **options)``.

    A topology cannot be re-scaled after it is built, so this rebuilds it from its preset.

    >>> set_nodes("mi300x-8", 3).num_devices
    24
    """
    if callable(name_or_preset_fn):
        return name_or_preset_fn(nodes=nodes, **options)
    from .presets import preset
    return preset(name_or_preset_fn, nodes=nodes, **options)


def set_jitter(topo: Topology, kind: str, name: str | None = None, **params) -> Topology:
    """Jitter of links of ``kind``: ``bw_sigma``, ``stall_prob``, ``stall_s`` (see
    :mod:`topologies.instability`), stored in ``topo.model[kind]["jitter"]``; they override the
    profile a simulation runs under. Calling again replaces them.

    >>> from topologies import preset
    >>> set_jitter(preset("atlas800t-a2"), "roce", bw_sigma=0.05)
    Traceback (most recent call last):
    ...
    ValueError: topology 'atlas800t-a2' has no 'roce' links; its link kinds: hccs, pcie, socket
    >>> set_jitter(preset("atlas800t-a2"), "hccs", bw_sigma=0.1).model["hccs"]
    {'jitter': {'bw_sigma': 0.1}}
    """
    from .instability import LINK_KEYS, profile

    if kind not in topo.link_kinds:
        raise ValueError(f"topology {topo.name!r} has no {kind!r} links; its link kinds: {', '.join(topo.link_kinds)}")
    if not params:
        raise ValueError("set_jitter needs at least one parameter, e.g. bw_sigma=0.05")
    bad = [k for k in params if k not in LINK_KEYS]
    if bad:
        raise ValueError(f"unknown link jitter parameter {bad[0]!r}; expected one of {', '.join(LINK_KEYS)}")
    profile(params)  # checks the values
    g = topo.graph.copy()
    model = copy.deepcopy(topo.graph.graph.get("model", {}))
    entry = model.setdefault(kind, {})
    if not isinstance(entry, dict):
        raise ValueError(f"model entry for {kind!r} is {entry!r}; expected a dict")
    entry["jitter"] = {k: float(v) for k, v in params.items()}
    g.graph["model"] = model
    note = f"set_jitter({kind}, " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
    return _derive(topo, g, note, name)


def set_model(topo: Topology, overrides: dict, name: str | None = None) -> Topology:
    """``topo`` with per-link-kind model overrides merged into the ones it stores (see
    :mod:`topologies.model` for the parameters), e.g. ``{"hccs": {"efficiency": 0.5}}``.

    >>> from topologies import preset
    >>> set_model(preset("atlas800t-a2"), {"hccs": {"efficiency": 0.5}}).model["hccs"]
    {'efficiency': 0.5}
    >>> set_model(preset("atlas800t-a2"), {"hccs": {"speed": 2}})
    Traceback (most recent call last):
    ...
    ValueError: unknown model parameter 'speed' for link kind 'hccs'; expected one of efficiency, ...
    """
    from . import model as _model

    if not isinstance(overrides, dict):
        raise TypeError(f"model overrides must be a dict of link kind -> parameters, got {type(overrides).__name__}")
    merged = copy.deepcopy(topo.graph.graph.get("model", {}))
    for kind, params in overrides.items():
        if not isinstance(params, dict):
            raise ValueError(f"model override for link kind {kind!r} must be a dict; got {params!r}")
        merged.setdefault(kind, {}).update(params)
    _model.resolve(merged)  # checks names and values
    g = topo.graph.copy()
    g.graph["model"] = merged
    note = "set_model(" + ", ".join(f"{k}={v!r}" for k, v in overrides.items()) + ")"
    return _derive(topo, g, note, name)


def set_routing(topo: Topology, routing, seed: int | None = None, name: str | None = None) -> Topology:
    """``topo`` with its switches routing as ``routing`` says (see :mod:`topologies.routing`).

    Parameters
    ----------
    topo : topologies.Topology
    routing : {"ecmp", "adaptive", "default"} or dict
        One mode for every link kind of the scale-out fabric (:data:`topologies.model.SCALE_OUT_KINDS`),
        ``"default"`` for the data file's per-kind defaults (ECMP on Ethernet, adaptive on InfiniBand
        and inside scale-up domains), or ``{link kind: mode}`` for any kinds, scale-up ones included.
    seed : int, optional
        The ECMP hash seed (which flows collide); unchanged when not given (0 at first).
    name : str, optional

    Examples
    --------
    >>> from topologies import preset
    >>> t = preset("hgx-h20", nodes=2)
    >>> t.routing_text(), set_routing(t, "ecmp", seed=3).routing_text()
    ('adaptive', 'ecmp on ib (seed 3), adaptive elsewhere')
    >>> set_routing(t, {"ib": "hash"})
    Traceback (most recent call last):
    ...
    ValueError: routing 'hash' for link kind 'ib'; expected one of adaptive, ecmp
    """
    if not isinstance(topo, Topology):
        raise TypeError(f"set_routing needs a topologies.Topology, got {type(topo).__name__}")
    if isinstance(routing, str):
        if routing == "default":
            modes = {}
        elif routing in _model.ROUTINGS:
            modes = {k: routing for k in _model.SCALE_OUT_KINDS}
        else:
            raise ValueError(f"routing {routing!r}; expected one of {', '.join(_model.ROUTINGS)}, default "
                             "or a dict {link kind: mode}")
    elif isinstance(routing, dict):
        modes = {}
        for kind, mode in routing.items():
            if mode not in _model.ROUTINGS:
                raise ValueError(f"routing {mode!r} for link kind {kind!r}; expected one of "
                                 f"{', '.join(_model.ROUTINGS)}")
            modes[str(kind)] = mode
        modes = {**topo.routing["modes"], **modes}
    else:
        raise TypeError(f"routing must be a mode name or a dict, got {type(routing).__name__}")
    if seed is None:
        seed = topo.routing["seed"]
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"routing seed {seed!r}; expected an integer 0..2**63-1")
    g = topo.graph.copy()
    g.graph["routing"] = {"modes": modes, "seed": int(seed)}
    return _derive(topo, g, f"set_routing({routing!r}, seed={int(seed)})", name)


def take_devices(topo: Topology, k: int) -> Topology:
    """The first ``k`` devices of ``topo`` and the switches, NICs and CPUs that join them.

    :func:`select_devices` with devices ``0..k-1``.

    Parameters
    ----------
    topo : topologies.Topology
    k : int
        Devices to keep, ``1 <= k <= topo.num_devices``.

    Returns
    -------
    topologies.Topology
        Named ``f"{topo.name}[:{k}]"`` (``topo`` itself when ``k`` is all of its devices).

    Raises
    ------
    ValueError
        ``k`` out of range, or the first ``k`` devices cannot reach each other without the removed
        ones (devices that relayed traffic, as on a ring or torus).

    Examples
    --------
    >>> from topologies import switch, ring, preset
    >>> take_devices(preset("dgx-h100", nodes=2), 12).num_devices
    12
    >>> t = take_devices(switch(8, bw_GBps=50.0), 3)
    >>> t.num_devices, t.name, sorted(t.graph.nodes)
    (3, 'switch8[:3]', ['dev0', 'dev1', 'dev2', 'sw0'])
    >>> take_devices(ring(6), 4).graph.number_of_edges() // 2    # the ring, cut open into a line
    3
    >>> take_devices(ring(6), 7)
    Traceback (most recent call last):
    ...
    ValueError: device count 7 for 'ring6'; expected an integer 1..6
    """
    if not isinstance(topo, Topology):
        raise TypeError(f"take_devices needs a topologies.Topology, got {type(topo).__name__}")
    P = topo.num_devices
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= P:
        raise ValueError(f"device count {k!r} for {topo.name!r}; expected an integer 1..{P}")
    return select_devices(topo, range(k), name=f"{topo.name}[:{k}]")


def select_devices(topo: Topology, devices, name: str | None = None) -> Topology:
    """The sub-system of the given devices: them and the switches, NICs and CPUs that join them.

    The induced subgraph on ``devices`` plus every non-device node, from which the non-device
    nodes that connect nothing are pruned: any that a walk from one kept device to another cannot
    pass through (dead ends such as the NIC or PCIe switch of a removed device, and whole switch
    trees left without devices). Device ``devices[i]`` becomes device ``i`` of the result, so a
    communicator's group (a tensor-parallel group inside a node, a data-parallel group across
    nodes) is timed on the links its members actually have. Model overrides stored with ``topo``
    carry over; so do lost links between kept devices. The result has its own peak.

    Parameters
    ----------
    topo : topologies.Topology
    devices : iterable of int
        Distinct device indices of ``topo``, in the order the sub-system numbers them.
    name : str, optional
        Defaults to ``f"{topo.name}[i,j,...]"``.

    Returns
    -------
    topologies.Topology
        ``topo`` itself when ``devices`` is ``0..P-1`` in order.

    Raises
    ------
    ValueError
        An index out of range or repeated, an empty list, or kept devices that cannot reach each
        other without the removed ones (devices that relayed traffic, as on a ring or torus).

    Examples
    --------
    >>> from topologies import preset
    >>> t = preset("hgx-h20", nodes=2)
    >>> dp = select_devices(t, [3, 11])          # device 3 of each server: the pair meets over the NICs
    >>> dp.num_devices, dp.name, sorted({d["link"] for _, _, d in dp.graph.edges(data=True)})
    (2, 'hgx-h20-x2[3,11]', ['ib', 'pcie'])
    >>> tp = select_devices(t, [0, 5])           # two GPUs of one server keep their NVSwitch (and NICs)
    >>> sorted({d["link"] for _, _, d in tp.graph.edges(data=True)})
    ['ib', 'nvlink', 'pcie']
    >>> select_devices(t, [0, 0])
    Traceback (most recent call last):
    ...
    ValueError: devices [0, 0] for 'hgx-h20-x2'; expected distinct device indices in 0..15
    """
    if not isinstance(topo, Topology):
        raise TypeError(f"select_devices needs a topologies.Topology, got {type(topo).__name__}")
    P = topo.num_devices
    given = devices if isinstance(devices, (str, bytes)) else list(devices)
    try:
        chosen = [int(d) for d in given]
        bad = (not chosen or len(set(chosen)) != len(chosen) or any(not 0 <= d < P for d in chosen)
               or any(isinstance(d, bool) or int(d) != d for d in given))
    except (TypeError, ValueError):
        bad = True
    if bad:
        raise ValueError(f"devices {given!r} for {topo.name!r}; expected distinct device indices in 0..{P - 1}")
    if chosen == list(range(P)):
        return topo
    g = topo.graph
    nodes = topo.devices
    kept = {nodes[d] for d in chosen}
    others = [n for n in g.nodes if g.nodes[n]["kind"] != "device"]
    sub = g.subgraph(list(kept) + others).copy()
    _prune_dead_ends(sub, kept)
    for new, d in enumerate(chosen):
        sub.nodes[nodes[d]]["index"] = new
    # A sub-system has its own peak; lost links of removed devices go with them.
    sub.graph.pop("reference_peak", None)
    if sub.graph.get("lost_links"):
        renumber = {d: i for i, d in enumerate(chosen)}
        sub.graph["lost_links"] = [[*sorted((renumber[i], renumber[j])), how] for i, j, how in sub.graph["lost_links"]
                                   if i in renumber and j in renumber]
    if name is None:
        name = f"{topo.name}[{','.join(map(str, chosen))}]"
    first_k = chosen == list(range(len(chosen)))
    try:
        return _derive(topo, sub, f"take_devices({len(chosen)})" if first_k else f"select_devices({chosen})", name)
    except ValueError as exc:
        which = f"the first {len(chosen)} devices" if first_k else f"devices {chosen}"
        raise ValueError(f"{which} of {topo.name!r} cannot reach each other without the other "
                         f"{P - len(chosen)}: {exc}") from None


def _prune_dead_ends(g: nx.DiGraph, kept: set) -> None:
    """Remove non-device nodes that no path between two kept devices can pass through.

    A node lies on a path between two devices only if, in the undirected graph, it sits in a
    component with devices and is not a dead end: repeatedly removing non-device nodes with at most
    one neighbour removes dangling trees (a removed device's NIC, leaf and spine switches that
    served only removed devices).
    """
    und = g.to_undirected(as_view=False)
    for comp in list(nx.connected_components(und)):
        if not comp & kept:
            und.remove_nodes_from(comp)
    stack = [n for n in und.nodes if n not in kept and und.degree(n) <= 1]
    while stack:
        n = stack.pop()
        if n not in und:
            continue
        nbrs = list(und.neighbors(n))
        und.remove_node(n)
        stack.extend(m for m in nbrs if m not in kept and und.degree(m) <= 1)
    g.remove_nodes_from([n for n in list(g.nodes) if n not in und])


def lost_direct_paths(before: Topology, after: Topology) -> list[tuple[int, int]]:
    """Device pairs ``(i, j)``, ``i < j``, joined by a direct link in ``before`` but not in ``after``.

    Devices are matched by index; both topologies must have the same device count.
    """
    if before.num_devices != after.num_devices:
        raise ValueError(f"topologies have {before.num_devices} and {after.num_devices} devices; "
                         "lost_direct_paths compares the same devices")
    direct_after = _direct_pairs(after.devices, after.graph)
    return sorted(p for p in _direct_pairs(before.devices, before.graph) if p not in direct_after)


# -- helpers -----------------------------------------------------------------------------------------

def _is_pair(x) -> bool:
    return (isinstance(x, (tuple, list)) and len(x) == 2
            and not any(isinstance(e, (tuple, list)) for e in x))


def _node(topo: Topology, x):
    """Node id of ``x``: an int is a device index, anything else a node id that must exist."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return topo.device_node(int(x))
    if x not in topo.graph:
        raise ValueError(f"no node {x!r} in topology {topo.name!r}")
    return x


def _direct_pairs(devices, g) -> set:
    index = {n: i for i, n in enumerate(devices)}
    pairs = set()
    for n in devices:
        for m in g.successors(n):
            if m in index:
                i, j = sorted((index[n], index[m]))
                pairs.add((i, j))
    return pairs


def _lost(devices, g_before, g_after):
    after = _direct_pairs(devices, g_after)
    return sorted(p for p in _direct_pairs(devices, g_before) if p not in after)


def _pairs_text(pairs) -> str:
    text = ", ".join(map(str, pairs[:_MAX_LISTED]))
    return text + (f" ... and {len(pairs) - _MAX_LISTED} more" if len(pairs) > _MAX_LISTED else "")


def _check_reachable(topo, g, what, lost=()):
    bad = unreachable_pairs(g, topo.devices)
    if bad:
        lost_text = (f" (pairs that lost their direct link: {_pairs_text(lost)}; no switch or host path is left)"
                     if lost else "")
        raise ValueError(f"{what} of topology {topo.name!r} cuts off device pairs {_pairs_text(bad)}"
                         f"{f' ({len(bad)} pairs)' if len(bad) > _MAX_LISTED else ''}{lost_text}; "
                         "devices relay traffic only with forward=True")


def _route_text(g, devices, i, j) -> str:
    a, b = devices[i], devices[j]
    relay = [n for n in g.nodes if n in (a, b) or g.nodes[n]["kind"] != "device" or g.nodes[n].get("forward")]
    path = nx.shortest_path(g.subgraph(relay), a, b)
    staged = [str(n) for n in path[1:-1] if g.nodes[n].get("host_mem_GBps")]
    text = " -> ".join(map(str, path))
    return text + (f", staged through host memory at {' and '.join(staged)}" if staged else "")


def _derive(topo, g, note, name, keep_peak=False):
    g.graph["whatifs"] = list(topo.graph.graph.get("whatifs", [])) + [note]
    if keep_peak and "reference_peak" not in g.graph:      # the first system's peak, through every edit
        g.graph["reference_peak"] = {"GBps": topo.peak_bw_GBps(), "system": topo.name}
    return Topology(g, name=name or topo.name)

"""Routes between devices: fewest-hop paths, with the load spread over all of them.

A path may pass through switches, NICs and CPUs, and through a device only if that device has
``forward=True``. Among the equal-cost (fewest-hop) paths the load is split hop by hop in proportion
to link bandwidth (weighted ECMP): a GPU whose NVLinks reach four NVSwitch chips with 5, 5, 4 and
4 links sends 5/18, 5/18, 4/18 and 4/18 of its traffic through them, as its link interleaving does;
equal links split evenly. Routes are computed by a jitted breadth-first search over the topology's
CSR arrays (:class:`~topologies.graph.TopologyArrays`) and cached per topology and set of pairs.
"""

from __future__ import annotations

import networkx as nx
import numba
import numpy as np

from .graph import Topology


def paths(topo: Topology, src: int, dst: int) -> list[list]:
    """All equal-cost (fewest-hop) paths from device ``src`` to device ``dst``, as lists of nodes.

    >>> from topologies import switch
    >>> paths(switch(3), 0, 2)
    [['dev0', 'sw0', 'dev2']]
    """
    a, b = topo.device_node(src), topo.device_node(dst)
    if a == b:
        return [[a]]
    g = topo.graph
    relay = [n for n in g.nodes if n in (a, b) or g.nodes[n]["kind"] != "device" or g.nodes[n].get("forward")]
    return sorted(nx.all_shortest_paths(g.subgraph(relay), a, b), key=lambda p: [str(x) for x in p])


class Routes:
    """Routes of a set of device pairs in CSR form: pair ``k`` uses edge ``edge[ptr[k]:ptr[k+1]]`` with
    the fraction ``frac[...]`` of its traffic (1.0 on a single path, shares over parallel paths)."""

    __slots__ = ("ptr", "edge", "frac", "lat_us", "hops", "_kind_mask")

    def __init__(self, ptr, edge, frac, lat_us, hops):
        self.ptr, self.edge, self.frac, self.lat_us, self.hops = ptr, edge, frac, lat_us, hops
        self._kind_mask = None

    def kind_mask(self, edge_kind) -> np.ndarray:
        """Per pair, the link kinds on its paths as a bitmask (bit k: ``link_kinds[k]``); computed once."""
        if self._kind_mask is None:
            n = len(self.ptr) - 1
            owner = np.repeat(np.arange(n), np.diff(self.ptr))
            kinds = edge_kind[self.edge]
            mask = np.zeros(n, np.int64)
            for k in np.flatnonzero(np.bincount(kinds)):  # a handful of kinds: one pass each
                mask[np.bincount(owner, weights=(kinds == k), minlength=n) > 0] |= 1 << int(k)
            self._kind_mask = mask
        return self._kind_mask


def route_pairs(topo: Topology, src, dst, arrays=None) -> Routes:
    """Routes for device pairs ``(src[k], dst[k])``; cached by the pair arrays.

    ``arrays`` are the arrays to route on: ``topo.arrays`` (the default), or
    ``topo.arrays.routing``, where twin switches are merged and edge indices are the merged ones.
    Indices below P are devices; larger ones name other nodes in ``arrays.nodes`` order (a
    switch that reduces in the network is an endpoint too). Raises ``ValueError`` naming the first
    pair with no path or an index out of range.
    """
    src = np.ascontiguousarray(src, dtype=np.int64)
    dst = np.ascontiguousarray(dst, dtype=np.int64)
    a = topo.arrays if arrays is None else arrays
    key = (src.tobytes(), dst.tobytes())
    cache = a.__dict__.setdefault("_route_cache", {})
    hit = cache.get(key)
    if hit is not None:
        return hit
    P = topo.num_devices
    n_nodes = len(a.nodes)
    for arr in (src, dst):
        bad = np.flatnonzero((arr < 0) | (arr >= n_nodes))
        if bad.size:
            raise ValueError(f"transfer names device {int(arr[bad[0]])}, not in topology {topo.name!r} "
                             f"(devices 0..{P - 1})")
    order = np.argsort(src, kind="stable")
    ecmp, seed = a.ecmp_edge, np.uint64(a.routing_seed)
    hashed = bool(ecmp.any())
    # Where switches hash flows, a flow follows one path: walked forwards, it needs distances to the
    # target as well (the rows of the targets; links go both ways, so a row is a distance to it too).
    rows = _source_rows(a, P, np.unique(np.concatenate([src, dst]) if hashed and dst.max(initial=0) < P else src))
    if rows is None:
        ptr, edge, frac, hops, status = _route_sorted(src[order], dst[order], a.out_ptr, a.edge_dst, a.in_ptr,
                                                      a.in_edges, a.edge_src, a.transit, a.bw_GBps, ecmp, seed)
    else:
        forward = hashed and dst.max(initial=0) < P
        ptr, edge, frac, hops, status = _route_rows(src[order], dst[order], rows[0], rows[1], a.in_ptr, a.in_edges,
                                                    a.edge_src, a.edge_dst, a.transit, a.bw_GBps, ecmp, seed,
                                                    a.out_ptr, forward)
    if status >= 0:
        k = order[status]
        raise ValueError(f"no path from device {int(src[k])} to device {int(dst[k])} in topology {topo.name!r}")
    # Back to the caller's pair order.
    counts = np.diff(ptr)
    inv_counts = counts[np.argsort(order)]
    new_ptr = np.zeros(len(src) + 1, np.int64)
    np.cumsum(inv_counts, out=new_ptr[1:])
    take = _regather(ptr, np.argsort(order), new_ptr)
    edge, frac = edge[take], frac[take]
    hop_counts = hops[np.argsort(order)]
    lat = np.bincount(np.repeat(np.arange(len(src)), np.diff(new_ptr)), weights=frac * a.lat_us[edge],
                      minlength=len(src))
    routes = Routes(new_ptr, edge, frac, lat, hop_counts)
    _remember(cache, key, routes)
    return routes


#: Route entries (edges over all cached pairs) kept per routing arrays: enough for every step of a
#: pairwise all-to-all on thousands of devices, so that a size sweep routes nothing twice.
CACHE_ENTRIES = 64_000_000


def _remember(cache: dict, key, routes: Routes) -> None:
    size = cache.get("_entries", 0) + len(routes.edge) + len(routes.ptr)
    if size > CACHE_ENTRIES:
        cache.clear()
        size = len(routes.edge) + len(routes.ptr)
    cache["_entries"] = size
    cache[key] = routes


# Full BFS distances are kept per source device while they fit this budget: an all-to-all then
# pays one BFS per device for all its P-1 steps, and a size sweep none.
ROW_BUDGET_BYTES = 512 * 2**20


def _source_rows(a, P, sources):
    """``(row_of, table)``: per source device its row of BFS distances to every node of arrays ``a``
    (``table[row_of[s]]``), computed on demand and kept; None when the rows asked for at once would
    exceed :data:`ROW_BUDGET_BYTES` or a source is not a device. Rows are kept for the sources asked
    for only (a step solved on its quotient routes from a few representatives), up to the budget."""
    n_nodes = len(a.nodes)
    if sources.size and sources.max() >= P:
        return None
    row_bytes = max(1, n_nodes) * 4
    if len(sources) * row_bytes > ROW_BUDGET_BYTES:
        return None
    state = a.__dict__.get("_bfs_rows")
    if state is None:
        state = a.__dict__["_bfs_rows"] = [np.full(P, -1, np.int64), np.empty((0, n_nodes), np.int32), 0]
    row_of, table, used = state
    missing = sources[row_of[sources] < 0]
    if missing.size:
        if used + missing.size > len(table):
            cap = min(P, max(2 * len(table), used + missing.size, 16), ROW_BUDGET_BYTES // row_bytes)
            if used + missing.size > cap:          # over the budget: start again with these sources
                row_of[:] = -1
                used, missing = 0, sources
                cap = max(cap, len(sources))
            grown = np.empty((cap, n_nodes), np.int32)
            grown[:used] = table[:used]
            table = state[1] = grown
        row_of[missing] = np.arange(used, used + missing.size)
        table[used:used + missing.size] = -1
        _bfs_fill(missing, row_of, table, a.out_ptr, a.edge_dst, a.transit)
        state[2] = used + missing.size
    return row_of, table


@numba.njit(cache=True)
def _bfs_fill(sources, row_of, table, out_ptr, edge_dst, transit):
    """Complete BFS (hop distances over relaying nodes) from each source into its row."""
    queue = np.empty(table.shape[1], np.int64)
    no_targets = np.zeros(table.shape[1], np.bool_)
    for s in sources:
        _bfs(s, table[row_of[s]], queue, out_ptr, edge_dst, transit, no_targets, -1)


@numba.njit(cache=True)
def _bfs(s, dist, queue, out_ptr, edge_dst, transit, target, wanted):
    """Breadth-first search from ``s`` over relaying nodes into ``dist`` (-1 = not reached).

    With ``wanted`` >= 0 it stops once that many ``target`` nodes are reached and the layer being
    expanded lies beyond the farthest of them. Returns how many nodes ``queue`` holds (all that
    ``dist`` marked).
    """
    dist[s] = 0
    head = 0
    tail = 1
    queue[0] = s
    found = 1 if target[s] else 0
    far = -1
    while head < tail:
        u = queue[head]
        head += 1
        if found == wanted and dist[u] >= far:
            break
        if u != s and not transit[u]:
            continue
        for e in range(out_ptr[u], out_ptr[u + 1]):
            v = edge_dst[e]
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue[tail] = v
                tail += 1
                if target[v]:
                    found += 1
                    far = max(far, dist[v])
    return tail


@numba.njit(cache=True)
def _route_rows(src, dst, row_of, dist_rows, in_ptr, in_edges, edge_src, edge_dst, transit, bw, ecmp, seed, out_ptr,
                forward):
    """Routes of pairs sorted by source, each source's BFS taken from the cached rows; with
    ``forward`` (ECMP links, and the targets' rows cached too) each route is walked forwards
    (:func:`_sweep_forward`), following only the hashed edge at a hashing switch."""
    n_nodes = dist_rows.shape[1]
    npairs = src.size
    ptr = np.zeros(npairs + 1, np.int64)
    edge = np.empty(max(16, npairs * 4), np.int64)
    frac = np.empty(edge.size, np.float64)
    hops = np.zeros(npairs, np.int64)
    load = np.zeros(n_nodes)
    out_w = np.zeros(n_nodes)
    mark = np.zeros(n_nodes, np.bool_)
    layer = np.empty(n_nodes, np.int64)
    nxt = np.empty(n_nodes, np.int64)
    touched = np.empty(n_nodes, np.int64)
    fan = np.zeros(n_nodes, np.int64)
    seen = np.zeros(n_nodes, np.int64)
    occurrence = np.zeros(n_nodes, np.int64)
    pos = ptr[0]   # an int64, not the literal 0: one specialisation of the sweeps
    k = 0
    while k < npairs:
        s = src[k]
        kend = k
        while kend < npairs and src[kend] == s:
            kend += 1
        dist = dist_rows[row_of[s]]
        for j in range(k, kend):
            t = dst[j]
            if t != s:
                if dist[t] < 0:
                    return ptr, edge[:pos], frac[:pos], hops, j
                hops[j] = dist[t]
                flow = _flow_key(seed, s, t, occurrence[t])
                occurrence[t] += 1
                if forward:
                    edge, frac, pos = _sweep_forward(s, t, dist, dist_rows[row_of[t]], load, mark, layer, nxt, out_ptr,
                                                     edge_dst, transit, bw, edge, frac, pos, ecmp, flow)
                else:
                    edge, frac, pos = _sweep(s, t, dist, load, out_w, mark, layer, nxt, touched, in_ptr, in_edges,
                                             edge_src, edge_dst, transit, bw, edge, frac, pos, ecmp, flow, fan, seen)
            ptr[j + 1] = pos
        for j in range(k, kend):
            occurrence[dst[j]] = 0
        k = kend
    return ptr, edge[:pos], frac[:pos], hops, -1


@numba.njit(cache=True)
def _route_sorted(src, dst, out_ptr, edge_dst, in_ptr, in_edges, edge_src, transit, bw, ecmp, seed):
    """Routes of pairs sorted by source: one BFS per distinct source, stopping once the layer being
    expanded lies beyond its farthest target, then one :func:`_sweep` per destination.

    Returns (ptr, edge, frac, hops, status); status is the index of an unroutable pair or -1.
    """
    n_nodes = out_ptr.size - 1
    npairs = src.size
    ptr = np.zeros(npairs + 1, np.int64)
    edge = np.empty(max(16, npairs * 4), np.int64)
    frac = np.empty(edge.size, np.float64)
    hops = np.zeros(npairs, np.int64)
    dist = np.full(n_nodes, -1, np.int32)  # as the cached rows: one compiled _bfs and _sweep
    load = np.zeros(n_nodes)
    out_w = np.zeros(n_nodes)
    mark = np.zeros(n_nodes, np.bool_)
    queue = np.empty(n_nodes, np.int64)
    layer = np.empty(n_nodes, np.int64)
    nxt = np.empty(n_nodes, np.int64)
    touched = np.empty(n_nodes, np.int64)
    fan = np.zeros(n_nodes, np.int64)
    seen = np.zeros(n_nodes, np.int64)
    occurrence = np.zeros(n_nodes, np.int64)
    pos = ptr[0]   # an int64, not the literal 0: one specialisation of the sweeps
    k = 0
    while k < npairs:
        s = src[k]
        kend = k
        while kend < npairs and src[kend] == s:
            kend += 1
        wanted = 0
        for j in range(k, kend):
            if not mark[dst[j]]:
                mark[dst[j]] = True
                wanted += 1
        tail = _bfs(s, dist, queue, out_ptr, edge_dst, transit, mark, wanted)
        for j in range(k, kend):
            mark[dst[j]] = False
        for j in range(k, kend):
            t = dst[j]
            if t != s:
                if dist[t] < 0:
                    return ptr, edge[:pos], frac[:pos], hops, j
                hops[j] = dist[t]
                flow = _flow_key(seed, s, t, occurrence[t])
                occurrence[t] += 1
                edge, frac, pos = _sweep(s, t, dist, load, out_w, mark, layer, nxt, touched, in_ptr, in_edges,
                                         edge_src, edge_dst, transit, bw, edge, frac, pos, ecmp, flow, fan, seen)
            ptr[j + 1] = pos
        for j in range(k, kend):
            occurrence[dst[j]] = 0
        for i in range(tail):
            dist[queue[i]] = -1
        k = kend
    return ptr, edge[:pos], frac[:pos], hops, -1


@numba.njit(cache=True)
def _grown(edge, frac, pos):
    """``edge`` and ``frac`` in arrays of twice the size, their first ``pos`` entries copied."""
    edge2 = np.empty(edge.size * 2, np.int64)
    frac2 = np.empty(edge.size * 2, np.float64)
    for i in range(pos):   # a loop, not a slice copy: that compiles a shape check's message formatting
        edge2[i] = edge[i]
        frac2[i] = frac[i]
    return edge2, frac2


@numba.njit(cache=True)
def _mix(x):
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True)
def _flow_key(seed, s, t, occurrence):
    """The hash key of one flow: the routing seed, its endpoints, and which of the pair's flows in
    this set it is (NCCL opens one connection per channel; each has its own headers, so its own hash)."""
    x = _mix(seed ^ np.uint64(0x9E3779B97F4A7C15))
    x = _mix(x ^ np.uint64(s))
    x = _mix(x ^ np.uint64(t))
    return _mix(x ^ np.uint64(occurrence))


@numba.njit(cache=True)
def _edge_hash(flow, e):
    """The hash of edge ``e`` for ``flow``: of a hashing switch's equal-cost edges the flow takes the one
    with the smallest (the same pick whatever order a sweep meets them in)."""
    return _mix(flow ^ (np.uint64(e) * np.uint64(0xD6E8FEB86659FD93)))


@numba.njit(cache=True)
def _sweep(s, t, dist, load, out_w, mark, layer, nxt, touched, in_ptr, in_edges, edge_src, edge_dst, transit, bw,
           edge, frac, pos, ecmp, flow, fan, seen):
    """Append the edges of every fewest-hop path from s to t with the share of the traffic each carries.

    Backwards from t, layer by layer, the edges u->v with dist(u) = dist(v) - 1 are the shortest-path
    DAG. Then forwards from s, each node splits what reaches it over its DAG out-edges in
    proportion to their bandwidth (adaptive routing) or, when all of them are ECMP links, sends it
    all down the one with the smallest :func:`_edge_hash` for ``flow`` (a switch hashing the flow's
    headers); the edges left without traffic are dropped. (``seen[u]`` holds that edge.)
    """
    start = pos
    nl = 1
    layer[0] = t
    nt = 1
    touched[0] = t
    hashed = False
    while nl > 0:
        nn = 0
        for li in range(nl):
            v = layer[li]
            for ie in range(in_ptr[v], in_ptr[v + 1]):
                e = in_edges[ie]
                u = edge_src[e]
                if dist[u] < 0 or dist[u] != dist[v] - 1:
                    continue
                if u != s and not transit[u]:
                    continue
                if pos >= edge.size:
                    edge, frac = _grown(edge, frac, pos)
                edge[pos] = e
                pos += 1
                out_w[u] += bw[e]
                # fan[u]: DAG out-edges of u, or -1 once one of them is not an ECMP link.
                if fan[u] >= 0:
                    if ecmp[e]:
                        if fan[u] == 0 or _edge_hash(flow, e) < _edge_hash(flow, seen[u]):
                            seen[u] = e
                        fan[u] += 1
                    else:
                        fan[u] = -1
                if not mark[u]:
                    mark[u] = True
                    nxt[nn] = u
                    nn += 1
                    touched[nt] = u
                    nt += 1
        for li in range(nn):
            layer[li] = nxt[li]
            mark[nxt[li]] = False
        nl = nn
    # Edges were found farthest-first; the reverse order visits every node after all its inputs.
    load[s] = 1.0
    for i in range(pos - 1, start - 1, -1):
        e = edge[i]
        u = edge_src[e]
        if fan[u] > 1:
            f = load[u] if e == seen[u] else 0.0
            hashed = True
        else:
            f = load[u] * bw[e] / out_w[u]
        frac[i] = f
        load[edge_dst[e]] += f
    for i in range(nt):
        load[touched[i]] = 0.0
        out_w[touched[i]] = 0.0
        fan[touched[i]] = 0
        seen[touched[i]] = 0
    if hashed:  # keep only the edges of the hashed path
        w = start
        for i in range(start, pos):
            if frac[i] > 0.0:
                edge[w] = edge[i]
                frac[w] = frac[i]
                w += 1
        pos = w
    return edge, frac, pos


@numba.njit(cache=True)
def _sweep_forward(s, t, ds, dt, load, mark, layer, nxt, out_ptr, edge_dst, transit, bw, edge, frac, pos, ecmp,
                   flow):
    """:func:`_sweep`'s routes walked forwards from s, with the distances from s (``ds``) and to t
    (``dt``): an edge u->v lies on a fewest-hop path when ``ds[v] = ds[u] + 1`` and ``dt[v] = dt[u] - 1``.
    A hashing switch passes everything to its one hashed edge and the others are never walked, so a
    flow through a wide spine layer costs its one path rather than the whole layer. The same edges
    and shares as :func:`_sweep`."""
    nl = 1
    layer[0] = s
    load[s] = 1.0
    while nl > 0:
        nn = 0
        for li in range(nl):
            u = layer[li]
            if u == t:
                continue
            total = 0.0
            n = 0
            all_ecmp = True
            best = -1
            for e in range(out_ptr[u], out_ptr[u + 1]):
                v = edge_dst[e]
                if ds[v] != ds[u] + 1 or dt[v] != dt[u] - 1 or (v != t and not transit[v]):
                    continue
                n += 1
                total += bw[e]
                if ecmp[e]:
                    if best < 0 or _edge_hash(flow, e) < _edge_hash(flow, best):
                        best = e
                else:
                    all_ecmp = False
            hash_here = n > 1 and all_ecmp
            for e in range(out_ptr[u], out_ptr[u + 1]):
                v = edge_dst[e]
                if ds[v] != ds[u] + 1 or dt[v] != dt[u] - 1 or (v != t and not transit[v]):
                    continue
                if hash_here:
                    if e != best:
                        continue
                    f = load[u]
                else:
                    f = load[u] * bw[e] / total
                if pos >= edge.size:
                    edge, frac = _grown(edge, frac, pos)
                edge[pos] = e
                frac[pos] = f
                pos += 1
                load[v] += f
                if not mark[v]:
                    mark[v] = True
                    nxt[nn] = v
                    nn += 1
            load[u] = 0.0
        for li in range(nn):
            layer[li] = nxt[li]
            mark[nxt[li]] = False
        nl = nn
    load[t] = 0.0
    return edge, frac, pos


@numba.njit(cache=True)
def _regather(ptr, perm, new_ptr):
    """Indices that reorder CSR rows: row k of the result is row ``perm[k]`` of ``ptr``."""
    out = np.empty(new_ptr[-1], np.int64)
    for k in range(perm.size):
        j = perm[k]
        n = ptr[j + 1] - ptr[j]
        for i in range(n):
            out[new_ptr[k] + i] = ptr[j] + i
    return out

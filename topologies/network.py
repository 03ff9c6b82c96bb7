"""The flow-level, contention-aware network model (the time plane).

A transfer moves ``nbytes`` from one device to another along its routes (equal-cost paths share its
load evenly). Concurrent transfers share every directed link max-min fairly: rates come from
progressive filling and are recomputed whenever a transfer starts or finishes its data. A link
carries data at ``bw_GBps * efficiency`` of its kind. A transfer ends ``latency`` after its last
byte left, where ``latency`` is the sum of its hops' ``lat_us`` plus the per-message cost
``msg_us`` of the slowest link kind on its path (see :mod:`topologies.model`).

This module knows nothing of collectives: :func:`simulate_transfers` takes transfers with
dependencies, and :class:`StepTimer` times one step of concurrent transfers, caching by pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import model as _model
from .graph import AggregatedArrays, Topology
from .routing import route_pairs


@dataclass
class TransferResult:
    """What :func:`simulate_transfers` returns. Times in seconds, per-link arrays indexed like
    ``topology.arrays.edges``."""

    time_s: float
    start_s: np.ndarray
    end_s: np.ndarray
    link_bytes: np.ndarray
    link_busy_s: np.ndarray
    edges: list

    def link_utilisation(self):
        """``{(u, v): busy fraction of the total time}`` for links that carried data."""
        if self.time_s <= 0:
            return {}
        return {self.edges[i]: float(self.link_busy_s[i] / self.time_s) for i in np.flatnonzero(self.link_bytes)}


class LinkParams:
    """Per-edge capacity (bytes/s) and per-edge message cost of a topology under resolved parameters
    (edges of ``arrays``: ``topo.arrays`` by default, or its merged routing arrays)."""

    def __init__(self, topo: Topology, model: dict | None = None, protocol: str = "simple", arrays=None):
        if protocol not in _model.PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(_model.PROTOCOLS)}")
        self.params = _model.resolve(topo.model, model)
        self.protocol = protocol
        a = topo.arrays if arrays is None else arrays
        eff = np.array([_model.link_param(self.params, k, "efficiency") for k in a.link_kinds])
        eff = eff * _model.PROTOCOL_EFFICIENCY[protocol]
        msg = np.array([_model.link_param(self.params, k, _model.MSG_KEY[protocol]) for k in a.link_kinds])
        self.capacity_Bps = a.bw_GBps * 1e9 * eff[a.edge_kind]
        self.msg_by_kind_s = msg * 1e-6
        call = [_model.link_param(self.params, k, _model.CALL_KEY[protocol]) for k in a.link_kinds]
        self.call_s = max(call, default=0.0) * 1e-6


def flow_latency_s(routes, link: LinkParams, edge_kind) -> np.ndarray:
    """Per transfer: hop latencies (averaged over its equal-cost paths) plus the largest message cost
    among the link kinds on its path."""
    mask = routes.kind_mask(edge_kind)
    msg = np.zeros(len(mask))
    for k, cost in enumerate(link.msg_by_kind_s):
        msg = np.where((mask >> k) & 1 == 1, np.maximum(msg, cost), msg)
    return routes.lat_us * 1e-6 + msg


def simulate_transfers(topo: Topology, src, dst, nbytes, deps=None, *, model=None,
                       protocol="simple") -> TransferResult:
    """Simulate transfers with dependencies on ``topo``.

    Parameters
    ----------
    topo : Topology
    src, dst : array_like of int
        Source and destination device of each transfer.
    nbytes : array_like of float
        Bytes of each transfer (>= 0).
    deps : list of list of int, optional
        ``deps[k]``: transfers that must end before transfer ``k`` starts.
    model : dict, optional
        Per-call overrides of the model parameters (see :mod:`topologies.model`).
    protocol : str
        The regime the transfers run in: ``simple``, ``ll128`` or ``ll``.

    Examples
    --------
    Two 1 GB transfers over one 10 GB/s link share it and both take 0.2 s:

    >>> from topologies import ring
    >>> t = ring(2, bw_GBps=10.0, lat_us=0.0)
    >>> r = simulate_transfers(t, [0, 0], [1, 1], [1e9, 1e9])
    >>> round(r.time_s, 9), r.end_s.tolist()
    (0.2, [0.2, 0.2])
    """
    src = np.asarray(src, dtype=np.int64).ravel()
    dst = np.asarray(dst, dtype=np.int64).ravel()
    nbytes = np.asarray(nbytes, dtype=np.float64).ravel()
    n = len(src)
    if not (len(dst) == n and len(nbytes) == n):
        raise ValueError(f"src, dst and nbytes must have the same length; got {n}, {len(dst)}, {len(nbytes)}")
    bad = np.flatnonzero(~np.isfinite(nbytes) | (nbytes < 0))
    if bad.size:
        raise ValueError(f"transfer {int(bad[0])} has nbytes={float(nbytes[bad[0]]):g}; expected a finite number >= 0")
    deps = [[] for _ in range(n)] if deps is None else deps
    if len(deps) != n:
        raise ValueError(f"deps has {len(deps)} entries for {n} transfers")
    dep_ptr = np.zeros(n + 1, np.int64)
    dep_ptr[1:] = np.cumsum([len(d) for d in deps])
    dep_idx = np.fromiter((int(x) for d in deps for x in d), np.int64, int(dep_ptr[-1]))
    badd = np.flatnonzero((dep_idx < 0) | (dep_idx >= n))
    if badd.size:
        raise ValueError(f"dependency on transfer {int(dep_idx[badd[0]])}, which does not exist (0..{n - 1})")
    cycle = _find_cycle(dep_ptr, dep_idx, n)
    if cycle >= 0:
        raise ValueError(f"dependency cycle through transfer {cycle}")
    routes = route_pairs(topo, src, dst)
    link = LinkParams(topo, model, protocol)
    lat = flow_latency_s(routes, link, topo.arrays.edge_kind)
    start, end, busy = _run_flows(routes.ptr, routes.edge, routes.frac, link.capacity_Bps, nbytes, lat,
                                  dep_ptr, dep_idx)
    link_bytes = _link_bytes(routes, nbytes, len(link.capacity_Bps))
    total = float(end.max()) + link.call_s if n else link.call_s
    return TransferResult(total, start, end, link_bytes, busy, topo.arrays.edges)


def _link_bytes(routes, nbytes, n_edges):
    owner = np.repeat(np.arange(len(nbytes)), np.diff(routes.ptr))
    return np.bincount(routes.edge, weights=routes.frac * nbytes[owner], minlength=n_edges)


@dataclass
class StepDetail:
    """The remote transfers of a timed step, kept small (a cache holds many): per transfer its bytes,
    latency, data-completion time and the link kinds on its path (a bitmask over
    ``topology.arrays.link_kinds``); per link touched, the bytes it carried (links of the routing
    arrays the step was solved on: :func:`expand_edge_bytes` gives them on the topology's edges)."""

    nbytes: np.ndarray
    lat_s: np.ndarray
    data_s: np.ndarray
    kind_mask: np.ndarray
    edge_ids: np.ndarray
    edge_bytes: np.ndarray


class StepSolver:
    """Solves steps of concurrent transfers (all start together, no dependencies) once for every
    protocol regime and message size.

    The max-min rates scale with the links' capacities, and a regime scales every capacity by the
    same factor (:data:`topologies.model.PROTOCOL_EFFICIENCY`); when every transfer's bytes scale
    by one factor, the order in which transfers finish is unchanged and each one's data time scales
    by it. So a step is solved once per pattern, with its bytes divided by the largest and at
    Simple's capacities; each regime and size rescales that solution (exact up to rounding) and
    adds its own latencies. A ring's 2(P-1) identical steps, the three regimes and a size sweep
    therefore cost one solve per distinct pattern.
    """

    def __init__(self, topo: Topology, model: dict | None = None, merge_twins: bool = True):
        self.topo = topo
        # Routes and max-min solves run on the merged routing arrays (exact, see
        # topologies.graph.AggregatedArrays); endpoints other than devices need the plain ones.
        self.arrays = topo.arrays.routing if merge_twins else topo.arrays
        self.model = model
        self.link = LinkParams(topo, model, "simple", self.arrays)
        self._cache = {}
        self._steps = {}

    def solve(self, src, dst, nbytes):
        """``(scale, pattern)`` for a step; ``pattern`` is None when every transfer is local, else
        a :class:`_Pattern` solved for the bytes divided by ``scale`` (the largest flow's bytes)."""
        raw = (src.tobytes(), dst.tobytes(), np.asarray(nbytes, np.float64).tobytes())
        seen = self._steps.get(raw)  # the same step asked for by each regime: merged and solved once
        if seen is not None:
            return seen
        if len(self._steps) > 8192:
            self._steps.clear()
        self._steps[raw] = out = self._solve(src, dst, nbytes)
        return out

    def _solve(self, src, dst, nbytes):
        remote = src != dst
        s, d, b = src[remote], dst[remote], np.asarray(nbytes, np.float64)[remote]
        # Several transfers between one pair in a step travel as one message (one flow): same
        # path, same start, so the same finish as separate flows, at a fraction of the cost.
        pair = s * (int(max(s.max(initial=0), d.max(initial=0))) + 1) + d
        uniq, inverse = np.unique(pair, return_inverse=True)
        if len(uniq) < len(pair):
            first = np.zeros(len(uniq), np.int64)
            first[inverse[::-1]] = np.arange(len(pair))[::-1]
            s, d, b = s[first], d[first], np.bincount(inverse, weights=b, minlength=len(uniq))
        if len(s) == 0:
            return 0.0, None
        scale = float(b.max())
        unit = b / scale if scale > 0 else b
        key = (s.tobytes(), d.tobytes(), unit.tobytes())
        hit = self._cache.get(key)
        if hit is None:
            routes = route_pairs(self.topo, s, d, self.arrays)
            data = _solve_step(routes.ptr, routes.edge, routes.frac, self.link.capacity_Bps, unit)
            ids, per_edge = _edge_bytes(routes, unit)
            hit = _Pattern(routes, unit, data, routes.kind_mask(self.arrays.edge_kind), ids, per_edge, {})
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = hit
        return scale, hit


@dataclass
class _Pattern:
    """A solved step for unit bytes: routes, data-completion times and per-link bytes (on the
    solver's routing edges), and its latencies per regime once asked for."""

    routes: object
    unit: np.ndarray
    data_s: np.ndarray
    kind_mask: np.ndarray
    edge_ids: np.ndarray
    edge_bytes: np.ndarray
    lat_s: dict


def _edge_bytes(routes, nbytes):
    """``(edge ids, bytes)`` of the links a step's flows use, in the routes' own edge space."""
    owner = np.repeat(np.arange(len(nbytes)), np.diff(routes.ptr))
    ids, inverse = np.unique(routes.edge, return_inverse=True)
    load = np.bincount(inverse, weights=routes.frac * nbytes[owner], minlength=len(ids))
    keep = load != 0
    return ids[keep], load[keep]


def expand_edge_bytes(per_edge: np.ndarray, arrays) -> np.ndarray:
    """Bytes per edge of ``arrays`` (merged routing arrays, or plain ones) on the topology's own
    edges: a merged edge's bytes spread over its twins by their shares."""
    if isinstance(arrays, AggregatedArrays):
        return per_edge[arrays.edge_of] * arrays.share
    return per_edge


class StepTimer:
    """Times steps of concurrent transfers in one protocol regime, from a shared :class:`StepSolver`."""

    def __init__(self, solver: StepSolver, protocol: str = "simple"):
        self.solver = solver
        self.topo = solver.topo
        self.protocol = protocol
        self.link = LinkParams(solver.topo, solver.model, protocol, solver.arrays)
        self.factor = _model.PROTOCOL_EFFICIENCY[protocol]
        #: Per-edge capacity (bytes/s) on the topology's own edges.
        self.capacity_Bps = self.link.capacity_Bps[solver.arrays.edge_of] * solver.arrays.share
        self._cache = {}

    def time(self, src, dst, nbytes):
        """``(step_time_s, detail)`` for transfers ``src[k] -> dst[k]`` of ``nbytes[k]`` started at once;
        ``detail`` (None when every transfer is local) is a :class:`StepDetail` of the remote transfers."""
        key = (src.tobytes(), dst.tobytes(), np.asarray(nbytes, np.float64).tobytes())
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        scale, pat = self.solver.solve(src, dst, nbytes)
        if pat is None:
            out = (0.0, None)
        else:
            lat = pat.lat_s.get(self.protocol)
            if lat is None:
                lat = pat.lat_s[self.protocol] = flow_latency_s(pat.routes, self.link, self.solver.arrays.edge_kind)
            data = pat.data_s * (scale / self.factor)
            out = (float((data + lat).max()),
                   StepDetail(pat.unit * scale, lat, data, pat.kind_mask, pat.edge_ids, pat.edge_bytes * scale))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out


@numba.njit(cache=True)
def _solve_step(ptr, edge, frac, capacity, nbytes):
    """Data-completion times of flows that all start at 0 with no dependencies.

    Max-min fair sharing couples only flows that share a link, so the flows are split into
    connected components (union-find over their links) and each is solved on its own: a flow alone
    on its links runs at ``min(capacity / frac)`` (what progressive filling gives it), and a larger
    component runs the event loop on its own flows and links only. The same rates as one solve of
    everything, at a cost that grows with the components' sizes rather than with the whole step's.
    """
    n = nbytes.size
    parent = np.arange(n)
    first = np.full(capacity.size, -1, np.int64)
    for f in range(n):
        for i in range(ptr[f], ptr[f + 1]):
            e = edge[i]
            if first[e] < 0:
                first[e] = f
            else:
                a = f
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                b = first[e]
                while parent[b] != b:
                    parent[b] = parent[parent[b]]
                    b = parent[b]
                if a != b:
                    parent[max(a, b)] = min(a, b)
    root = np.empty(n, np.int64)
    size = np.zeros(n, np.int64)
    for f in range(n):
        a = f
        while parent[a] != a:
            a = parent[a]
        root[f] = a
        size[a] += 1
    data = np.zeros(n)
    # Flows of each multi-flow component, contiguous (CSR by root).
    comp_ptr = np.zeros(n + 1, np.int64)
    for f in range(n):
        comp_ptr[root[f] + 1] += 1 if size[root[f]] > 1 else 0
    for r in range(n):
        comp_ptr[r + 1] += comp_ptr[r]
    members = np.empty(comp_ptr[n], np.int64)
    fill = comp_ptr[:-1].copy()
    for f in range(n):
        if size[root[f]] == 1:
            if nbytes[f] <= 0.0 or ptr[f + 1] == ptr[f]:
                continue
            rate = np.inf
            for i in range(ptr[f], ptr[f + 1]):
                v = capacity[edge[i]] / frac[i]
                if v < rate:
                    rate = v
            data[f] = nbytes[f] / rate
        else:
            members[fill[root[f]]] = f
            fill[root[f]] += 1
    local = np.full(capacity.size, -1, np.int64)
    for r in range(n):
        lo, hi = comp_ptr[r], comp_ptr[r + 1]
        if hi - lo == 0:
            continue
        m = hi - lo
        cnt = 0
        for j in range(lo, hi):
            f = members[j]
            cnt += ptr[f + 1] - ptr[f]
        sub_ptr = np.zeros(m + 1, np.int64)
        sub_edge = np.empty(cnt, np.int64)
        sub_frac = np.empty(cnt)
        sub_bytes = np.empty(m)
        edges_used = np.empty(cnt, np.int64)
        ne = 0
        pos = 0
        for j in range(m):
            f = members[lo + j]
            sub_bytes[j] = nbytes[f]
            for i in range(ptr[f], ptr[f + 1]):
                e = edge[i]
                if local[e] < 0:
                    local[e] = ne
                    edges_used[ne] = e
                    ne += 1
                sub_edge[pos] = local[e]
                sub_frac[pos] = frac[i]
                pos += 1
            sub_ptr[j + 1] = pos
        sub_cap = np.empty(ne)
        for k in range(ne):
            sub_cap[k] = capacity[edges_used[k]]
            local[edges_used[k]] = -1
        none = np.zeros(m + 1, np.int64)
        _, end, _ = _run_flows(sub_ptr, sub_edge, sub_frac, sub_cap, sub_bytes, np.zeros(m), none, none[:0])
        for j in range(m):
            data[members[lo + j]] = end[j]
    return data


@numba.njit(cache=True)
def _successors(dep_ptr, dep_idx, n):
    """Successor lists (CSR) from dependency lists (CSR): who waits for each transfer."""
    succ_cnt = np.zeros(n + 1, np.int64)
    for i in range(dep_idx.size):
        succ_cnt[dep_idx[i] + 1] += 1
    succ_ptr = np.cumsum(succ_cnt)
    fill = succ_ptr[:-1].copy()
    succ = np.empty(dep_idx.size, np.int64)
    for k in range(n):
        for i in range(dep_ptr[k], dep_ptr[k + 1]):
            succ[fill[dep_idx[i]]] = k
            fill[dep_idx[i]] += 1
    return succ_ptr, succ


@numba.njit(cache=True)
def _find_cycle(dep_ptr, dep_idx, n):
    """Kahn's algorithm; returns a transfer on a cycle, or -1."""
    indeg = np.diff(dep_ptr)
    succ_ptr, succ = _successors(dep_ptr, dep_idx, n)
    stack = np.empty(n, np.int64)
    top = 0
    for k in range(n):
        if indeg[k] == 0:
            stack[top] = k
            top += 1
    seen = 0
    while top > 0:
        top -= 1
        k = stack[top]
        seen += 1
        for i in range(succ_ptr[k], succ_ptr[k + 1]):
            j = succ[i]
            indeg[j] -= 1
            if indeg[j] == 0:
                stack[top] = j
                top += 1
    if seen == n:
        return -1
    for k in range(n):
        if indeg[k] > 0:
            return k
    return -1


@numba.njit(cache=True)
def _maxmin(active, ptr, edge, frac, capacity, rate):
    """Max-min fair rates by progressive filling; a flow uses ``frac`` of its rate on each of its edges."""
    n = active.size
    frozen = np.empty(n, np.bool_)
    left = capacity.copy()
    weight = np.zeros(capacity.size)
    n_free = 0
    for f in range(n):
        rate[f] = 0.0
        frozen[f] = not active[f]
        if active[f]:
            n_free += 1
    while n_free > 0:
        weight[:] = 0.0
        for f in range(n):
            if not frozen[f]:
                for i in range(ptr[f], ptr[f + 1]):
                    weight[edge[i]] += frac[i]
        inc = np.inf
        for e in range(capacity.size):
            if weight[e] > 0.0:
                v = left[e] / weight[e]
                if v < inc:
                    inc = v
        if inc == np.inf:  # flows on no link (should not happen for remote transfers)
            for f in range(n):
                if not frozen[f]:
                    rate[f] = np.inf
                    frozen[f] = True
            break
        for e in range(capacity.size):
            if weight[e] > 0.0:
                left[e] -= inc * weight[e]
        for f in range(n):
            if not frozen[f]:
                rate[f] += inc
        # Freeze the flows that cross a now-saturated edge.
        for f in range(n):
            if frozen[f]:
                continue
            for i in range(ptr[f], ptr[f + 1]):
                e = edge[i]
                if left[e] <= 1e-12 * capacity[e]:
                    frozen[f] = True
                    n_free -= 1
                    break
    return rate


@numba.njit(cache=True)
def _run_flows(ptr, edge, frac, capacity, nbytes, lat, dep_ptr, dep_idx):
    """Event loop: start transfers when their dependencies end, share links max-min, finish in order.

    Returns per-transfer start and end times and per-edge busy time (seconds).
    """
    n = nbytes.size
    start = np.full(n, np.inf)
    end = np.full(n, np.inf)
    data_done = np.full(n, np.inf)
    busy = np.zeros(capacity.size)
    remaining = nbytes.copy()
    active = np.zeros(n, np.bool_)
    pending = np.zeros(n, np.int64)
    rate = np.zeros(n)
    pending[:] = np.diff(dep_ptr)
    succ_ptr, succ = _successors(dep_ptr, dep_idx, n)
    ready = np.full(n, np.inf)  # when a transfer may start
    for k in range(n):
        if pending[k] == 0:
            ready[k] = 0.0
    t = 0.0
    done = 0
    on_link = np.zeros(capacity.size, np.bool_)
    while done < n:
        # Start every transfer whose start time has come.
        for k in range(n):
            if ready[k] <= t and start[k] == np.inf:
                start[k] = ready[k]
                if remaining[k] <= 0.0 or ptr[k + 1] == ptr[k]:
                    data_done[k] = start[k]
                    end[k] = start[k] + lat[k]
                    done += 1
                    for i in range(succ_ptr[k], succ_ptr[k + 1]):
                        j = succ[i]
                        pending[j] -= 1
                        if pending[j] == 0:
                            r = 0.0
                            for q in range(dep_ptr[j], dep_ptr[j + 1]):
                                r = max(r, end[dep_idx[q]])
                            ready[j] = r
                else:
                    active[k] = True
        n_active = 0
        for k in range(n):
            if active[k]:
                n_active += 1
        next_start = np.inf
        for k in range(n):
            if start[k] == np.inf and ready[k] < next_start:
                next_start = ready[k]
        if n_active == 0:
            if next_start == np.inf:
                break
            t = next_start
            continue
        _maxmin(active, ptr, edge, frac, capacity, rate)
        dt = np.inf
        for k in range(n):
            if active[k]:
                v = remaining[k] / rate[k]
                if v < dt:
                    dt = v
        if next_start - t < dt:
            dt = next_start - t
        on_link[:] = False
        for k in range(n):
            if active[k]:
                for i in range(ptr[k], ptr[k + 1]):
                    on_link[edge[i]] = True
        for e in range(capacity.size):
            if on_link[e]:
                busy[e] += dt
        t_new = t + dt
        for k in range(n):
            if not active[k]:
                continue
            if remaining[k] <= rate[k] * dt * (1.0 + 1e-12):
                remaining[k] = 0.0
                active[k] = False
                data_done[k] = t_new
                end[k] = t_new + lat[k]
                done += 1
                for i in range(succ_ptr[k], succ_ptr[k + 1]):
                    j = succ[i]
                    pending[j] -= 1
                    if pending[j] == 0:
                        r = 0.0
                        for q in range(dep_ptr[j], dep_ptr[j + 1]):
                            r = max(r, end[dep_idx[q]])
                        ready[j] = r
            else:
                remaining[k] -= rate[k] * dt
        t = t_new
    return start, end, busy

"""The flow-level, contention-aware network model (the time plane).

A transfer moves ``nbytes`` from one device to another along its routes (equal-cost paths share its
load evenly). Concurrent transfers share every directed link max-min fairly: rates come from
progressive filling and are recomputed whenever a transfer starts or finishes its data. A link
carries data at ``bw_GBps * efficiency`` of its kind. A transfer ends ``latency`` after its last
byte left, where ``latency`` is the sum of its hops' ``lat_us`` plus the per-message cost
``msg_us`` of the slowest link kind on its path (see :mod:`topologies.model`).

A node with ``host_mem_GBps`` (a host CPU and its memory) *stages* the transfers whose route passes
through it, as a PCIe-attached accelerator's host path does: the data goes down to host memory (the
links up to the first staging node, writing memory), is copied in host memory (reading and writing
it: the links between the first and last staging node, e.g. a CPU-to-CPU link, and the memory of
both), then goes up (the links after the last staging node, reading memory). The three stages run
one after another, each paying its own message cost (the copy pays the ``host_memory`` kind's, see
:mod:`topologies.model`), and the memory of a staging node is one more resource of
``host_mem_GBps * efficiency`` shared max-min by every stage that reads or writes it
(:class:`Staging`). An unstaged transfer is one pipelined flow, as above.

This module knows nothing of collectives: :func:`simulate_transfers` takes transfers with
dependencies, and :class:`StepTimer` times one step of concurrent transfers, caching by pattern.

A step given as a symmetric pattern rather than as arrays (an all-to-all's every pair, a pairwise
exchange's shift: :class:`topologies.symmetry.Circulant`) is solved on its quotient by the
topology's automorphisms that preserve it (:meth:`StepTimer.time_pattern`): one representative
source per orbit of devices, one aggregated link per orbit of links, the representatives' routes
carried over from the orbit bases' by the automorphisms. Max-min rates are invariant under them, so
the figures are the step's own (to rounding), at a cost set by the topology and the number of
orbits rather than by P^2 transfers; where no symmetry applies (ECMP hashing, staging nodes, a
system without one) the step's arrays are timed as any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import model as _model
from . import symmetry as _symmetry
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
    staging = Staging.of(topo, topo.arrays, link.params)
    plan = None if staging is None else staging.plan(routes)
    if plan is None:
        start, end, busy = _run_flows(routes.ptr, routes.edge, routes.frac, link.capacity_Bps, nbytes, lat,
                                      dep_ptr, dep_idx)
    else:
        start, end, busy = plan.run(link, nbytes, lat, dep_ptr, dep_idx)
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
    #: The transfers' endpoints (node ids of the timer's arrays; transfers between one pair merged).
    src: np.ndarray | None = None
    dst: np.ndarray | None = None


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
        if self.arrays is not topo.arrays and Staging.merged_away(topo, self.arrays):
            self.arrays = topo.arrays      # a staging node's memory is its own: keep twins apart
        self.model = model
        self.link = LinkParams(topo, model, "simple", self.arrays)
        self.staging = Staging.of(topo, self.arrays, self.link.params)
        self._cache = {}
        self._steps = {}
        self._patterns = {}
        self._bases = {}
        self._prefetched = {}
        self._quotients = {}
        self._solved = {}
        self._shapes = {}

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
        s, d, inverse = _merge_pairs(src[remote], dst[remote], self.arrays)
        b = np.asarray(nbytes, np.float64)[remote]
        if inverse is not None:
            b = np.bincount(inverse, weights=b, minlength=len(s))
        if len(s) == 0:
            return 0.0, None
        scale = float(b.max())
        unit = b / scale if scale > 0 else b
        key = (s.tobytes(), d.tobytes(), unit.tobytes())
        hit = self._cache.get(key)
        if hit is None:
            routes = route_pairs(self.topo, s, d, self.arrays)
            plan = None if self.staging is None else self.staging.plan(routes)
            if plan is None:
                data = _solve_step(routes.ptr, routes.edge, routes.frac, self.link.capacity_Bps, unit)
            else:
                data = plan.solve_step(self.link.capacity_Bps, unit)
            ids, per_edge = _edge_bytes(routes, unit)
            hit = _Pattern(routes, unit, data, routes.kind_mask(self.arrays.edge_kind), ids, per_edge, {}, plan, s, d)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = hit
        return scale, hit

    def shape(self, src, dst) -> "StepShape | None":
        """The :class:`StepShape` of steps over the transfers ``src[k] -> dst[k]`` (kept: a size sweep
        asks for the same ones), or None where it does not apply (staging nodes)."""
        key = (src.tobytes(), dst.tobytes())
        if key in self._shapes:
            return self._shapes[key]
        shape = StepShape(self, src, dst)
        if shape.routes is not None and self.staging is not None and self.staging.plan(shape.routes) is not None:
            shape = None
        if len(self._shapes) > 64:
            self._shapes.clear()
        self._shapes[key] = shape
        return shape

    def solve_block(self, shape: "StepShape", nbytes: np.ndarray):
        """``(scale, data_s, bytes)`` of steps over ``shape``'s transfers, one per row of ``nbytes``
        (steps x transfers): per step the largest flow's bytes, and the flows' data-completion times
        for their bytes divided by it, as :meth:`solve` gives them (``data_s`` of its
        :class:`_Pattern`); and each flow's bytes over all the steps."""
        b = nbytes[:, shape.remote]
        if shape.inverse is not None:   # a row at a time: bincount beats any 2-D gather here
            b = np.stack([np.bincount(shape.inverse, weights=row, minlength=len(shape.src)) for row in b])
        k = len(b)
        if shape.routes is None:
            return np.zeros(k), np.zeros((k, 0)), np.zeros(0)
        scale = b.max(axis=1)
        unit = b / np.where(scale > 0, scale, 1.0)[:, None]
        data = np.zeros_like(unit)
        if len(shape.single):
            u = unit[:, shape.single]
            with np.errstate(divide="ignore", invalid="ignore"):
                data[:, shape.single] = np.where((u > 0) & shape.single_routed, u / shape.single_rate, 0.0)
        none = np.zeros(1, np.int64)
        for key, (sub_ptr, sub_edge, sub_frac, sub_cap), rows in shape.classes:
            m = rows.shape[1]
            u = unit[:, rows].reshape(-1, m)
            distinct, which = _distinct_rows(u)
            solved = np.empty_like(distinct)
            for i, row in enumerate(distinct):
                got = shape.solutions.get((key, row.tobytes()))
                if got is None:
                    _, got, _ = _run_flows(sub_ptr, sub_edge, sub_frac, sub_cap, np.ascontiguousarray(row),
                                           np.zeros(m), np.zeros(m + 1, np.int64), none[:0])
                    if len(shape.solutions) > 65536:
                        shape.solutions.clear()
                    shape.solutions[(key, row.tobytes())] = got
                solved[i] = got
            data[:, rows] = solved[which.ravel()].reshape(k, rows.shape[0], m)
        return scale, data, b.sum(axis=0)

    def _quotient(self, pattern):
        """:func:`topologies.symmetry.quotient` of ``pattern``, or None where symmetry does not apply."""
        if pattern.P != self.topo.num_devices:
            return None
        q = self._quotients.get(pattern.complete, False)
        if q is False:
            q = None
            if self.staging is None and not self.arrays.ecmp_edge.any():
                q = _symmetry.quotient(self.arrays, pattern)
            self._quotients[pattern.complete] = q
        return q

    def _base_routes(self, q):
        """``(transversal, routes from the orbit bases to every device, flow index per (base, device),
        latencies per regime)`` for quotient ``q``, or None when there is no transversal or the bases'
        routes would outnumber :data:`BASE_ROUTES_MAX`."""
        hit = self._bases.get(q.generators, False)
        if hit is not False:
            return hit
        T = _symmetry.transversal(self.arrays, q)
        P = self.topo.num_devices
        if T is None or len(T.bases) * P > BASE_ROUTES_MAX:
            self._bases[q.generators] = None
            return None
        hit = self._cache.get(("bases", T.bases.tobytes()))
        if hit is None:
            src = np.repeat(T.bases, P)
            dst = np.tile(np.arange(P, dtype=np.int64), len(T.bases))
            keep = src != dst
            routes = route_pairs(self.topo, src[keep], dst[keep], self.arrays)
            flow_of = np.full(len(src), -1, np.int64)
            flow_of[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
            hit = self._cache[("bases", T.bases.tobytes())] = (routes, flow_of, {})
        self._bases[q.generators] = out = (T,) + hit
        return out

    def prefetch(self, patterns) -> None:
        """Route the representatives of many one-shift patterns (a pairwise schedule's steps) in one
        pass, for :meth:`solve_pattern` to pick up: the same routes as step by step, read in the
        order that keeps each representative's edge map in cache."""
        todo = [p for p in patterns if len(p.offsets) == 1 and not p.complete
                and (p.key, True) not in self._patterns and (p.key, False) not in self._patterns]
        if len(todo) < 2:
            return
        q = self._quotient(todo[0])
        base = None if q is None else self._base_routes(q)
        if base is None:
            return
        T, routes, flow_of, _ = base
        used, local_edge = np.unique(routes.edge, return_inverse=True)
        local_edge = local_edge.astype(np.int64)
        edge_orbit = q.edge_orbit.astype(np.int32)     # smaller: read at random, once per used edge and rep
        n_reps = len(q.reps)
        chunk = max(1, (1 << 21) // n_reps)
        for lo in range(0, len(todo), chunk):
            part = todo[lo:lo + chunk]
            offsets = np.array([int(p.offsets[0]) for p in part], np.int64)
            ptr, orb, coef, ids = _symmetry.carried_batch(offsets, n_reps, todo[0].P, q.reps, T.base_of, T.dev_inv,
                                                          T.edge_img, flow_of, routes.ptr, local_edge, routes.frac,
                                                          q.rep_weight, edge_orbit, q.n_orbits, used)
            for s, p in enumerate(part):
                a, b = ptr[s * n_reps], ptr[(s + 1) * n_reps]
                self._prefetched[p.key] = (ptr[s * n_reps:(s + 1) * n_reps + 1] - a, orb[a:b], coef[a:b],
                                           ids[s * n_reps:(s + 1) * n_reps])

    def solve_pattern(self, pattern, nbytes_each: float):
        """``(scale, pattern)`` for a step of transfers of ``nbytes_each`` bytes given by a symmetric
        ``pattern`` (:class:`topologies.symmetry.Circulant`, on device ids), solved on its quotient by
        the topology's automorphisms that preserve it (:mod:`topologies.symmetry`); None when no
        symmetry applies (ECMP hashing, staging nodes, none found): time the step's arrays instead."""
        nbytes_each = float(nbytes_each)
        fast = (pattern.key, nbytes_each > 0)
        hit = self._patterns.get(fast, False)  # the same step asked for by each regime and size
        if hit is not False:
            return None if hit is None else ((nbytes_each if nbytes_each > 0 else 0.0), hit)
        if len(self._patterns) > 1 << 20:
            self._patterns.clear()
        q = self._quotient(pattern)
        if q is None:
            self._patterns[fast] = None
            return None
        base = self._base_routes(q)
        prefetched = self._prefetched.pop(pattern.key, None) if base is not None else None
        if prefetched is None:
            src, dst = pattern.from_sources(q.reps)
            if len(src) == 0:
                return 0.0, None
            rep_idx = np.searchsorted(q.reps, src)
            weight = q.rep_weight[rep_idx]
        else:
            src = dst = None
        n_flows = len(src) if prefetched is None else len(prefetched[3])
        ukey = ("unit", n_flows, nbytes_each > 0)     # read-only, shared by the steps of one size
        unit = self._solved.get(ukey)
        if unit is None:
            unit = self._solved[ukey] = np.full(n_flows, 1.0 if nbytes_each > 0 else 0.0)
        if base is None:      # route the representatives themselves
            routes = route_pairs(self.topo, src, dst, self.arrays)
            rptr, rorb, rcoef = _symmetry.reduce_routes(routes.ptr, routes.edge, routes.frac, weight,
                                                        q.edge_orbit, q.n_orbits)
            route_ids, lat_cache, kind = None, {}, routes.kind_mask(self.arrays.edge_kind)
        elif prefetched is not None:
            T, routes, flow_of, lat_cache = base
            rptr, rorb, rcoef, route_ids = prefetched
            kind = routes.kind_mask(self.arrays.edge_kind)[route_ids]
        else:                 # carry the bases' routes over by the transversal's automorphisms
            T, routes, flow_of, lat_cache = base
            rptr, rorb, rcoef, route_ids = _symmetry.carried_routes(
                rep_idx, dst, T.base_of, T.dev_inv, T.edge_img, flow_of, pattern.P, routes.ptr, routes.edge,
                routes.frac, weight, q.edge_orbit, q.n_orbits)
            kind = routes.kind_mask(self.arrays.edge_kind)[route_ids]
        cap = self._cache.get(("orbit capacity", q.generators))
        if cap is None:
            cap = np.bincount(q.edge_orbit, weights=self.link.capacity_Bps, minlength=q.n_orbits)
            self._cache[("orbit capacity", q.generators)] = cap
        # Steps whose quotients coincide exactly (pairwise shifts k and k + c, c a symmetry's shift,
        # when neither keeps a flow in its own block) have the same solution: solved once.
        skey = (q.generators, unit[0], rptr.tobytes(), rorb.tobytes(), rcoef.tobytes())
        data = self._solved.get(skey)
        if data is None:
            data = _solve_step(rptr, rorb, rcoef, cap, unit)
            if len(self._solved) > 65536:
                self._solved.clear()
            self._solved[skey] = data
        # Every flow carries the same (unit) bytes.
        orbit_bytes = np.bincount(rorb, weights=rcoef, minlength=q.n_orbits) * unit[0]
        hit = _Pattern(routes, unit, data, kind, None, None, {}, None, src, dst, q, orbit_bytes, route_ids,
                       lat_cache)
        self._patterns[fast] = hit
        return (nbytes_each if nbytes_each > 0 else 0.0), hit


#: Base routes (device pairs) a solver routes at most to carry a quotient's representatives over.
BASE_ROUTES_MAX = 1 << 24


class StepShape:
    """The part of a step that does not depend on its bytes: the remote transfers merged per pair (as
    :meth:`StepSolver.solve` merges them), their routes, and their max-min components grouped by
    local structure (flows, links in order of first use, fractions and capacities). Steps that move
    other bytes over the same transfers (a ring's steps when the chunks differ by an element) are then
    solved a block at a time (:meth:`StepSolver.solve_block`): each component is solved as
    :func:`_solve_step` solves it, once per distinct structure and bytes, so the figures are the same
    to the bit at a fraction of the cost. Made by :meth:`StepSolver.shape`; None where a staging node
    takes part (its stages are solved with the whole step)."""

    def __init__(self, solver, src, dst):
        self.remote = remote = src != dst
        # inverse: each remote transfer's flow, where several share one
        s, d, self.inverse = _merge_pairs(src[remote], dst[remote], solver.arrays)
        self.src, self.dst = s, d
        self.routes = routes = route_pairs(solver.topo, s, d, solver.arrays) if len(s) else None
        self.lat_s = {}
        self.solutions = {}
        if routes is None:
            return
        ptr, edge, frac = routes.ptr, routes.edge, routes.frac
        cap = solver.link.capacity_Bps
        n = len(s)
        root = _flow_roots(ptr, edge, cap.size)
        size = np.bincount(root, minlength=n)[root]
        self.single = np.flatnonzero(size == 1)
        lens = np.diff(ptr)
        rate = np.full(len(self.single), np.inf)
        for j, f in enumerate(self.single.tolist()):
            if lens[f]:
                rate[j] = float(np.min(cap[edge[ptr[f]:ptr[f + 1]]] / frac[ptr[f]:ptr[f + 1]]))
        self.single_rate, self.single_routed = rate, lens[self.single] > 0
        # Components of several flows by local structure: {key: [structure, member rows]}.
        classes = {}
        multi = np.flatnonzero(size > 1)
        for r in np.unique(root[multi]).tolist():
            members = multi[root[multi] == r]          # ascending, as _solve_step fills them
            sub_edge, local, edges_used = [], {}, []
            for f in members.tolist():
                for e in edge[ptr[f]:ptr[f + 1]].tolist():
                    if e not in local:
                        local[e] = len(edges_used)
                        edges_used.append(e)
                    sub_edge.append(local[e])
            sub_ptr = np.concatenate(([0], np.cumsum(lens[members]))).astype(np.int64)
            sub_edge = np.array(sub_edge, np.int64)
            sub_frac = np.concatenate([frac[ptr[f]:ptr[f + 1]] for f in members.tolist()])
            sub_cap = cap[np.array(edges_used, np.int64)]
            key = (sub_ptr.tobytes(), sub_edge.tobytes(), sub_frac.tobytes(), sub_cap.tobytes())
            classes.setdefault(key, [(sub_ptr, sub_edge, sub_frac, sub_cap), []])[1].append(members)
        self.classes = [(k, st, np.array(rows)) for k, (st, rows) in classes.items()]

    def edge_bytes(self, flow_bytes):
        """``(edge ids, bytes)`` on the solver's routing edges of the flows carrying ``flow_bytes``."""
        return _edge_bytes(self.routes, flow_bytes)


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
    staged: "StagedPlan | None" = None
    src: np.ndarray | None = None
    dst: np.ndarray | None = None
    #: Solved on a quotient (:meth:`StepSolver.solve_pattern`): its orbits, and bytes per orbit of
    #: links (all its links together); the flows above are the representatives' only.
    quotient: "_symmetry.Quotient | None" = None
    orbit_bytes: np.ndarray | None = None
    #: With routes carried over from the orbit bases': each flow's route in ``routes``, and the
    #: bases' latencies per regime (shared by every pattern carried from them).
    route_ids: np.ndarray | None = None
    base_lat: dict | None = None


class PatternDetail:
    """A :class:`StepDetail` of a step solved on its quotient (:meth:`StepTimer.time_pattern`).

    ``orbit_bytes`` (bytes per orbit of links, ``quotient.edge_orbit`` maps the routing edges to
    them) and the link fields come from the quotient; the per-transfer fields (``nbytes``,
    ``lat_s``, ``data_s``, ``kind_mask``, ``src``, ``dst``) are those of the whole step, which is timed
    transfer by transfer (:meth:`StepTimer.time` on the pattern's arrays) the first time one of
    them is read."""

    __slots__ = ("quotient", "_pat", "_scale", "_timer", "_pattern", "_nbytes", "_full")

    def __init__(self, timer, pat, scale, pattern, nbytes_each):
        self.quotient = pat.quotient
        self._pat, self._scale, self._timer = pat, scale, timer
        self._pattern, self._nbytes, self._full = pattern, nbytes_each, None

    @property
    def orbit_bytes(self) -> np.ndarray:
        return self._pat.orbit_bytes * self._scale

    @property
    def edge_ids(self) -> np.ndarray:
        return np.flatnonzero(self.orbit_bytes[self.quotient.edge_orbit] != 0)

    @property
    def edge_bytes(self) -> np.ndarray:
        per_edge = (self.orbit_bytes / self.quotient.orbit_size)[self.quotient.edge_orbit]
        return per_edge[per_edge != 0]

    def full(self) -> StepDetail:
        """The step's :class:`StepDetail` as the general path gives it (timed on first use)."""
        if self._full is None:
            self._full = self._timer.time(*self._pattern.transfers(self._nbytes))[1]
        return self._full

    nbytes = property(lambda self: self.full().nbytes)
    lat_s = property(lambda self: self.full().lat_s)
    data_s = property(lambda self: self.full().data_s)
    kind_mask = property(lambda self: self.full().kind_mask)
    src = property(lambda self: self.full().src)
    dst = property(lambda self: self.full().dst)


def _merge_pairs(s, d, arrays):
    """``(src, dst, inverse)``: the remote transfers ``s -> d`` of a step merged per pair, and each
    transfer's merged flow (None when nothing merges).

    Several transfers between one pair in a step travel as one message (one flow): same path, same
    start, so the same finish as separate flows, at a fraction of the cost. Not where switches hash
    flows (ECMP): each transfer is its own connection, hashed on its own."""
    pair = s * (int(max(s.max(initial=0), d.max(initial=0))) + 1) + d
    uniq, inverse = np.unique(pair, return_inverse=True)
    if len(uniq) == len(pair) or arrays.ecmp_edge.any():
        return s, d, None
    first = np.zeros(len(uniq), np.int64)
    first[inverse[::-1]] = np.arange(len(pair))[::-1]
    return s[first], d[first], inverse.ravel()


def _distinct_rows(u):
    """``np.unique(u, axis=0, return_inverse=True)`` (in another order) for a float array, by a hash
    of each row's bits: sorting hashes is much cheaper than sorting rows. The rows of each hash are
    checked equal, and where two differ the rows are sorted after all."""
    bits = np.ascontiguousarray(u).view(np.uint64)
    weights = np.random.default_rng(len(u[0]) if len(u) else 0).integers(1, 2**63, size=bits.shape[1],
                                                                            dtype=np.uint64) | np.uint64(1)
    h = (bits * weights).sum(axis=1)                    # wraps modulo 2**64
    _, first, which = np.unique(h, return_index=True, return_inverse=True)
    distinct = u[first]
    if not np.array_equal(distinct[which], u):      # a collision
        distinct, which = np.unique(u, axis=0, return_inverse=True)
    return distinct, which.ravel()


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
                lat = flow_latency_s(pat.routes, self.link, self.solver.arrays.edge_kind)
                if pat.staged is not None:
                    lat = pat.staged.latency_s(lat, self.link)
                pat.lat_s[self.protocol] = lat
            data = pat.data_s * (scale / self.factor)
            out = (float((data + lat).max()),
                   StepDetail(pat.unit * scale, lat, data, pat.kind_mask, pat.edge_ids, pat.edge_bytes * scale,
                              pat.src, pat.dst))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out

    def time_block(self, shape: StepShape, scale: np.ndarray, data_s: np.ndarray) -> np.ndarray:
        """Per step of a block solved by :meth:`StepSolver.solve_block`, its time in this regime: what
        :meth:`time` gives for that step."""
        if shape.routes is None:
            return np.zeros(len(scale))
        lat = shape.lat_s.get(self.protocol)
        if lat is None:
            lat = shape.lat_s[self.protocol] = flow_latency_s(shape.routes, self.link, self.solver.arrays.edge_kind)
        return (data_s * (scale / self.factor)[:, None] + lat).max(axis=1)

    def time_pattern(self, pattern, nbytes_each: float):
        """``(step_time_s, detail)`` of a step given by a symmetric ``pattern`` of transfers of
        ``nbytes_each`` bytes (see :meth:`StepSolver.solve_pattern`): the same figures as :meth:`time`
        on the step's arrays (device ids); ``detail`` is a :class:`PatternDetail`. None when no
        symmetry applies (then time the arrays)."""
        # Not cached here (the solver keeps the solution; this is a few array operations): a pairwise
        # schedule's thousands of steps would otherwise keep a result per regime and size.
        got = self.solver.solve_pattern(pattern, nbytes_each)
        if got is None:
            return None
        scale, pat = got
        if pat is None:
            out = (0.0, None)
        else:
            lat = pat.lat_s.get(self.protocol)
            if lat is None:
                cache = pat.base_lat if pat.route_ids is not None else pat.lat_s
                lat = cache.get(self.protocol)
                if lat is None:
                    lat = cache[self.protocol] = flow_latency_s(pat.routes, self.link, self.solver.arrays.edge_kind)
                if pat.route_ids is not None:
                    lat = lat[pat.route_ids]
                pat.lat_s[self.protocol] = lat
            data = pat.data_s * (scale / self.factor)
            out = (float((data + lat).max()), PatternDetail(self, pat, scale, pattern, nbytes_each))
        return out


# -- staged host paths --------------------------------------------------------------------------

#: Node attribute of a node that stages transfers through its memory: the memory's line rate (GB/s).
STAGE_ATTR = "host_mem_GBps"


class Staging:
    """The staging nodes of a topology's routing arrays and their memory (see the module doc)."""

    def __init__(self, arrays, nodes: np.ndarray, mem_Bps: np.ndarray):
        self.arrays = arrays
        self.nodes = nodes                      # routing-array node indices
        self.mem_Bps = mem_Bps                  # their memory's usable rate at Simple's efficiency
        self.slot = {int(n): i for i, n in enumerate(nodes)}
        self.is_stage = np.zeros(len(arrays.nodes), bool)
        self.is_stage[nodes] = True

    @staticmethod
    def _names(topo) -> dict:
        cache = topo.__dict__.get("_staging_names")
        if cache is None:
            cache = {n: float(d[STAGE_ATTR]) for n, d in topo.graph.nodes(data=True)
                     if d.get(STAGE_ATTR) and d["kind"] != "device"}
            topo.__dict__["_staging_names"] = cache
        return cache

    @classmethod
    def merged_away(cls, topo, arrays) -> bool:
        """Whether merging twin switches dropped a staging node (its memory would be shared wrongly)."""
        names = cls._names(topo)
        return bool(names) and not set(names) <= set(arrays.nodes)

    @classmethod
    def of(cls, topo, arrays, params) -> "Staging | None":
        """The staging nodes of ``topo`` on ``arrays``, or None when it has none."""
        names = cls._names(topo)
        if not names:
            return None
        index = {n: i for i, n in enumerate(arrays.nodes)}
        nodes = np.array([index[n] for n in names if n in index], np.int64)
        if not len(nodes):
            return None
        eff = _model.link_param(params, _model.HOST_MEMORY_KIND, "efficiency")
        mem = np.array([names[arrays.nodes[i]] * 1e9 * eff for i in nodes])
        return cls(arrays, nodes, mem)

    def plan(self, routes) -> "StagedPlan | None":
        """How the transfers of ``routes`` split into stages, or None when none passes a staging node."""
        a = self.arrays
        owner = np.repeat(np.arange(len(routes.ptr) - 1), np.diff(routes.ptr))
        inner = self.is_stage[a.edge_dst[routes.edge]]
        staged = np.unique(owner[inner])
        if not len(staged):
            return None
        return StagedPlan(self, routes, staged)


class StagedPlan:
    """The flows of a set of routes once staged transfers are cut in three: down, copy, up.

    Flow arrays (CSR like the routes) over the routing edges plus one memory edge per staging node
    (index ``n_edges + slot``); ``first[k]``, ``last[k]``: the flows a transfer starts and ends with;
    ``dep_ptr``/``dep_idx``: each stage waits for the one before; ``masks``: per staged transfer the
    link kinds of each stage.
    """

    def __init__(self, staging: Staging, routes, staged: np.ndarray):
        a = staging.arrays
        n = len(routes.ptr) - 1
        n_edges = len(a.edge_src)
        self.staging, self.routes, self.n_edges = staging, routes, n_edges
        self.staged = staged
        is_staged = np.zeros(n, bool)
        is_staged[staged] = True
        ptr, edge, frac, deps = [0], [], [], []
        first = np.zeros(n, np.int64)
        last = np.zeros(n, np.int64)
        self.masks = {}
        for k in range(n):
            lo, hi = routes.ptr[k], routes.ptr[k + 1]
            if not is_staged[k]:
                first[k] = last[k] = len(ptr) - 1
                edge.extend(routes.edge[lo:hi].tolist())
                frac.extend(routes.frac[lo:hi].tolist())
                ptr.append(len(edge))
                deps.append([])
                continue
            stages = self._split(staging, routes.edge[lo:hi], routes.frac[lo:hi], n_edges)
            first[k] = len(ptr) - 1
            masks = []
            for i, (es, fs, mask) in enumerate(stages):
                edge.extend(es)
                frac.extend(fs)
                ptr.append(len(edge))
                deps.append([] if i == 0 else [len(ptr) - 3])
                masks.append(mask)
            last[k] = len(ptr) - 2
            self.masks[k] = masks
        self.ptr = np.array(ptr, np.int64)
        self.edge = np.array(edge, np.int64)
        self.frac = np.array(frac, np.float64)
        self.first, self.last = first, last
        self.dep_ptr = np.zeros(len(deps) + 1, np.int64)
        self.dep_ptr[1:] = np.cumsum([len(d) for d in deps])
        self.dep_idx = np.array([x for d in deps for x in d], np.int64)
        self.owner = np.repeat(np.arange(n), np.where(is_staged, 3, 1))

    @staticmethod
    def _split(staging, edges, fracs, n_edges):
        """``[(edges, fracs, kind mask)]`` of the down, copy and up stages of one staged route."""
        a = staging.arrays
        src, dst = a.edge_src[edges], a.edge_dst[edges]
        stage = staging.is_stage
        # past[u]: a staging node lies at or before u; ahead[v]: one lies at or after v (route DAG walks).
        past, ahead = {}, {}
        order = sorted(range(len(edges)), key=lambda i: _depth(src, dst, i))
        for i in order:
            u, v = int(src[i]), int(dst[i])
            past.setdefault(u, bool(stage[u]))
            past[v] = past.get(v, bool(stage[v])) or past[u] or bool(stage[v])
        for i in reversed(order):
            u, v = int(src[i]), int(dst[i])
            ahead.setdefault(v, bool(stage[v]))
            ahead[u] = ahead.get(u, bool(stage[u])) or ahead[v] or bool(stage[u])
        parts = ([], [], [])
        mem = ({}, {}, {})
        for i in range(len(edges)):
            u, v, f = int(src[i]), int(dst[i]), float(fracs[i])
            if not past[u]:                          # down: into the first staging node's memory
                part = 0
                if stage[v]:
                    for p in (0, 1):                 # written by the DMA, read by the copy
                        mem[p][v] = mem[p].get(v, 0.0) + f
            elif not ahead[v]:                       # up: out of the last staging node's memory
                part = 2
                if stage[u]:
                    for p in (1, 2):                 # written by the copy, read by the DMA
                        mem[p][u] = mem[p].get(u, 0.0) + f
            else:
                part = 1
            parts[part].append(i)
        out = []
        for p in range(3):
            es = [int(edges[i]) for i in parts[p]] + [n_edges + staging.slot[x] for x in mem[p]]
            fs = [float(fracs[i]) for i in parts[p]] + list(mem[p].values())
            mask = 0
            for i in parts[p]:
                mask |= 1 << int(a.edge_kind[edges[i]])
            out.append((es, fs, mask))
        return out

    def capacity(self, capacity_Bps: np.ndarray) -> np.ndarray:
        return np.concatenate([capacity_Bps, self.staging.mem_Bps])

    def solve_step(self, capacity_Bps, nbytes) -> np.ndarray:
        """Data-completion times of the transfers of one step (all start at 0), stages in sequence."""
        nb = nbytes[self.owner]
        lat = np.zeros(len(nb))
        _, end, _ = _run_flows(self.ptr, self.edge, self.frac, self.capacity(capacity_Bps), nb, lat,
                               self.dep_ptr, self.dep_idx)
        return end[self.last]

    def latency_s(self, lat: np.ndarray, link: LinkParams) -> np.ndarray:
        """``lat`` (hop latencies plus one message cost per transfer) with each staged transfer paying
        one message cost per stage: its links' largest, and the copy at least ``host_memory``'s."""
        out = lat.copy()
        copy_msg = _model.link_param(link.params, _model.HOST_MEMORY_KIND, _model.MSG_KEY[link.protocol]) * 1e-6
        for k, masks in self.masks.items():
            msgs = [_mask_msg(m, link.msg_by_kind_s) for m in masks]
            msgs[1] = max(msgs[1], copy_msg)
            out[k] = self.routes.lat_us[k] * 1e-6 + sum(msgs)
        return out

    def run(self, link: LinkParams, nbytes, lat, dep_ptr, dep_idx):
        """:func:`_run_flows` for transfers with dependencies: each stage pays its own latency, the
        first waits for the transfer's dependencies and the transfer's successors for the last."""
        n = len(nbytes)
        stage_lat = np.zeros(len(self.ptr) - 1)
        copy_msg = _model.link_param(link.params, _model.HOST_MEMORY_KIND, _model.MSG_KEY[link.protocol]) * 1e-6
        hop = self._stage_hop_lat_us(link)
        for k in range(n):
            if k in self.masks:
                msgs = [_mask_msg(m, link.msg_by_kind_s) for m in self.masks[k]]
                msgs[1] = max(msgs[1], copy_msg)
                for i in range(3):
                    stage_lat[self.first[k] + i] = hop[self.first[k] + i] * 1e-6 + msgs[i]
            else:
                stage_lat[self.first[k]] = lat[k]
        deps = [list(self.dep_idx[self.dep_ptr[f]:self.dep_ptr[f + 1]]) for f in range(len(self.ptr) - 1)]
        for k in range(n):
            deps[self.first[k]] = [int(self.last[j]) for j in dep_idx[dep_ptr[k]:dep_ptr[k + 1]]]
        dptr = np.zeros(len(deps) + 1, np.int64)
        dptr[1:] = np.cumsum([len(d) for d in deps])
        didx = np.array([x for d in deps for x in d], np.int64)
        start, end, busy = _run_flows(self.ptr, self.edge, self.frac, self.capacity(link.capacity_Bps),
                                      nbytes[self.owner].astype(np.float64), stage_lat, dptr, didx)
        return start[self.first], end[self.last], busy[:self.n_edges]

    def _stage_hop_lat_us(self, link) -> np.ndarray:
        a = self.staging.arrays
        out = np.zeros(len(self.ptr) - 1)
        for f in range(len(out)):
            es, fs = self.edge[self.ptr[f]:self.ptr[f + 1]], self.frac[self.ptr[f]:self.ptr[f + 1]]
            real = es < self.n_edges
            out[f] = float(np.sum(fs[real] * a.lat_us[es[real]]))
        return out


def _depth(src, dst, i) -> int:
    """Hop depth of route edge ``i`` from the route's source (the walk order of a fewest-hop DAG)."""
    depth, frontier = 0, {int(src[i])}
    start = set(int(x) for x in src) - set(int(x) for x in dst)
    while not frontier & start and depth < len(src):
        frontier = {int(src[j]) for j in range(len(src)) if int(dst[j]) in frontier}
        depth += 1
    return depth


def _mask_msg(mask: int, msg_by_kind_s) -> float:
    return max((float(c) for k, c in enumerate(msg_by_kind_s) if (mask >> k) & 1), default=0.0)


@numba.njit(cache=True)
def _flow_roots(ptr, edge, n_edges):
    """Per flow, the least flow of its connected component (flows joined by a shared link)."""
    n = ptr.size - 1
    parent = np.arange(n)
    first = np.full(n_edges, -1, np.int64)
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
    for f in range(n):
        a = f
        while parent[a] != a:
            a = parent[a]
        root[f] = a
    return root


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
    root = _flow_roots(ptr, edge, capacity.size)
    size = np.zeros(n, np.int64)
    for f in range(n):
        size[root[f]] += 1
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
def _edge_flows(ptr, edge, n_edges):
    """The flows on each edge (CSR by edge: flow ``eflow[eptr[e]:eptr[e+1]]``, route entry ``eentry``)."""
    eptr = np.zeros(n_edges + 1, np.int64)
    for i in range(edge.size):
        eptr[edge[i] + 1] += 1
    for e in range(n_edges):
        eptr[e + 1] += eptr[e]
    fill = eptr[:-1].copy()
    eflow = np.empty(edge.size, np.int64)
    for f in range(ptr.size - 1):
        for i in range(ptr[f], ptr[f + 1]):
            e = edge[i]
            eflow[fill[e]] = f
            fill[e] += 1
    return eptr, eflow


@numba.njit(cache=True)
def _maxmin(active, ptr, edge, frac, capacity, rate, eptr, eflow):
    """Max-min fair rates by progressive filling; a flow uses ``frac`` of its rate on each of its edges.

    Every round raises the rate of the unfrozen flows until an edge saturates, then freezes the flows
    on the saturated edges. Each round touches only the edges still carrying unfrozen flows and the
    flows it freezes (through the edge -> flows lists ``eptr``/``eflow``), so a step with many
    distinct bottleneck levels (ECMP's uneven link loads) costs rounds x live edges, not rounds x flows.
    """
    n = active.size
    frozen = np.empty(n, np.bool_)
    left = capacity.copy()
    weight = np.zeros(capacity.size)
    unfrozen_on = np.zeros(capacity.size, np.int64)
    n_free = 0
    for f in range(n):
        rate[f] = 0.0
        frozen[f] = not active[f]
        if active[f]:
            n_free += 1
            for i in range(ptr[f], ptr[f + 1]):
                weight[edge[i]] += frac[i]
                unfrozen_on[edge[i]] += 1
    live = np.empty(capacity.size, np.int64)
    n_live = 0
    for e in range(capacity.size):
        if unfrozen_on[e] > 0:
            live[n_live] = e
            n_live += 1
    level = 0.0
    while n_free > 0:
        inc = np.inf
        for j in range(n_live):
            e = live[j]
            v = left[e] / weight[e]
            if v < inc:
                inc = v
        if inc == np.inf:  # flows on no link (should not happen for remote transfers)
            for f in range(n):
                if not frozen[f]:
                    rate[f] = np.inf
                    frozen[f] = True
            break
        level += inc
        for j in range(n_live):
            e = live[j]
            left[e] -= inc * weight[e]
        # Freeze the flows that cross a now-saturated edge.
        for j in range(n_live):
            e = live[j]
            if left[e] > 1e-12 * capacity[e]:
                continue
            for q in range(eptr[e], eptr[e + 1]):
                f = eflow[q]
                if frozen[f]:
                    continue
                frozen[f] = True
                rate[f] = level
                n_free -= 1
                for i in range(ptr[f], ptr[f + 1]):
                    unfrozen_on[edge[i]] -= 1
                    weight[edge[i]] -= frac[i]
        w = 0
        for j in range(n_live):
            e = live[j]
            if unfrozen_on[e] > 0:
                live[w] = e
                w += 1
        n_live = w
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
    for k in range(n):   # a loop: np.diff and a slice copy would compile their own kernels
        pending[k] = dep_ptr[k + 1] - dep_ptr[k]
    succ_ptr, succ = _successors(dep_ptr, dep_idx, n)
    ready = np.full(n, np.inf)  # when a transfer may start
    for k in range(n):
        if pending[k] == 0:
            ready[k] = 0.0
    t = 0.0
    done = 0
    on_link = np.zeros(capacity.size, np.bool_)
    eptr, eflow = _edge_flows(ptr, edge, capacity.size)
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
        _maxmin(active, ptr, edge, frac, capacity, rate, eptr, eflow)
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

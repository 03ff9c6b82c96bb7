"""Symmetries of a topology's routing arrays, and the steps they let the network model solve once.

An *automorphism* of the routing arrays is a permutation of their nodes (devices to devices) that
maps every directed edge to an edge of the same bandwidth, latency, link kind and routing, and
every relaying node to a relaying one. Fewest-hop routes with the bandwidth-weighted split depend
on nothing else, so an automorphism maps the routes of a pair to the routes of its image; and when
it also maps a step's set of transfers (all of one size) to itself, it maps the step's max-min fair
rates to themselves: transfers related by it get identical rates and finish together.

So a step invariant under a group of automorphisms is solved on its quotient: one representative
source per orbit of devices, with its transfers each standing for the orbit's size, on one
aggregated link per orbit of links (the orbit's summed capacity). Every link of an orbit carries
the same load (the orbit's total over its size), so the rates of the quotient are those of the whole
step (exact up to rounding), at a cost set by the representatives rather than by P^2 transfers.

The automorphisms tried are the builders' own regularities in the device numbering: rotating the
devices inside every block of ``m`` consecutive indices by ``c`` (the devices of a server, the
servers under a leaf, the leaves of a fabric), each extended to the other nodes layer by layer from
the devices (a node is mapped to the node whose nearer neighbours are the images of its own) and
*verified* edge by edge; a candidate that fails is dropped. Where switches hash flows (ECMP) the
path of a flow depends on node ids, not on the structure: no symmetry is used there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


class Circulant:
    """A step's transfers ``i -> (i + k) % P`` for every ``k`` of ``offsets`` (one byte count for all):
    a pairwise exchange step (one offset), or every ordered pair (all offsets: ``complete``)."""

    __slots__ = ("P", "offsets", "complete", "key")

    def __init__(self, P: int, offsets):
        self.P = int(P)
        if isinstance(offsets, (int, np.integer)):      # one shift (a pairwise step): no array work
            k = int(offsets) % self.P
            self.offsets = np.array([k] if k else [], np.int64)
        else:
            offs = np.unique(np.asarray(offsets, dtype=np.int64) % P)
            self.offsets = offs[offs != 0]
        self.complete = len(self.offsets) == P - 1
        self.key = ("circulant", self.P, "all" if self.complete else tuple(self.offsets.tolist()))

    def transfers(self, nbytes_each: float):
        """``(src, dst, nbytes)`` of every remote transfer, by source then offset (row-major)."""
        src, dst = self.from_sources(np.arange(self.P, dtype=np.int64))
        return src, dst, np.full(len(src), float(nbytes_each))

    def from_sources(self, sources: np.ndarray):
        """``(src, dst)`` of the remote transfers leaving ``sources`` (sorted), by source then offset."""
        if self.complete:
            dst = np.tile(np.arange(self.P, dtype=np.int64), len(sources))
            src = np.repeat(sources, self.P)
            keep = src != dst
            return src[keep], dst[keep]
        if len(self.offsets) == 1:
            return sources, (sources + self.offsets[0]) % self.P
        src = np.repeat(sources, len(self.offsets))
        return src, (src + np.tile(self.offsets, len(sources))) % self.P


@dataclass
class Generator:
    """A verified automorphism: block rotation ``(m, c)``, its node and edge permutations."""

    m: int
    c: int
    node_perm: np.ndarray
    edge_perm: np.ndarray


@dataclass
class Quotient:
    """Orbits of devices and edges under a group of automorphisms."""

    reps: np.ndarray            # one device per orbit (its smallest index), sorted
    rep_weight: np.ndarray      # the size of each rep's orbit
    edge_orbit: np.ndarray      # per routing edge, its orbit (0..n_orbits-1)
    orbit_size: np.ndarray      # edges per orbit
    generators: tuple

    @property
    def n_orbits(self) -> int:
        return len(self.orbit_size)


def generators(arrays) -> list[Generator]:
    """The verified block-rotation automorphisms of ``arrays`` (cached on them); none with ECMP links."""
    cache = arrays.__dict__.get("_automorphisms")
    if cache is None:
        cache = _find(arrays)
        arrays.__dict__["_automorphisms"] = cache
    return cache


def quotient(arrays, pattern: Circulant) -> Quotient | None:
    """The quotient of a step of ``pattern`` on ``arrays`` under the automorphisms that preserve it,
    or None when none does (or the reduction would not pay)."""
    if pattern.P != arrays.num_devices:
        return None
    fast = arrays.__dict__.setdefault("_quotient_of", {})   # per kind of pattern: all pairs, or shifts
    if pattern.complete in fast:
        return fast[pattern.complete]
    fast[pattern.complete] = hit = _quotient(arrays, pattern)
    return hit


def _quotient(arrays, pattern: Circulant) -> Quotient | None:
    gens = generators(arrays)
    if not pattern.complete:       # a rotation commutes with every shift only when it is one itself
        gens = [g for g in gens if g.m == pattern.P]
    if not gens:
        return None
    key = tuple((g.m, g.c) for g in gens)
    cache = arrays.__dict__.setdefault("_quotients", {})
    hit = cache.get(key)
    if hit is None:
        P = pattern.P
        dev = _orbits(P, [g.node_perm[:P] for g in gens])
        reps, weight = np.unique(dev, return_counts=True)
        eo = _orbits(len(arrays.edge_src), [g.edge_perm for g in gens])
        _, edge_orbit, orbit_size = np.unique(eo, return_inverse=True, return_counts=True)
        hit = Quotient(reps.astype(np.int64), weight.astype(np.float64), edge_orbit.astype(np.int64),
                       orbit_size.astype(np.int64), key)
        cache[key] = hit
    return hit


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _find(a) -> list[Generator]:
    P = int(a.num_devices)
    n = len(a.nodes)
    if P < 2 or len(a.edge_src) == 0 or bool(np.asarray(a.ecmp_edge).any()):
        return []
    src = np.asarray(a.edge_src, np.int64)
    dst = np.asarray(a.edge_dst, np.int64)
    keys = src * n + dst
    order = np.argsort(keys, kind="stable")
    layer = _layers(P, n, np.asarray(a.out_ptr, np.int64), dst)
    if (layer < 0).any():
        return []
    rng = np.random.default_rng(0x5EED)
    w = rng.integers(1, 2**63 - 1, size=n, dtype=np.int64).astype(np.uint64)
    # Nodes by layer (distance from the nearest device), and each node's hash of its nearer neighbours.
    by_layer = np.argsort(layer, kind="stable").astype(np.int64)
    layer_ptr = np.searchsorted(layer[by_layer], np.arange(int(layer.max()) + 2)).astype(np.int64)
    h_own = _lower_hash(np.arange(n, dtype=np.int64), layer, np.asarray(a.out_ptr, np.int64), dst, w)
    bw = np.asarray(a.bw_GBps, np.float64)
    lat = np.asarray(a.lat_us, np.float64)
    kind = np.asarray(a.edge_kind, np.int64)
    transit = np.asarray(a.transit, np.bool_)
    d = np.arange(P, dtype=np.int64)
    out = []
    for m in _divisors(P)[1:]:
        for c in _divisors(m)[:-1]:
            perm = (d // m) * m + (d % m + c) % m
            ok, node_perm, edge_perm = _extend(perm, n, layer, by_layer, layer_ptr, h_own,
                                               np.asarray(a.out_ptr, np.int64), dst, w, keys[order],
                                               order.astype(np.int64), src, bw, lat, kind, transit)
            if ok:
                out.append(Generator(m, c, node_perm, edge_perm))
                break   # the rotations that work form a group, generated by the smallest
    return out


@numba.njit(cache=True)
def _layers(P, n, out_ptr, edge_dst):
    """Hop distance of every node from the nearest device (-1: not reached)."""
    layer = np.full(n, -1, np.int64)
    queue = np.empty(n, np.int64)
    tail = 0
    for d in range(P):
        layer[d] = 0
        queue[tail] = d
        tail += 1
    head = 0
    while head < tail:
        u = queue[head]
        head += 1
        for e in range(out_ptr[u], out_ptr[u + 1]):
            v = edge_dst[e]
            if layer[v] < 0:
                layer[v] = layer[u] + 1
                queue[tail] = v
                tail += 1
    return layer


@numba.njit(cache=True)
def _lower_hash(img, layer, out_ptr, edge_dst, w):
    """Per node, the sum (mod 2^64) of the weights of the images of its neighbours one layer nearer."""
    n = layer.size
    h = np.zeros(n, np.uint64)
    for u in range(n):
        acc = np.uint64(0)
        for e in range(out_ptr[u], out_ptr[u + 1]):
            v = edge_dst[e]
            if layer[v] < layer[u]:
                acc += w[img[v]]
        h[u] = acc
    return h


@numba.njit(cache=True)
def _extend(perm, n, layer, by_layer, layer_ptr, h_own, out_ptr, edge_dst, w, sorted_keys, key_order, edge_src,
            bw, lat, kind, transit):
    """Extend a device permutation to every node (layer by layer), then verify it edge by edge.

    Returns ``(ok, node permutation, edge permutation)``."""
    P = perm.size
    img = np.full(n, -1, np.int64)
    taken = np.zeros(n, np.bool_)
    E = edge_src.size
    edge_perm = np.full(E, -1, np.int64)
    for d in range(P):
        img[d] = perm[d]
        if taken[perm[d]] or transit[perm[d]] != transit[d]:
            return False, img, edge_perm
        taken[perm[d]] = True
    n_layers = layer_ptr.size - 1
    for L in range(1, n_layers):
        lo, hi = layer_ptr[L], layer_ptr[L + 1]
        m = hi - lo
        if m == 0:
            continue
        nodes = by_layer[lo:hi]
        own = np.empty(m, np.uint64)
        for i in range(m):
            own[i] = h_own[nodes[i]]
        order = np.argsort(own)
        sorted_own = own[order]
        for i in range(m - 1):
            if sorted_own[i] == sorted_own[i + 1]:
                return False, img, edge_perm     # two nodes look alike from below: ambiguous
        for i in range(m):
            u = nodes[i]
            acc = np.uint64(0)
            for e in range(out_ptr[u], out_ptr[u + 1]):
                v = edge_dst[e]
                if layer[v] < L:
                    acc += w[img[v]]
            j = np.searchsorted(sorted_own, acc)
            if j >= m or sorted_own[j] != acc:
                return False, img, edge_perm
            t = nodes[order[j]]
            if taken[t] or transit[t] != transit[u]:
                return False, img, edge_perm
            taken[t] = True
            img[u] = t
    for e in range(E):
        key = img[edge_src[e]] * n + img[edge_dst[e]]
        j = np.searchsorted(sorted_keys, key)
        if j >= E or sorted_keys[j] != key:
            return False, img, edge_perm
        f = key_order[j]
        if kind[f] != kind[e] or lat[f] != lat[e] or abs(bw[f] - bw[e]) > 1e-12 * bw[e]:
            return False, img, edge_perm
        edge_perm[e] = f
    return True, img, edge_perm


def _orbits(n: int, perms) -> np.ndarray:
    """Per element of ``0..n-1``, the smallest element of its orbit under the permutations."""
    parent = np.arange(n, dtype=np.int64)
    for p in perms:
        _union_perm(parent, np.asarray(p, np.int64))
    return _roots(parent)


@numba.njit(cache=True)
def _find_root(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _union_perm(parent, perm):
    for x in range(perm.size):
        a = _find_root(parent, x)
        b = _find_root(parent, perm[x])
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b


@numba.njit(cache=True)
def _roots(parent):
    out = np.empty(parent.size, np.int64)
    for x in range(parent.size):
        out[x] = _find_root(parent, x)
    return out


@numba.njit(cache=True)
def reduce_routes(ptr, edge, frac, weight, edge_orbit, n_orbits):
    """Routes over edges -> routes over edge orbits: per flow, its fractions on the links of each orbit
    summed and times the flow's ``weight`` (the transfers it stands for). Returns ``(ptr, orbit, coef)``."""
    n = ptr.size - 1
    out_ptr = np.zeros(n + 1, np.int64)
    out_e = np.empty(edge.size, np.int64)
    out_f = np.empty(edge.size, np.float64)
    slot = np.full(n_orbits, -1, np.int64)
    pos = 0
    for f in range(n):
        start = pos
        for i in range(ptr[f], ptr[f + 1]):
            o = edge_orbit[edge[i]]
            if slot[o] < 0:
                slot[o] = pos
                out_e[pos] = o
                out_f[pos] = frac[i]
                pos += 1
            else:
                out_f[slot[o]] += frac[i]
        for i in range(start, pos):
            slot[out_e[i]] = -1
            out_f[i] *= weight[f]
        out_ptr[f + 1] = pos
    return out_ptr, out_e[:pos], out_f[:pos]


@dataclass
class Transversal:
    """For each representative ``reps[i]`` of a quotient, an automorphism ``h_i`` (of the group of all
    the generators found) mapping the base of its orbit (the orbit's smallest device) to it:
    ``dev_inv[i]`` is ``h_i``'s inverse on the devices, ``edge_img[i]`` its image of every edge. The
    routes of ``(reps[i], t)`` are those of ``(base, h_i^-1(t))`` carried over by ``h_i``: a step's
    representatives are routed from the bases' routes alone."""

    bases: np.ndarray          # the orbit bases (smallest device of each orbit of the whole group)
    base_of: np.ndarray        # per rep, the index of its base in ``bases``
    dev_inv: np.ndarray        # (reps, P) int32
    edge_img: np.ndarray       # (reps, edges) int32


def transversal(arrays, q: Quotient) -> Transversal | None:
    """The :class:`Transversal` of ``q``'s representatives (cached per quotient); None without generators."""
    gens = generators(arrays)
    if not gens:
        return None
    cache = arrays.__dict__.setdefault("_transversals", {})
    hit = cache.get(q.generators)
    if hit is None:
        P = int(arrays.num_devices)
        node = np.stack([g.node_perm[:P] for g in gens]).astype(np.int64)
        edge = np.stack([g.edge_perm for g in gens]).astype(np.int64)
        base_dev, dev_inv, edge_img = _transversal(node, edge, q.reps)
        bases, base_of = np.unique(base_dev, return_inverse=True)
        hit = Transversal(bases.astype(np.int64), base_of.astype(np.int64), dev_inv, edge_img)
        cache[q.generators] = hit
    return hit


@numba.njit(cache=True)
def _transversal(node, edge, reps):
    """BFS over the devices by the generators (from each orbit's smallest device), then per rep the
    composition of the generators on its tree path: its base, inverse device map and edge map."""
    k, P = node.shape
    E = edge.shape[1]
    parent = np.full(P, -1, np.int64)
    pgen = np.full(P, -1, np.int64)
    base = np.full(P, -1, np.int64)
    queue = np.empty(P, np.int64)
    for b in range(P):
        if base[b] >= 0:
            continue
        base[b] = b
        head, tail = 0, 1
        queue[0] = b
        while head < tail:
            u = queue[head]
            head += 1
            for g in range(k):
                v = node[g, u]
                if base[v] < 0:
                    base[v] = b
                    parent[v] = u
                    pgen[v] = g
                    queue[tail] = v
                    tail += 1
    n = reps.size
    dev_inv = np.empty((n, P), np.int32)
    edge_img = np.empty((n, E), np.int32)
    base_dev = np.empty(n, np.int64)
    path = np.empty(P, np.int64)
    dmap = np.empty(P, np.int64)
    emap = np.empty(E, np.int64)
    for i in range(n):
        r = reps[i]
        base_dev[i] = base[r]
        depth = 0
        x = r
        while parent[x] >= 0:
            path[depth] = pgen[x]
            depth += 1
            x = parent[x]
        for d in range(P):
            dmap[d] = d
        for e in range(E):
            emap[e] = e
        for j in range(depth - 1, -1, -1):      # the first generator applied is the deepest in the path
            g = path[j]
            for d in range(P):
                dmap[d] = node[g, dmap[d]]
            for e in range(E):
                emap[e] = edge[g, emap[e]]
        for d in range(P):
            dev_inv[i, dmap[d]] = d
        for e in range(E):
            edge_img[i, e] = emap[e]
    return base_dev, dev_inv, edge_img


@numba.njit(cache=True)
def carried_routes(rep_idx, dst, base_of, dev_inv, edge_img, flow_of, P, r_ptr, r_edge, r_frac, weight, edge_orbit,
                   n_orbits):
    """:func:`reduce_routes` of the routes of ``(reps[rep_idx[f]], dst[f])``, carried over from the
    bases' routes (``flow_of[base index * P + device]``: the base route to that device). Also returns
    per flow the base route it was carried from (its latency and link kinds are that route's)."""
    n = rep_idx.size
    out_ptr = np.zeros(n + 1, np.int64)
    cnt = 0
    src_flow = np.empty(n, np.int64)
    for f in range(n):
        i = rep_idx[f]
        g = flow_of[base_of[i] * P + dev_inv[i, dst[f]]]
        src_flow[f] = g
        cnt += r_ptr[g + 1] - r_ptr[g]
    out_e = np.empty(cnt, np.int64)
    out_f = np.empty(cnt, np.float64)
    slot = np.full(n_orbits, -1, np.int64)
    pos = 0
    for f in range(n):
        i = rep_idx[f]
        g = src_flow[f]
        start = pos
        for j in range(r_ptr[g], r_ptr[g + 1]):
            o = edge_orbit[edge_img[i, r_edge[j]]]
            if slot[o] < 0:
                slot[o] = pos
                out_e[pos] = o
                out_f[pos] = r_frac[j]
                pos += 1
            else:
                out_f[slot[o]] += r_frac[j]
        for j in range(start, pos):
            slot[out_e[j]] = -1
            out_f[j] *= weight[f]
        out_ptr[f + 1] = pos
    return out_ptr, out_e[:pos], out_f[:pos], src_flow


@numba.njit(cache=True)
def carried_batch(offsets, n_reps, P, rep_dev, base_of, dev_inv, edge_img, flow_of, r_ptr, r_edge, r_frac, weight,
                  edge_orbit, n_orbits, used):
    """:func:`carried_routes` of many shift steps at once: step ``s`` has the flows ``(reps[i],
    (reps[i] + offsets[s]) % P)`` for every rep ``i`` (flow ``s * n_reps + i``). Walked rep by rep
    (each rep's maps are read while they are in cache, the output written in order), then laid out
    step by step. ``r_edge`` are indices into ``used``, the edges the base routes use (so that a
    rep's map of them stays small). Returns ``(ptr, orbit, coef, base route)``."""
    n_steps = offsets.size
    n = n_steps * n_reps
    cnt = 0
    for i in range(n_reps):
        for s in range(n_steps):
            t = (rep_dev[i] + offsets[s]) % P
            g = flow_of[base_of[i] * P + dev_inv[i, t]]
            cnt += r_ptr[g + 1] - r_ptr[g]
    tmp_e = np.empty(cnt, np.int64)
    tmp_f = np.empty(cnt, np.float64)
    tmp_start = np.empty(n, np.int64)          # by rep, then step
    tmp_len = np.empty(n, np.int64)
    src_flow = np.empty(n, np.int64)           # by step, then rep
    slot = np.full(n_orbits, -1, np.int64)
    orow = np.empty(used.size, np.int32)   # this rep's used edge -> orbit of its image
    pos = 0
    for i in range(n_reps):
        for e in range(orow.size):
            orow[e] = edge_orbit[edge_img[i, used[e]]]
        for s in range(n_steps):
            t = (rep_dev[i] + offsets[s]) % P
            g = flow_of[base_of[i] * P + dev_inv[i, t]]
            src_flow[s * n_reps + i] = g
            start = pos
            for j in range(r_ptr[g], r_ptr[g + 1]):
                o = orow[r_edge[j]]
                if slot[o] < 0:
                    slot[o] = pos
                    tmp_e[pos] = o
                    tmp_f[pos] = r_frac[j]
                    pos += 1
                else:
                    tmp_f[slot[o]] += r_frac[j]
            for j in range(start, pos):
                slot[tmp_e[j]] = -1
                tmp_f[j] *= weight[i]
            tmp_start[i * n_steps + s] = start
            tmp_len[i * n_steps + s] = pos - start
    ptr = np.zeros(n + 1, np.int64)
    out_e = np.empty(pos, np.int64)
    out_f = np.empty(pos, np.float64)
    w = 0
    for s in range(n_steps):
        for i in range(n_reps):
            k = i * n_steps + s
            a = tmp_start[k]
            for j in range(tmp_len[k]):
                out_e[w] = tmp_e[a + j]
                out_f[w] = tmp_f[a + j]
                w += 1
            ptr[s * n_reps + i + 1] = w
    return ptr, out_e, out_f, src_flow

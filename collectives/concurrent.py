"""Collectives of several device groups at once on one fabric: :func:`simulate_concurrent`.

A training step runs many communicators at the same time: every tensor-parallel group's allreduce,
every expert-parallel group's all-to-all, the data-parallel gradient reduction under the next
layer's traffic. Alone, each is :func:`collectives.simulate` on the sub-system of its devices
(:func:`topologies.whatif.select_devices`); together they share links, and this module times them
on the whole topology.

How a call is run
-----------------
Each call is the collective its library would run for that group alone: :func:`~collectives.simulate`
on the group's sub-system picks the algorithm, parameters and protocol (``auto``: the vendor
library's pick, with HCCL's CCL-buffer pieces run one after another and its share of the links'
rate), and the schedule is built as :func:`~collectives.simulate` builds it. Its steps are mapped
from group-local device numbers to the topology's (a switch that reduces in the network keeps its
own node), so a call alone here takes the time :func:`~collectives.simulate` gives it (the test
suite checks it to 1e-9 on adaptive-routing fabrics; where switches hash flows onto one of several
paths, ECMP, the sub-system's hash may pick another path than the whole topology's).

How calls share the fabric (the model, and why)
-----------------------------------------------
Time advances from event to event. Between two events every running call is in one step of its
schedule; the transfers of all those steps are solved together, max-min fair on every link, by
the network model's :class:`~topologies.network.StepTimer` (one solve per pattern, cached, so
identical steps and identical groups cost one solve). Each call's step ends when its own slowest
transfer has arrived (and been reduced); the next event is the earliest such end (or a call's
start). A call whose step is not over then has done the same fraction of every one of its
transfers (progress is taken as linear within an event) and continues with what is left, solved
again with the new set of neighbours. When every running call ends its step at the same event
(identical groups, the common case in a training step), steps that repeat are advanced together
in one go.

With ``sync="step"`` the calls (all started at 0) are aligned by step index instead: the k-th
steps of all of them are solved together and each call's clock advances by its own step's time.
That is the same when the steps end together, and costs one solve per distinct step pattern when
they almost do (an ECMP fabric hashing equal groups' flows onto different paths); the workload
step (:mod:`workloads.step`) times its phases so.

This is the bulk-synchronous view the schedules are written in (a step waits for its slowest
transfer) extended across groups; it is exact when the concurrent calls' steps start and end
together (equal groups, equal sizes: two allreduces on disjoint groups of a non-blocking fabric
take the time of one; sharing one bottleneck link they take twice as long, up to the message
costs), and otherwise approximate by the linear-progress assumption. The alternative, every
transfer of every step as a dependent flow in :func:`topologies.network.simulate_transfers`, is
exact for the fluid model but its event loop grows with all transfers of all calls (millions for
a 1024-device step), where this one grows with the distinct step patterns. Not modelled here:
instability profiles (``jitter``) and failures during the calls.

Examples
--------
Two 8 MB ring allreduces on disjoint pairs of a 4-device switch take the time of one (each
alone: 2 steps of 4 MB at 10 GB/s):

>>> from topologies import switch
>>> t = switch(4, bw_GBps=10.0, lat_us=0.0)
>>> r = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 1]), ("allreduce", 8_000_000, [2, 3])],
...                         algorithm="ring")
>>> [round(c.time_s * 1e6, 6) for c in r.calls], [round(c.slowdown, 9) for c in r.calls]
([800.0, 800.0], [1.0, 1.0])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from topologies.model import PROTOCOL_EFFICIENCY, library_efficiency
from topologies.routing import route_pairs

from . import dtypes, registry
from .registry import AlgorithmUnavailable, build_schedule
from .timing import (SELECTIONS, _as_topology, _reduce_rates, _reduce_time, _simulate_one, _timer, library_model,
                     simulate)

__all__ = ["Call", "CallResult", "ConcurrentResult", "simulate_concurrent", "group_key"]


@dataclass(frozen=True)
class Call:
    """One collective call of a group.

    ``group`` lists the topology's device indices in the communicator's rank order; ``nbytes`` is
    nccl-tests' size S (for ``alltoallv`` the P x P counts matrix, as in :func:`~collectives.simulate`).
    The call starts at ``start_s`` (seconds) or, with ``deps`` (indices of other calls), once they have
    all ended, whichever is later. ``label`` names it in reports (e.g. ``"tp"``, ``"dp"``).
    """

    collective: str
    nbytes: object
    group: tuple
    dtype: str = "float32"
    label: str | None = None
    start_s: float = 0.0
    deps: tuple = ()
    algorithm: str = "auto"
    root: int = 0

    @classmethod
    def of(cls, value, index: int = 0) -> "Call":
        """A :class:`Call`, or a tuple ``(collective, nbytes, group[, start_s or deps])``."""
        if isinstance(value, Call):
            return value
        if not isinstance(value, (tuple, list)) or not 3 <= len(value) <= 4:
            raise TypeError(f"call {index}: expected a Call or (collective, nbytes, group[, start_s | deps]), "
                            f"got {value!r}")
        coll, nb, group = value[:3]
        extra = value[3] if len(value) == 4 else None
        if extra is None:
            return cls(coll, nb, tuple(group))
        if isinstance(extra, numbers.Real) and not isinstance(extra, bool):
            return cls(coll, nb, tuple(group), start_s=float(extra))
        return cls(coll, nb, tuple(group), deps=tuple(extra))


@dataclass
class CallResult:
    """One call's figures: when it started and ended, and its time alone on its group's sub-system."""

    index: int
    label: str
    collective: str
    nbytes: int
    group: tuple
    algorithm: str
    protocol: str
    library: str | None
    start_s: float
    end_s: float
    alone_s: float
    notes: list = field(default_factory=list)

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def slowdown(self) -> float:
        """Time together over time alone (1: no contention)."""
        return self.time_s / self.alone_s if self.alone_s > 0 else math.nan

    def as_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "collective": self.collective, "nbytes": self.nbytes,
                "group": list(self.group), "algorithm": self.algorithm, "protocol": self.protocol,
                "library": self.library, "start_s": self.start_s, "end_s": self.end_s, "time_s": self.time_s,
                "alone_s": self.alone_s, "slowdown": self.slowdown, "notes": list(self.notes)}


@dataclass
class ConcurrentResult:
    """What :func:`simulate_concurrent` returns: per call its timing, per link its bytes by call.

    ``link_bytes`` and ``capacity_Bps`` are indexed like ``edges`` (the topology's directed links);
    ``call_links[i]`` is ``(edge ids, bytes)`` of call ``i`` (its bytes on every link it used).
    """

    topology: str
    calls: list
    edges: list
    link_kinds: list
    capacity_Bps: np.ndarray = field(repr=False)
    link_bytes: np.ndarray = field(repr=False)
    call_links: list = field(repr=False, default_factory=list)
    events: int = 0

    @property
    def time_s(self) -> float:
        """From the first call's start to the last call's end."""
        if not self.calls:
            return 0.0
        return max(c.end_s for c in self.calls) - min(c.start_s for c in self.calls)

    def by_label(self) -> dict:
        """``{label: {"calls", "time_s" (slowest call), "alone_s" (slowest alone), "start_s", "end_s"}}``."""
        out = {}
        for c in self.calls:
            e = out.setdefault(c.label, {"calls": 0, "time_s": 0.0, "alone_s": 0.0, "start_s": math.inf,
                                         "end_s": 0.0})
            e["calls"] += 1
            e["time_s"] = max(e["time_s"], c.time_s)
            e["alone_s"] = max(e["alone_s"], c.alone_s)
            e["start_s"] = min(e["start_s"], c.start_s)
            e["end_s"] = max(e["end_s"], c.end_s)
        return out

    def link_bytes_by(self, key: str = "label") -> dict:
        """``{label (or call index with key="call"): bytes per edge}`` (arrays like ``link_bytes``)."""
        out = {}
        for c, (ids, b) in zip(self.calls, self.call_links):
            k = c.index if key == "call" else c.label
            arr = out.get(k)
            if arr is None:
                arr = out[k] = np.zeros(len(self.edges))
            np.add.at(arr, ids, b)
        return out

    def kind_of_edges(self) -> np.ndarray:
        """The link kind of every edge (strings)."""
        return np.array(self.link_kinds, dtype=object)[self._edge_kind]

    def bytes_by_link_kind(self) -> dict:
        """``{label: {link kind: bytes}}``: what each label moved over each kind of link."""
        kinds = self.kind_of_edges()
        out = {}
        for label, arr in self.link_bytes_by().items():
            per = {}
            for k in self.link_kinds:
                v = float(arr[kinds == k].sum())
                if v:
                    per[k] = v
            out[label] = per
        return out

    def busiest_link(self, labels=None):
        """``(edge, kind, utilisation)`` of the link with the most bytes over capacity x time for the
        calls of ``labels`` (all by default), over the span of those calls; None if none moved data."""
        chosen = [i for i, c in enumerate(self.calls) if labels is None or c.label in labels]
        if not chosen:
            return None
        arr = np.zeros(len(self.edges))
        for i in chosen:
            ids, b = self.call_links[i]
            np.add.at(arr, ids, b)
        if not arr.any():
            return None
        span = max(self.calls[i].end_s for i in chosen) - min(self.calls[i].start_s for i in chosen)
        with np.errstate(divide="ignore", invalid="ignore"):
            load = np.where(self.capacity_Bps > 0, arr / self.capacity_Bps, 0.0)
        e = int(np.argmax(load))
        util = float(load[e] / span) if span > 0 else math.nan
        return self.edges[e], self.link_kinds[self._edge_kind[e]], util

    def contention(self, top: int | None = 10, key: str = "label") -> list:
        """Links that carry bytes of more than one label (or call, ``key="call"``), busiest first:
        ``[{"edge", "kind", "bytes": {label: bytes}, "utilisation"}]`` (utilisation: all bytes over
        capacity x the whole time)."""
        per = self.link_bytes_by(key)
        names = list(per)
        if len(names) < 2:
            return []
        mat = np.vstack([per[n] for n in names])
        users = (mat > 0).sum(axis=0)
        shared = np.flatnonzero(users > 1)
        total = mat.sum(axis=0)
        span = self.time_s
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.where(self.capacity_Bps > 0, total / (self.capacity_Bps * span), 0.0) if span > 0 \
                else np.zeros(len(total))
        order = shared[np.argsort(-util[shared], kind="stable")]
        if top is not None:
            order = order[:top]
        return [{"edge": self.edges[e], "kind": self.link_kinds[self._edge_kind[e]],
                 "bytes": {n: float(mat[i, e]) for i, n in enumerate(names) if mat[i, e] > 0},
                 "utilisation": float(util[e])} for e in order]

    def table(self) -> str:
        """One line per label: calls, slowest time together and alone, slowdown."""
        from .study import format_table
        rows = []
        for label, e in self.by_label().items():
            slow = e["time_s"] / e["alone_s"] if e["alone_s"] > 0 else math.nan
            rows.append([str(label), str(e["calls"]), f"{e['time_s'] * 1e6:.2f}", f"{e['alone_s'] * 1e6:.2f}",
                         f"{slow:.3f}"])
        return format_table(["label", "calls", "time_us", "alone_us", "slowdown"], rows,
                            [f"ccemu concurrent collectives on {self.topology}: {len(self.calls)} calls, "
                             f"{self.time_s * 1e6:.2f} us in all"])

    def as_dict(self, links: int = 10) -> dict:
        return {"topology": self.topology, "time_s": self.time_s, "events": self.events,
                "calls": [c.as_dict() for c in self.calls],
                "contention": [dict(c, edge=list(c["edge"])) for c in self.contention(links)]}

    _edge_kind: np.ndarray = field(default=None, repr=False)


# -- preparing a call: its schedule as the library would run it, on its group's sub-system -----------

@dataclass
class _Piece:
    """One run of a call (HCCL cuts a call into CCL-buffer pieces): launch cost, regime, the link
    rate factor of the library, and its steps ``(src, dst, nbytes, reduce time, repeat)`` in
    group-local endpoints (devices ``0..P-1``, then ``endpoints`` by node name)."""

    call_s: float
    protocol: str
    lib_factor: float
    steps: list
    endpoints: list


@dataclass
class _Template:
    rep_group: tuple
    alone: object
    algorithm: str
    protocol: str
    library: str | None
    nbytes: int
    pieces: list
    notes: list


def group_key(topology, group) -> tuple:
    """The equivalence class of a device group for caching its choice.

    Per member: the rank of its supernode and of its server among the group's (in order of first
    appearance), and its index within its server; when every member is in a server of its own,
    only which members share an index (the rank of the index), since such groups (a data-parallel
    group of every server's device 3 or 5) meet over the same kind of scale-out path. Groups with
    the same key on a preset (every tensor-parallel group inside its own server) have sub-systems of
    the same shape, hence the same pick and the same time alone. Devices without a ``node``
    attribute key by their own indices (no sharing).

    >>> from topologies import preset
    >>> t = preset("hgx-h20", nodes=4)
    >>> group_key(t, range(8)) == group_key(t, range(8, 16)), group_key(t, [0, 8]) == group_key(t, [1, 9])
    (True, True)
    >>> group_key(t, [0, 1]) == group_key(t, [0, 2]), group_key(t, [0, 8]) == group_key(t, [0, 9])
    (False, False)
    """
    info = topology.__dict__.get("_concurrent_coords")
    if info is None:
        g = topology.graph
        nodes = [g.nodes[d].get("node") for d in topology.devices]
        if any(n is None for n in nodes):
            info = False
        else:
            sn = [g.nodes[d].get("supernode", 0) for d in topology.devices]
            local, seen = [], {}
            for s, n in zip(sn, nodes):
                k = (s, n)
                local.append(seen.get(k, 0))
                seen[k] = seen.get(k, 0) + 1
            info = (sn, nodes, local)
        topology.__dict__["_concurrent_coords"] = info
    group = [int(d) for d in group]
    if info is False:
        return ("exact", tuple(group))
    sn, nodes, local = info
    srank, nrank, out = {}, {}, []
    for d in group:
        s = srank.setdefault(sn[d], len(srank))
        n = nrank.setdefault((sn[d], nodes[d]), len(nrank))
        out.append([s, n, local[d]])
    if len(nrank) == len(group):          # one member per server: only equal indices matter
        lrank = {}
        for row in out:
            row[2] = lrank.setdefault(row[2], len(lrank))
    return tuple(tuple(row) for row in out)


def _size_key(spec, nbytes, P):
    if spec.call_params and not isinstance(nbytes, (numbers.Integral, np.integer)):
        from .alltoallv import Counts
        return Counts.of(nbytes, P)
    return int(nbytes)


def _cache(topology) -> dict:
    return topology.__dict__.setdefault("_concurrent_cache", {"subs": {}, "templates": {}})


def _subsystem(topology, group, shape):
    """``(representative group, its sub-system)`` for groups of ``shape``: the first group of that
    shape asked for stands for all of them (:func:`group_key`)."""
    from topologies.whatif import select_devices

    cache = _cache(topology)["subs"]
    hit = cache.get(shape)
    if hit is None:
        rep = tuple(int(d) for d in group)
        hit = cache[shape] = (rep, select_devices(topology, rep))
    return hit


def _template(topology, call: Call, library, model) -> _Template:
    spec = registry.collective(call.collective)
    P = len(call.group)
    shape = group_key(topology, call.group)
    key = (call.collective, _size_key(spec, call.nbytes, P), dtypes.canonical(call.dtype), call.algorithm,
           call.root, library, repr(sorted((model or {}).items())), shape)
    cache = _cache(topology)["templates"]
    hit = cache.get(key)
    if hit is None:
        rep, sub = _subsystem(topology, call.group, shape)
        hit = cache[key] = _prepare(sub, rep, call, spec, library, model)
    return hit


def _switches_of(topology, device: int) -> list:
    g = topology.graph
    name = topology.devices[device]
    return sorted(n for n in g.successors(name) if g.nodes[n].get("kind") == "switch")


def _map_endpoints(topology, rep_group, group, names) -> np.ndarray:
    """Node ids, on ``topology``, of the switches that play for ``group`` the part that ``names``
    (switches next to devices of ``rep_group``, a group of the same shape) play for it: the same
    position among the switches next to the same group-local device."""
    node_id = topology.arrays.node_id
    if tuple(rep_group) == tuple(group):
        return np.array([node_id[n] for n in names], np.int64)
    g = topology.graph
    out = []
    for n in names:
        local = [i for i, d in enumerate(rep_group) if g.has_edge(topology.devices[d], n)]
        if not local:
            raise ValueError(f"endpoint {n!r} of the schedule is next to no device of the group")
        j = _switches_of(topology, rep_group[local[0]]).index(n)
        mine = _switches_of(topology, group[local[0]])
        if j >= len(mine) or any(not g.has_edge(topology.devices[group[i]], mine[j]) for i in local):
            raise ValueError(f"group {list(group)} has no switch in the place of {n!r}")
        out.append(node_id[mine[j]])
    return np.array(out, np.int64)


def _prepare(sub, rep, call: Call, spec, library, model) -> _Template:
    name = dtypes.canonical(call.dtype)
    size = dtypes.itemsize(name)
    notes = []
    kw = dict(algorithm=call.algorithm, dtype=name, root=call.root, model=model)
    try:
        r = simulate(call.collective, call.nbytes, sub, library=library, **kw)
    except AlgorithmUnavailable as exc:
        if call.algorithm != "auto" or library == "ideal":
            raise
        # The library model's pick cannot run on this group (e.g. a two-level algorithm on a group
        # of one device per server): ccemu's best schedule stands in, and the call says so.
        r = simulate(call.collective, call.nbytes, sub, library="ideal", **kw)
        why = str(exc).replace(f"topology {sub.name!r}", "the group")
        notes.append(f"{library or 'the native library'}'s pick cannot run on this group ({why}); ideal stands in")
    P = sub.num_devices
    nbytes, given = call.nbytes, {}
    if spec.call_params:
        nbytes, given = spec.sized_call(nbytes, P, size, {})
    nbytes = int(nbytes)
    choice = r.library_choice
    pieces = []
    if choice is not None and choice.ccemu_algorithm not in SELECTIONS:
        # As timing._simulate_choice runs a library's pick: its schedule and regime over the pieces
        # the library cuts the call into, each with the parameters tuned for the piece's size.
        alg = choice.ccemu_algorithm
        params = {**choice.ccemu_params, **given}
        piece_model = library_model(choice.library, sub, model)
        lib_factor = library_efficiency(choice.library)
        one = dict(spec=spec, topology=sub, dtype=name, itemsize=size, root=call.root, model=piece_model,
                   failure=None)
        memo = {}
        for piece in (choice.pieces or [nbytes]):
            nb = int(piece) - int(piece) % size
            if nb not in memo:
                rp = _simulate_one(alg, params, nbytes=nb, protocol=choice.ccemu_protocol, **one)
                memo[nb] = _piece(spec, alg, rp.params, rp.protocol, nb, sub, size, call.root, piece_model,
                                  lib_factor)
            pieces.append(memo[nb])
        library_name = choice.library
    else:
        pieces.append(_piece(spec, r.algorithm, r.params, r.protocol, nbytes, sub, size, call.root, model, 1.0))
        library_name = choice.library if choice is not None else None
    return _Template(rep, r, r.algorithm, r.protocol, library_name, r.nbytes, pieces, notes)


def _piece(spec, algorithm, params, protocol, nbytes, sub, itemsize, root, model, lib_factor) -> _Piece:
    P = sub.num_devices
    count = spec.count_for_nbytes(nbytes, P, itemsize)
    schedule = build_schedule(spec.name, algorithm, P, count, root, topology=sub, **params)
    reduce_Bps = _reduce_rates(sub)
    if schedule.endpoints:
        reduce_Bps = np.concatenate([reduce_Bps, [sub.graph.nodes[n].get("reduce_bw_GBps", math.inf) * 1e9
                                                  for n in schedule.endpoints]])
    steps = []
    for _, src, dst, nb, reduce, repeat in schedule.timing(itemsize):
        if repeat <= 0:
            continue
        src = np.asarray(src, np.int64)
        dst = np.asarray(dst, np.int64)
        nb = np.asarray(nb, np.float64)
        t_red = _reduce_time(dst, nb, reduce_Bps) if (reduce and spec.reduces) else 0.0
        steps.append((src, dst, nb, t_red, int(repeat)))
    call_s = _timer(sub, model, protocol, not schedule.endpoints).link.call_s
    return _Piece(call_s, protocol, lib_factor, steps, list(schedule.endpoints))


# -- the concurrent run ----------------------------------------------------------------------------

class _Instance:
    """A call on the whole topology: its entries ``("delay", seconds)`` and ``("net", src, dst,
    inflated bytes, protocol, reduce time, repeat, pair keys, bytes per pair)`` in global node ids
    (the last two: its remote transfers merged per pair, one flow each), and its progress."""

    __slots__ = ("call", "tpl", "entries", "pos", "left", "frac", "start", "end", "pairs")

    def __init__(self, call, tpl, topology, n_nodes):
        self.call, self.tpl = call, tpl
        group = np.asarray(call.group, np.int64)
        self.entries = []
        pairs = []
        for piece in tpl.pieces:
            gmap = group
            if piece.endpoints:
                ends = _map_endpoints(topology, tpl.rep_group, tuple(int(d) for d in call.group), piece.endpoints)
                gmap = np.concatenate([group, ends])
            if piece.call_s > 0:
                self.entries.append(("delay", piece.call_s))
            # A regime and a library that reach a fraction f of the links' rate move each byte as 1/f
            # bytes at Simple's full rate: the same time alone, and the right share of a shared link.
            inflate = 1.0 / (PROTOCOL_EFFICIENCY[piece.protocol] * piece.lib_factor)
            for src, dst, nb, t_red, repeat in piece.steps:
                s, d = gmap[src], gmap[dst]
                remote = s != d
                keys, inv = np.unique(s[remote] * n_nodes + d[remote], return_inverse=True)
                per_pair = np.bincount(inv, weights=(nb * inflate)[remote], minlength=len(keys))
                self.entries.append(("net", s, d, nb * inflate, piece.protocol, t_red, repeat, keys, per_pair))
                pairs.append((s, d, nb * repeat))
        self.pairs = pairs
        self.pos, self.frac, self.start, self.end = 0, 0.0, None, None
        self.left = self._repeat()

    def _repeat(self):
        if self.pos >= len(self.entries):
            return 0
        e = self.entries[self.pos]
        return e[6] if e[0] == "net" else 1

    def advance(self, k):
        self.left -= k
        self.frac = 0.0
        while self.left <= 0 and self.pos < len(self.entries):
            self.pos += 1
            self.left = self._repeat()

    @property
    def done(self):
        return self.pos >= len(self.entries)


def simulate_concurrent(topology, calls, algorithm: str | None = None, library: str | None = None,
                        model: dict | None = None, dtype: str | None = None, stop_when=None,
                        link_bytes: bool = True, sync: str = "time", tol: float = 0.0) -> ConcurrentResult:
    """Time collective calls of several device groups together on ``topology``.

    Parameters
    ----------
    topology : topologies.Topology or str
        The whole system (or a preset name).
    calls : list of Call or tuple
        ``(collective, nbytes, group[, start_s | deps])`` or :class:`Call` objects.
    algorithm, dtype : str, optional
        Applied to every call given as a tuple (a :class:`Call` keeps its own).
    library, model
        As in :func:`collectives.simulate` (``library``: whose pick ``auto`` runs).
    stop_when : iterable of int, optional
        Stop as soon as these calls have ended (the others keep their progress so far: their
        ``end_s`` is NaN). Used to time a phase under background traffic (with ``sync="step"``:
        once these calls have done all their steps).
    link_bytes : bool
        Attribute every call's bytes to the links it uses (``call_links``, ``contention``).
    sync : str
        ``"time"`` (default): calls share the links while they overlap in time (see the module
        docstring). ``"step"``: the calls, which must all start at 0 without dependencies, are
        aligned by step index instead: the k-th steps of all of them are solved together and each
        call's clock advances by its own step's time. The same result when the calls' steps end
        together (equal groups), and far fewer solves when they do not quite (groups whose flows
        an ECMP fabric hashes onto different paths): one per distinct step pattern.

    tol : float
        With ``sync="time"``: calls whose step would end within ``tol`` (relative) of the earliest
        end are taken to end with it (fewer events; each such step is short by at most ``tol``).
        Default 0: exact.

    Returns
    -------
    ConcurrentResult
        See the module docstring for the model.

    Raises
    ------
    ValueError
        An unknown collective, a group that is not distinct devices of the topology, a dependency
        on a call that does not exist or a dependency cycle.
    """
    topology = _as_topology(topology)
    prepared = []
    for i, c in enumerate(calls):
        call = Call.of(c, i)
        if not isinstance(c, Call):
            extra = {}
            if algorithm is not None:
                extra["algorithm"] = algorithm
            if dtype is not None:
                extra["dtype"] = dtype
            if extra:
                call = Call(**{**call.__dict__, **extra})
        registry.collective(call.collective)
        if len(call.group) < 1 or len(set(int(d) for d in call.group)) != len(call.group) \
                or any(not 0 <= int(d) < topology.num_devices for d in call.group):
            raise ValueError(f"call {i}: group {list(call.group)!r}; expected distinct device indices in "
                             f"0..{topology.num_devices - 1}")
        for d in call.deps:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < len(calls) or d == i:
                raise ValueError(f"call {i}: dependency {d!r}; expected the index of another call "
                                 f"(0..{len(calls) - 1})")
        if not (isinstance(call.start_s, numbers.Real) and math.isfinite(call.start_s) and call.start_s >= 0):
            raise ValueError(f"call {i}: start_s={call.start_s!r}; expected a finite number of seconds >= 0")
        if call.label is None:
            call = Call(**{**call.__dict__, "label": f"{call.collective}#{i}"})
        prepared.append(call)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < 1:
        raise ValueError(f"tol={tol!r}; expected a number from 0 to below 1")
    if sync not in ("time", "step"):
        raise ValueError(f"sync={sync!r}; expected 'time' or 'step'")
    if sync == "step" and any(c.start_s or c.deps for c in prepared):
        raise ValueError("sync='step' aligns calls by step index from time 0; expected no start_s or deps "
                         "(use sync='time')")
    templates = [_template(topology, c, library, model) for c in prepared]
    merge = not any(p.endpoints for t in templates for p in t.pieces)
    timer = _timer(topology, model, "simple", merge)
    n_nodes = len(timer.solver.arrays.nodes) + 1
    inst = [_Instance(c, t, topology, n_nodes) for c, t in zip(prepared, templates)]
    msg = {p: _timer(topology, model, p, merge).link.msg_by_kind_s for p in PROTOCOL_EFFICIENCY}
    stop = None if stop_when is None else set(int(i) for i in stop_when)
    if sync == "step":
        events = _run_steps(inst, timer, msg, stop)
    else:
        events = _run(inst, timer, msg, stop, tol)
    results = []
    for i, (c, t, x) in enumerate(zip(prepared, templates, inst)):
        start = x.start if x.start is not None else math.nan
        end = x.end if x.end is not None else math.nan
        results.append(CallResult(i, c.label, c.collective, t.nbytes, tuple(int(d) for d in c.group), t.algorithm,
                                  t.protocol, t.library, start, end, t.alone.time_s, list(t.notes)))
    a = topology.arrays
    res = ConcurrentResult(topology.name, results, a.edges, list(a.link_kinds), timer.capacity_Bps,
                           np.zeros(len(a.edges)), [], events)
    res._edge_kind = a.edge_kind
    if link_bytes:
        res.call_links = _attribute(topology, inst)
        for ids, b in res.call_links:
            np.add.at(res.link_bytes, ids, b)
    else:
        res.call_links = [(np.zeros(0, np.int64), np.zeros(0)) for _ in inst]
    return res


#: Two step ends closer than this (relative) are one event.
_TOL = 1e-9


def _mask_msg(mask: np.ndarray, msg_by_kind) -> np.ndarray:
    out = np.zeros(len(mask))
    for k, cost in enumerate(msg_by_kind):
        out = np.where((mask >> k) & 1 == 1, np.maximum(out, cost), out)
    return out


def _run(inst, timer, msg, stop_when, tol=0.0) -> int:
    """The event loop (see the module docstring); returns the number of events."""
    T = 0.0
    pending = list(range(len(inst)))
    running = []
    events = 0
    n_nodes = len(timer.solver.arrays.nodes) + 1
    tol = max(_TOL, tol)
    merged = {}
    while pending or running:
        if stop_when is not None and all(inst[i].end is not None for i in stop_when):
            break
        ready = [i for i in pending if all(inst[d].end is not None for d in inst[i].call.deps)]
        for i in ready:
            x = inst[i]
            at = max([x.call.start_s] + [inst[d].end for d in x.call.deps])
            if at <= T * (1 + _TOL) + 1e-15:
                pending.remove(i)
                x.start = T
                if x.done:
                    x.end = T
                else:
                    running.append(i)
        if not running:
            if not pending:
                break
            waits = [max([inst[i].call.start_s] + [inst[d].end for d in inst[i].call.deps]) for i in pending
                     if all(inst[d].end is not None for d in inst[i].call.deps)]
            if not waits:
                raise ValueError(f"dependency cycle among calls {sorted(pending)}")
            T = max(T, min(waits))
            continue
        next_start = min([max([inst[i].call.start_s] + [inst[d].end for d in inst[i].call.deps]) for i in pending
                          if all(inst[d].end is not None for d in inst[i].call.deps)] or [math.inf])
        own = _durations(inst, running, timer, msg, n_nodes, merged)
        events += 1
        dt = min(own.values())
        partial = next_start - T < dt
        if partial:
            dt = next_start - T
        together = not partial and all(inst[i].frac == 0.0 and own[i] <= dt * (1 + tol) for i in running)
        k = 1
        if together:
            k = min(inst[i].left for i in running)
            if math.isfinite(next_start) and dt > 0:
                k = max(1, min(k, int(math.floor((next_start - T) / dt * (1 + _TOL)))))
        T += k * dt
        still = []
        for i in running:
            x = inst[i]
            if not partial and own[i] <= dt * (1 + tol):
                x.advance(k)
            else:
                x.frac += (1.0 - x.frac) * (dt / own[i] if own[i] > 0 else 1.0)
            if x.done:
                x.end = T
            else:
                still.append(i)
        running = still
    return events


def _run_steps(inst, timer, msg, stop_when=None) -> int:
    """Calls aligned by step index, each on its own clock (``sync="step"``)."""
    n_nodes = len(timer.solver.arrays.nodes) + 1
    clock = [0.0] * len(inst)
    running = []
    for i, x in enumerate(inst):
        x.start = 0.0
        if x.done:
            x.end = 0.0
        else:
            running.append(i)
    events = 0
    merged = {}
    while running:
        if stop_when is not None and all(inst[i].end is not None for i in stop_when):
            break
        own = _durations(inst, running, timer, msg, n_nodes, merged)
        events += 1
        k = min(inst[i].left for i in running)
        still = []
        for i in running:
            clock[i] += k * own[i]
            inst[i].advance(k)
            if inst[i].done:
                inst[i].end = clock[i]
            else:
                still.append(i)
        running = still
    return events


def _durations(inst, running, timer, msg, n_nodes, merged=None) -> dict:
    """Each running call's time to finish its current step, all of them solved together.

    The network model sends the transfers of one step between one pair as one message, which is
    right within a call; transfers of different calls between the same pair stay separate flows:
    the pair's merged flow is solved, and its share is split among the calls' flows as a link
    shared by flows of one path splits (processor sharing at the merged flow's rate): with the
    flows' bytes ``b_1 <= ... <= b_k``, flow ``i`` ends at ``(b_1 + ... + b_(i-1) + (k - i + 1) b_i)
    / sum(b)`` of the merged flow's data time (the largest at all of it, a lone flow at all of it).
    """
    own = {}
    parts = []
    for i in running:
        x = inst[i]
        e = x.entries[x.pos]
        left = 1.0 - x.frac
        if e[0] == "delay":
            own[i] = e[1] * left
            continue
        _, _, _, _, proto, t_red, _, k, per_pair = e
        parts.append((i, k, per_pair * left if left != 1.0 else per_pair, proto, t_red * left, left, x.pos))
    if not parts:
        return own
    B = np.concatenate([p[2] for p in parts])
    sig = tuple((p[0], p[6]) for p in parts)      # which entry of which call: the pairs' merge is the same
    hit = merged.get(sig) if merged is not None else None
    if hit is None:
        K = np.concatenate([p[1] for p in parts])
        uniq, inverse = np.unique(K, return_inverse=True)
        us, ud = np.divmod(uniq, n_nodes)
        hit = (inverse, us.astype(np.int64), ud.astype(np.int64), len(K))
        if merged is not None:
            if len(merged) > 256:
                merged.clear()
            merged[sig] = hit
    inverse, us, ud, nK = hit
    if nK:
        ub = np.bincount(inverse, weights=B, minlength=len(us))
        _, detail = timer.time(us, ud, ub)
        share = _shares(inverse, B, ub)
    else:
        inverse, detail, share = np.zeros(0, np.int64), None, np.zeros(0)
    lat_by_proto = {}
    pos = 0
    for i, k, b, proto, t_red, left, _ in parts:
        n = len(k)
        idx = inverse[pos:pos + n]
        f = share[pos:pos + n]
        pos += n
        t = t_red
        if n and detail is not None:
            lat = lat_by_proto.get(proto)
            if lat is None:
                lat = detail.lat_s
                if proto != "simple":
                    lat = lat + _mask_msg(detail.kind_mask, msg[proto]) - _mask_msg(detail.kind_mask, msg["simple"])
                lat_by_proto[proto] = lat
            t = max(t, float((detail.data_s[idx] * f + lat[idx] * left).max()))
        own[i] = t
    return own


def _shares(inverse, b, total) -> np.ndarray:
    """Per flow, the fraction of its pair's merged data time at which it ends (see :func:`_durations`)."""
    n = len(inverse)
    out = np.ones(n)
    if n == 0:
        return out
    counts = np.bincount(inverse, minlength=len(total))
    shared = np.flatnonzero(counts[inverse] > 1)
    if not len(shared):
        return out
    inv, bs = inverse[shared], b[shared]
    order = np.lexsort((bs, inv))
    u, bs = inv[order], bs[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    rank = np.arange(len(u)) - first                     # position within the pair, by bytes
    before = np.cumsum(bs) - bs
    before -= before[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(total[u] > 0, (before + (counts[u] - rank) * bs) / total[u], 1.0)
    out[shared[order]] = f
    return out


def _attribute(topology, inst) -> list:
    """``(edge ids, bytes)`` per call: its bytes routed on the topology's links."""
    out = []
    owners, S, D, B = [], [], [], []
    for k, x in enumerate(inst):
        for s, d, b in x.pairs:
            remote = s != d
            if remote.any():
                S.append(s[remote])
                D.append(d[remote])
                B.append(b[remote])
                owners.append(np.full(int(remote.sum()), k, np.int64))
    empty = (np.zeros(0, np.int64), np.zeros(0))
    if not S:
        return [empty for _ in inst]
    S, D, B, owner = np.concatenate(S), np.concatenate(D), np.concatenate(B), np.concatenate(owners)
    n_nodes = len(topology.arrays.nodes) + 1
    key = (owner * n_nodes + S) * n_nodes + D
    uniq, inverse = np.unique(key, return_inverse=True)
    b = np.bincount(inverse, weights=B, minlength=len(uniq))
    rest, d = np.divmod(uniq, n_nodes)
    own, s = np.divmod(rest, n_nodes)
    routes = route_pairs(topology, s.astype(np.int64), d.astype(np.int64))
    per_route = np.repeat(np.arange(len(uniq)), np.diff(routes.ptr))
    w = routes.frac * b[per_route]
    n_edges = len(topology.arrays.edges)
    ekey = own[per_route] * n_edges + routes.edge
    ukey, einv = np.unique(ekey, return_inverse=True)
    eb = np.bincount(einv, weights=w, minlength=len(ukey))
    call_of, edge = np.divmod(ukey, n_edges)
    bounds = np.searchsorted(call_of, np.arange(len(inst) + 1))
    for k in range(len(inst)):
        lo, hi = bounds[k], bounds[k + 1]
        out.append((edge[lo:hi].astype(np.int64), eb[lo:hi]))
    return out

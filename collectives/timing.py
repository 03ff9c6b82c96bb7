"""The time plane: :func:`simulate` gives a collective call its emulated time on a topology.

No data moves. The algorithm is named, or chosen (:mod:`collectives.select`); its parameters are
tuned for the topology (:mod:`collectives.tuning`); the schedule's steps go to the network model
(:mod:`topologies.network`), one synchronous step after another: a step lasts until its slowest
transfer has arrived and been reduced. Each protocol regime is timed and the fastest kept; an
instability profile then disturbs seeded samples of the call (:mod:`topologies.instability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from topologies.model import PROTOCOLS
from topologies.network import PatternDetail, StepSolver, StepTimer, expand_edge_bytes

from . import dtypes, registry, select
from .ops import check_op
from .registry import build_schedule
from .tuning import default_params


@dataclass
class SimResult:
    """Emulated figures of one collective call on a topology. Bandwidths in GB/s (1e9 B/s)."""

    collective: str
    algorithm: str
    topology: str
    P: int
    nbytes: int
    count: int
    dtype: str
    time_s: float
    algbw_GBps: float
    busbw_GBps: float
    peak_GBps: float
    bus_efficiency: float
    steps: list = field(default_factory=list)
    link_bytes: np.ndarray | None = field(default=None, repr=False)
    edges: list | None = field(default=None, repr=False)
    capacity_Bps: np.ndarray | None = field(default=None, repr=False)
    protocol: str = "simple"
    time_samples_s: np.ndarray | None = field(default=None, repr=False)
    #: The algorithm's parameters the call ran with (given ones completed with the defaults).
    params: dict = field(default_factory=dict)
    #: How the algorithm was chosen: ``"named"`` by the caller, or ``"auto"`` / ``"best"``.
    selection: str = "named"
    #: With ``candidates=True`` and ``best``: every candidate (:class:`collectives.select.Trial`),
    #: fastest first, then the ones not timed with the reason.
    candidates: list | None = field(default=None, repr=False)
    #: With ``auto``: the library's pick in its own terms (:class:`collectives.libraries.Choice`).
    library_choice: object = field(default=None, repr=False)
    #: How the system's switches routed the flows (:meth:`topologies.Topology.routing_text`).
    routing: str = "adaptive"

    def time_stats(self) -> dict:
        """``min``, ``median``, ``p99`` and ``max`` emulated seconds over the sampled calls."""
        t = self.time_samples_s if self.time_samples_s is not None else np.array([self.time_s])
        return {"min": float(t.min()), "median": float(np.median(t)), "p99": float(np.percentile(t, 99)),
                "max": float(t.max())}

    def link_utilisation(self, top: int | None = None) -> dict:
        """``{(u, v): fraction of the link's usable capacity used over the call}``, busiest first."""
        if self.link_bytes is None or self.time_s <= 0:
            return {}
        util = self.link_bytes / (self.capacity_Bps * self.time_s)
        order = [i for i in np.argsort(-util, kind="stable") if self.link_bytes[i] > 0]
        if top is not None:
            order = order[:top]
        return {self.edges[i]: float(util[i]) for i in order}

    def as_dict(self) -> dict:
        keys = ("collective", "algorithm", "params", "selection", "topology", "P", "nbytes", "count", "dtype",
                "time_s", "algbw_GBps", "busbw_GBps", "peak_GBps", "bus_efficiency", "protocol", "routing", "steps")
        out = {k: getattr(self, k) for k in keys}
        if self.library_choice is not None:
            out["library"] = self.library_choice.as_dict()
        return out


#: Algorithm names that ask for a choice rather than name an algorithm.
SELECTIONS = ("auto", "best")


def simulate(collective: str, nbytes: int, topology, algorithm: str = "auto", dtype="float32", op: str = "sum",
             root: int = 0, model: dict | None = None, protocol: str = "auto", jitter=None, seed: int = 0,
             iters: int = 20, failure=None, candidates: bool = False, library: str | None = None,
             library_version: str | None = None, library_env: dict | None = None, **params) -> SimResult:
    """Emulated time of one collective call of ``nbytes`` (nccl-tests' size) on ``topology``.

    No data moves: the schedule's transfers go to the network model, so any device count works.
    ``nbytes`` is rounded down to whole elements per device as nccl-tests does; ``result.nbytes``
    is the size actually timed.

    Parameters
    ----------
    collective : str
        A registered collective (``collectives.registry.list_collectives()``).
    nbytes : int or array_like
        nccl-tests' size S in bytes; for ``alltoallv`` also the P x P matrix of element counts
        (bytes per pair = count x ``dtype``'s size; ``result.nbytes`` their total).
    topology : topologies.Topology or str
        The system, or a preset name (``topologies.presets()``).
    algorithm : str
        ``"auto"`` (default): what the system's collective library picks, by its own tuner
        (:mod:`collectives.libraries`), timed on the network model; ``"best"``: the fastest of every
        algorithm and parameter set (:mod:`collectives.select`); or an algorithm name
        (``collectives.list_algorithms(collective)``). ``result.algorithm`` and ``result.params``
        say what ran, ``result.selection`` how it was chosen, ``result.library_choice`` the
        library's pick in its own terms; ``candidates=True`` keeps the ranked candidates of
        ``best`` in ``result.candidates``.
    library, library_version, library_env
        The library ``auto`` asks (``nccl``, ``rccl``, ``hccl``, ``ideal``, or ``native``: the one
        the system's vendor ships), its version, and env-style overrides such as
        ``{"NCCL_ALGO": "NVLS"}``. The default is :data:`DEFAULT_LIBRARY` (``native``: a preset's
        vendor library; ``ideal``, whose choice is ``best``'s, on a topology no library models).
    protocol : str
        The regime (``simple``, ``ll128``, ``ll``; see :mod:`topologies.model`); ``auto`` takes the
        fastest, as NCCL's tuner does.
    jitter, seed, iters
        ``jitter`` (a profile name such as ``"noisy"``, or a dict; see :mod:`topologies.instability`)
        disturbs ``iters`` seeded calls: ``time_samples_s`` holds their times, ``time_stats()``
        their min, median, p99 and max, and ``time_s`` (with algbw and busbw) is the median. A
        choice (``auto``/``best``) ranks the candidates undisturbed, then samples the pick.
    failure : (int, topologies.Topology), optional
        ``(k, topology_after)`` changes the system from step ``k`` on (0-based): steps before it run
        on ``topology``, the rest on ``topology_after``, e.g.
        ``topologies.whatif.fail_link(topology, 0, 1)`` (which raises, naming the devices cut off,
        when no path is left). Traffic then follows the new routes, and the time shows the cost.
    **params
        Algorithm parameters (``channels``, ``chunks``, ``intra``, ...). With a choice, they are
        imposed on every candidate that takes them, and candidates that do not are left out.

    Examples
    --------
    Ring allreduce of 8 MB on 4 devices in a ring of 10 GB/s links with 1 us latency:
    2(P-1) steps of (1 us + 2 MB / 10 GB/s) = 6 x 201 us.

    >>> from topologies import ring
    >>> r = simulate("allreduce", 8_000_000, ring(4, bw_GBps=10.0, lat_us=1.0), algorithm="ring")
    >>> round(r.time_s * 1e6, 6), round(r.busbw_GBps, 3)
    (1206.0, 9.95)
    >>> r = simulate("allreduce", 8_000_000, ring(4, bw_GBps=10.0, lat_us=1.0))
    >>> r.selection, r.algorithm
    ('auto', 'ring')

    Device 0 sends 3 Mi bfloat16 elements (6 MiB) to device 1, which sends 2 MiB back, over one
    10 GB/s link each way with 1 us latency: one step of 1 us + 6,291,456 B / 10 GB/s.

    >>> r = simulate("alltoallv", [[0, 3 << 20], [1 << 20, 0]], ring(2, bw_GBps=10.0, lat_us=1.0),
    ...              algorithm="direct", dtype="bfloat16")
    >>> round(r.time_s * 1e6, 4), r.nbytes, round(r.algbw_GBps, 3), round(r.busbw_GBps, 3)
    (630.1456, 8388608, 13.312, 3.328)
    """
    topology = _as_topology(topology)
    spec = registry.collective(collective)
    check_op(op)
    name = dtypes.canonical(dtype)
    size = dtypes.itemsize(name)
    if spec.call_params:   # sized by more than a byte count (alltoallv's counts matrix)
        nbytes, params = spec.sized_call(nbytes, topology.num_devices, size, params)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(f"nbytes={nbytes!r}; expected an integer >= 0")
    if nbytes % size:
        raise ValueError(f"nbytes={nbytes} is not a multiple of the {name} element size ({size} bytes)")
    registry.check_root(root, topology.num_devices)
    if protocol != "auto" and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected auto or one of {', '.join(PROTOCOLS)}")
    if failure is not None:
        failure = _check_failure(failure, topology)
    given = {k: v for k, v in params.items() if v is not None}
    one = dict(spec=spec, nbytes=int(nbytes), topology=topology, dtype=name, itemsize=size, root=root,
               model=model, protocol=protocol, failure=failure)
    if algorithm not in SELECTIONS:
        if algorithm not in registry.list_algorithms(collective):
            raise ValueError(f"unknown algorithm {algorithm!r} for {collective}; expected "
                             f"{', '.join(SELECTIONS)} or one of {', '.join(registry.list_algorithms(collective))}")
        return _simulate_one(algorithm, given, jitter=jitter, seed=seed, iters=iters, **one)
    if algorithm == "auto":
        choice = _library_choice(collective, int(nbytes), topology, library, library_version, library_env)
        if choice.ccemu_algorithm not in SELECTIONS:
            return _simulate_choice(choice, given, one, protocol, jitter, seed, iters)
        res = simulate(collective, nbytes, topology, "best", dtype, op, root, model, protocol, jitter, seed, iters,
                       failure, candidates, **params)
        res.selection, res.library_choice = "auto", choice
        return res
    trials = select.rank(collective, int(nbytes), topology, lambda a, p: _simulate_one(a, p, **one), given, size,
                         bound=lambda a, p, stop_above=None: _lower_bound(a, p, **one, stop_above=stop_above))
    if not trials or trials[0].result is None:
        raise select.unavailable(collective, topology, trials)
    pick = trials[0]
    res = pick.result if jitter is None else _simulate_one(pick.algorithm, pick.params, jitter=jitter, seed=seed,
                                                           iters=iters, **one)
    res.selection = algorithm
    res.candidates = trials if candidates else None
    return res


#: The library ``auto`` asks when none is named: the system vendor's (NCCL, RCCL, HCCL), whose
#: constants are fitted on the calibration sets; ``ideal`` (= ``best``) where none is modelled.
DEFAULT_LIBRARY = "native"


def _library_choice(collective, nbytes, topology, library, version, env):
    from . import libraries

    name = library or DEFAULT_LIBRARY
    if name == "native":
        name = libraries.native_library(topology)
        if collective not in (libraries.library(name).collectives or (collective,)):
            name = "ideal"     # the vendor's model has no tuner for it: ccemu's search stands in
        elif name != "ideal" and version is None and env is None:
            # Asked for by default, not by name: a system the vendor's model does not cover (RCCL's
            # model knows the 8-GPU xGMI mesh only) runs as ideal, and the choice says why.
            try:
                return libraries.library(name).choose(collective, nbytes, topology)
            except ValueError as e:
                choice = libraries.library("ideal").choose(collective, nbytes, topology)
                choice.notes.append(f"{name} cannot model {topology.name}: {e}; ideal stands in")
                return choice
    return libraries.library(name).choose(collective, nbytes, topology, version=version, env=env)


def _simulate_choice(choice, given, one, protocol, jitter, seed, iters) -> SimResult:
    """The network model's time for a library's pick: its ccemu schedule and protocol, over the
    pieces the library cuts the call into (HCCL's CCL buffer), added."""
    alg = registry.info(one["spec"].name, choice.ccemu_algorithm)
    bad = sorted(set(given) - set(alg.params))
    if bad:
        raise ValueError(f"{choice.library} runs {choice.ccemu_algorithm} here, which has no parameter {bad[0]!r}; "
                         f"name the algorithm, or use algorithm='best', to set it")
    params = {**choice.ccemu_params, **given}
    proto = protocol if protocol != "auto" else choice.ccemu_protocol
    one = dict(one, model=library_model(choice.library, one["topology"], one["model"]))
    pieces = choice.pieces or [one["nbytes"]]
    runs = []
    for piece in pieces:
        piece_one = dict(one, nbytes=int(piece) - int(piece) % one["itemsize"], protocol=proto)
        runs.append(_simulate_one(choice.ccemu_algorithm, params, jitter=jitter, seed=seed, iters=iters, **piece_one))
    res = runs[0]
    if len(runs) > 1:  # one result for the whole call: times add up, bandwidths follow from the total
        total = sum(r.time_s for r in runs)
        spec, P = one["spec"], res.P
        count = spec.count_for_nbytes(one["nbytes"], P, one["itemsize"])
        res.nbytes = spec.nbytes(P, count, one["itemsize"])
        res.count = count
        res.time_s = total
        res.algbw_GBps = res.nbytes / total / 1e9 if total > 0 else 0.0
        res.busbw_GBps = res.algbw_GBps * spec.busbw_factor(P)
        res.bus_efficiency = res.busbw_GBps / res.peak_GBps if res.peak_GBps > 0 else math.nan
        res.steps = [st for r in runs for st in r.steps]
        res.link_bytes = sum(r.link_bytes for r in runs)
        if jitter is not None:
            res.time_samples_s = sum(r.time_samples_s for r in runs)
    res.selection, res.library_choice = "auto", choice
    return res


def library_model(library: str, topology, model: dict | None) -> dict | None:
    """The call's model overrides with every link kind's efficiency scaled by the library's
    ``bw_efficiency`` (:data:`topologies.model.LIBRARY_DEFAULTS`: the share of the links' rate its
    collectives reach), or ``model`` itself when the library reaches all of it."""
    from topologies import model as _model

    factor = _model.library_efficiency(library)
    if factor == 1.0:
        return model
    base = _model.resolve(topology.model, model)
    return {kind: dict((model or {}).get(kind, {}), efficiency=p["efficiency"] * factor) for kind, p in base.items()}


def lower_bound(collective: str, nbytes: int, topology, algorithm: str, dtype="float32", root: int = 0,
                model: dict | None = None, **params) -> float:
    """A closed-form lower bound of :func:`simulate`'s time for a named algorithm (any regime).

    Per step: the bytes each device (and each switch endpoint) sends and receives over the summed
    capacity of its links, and the bytes each group of devices joined by scale-up links sends to
    and receives from other groups over the capacity of its scale-out links
    (:data:`topologies.model.SCALE_OUT_KINDS`); plus the least message and call costs. Computed from
    the schedule alone (no routes, no max-min solve), it lets ``best`` prune candidates that cannot win.

    >>> from topologies import ring
    >>> t = ring(4, bw_GBps=10.0, lat_us=1.0)
    >>> bool(lower_bound("allreduce", 8_000_000, t, "ring") <= simulate("allreduce", 8_000_000, t, "ring").time_s)
    True
    """
    topology = _as_topology(topology)
    spec = registry.collective(collective)
    name = dtypes.canonical(dtype)
    size = dtypes.itemsize(name)
    one = dict(spec=spec, nbytes=int(nbytes), topology=topology, dtype=name, itemsize=size, root=root,
               model=model, protocol="auto", failure=None)
    return _lower_bound(algorithm, {k: v for k, v in params.items() if v is not None}, **one,
                        stop_above=float("inf"))[0]


#: Transfers a first lower bound reads before it stops (``select.rank`` refines it only for a candidate
#: it would otherwise time): a ring of 864 channels on 1440 devices has 2878 steps of 1.2M transfers.
BOUND_TRANSFERS = 4_000_000


def _lower_bound(algorithm, given, *, spec, nbytes, topology, dtype, itemsize, root, model, protocol, failure,
                 stop_above=None) -> tuple[float, bool]:
    """``(bound, complete)``: a lower bound of the candidate's time, the sum over its steps of each
    step's busiest port or scale-out group at full rate plus the least message cost, and the call
    cost. Every term is positive, so a partial sum is a lower bound too: the sum stops (``complete``
    False) after :data:`BOUND_TRANSFERS` transfers when ``stop_above`` is None, else as soon as it
    exceeds ``stop_above`` (then it is complete enough to prune against it)."""
    P = topology.num_devices
    count = spec.count_for_nbytes(nbytes, P, itemsize)
    params = {**default_params(spec.name, algorithm, topology, nbytes), **given}
    schedule = build_schedule(spec.name, algorithm, P, count, root, topology=topology, **params)
    cap_out, cap_in, comp, comp_out, comp_in, msg_s, call_s = _bound_tables(topology, model, protocol)
    node_of = _endpoint_nodes(topology, schedule)
    n, nc = len(cap_out), len(comp_out)
    total, read = 0.0, 0
    pairs = None   # the last step's transfers, as this bound reads them: a phase's steps share them
    with np.errstate(divide="ignore", invalid="ignore"):
        for _, src, dst, nb, _, repeat in schedule.timing(itemsize):
            if stop_above is None and read > BOUND_TRANSFERS:
                return float(total + call_s), False
            if stop_above is not None and total + call_s > stop_above:
                return float(total + call_s), True
            read += len(src)
            if pairs is None or pairs[0] is not src or pairs[1] is not dst:
                s, d = node_of[src], node_of[dst]
                remote = s != d
                s, d = s[remote], d[remote]
                cross = comp[s] != comp[d]
                pairs = (src, dst, remote, s, d, cross, comp[s][cross], comp[d][cross], bool(cross.any()))
            _, _, remote, s, d, cross, cs, cd, crosses = pairs
            if not len(s):
                continue
            b = nb[remote]
            t = max(np.nanmax(np.bincount(s, b, n) / cap_out), np.nanmax(np.bincount(d, b, n) / cap_in))
            if crosses:
                b = b[cross]
                t = max(t, np.nanmax(np.bincount(cs, b, nc) / comp_out), np.nanmax(np.bincount(cd, b, nc) / comp_in))
            total += (t + msg_s) * repeat
    return float(total + call_s), True


def _bound_tables(topology, model, protocol):
    """Per node: out and in capacity (bytes/s at Simple's efficiency, the highest); per scale-up
    group: its node ids' group, scale-out capacity out and in; the least message and call costs."""
    from topologies.model import PROTOCOLS, SCALE_OUT_KINDS
    from topologies.network import LinkParams

    key = ("_bound_tables", repr(sorted((model or {}).items())), protocol)
    hit = topology.__dict__.get(key)
    if hit is not None:
        return hit
    a = topology.arrays
    n = len(a.nodes)
    cap = LinkParams(topology, model, "simple").capacity_Bps
    cap_out = np.bincount(a.edge_src, cap, n)
    cap_in = np.bincount(a.edge_dst, cap, n)
    out_kind = np.array([k in SCALE_OUT_KINDS for k in a.link_kinds], bool)[a.edge_kind]
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in zip(a.edge_src[~out_kind].tolist(), a.edge_dst[~out_kind].tolist()):
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    roots = np.array([find(x) for x in range(n)])
    _, comp = np.unique(roots, return_inverse=True)
    nc = int(comp.max()) + 1
    leaving = comp[a.edge_src] != comp[a.edge_dst]
    comp_out = np.bincount(comp[a.edge_src][leaving], cap[leaving], nc)
    comp_in = np.bincount(comp[a.edge_dst][leaving], cap[leaving], nc)
    protos = PROTOCOLS if protocol == "auto" else (protocol,)
    links = [LinkParams(topology, model, p) for p in protos]
    msg_s = min(float(lk.msg_by_kind_s.min()) for lk in links) + float(a.lat_us.min(initial=0.0)) * 1e-6
    call_s = min(lk.call_s for lk in links)
    out = (cap_out, cap_in, comp, comp_out, comp_in, msg_s, call_s)
    topology.__dict__[key] = out
    return out


def _as_topology(topology):
    from topologies import Topology

    if isinstance(topology, str):
        from topologies.presets import preset
        return preset(topology)
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a topologies.Topology or a preset name, got {type(topology).__name__}")
    return topology


def _simulate_one(algorithm, given, *, spec, nbytes, topology, dtype, itemsize, root, model, protocol, failure,
                  jitter=None, seed=0, iters=20) -> SimResult:
    """Time one algorithm with parameters ``given`` completed by the tuned defaults."""
    collective = spec.name
    P = topology.num_devices
    count = spec.count_for_nbytes(nbytes, P, itemsize)
    params = {**default_params(collective, algorithm, topology, nbytes), **given}
    schedule = build_schedule(collective, algorithm, P, count, root, topology=topology, **params)
    protos = PROTOCOLS if protocol == "auto" else (protocol,)
    segments = []
    merge = not schedule.endpoints  # switches that take part are addressed by their own node ids
    if failure is not None:
        first, after = failure
        segments.append((first, after, [_timer(after, model, p, merge) for p in protos]))
    timed = _time_schedule(schedule, spec, topology, [_timer(topology, model, p, merge) for p in protos], itemsize,
                           keep_shapes=jitter is not None, segments=segments)
    best = min(range(len(protos)), key=lambda i: timed[i].total)  # ties keep the earlier regime (simple)
    proto, run = protos[best], timed[best]
    total = run.total
    samples = None
    if jitter is not None:
        from topologies import instability
        samples = instability.sample_totals(topology, run.shapes, run.call_s, total, jitter, seed, iters)
        total = float(np.median(samples))
    actual = spec.nbytes(P, count, itemsize)
    algbw = actual / total / 1e9 if total > 0 else 0.0
    busbw = algbw * spec.busbw_factor(P)
    peak = peak_bw_GBps(topology)
    return SimResult(collective, algorithm, topology.name, P, actual, count, dtype, total, algbw, busbw, peak,
                     busbw / peak if peak > 0 else math.nan, run.steps, run.link_bytes, topology.arrays.edges,
                     run.capacity_Bps, proto, samples, params, routing=topology.routing_text())


@dataclass
class _Run:
    """One regime's account of a schedule: total time, per-phase steps, bytes per link, and (for
    jitter) per timed step ``(repeat, StepDetail, reduce time, devices taking part)``."""

    call_s: float
    capacity_Bps: np.ndarray
    total: float = 0.0
    steps: list = field(default_factory=list)
    link_bytes: np.ndarray | None = None
    shapes: list = field(default_factory=list)


def _time_schedule(schedule, spec, topology, timers, itemsize, keep_shapes=False, segments=()) -> list[_Run]:
    """Time a schedule in each regime of ``timers`` (one pass over the steps: a step's routes are
    found once and serve every regime).

    ``segments``: ``[(first_step, topology_from_then_on, its timers), ...]`` in step order, for a
    system that changes during the call (a link that fails at step k); bytes on links of a later
    topology are counted on the same links of ``topology``.
    """
    reduce_Bps = _reduce_rates(topology)
    runs = [_Run(t.link.call_s, t.capacity_Bps, t.link.call_s, link_bytes=np.zeros(len(t.capacity_Bps)))
            for t in timers]
    if schedule.endpoints:
        reduce_Bps = np.concatenate([reduce_Bps, [topology.graph.nodes[n].get("reduce_bw_GBps", math.inf) * 1e9
                                                  for n in schedule.endpoints]])
    plan = [(0, topology, timers)] + list(segments)
    node_of = [_endpoint_nodes(t, schedule) for _, t, _ in plan]
    edge_map = [None] + [_edge_map(t, topology) for _, t, _ in plan[1:]]
    # Bytes per link of each segment's routing arrays (the same in every regime), spread on the
    # topology's own links once at the end.
    seg_bytes = [np.zeros(len(ts[0].solver.arrays.edge_kind)) for _, _, ts in plan]
    # Steps solved on a quotient (PatternDetail): their bytes per orbit of links, per segment and quotient.
    seg_orbits = [{} for _ in plan]
    if not keep_shapes:    # pairwise steps: their representatives routed in one pass
        patterns = [ph.pattern for ph in schedule.phases if getattr(ph, "pattern", None) is not None]
        if len(patterns) > 1:
            for _, _, seg_timers in plan:
                seg_timers[0].solver.prefetch(patterns)
    step = 0
    for phase, src, dst, nb, reduce, repeat, pattern in _timing(schedule, itemsize, not keep_shapes,
                                                                blocks=not keep_shapes and len(plan) == 1):
        if pattern is _BLOCK:
            _time_block(phase, src, dst, nb, reduce and spec.reduces, reduce_Bps, node_of[0], timers, runs,
                        seg_bytes[0])
            step += repeat
            continue
        if pattern is not None and reduce and spec.reduces:
            src, dst, nb, pattern = _materialise(src, nb)
        t_red = _reduce_time(dst, nb, reduce_Bps) if (reduce and spec.reduces) else 0.0
        devices = len(np.union1d(src, dst)) if keep_shapes else 0
        for i, (first, _, seg_timers) in enumerate(plan):
            end = plan[i + 1][0] if i + 1 < len(plan) else math.inf
            count = int(max(0, min(step + repeat, end) - max(step, first)))
            if count == 0:
                continue
            for r, (timer, run) in enumerate(zip(seg_timers, runs)):
                got = None if pattern is None else timer.time_pattern(pattern, nb)
                if got is None and pattern is not None:   # no symmetry to use: the step's own arrays
                    src, dst, nb, pattern = _materialise(src, nb)
                t_net, detail = timer.time(node_of[i][src], node_of[i][dst], nb) if got is None else got
                # Devices reduce while data streams in (as NCCL's kernels do): the slower sets the pace.
                t_step = max(t_net, t_red)
                _account(run, phase, t_step, count)
                if detail is not None and r == 0:  # the bytes on each link are the same in every regime
                    if isinstance(detail, PatternDetail):
                        q = detail.quotient
                        acc = seg_orbits[i].get(q.generators)
                        if acc is None:
                            acc = seg_orbits[i][q.generators] = [q, np.zeros(q.n_orbits)]
                        acc[1] += count * detail.orbit_bytes
                    else:
                        seg_bytes[i][detail.edge_ids] += count * detail.edge_bytes
                if keep_shapes:
                    run.shapes.append((count, detail, t_red, devices))
        step += repeat
    link_bytes = np.zeros(len(runs[0].capacity_Bps))
    for i, orbits in enumerate(seg_orbits):
        for q, per_orbit in orbits.values():   # every link of an orbit carries its share
            seg_bytes[i] += (per_orbit / q.orbit_size)[q.edge_orbit]
    for i, (_, _, ts) in enumerate(plan):
        per_edge = expand_edge_bytes(seg_bytes[i], ts[0].solver.arrays)
        if edge_map[i] is None:
            link_bytes += per_edge
        else:
            np.add.at(link_bytes, edge_map[i], per_edge)
    for run in runs:
        run.link_bytes = link_bytes
    return runs


def _timing(schedule, itemsize, patterns=True, blocks=False):
    """:meth:`Schedule.timing`'s items with a last field: a phase's symmetric pattern
    (:class:`topologies.symmetry.Circulant`, of a :class:`~collectives.algorithms.direct.PatternPhase`),
    a :data:`_BLOCK`, or None. A pattern phase of equal chunks is yielded unbuilt, as ``(name, phase,
    None, bytes of each transfer, reduce, repeat, pattern)``: :func:`_materialise` gives its arrays
    when needed. With ``blocks`` and chunks that differ, a phase of :data:`BLOCK_MIN_STEPS` steps or
    more comes a block of steps at a time, as ``(name, src, dst, bytes (steps x transfers), reduce,
    steps, _BLOCK)``."""
    phases = schedule.phases
    equal = bool(np.all(schedule.chunk_len == schedule.chunk_len[0])) if len(schedule.chunk_len) else True
    if blocks and not equal:
        chunk_bytes = schedule.chunk_len.astype(np.float64) * itemsize
        for ph in phases:
            # A short phase step by step; a longer one a block of steps (rows) at a time.
            per = 1 if ph.repeat < BLOCK_MIN_STEPS else max(1, BLOCK_ENTRIES // max(len(ph.src), 1))
            for k0 in range(0, ph.repeat, per):
                rows = np.stack([ph.chunks(k)[0] for k in range(k0, min(ph.repeat, k0 + per))])
                if per == 1:
                    yield ph.name, ph.src, ph.dst, chunk_bytes[rows[0]], ph.reduce, 1, None
                else:
                    yield ph.name, ph.src, ph.dst, chunk_bytes[rows], ph.reduce, len(rows), _BLOCK
        return
    if not (patterns and equal and any(getattr(ph, "pattern", None) is not None for ph in phases)):
        for item in schedule.timing(itemsize):
            yield item + (None,)
        return
    one = float(schedule.chunk_len[0] * itemsize) if len(schedule.chunk_len) else 0.0
    for ph in phases:     # as Schedule.timing does with equal chunks
        pattern = getattr(ph, "pattern", None)
        if pattern is not None:
            yield ph.name, ph, None, one, ph.reduce, ph.repeat, pattern
            continue
        src, dst, units = ph.pair_form()
        nb = np.full(len(src), one) if units is None else units * one
        yield ph.name, src, dst, nb, ph.reduce, ph.repeat, None


#: The marker of a block of steps in :func:`_timing`'s items.
_BLOCK = object()

#: A phase of this many steps or more, whose chunks differ, is timed a block of steps at a time
#: (:class:`topologies.network.StepShape`); a shorter one step by step, as the shape costs more to make.
BLOCK_MIN_STEPS = 4
#: Steps x transfers of one block (its bytes as float64: 16 MB).
BLOCK_ENTRIES = 1 << 21


def _time_block(phase, src, dst, nb, reduce, reduce_Bps, node_of, timers, runs, link_bytes) -> None:
    """Account a block of steps (rows of ``nb``) over the transfers ``src -> dst`` in every regime, as
    the step-by-step path of :func:`_time_schedule` does: the same step times, summed in step order."""
    solver = timers[0].solver
    s, d = node_of[src], node_of[dst]
    shape = solver.shape(s, d)
    if shape is None:   # staged transfers: step by step
        for row in nb:
            t_red = _reduce_time(dst, row, reduce_Bps) if reduce else 0.0
            for r, (timer, run) in enumerate(zip(timers, runs)):
                t_net, detail = timer.time(s, d, row)
                _account(run, phase, max(t_net, t_red))
                if detail is not None and r == 0:
                    link_bytes[detail.edge_ids] += detail.edge_bytes
        return
    scale, data_s, flow_bytes = solver.solve_block(shape, nb)
    t_red = np.array([_reduce_time(dst, row, reduce_Bps) for row in nb]) if reduce else np.zeros(len(nb))
    for timer, run in zip(timers, runs):
        for t_step in np.maximum(timer.time_block(shape, scale, data_s), t_red).tolist():
            _account(run, phase, t_step)
    if shape.routes is not None:
        ids, load = shape.edge_bytes(flow_bytes)
        link_bytes[ids] += load


def _account(run, phase, t_step, count=1) -> None:
    """``count`` steps of ``t_step`` seconds in ``run``: its total and its step list (runs of equal steps)."""
    run.total += t_step * count
    if run.steps and run.steps[-1]["phase"] == phase and run.steps[-1]["step_s"] == t_step:
        run.steps[-1]["repeat"] += count
    else:
        run.steps.append({"phase": phase, "repeat": count, "step_s": t_step})


def _materialise(phase, one):
    """``(src, dst, nbytes, None)`` of an unbuilt pattern phase whose transfers carry ``one`` bytes each."""
    return phase.src, phase.dst, np.full(len(phase.src), float(one)), None


def _edge_map(later, topology) -> np.ndarray:
    """Edge index in ``later`` -> the same link's index in ``topology`` (links named by their nodes)."""
    index = {e: i for i, e in enumerate(topology.arrays.edges)}
    try:
        return np.array([index[e] for e in later.arrays.edges], np.int64)
    except KeyError as exc:
        raise ValueError(f"the topology after the failure has link {exc.args[0]!r}, which "
                         f"{topology.name!r} does not: a failure may remove links, not add them") from None


def _check_failure(failure, topology):
    from topologies import Topology

    try:
        first, after = failure
    except (TypeError, ValueError):
        raise TypeError("failure must be (step, topology_after), e.g. (3, fail_link(topology, 0, 1))") from None
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
        raise ValueError(f"failure step {first!r}; expected an integer >= 0")
    if not isinstance(after, Topology):
        raise TypeError(f"failure topology must be a topologies.Topology, got {type(after).__name__}")
    if after.num_devices != topology.num_devices:
        raise ValueError(f"the topology after the failure has {after.num_devices} devices; expected "
                         f"{topology.num_devices}, as before")
    return int(first), after


def _endpoint_nodes(topology, schedule) -> np.ndarray:
    """Schedule endpoint index -> the topology's node index (devices are nodes 0..P-1)."""
    node_id = topology.arrays.node_id
    extra = []
    for n in schedule.endpoints:
        if n not in node_id:
            raise ValueError(f"schedule endpoint {n!r} is not a node of topology {topology.name!r}")
        extra.append(node_id[n])
    return np.concatenate([np.arange(schedule.P), np.array(extra, np.int64)]).astype(np.int64)


def peak_bw_GBps(topology) -> float:
    """Per-device injection bandwidth (line rate, GB/s) of the topology: the least over devices."""
    return topology.peak_bw_GBps()


def _timer(topology, model, protocol, merge_twins=True):
    """The topology's step timer of a regime, sharing one solver per model across regimes."""
    key = (repr(sorted((model or {}).items())), merge_twins)
    cache = topology.__dict__.setdefault("_step_timers", {})
    if (key, protocol) not in cache:
        if key not in cache:
            cache[key] = StepSolver(topology, model, merge_twins)
        cache[(key, protocol)] = StepTimer(cache[key], protocol)
    return cache[(key, protocol)]


def _reduce_rates(topology) -> np.ndarray:
    """Bytes/s of incoming data a device can reduce: a reduction reads two buffers and writes one."""
    cache = topology.__dict__.get("_reduce_Bps")
    if cache is None:
        g = topology.graph
        cache = np.array([g.nodes[n].get("mem_bw_GBps", math.inf) * 1e9 / 3 for n in topology.devices])
        topology.__dict__["_reduce_Bps"] = cache
    return cache


def _reduce_time(dst, nbytes, reduce_Bps) -> float:
    per_dev = np.bincount(dst, weights=nbytes, minlength=len(reduce_Bps))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = per_dev / reduce_Bps
    return float(np.nanmax(t)) if len(t) else 0.0

"""Public API: run a collective on real data (:func:`run`), or time it on a topology (:func:`simulate`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import dtypes, kernels, registry
from .executors import local
from .schedule import Schedule


def build_schedule(collective: str, algorithm: str, P: int, count: int, root: int = 0, topology=None,
                   **params) -> Schedule:
    """The schedule of ``algorithm`` for ``collective`` on ``P`` devices and ``count`` elements."""
    spec = registry.collective(collective)
    build = registry.builder(collective, algorithm)
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"device count P={P!r}; expected an integer >= 1")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count={count!r}; expected an integer >= 0")
    if not 0 <= root < P:
        raise ValueError(f"root={root!r}; expected a device index 0..{P - 1}")
    return build(spec, int(P), int(count), int(root), topology, **params)


def run(collective: str, data, algorithm: str = "ring", op: str = "sum", root: int = 0, dtype=None,
        **params) -> np.ndarray:
    """Run ``collective`` on real data with all devices in this process and return the result.

    Parameters
    ----------
    collective : str
        ``allreduce``, ``allgather``, ``reduce_scatter``, ``alltoall``, ``broadcast`` or ``reduce``.
    data : numpy.ndarray, shape (P, x)
        Row d is device d's input: allreduce, broadcast, reduce (P, n); allgather (P, m);
        reduce_scatter and alltoall (P, P*m). It is never modified.
    algorithm : str
        A name from ``collectives.algorithms(collective)``.
    op : str
        ``sum``, ``prod``, ``min``, ``max`` or ``avg`` (ignored by data-movement collectives).
    root : int
        Root device of broadcast and reduce.
    dtype : str, optional
        ``"bfloat16"`` to treat a uint16 array as bfloat16 bit patterns; otherwise ``data.dtype``.

    Returns
    -------
    numpy.ndarray
        allreduce, broadcast (P, n); allgather (P, P*m); reduce_scatter (P, m); alltoall (P, P*m);
        reduce (n,), the root's result. Equal to ``reference(collective, data, op, root)``.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> run("allreduce", data, algorithm="ring")
    array([[6., 9.],
           [6., 9.],
           [6., 9.]], dtype=float32)
    >>> run("allgather", data, algorithm="direct")[0]
    array([0., 1., 2., 3., 4., 5.], dtype=float32)
    """
    job = prepare(collective, data, algorithm, op, root, dtype, **params)
    buf = job.inputs.copy()
    local.execute(job.schedule, buf, job.op_code, job.fmt)
    return job.result(buf)


@dataclass
class Prepared:
    """A collective ready to execute: its schedule and the work buffers loaded with the input
    (one row per device, then one per extra endpoint). ``run`` is ``execute`` on a copy of
    ``inputs`` followed by ``result``; benchmarks reuse one of these across iterations."""

    spec: object
    schedule: Schedule
    inputs: np.ndarray
    op: str
    op_code: int
    fmt: int
    dtype: np.dtype

    def result(self, buf: np.ndarray) -> np.ndarray:
        s = self.schedule
        out = self.spec.extract(buf[:s.P], s.P, s.count, s.root)
        if self.spec.reduces and self.op == "avg":
            kernels.finish_avg(out, s.P, self.fmt)
        return out.view(self.dtype) if out.dtype != self.dtype else out


def prepare(collective: str, data, algorithm: str = "ring", op: str = "sum", root: int = 0, dtype=None,
            **params) -> Prepared:
    """Check the arguments, build the schedule and load the work buffers (see :func:`run`)."""
    spec = registry.collective(collective)
    registry.builder(collective, algorithm)
    dtypes.check_op(op, None)
    data, name = _check_data(data, dtype)
    P = data.shape[0]
    count = spec.count_from_shape(data.shape, P)
    schedule = build_schedule(collective, algorithm, P, count, root, **params)
    buf = spec.load(_as_storage(data, name), P, count, root)
    if schedule.endpoints:  # rows for switches that take part (in-network reduction)
        buf = np.concatenate([buf, np.zeros((len(schedule.endpoints), buf.shape[1]), buf.dtype)])
    opc = kernels.OP_CODES[op] if spec.reduces else kernels.SUM
    return Prepared(spec, schedule, buf, op, opc, dtypes.kernel_format(name), data.dtype)


def reference(collective: str, data, op: str = "sum", root: int = 0, dtype=None) -> np.ndarray:
    """The numpy result of ``collective`` on ``data`` (what :func:`run` must return)."""
    spec = registry.collective(collective)
    dtypes.check_op(op, None)
    data, name = _check_data(data, dtype)
    spec.count_from_shape(data.shape, data.shape[0])
    if name == "bfloat16" and spec.reduces:
        wide = (data.astype(np.uint32) << 16).view(np.float32)
        return kernels._bf16_bits(spec.reference(wide, op, root, reducer=_bf16_reduce))
    return spec.reference(data, op, root)


def _bf16_reduce(wide: np.ndarray, op: str) -> np.ndarray:
    """Reduce float32-widened bfloat16 rows in device order, rounding to bfloat16 after every step
    as the kernels do."""
    fn = {"sum": np.add, "avg": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}[op]
    acc = wide[0].copy()
    for row in wide[1:]:
        acc = (kernels._bf16_bits(fn(acc, row)).astype(np.uint32) << 16).view(np.float32)
    return acc / np.float32(wide.shape[0]) if op == "avg" else acc


def _check_data(data, dtype):
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy.ndarray of shape (devices, elements), got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"data has shape {data.shape}; expected (devices, elements) with at least one device")
    if dtype is not None and dtypes.canonical(dtype) == "bfloat16":
        if data.dtype != np.uint16:
            raise TypeError(f"bfloat16 data must be held as uint16 bit patterns, got {data.dtype}")
        return data, "bfloat16"
    name = dtypes.canonical(data.dtype)
    return data, name


def _as_storage(data, name):
    st = dtypes.storage(name)
    return data.view(st) if data.dtype != st else data


# -- time plane --------------------------------------------------------------------------------

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
        keys = ("collective", "algorithm", "topology", "P", "nbytes", "count", "dtype", "time_s", "algbw_GBps",
                "busbw_GBps", "peak_GBps", "bus_efficiency", "protocol", "steps")
        return {k: getattr(self, k) for k in keys}


def simulate(collective: str, nbytes: int, topology, algorithm: str = "ring", dtype="float32", op: str = "sum",
             root: int = 0, model: dict | None = None, protocol: str = "auto", jitter=None, seed: int = 0,
             iters: int = 20, **params) -> SimResult:
    """Emulated time of one collective call of ``nbytes`` (nccl-tests' size) on ``topology``.

    No data moves: the schedule's transfers go to the network model, so any device count works.
    ``nbytes`` is rounded down to whole elements per device as nccl-tests does; ``result.nbytes``
    is the size actually timed. ``protocol`` is the regime (``simple``, ``ll128``, ``ll``; see
    :mod:`topologies.model`); ``auto`` takes the fastest, as NCCL's tuner does.

    ``jitter`` (a profile name such as ``"noisy"``, or a dict; see :mod:`topologies.instability`)
    disturbs ``iters`` seeded calls: ``time_samples_s`` holds their times, ``time_stats()`` their
    min, median, p99 and max, and ``time_s`` (with algbw and busbw) is the median.

    Examples
    --------
    Ring allreduce of 8 MB on 4 devices in a ring of 10 GB/s links with 1 us latency:
    2(P-1) steps of (1 us + 2 MB / 10 GB/s) = 6 x 201 us.

    >>> from topologies import ring
    >>> r = simulate("allreduce", 8_000_000, ring(4, bw_GBps=10.0, lat_us=1.0))
    >>> round(r.time_s * 1e6, 6), round(r.busbw_GBps, 3)
    (1206.0, 9.95)
    """
    from topologies import Topology

    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a topologies.Topology, got {type(topology).__name__}")
    spec = registry.collective(collective)
    dtypes.check_op(op, dtype)
    name = dtypes.canonical(dtype)
    size = dtypes.itemsize(name)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(f"nbytes={nbytes!r}; expected an integer >= 0")
    if nbytes % size:
        raise ValueError(f"nbytes={nbytes} is not a multiple of the {name} element size ({size} bytes)")
    P = topology.num_devices
    count = spec.count_for_nbytes(int(nbytes), P, size)
    schedule = build_schedule(collective, algorithm, P, count, root, topology=topology, **params)
    from topologies.model import PROTOCOLS
    if protocol != "auto" and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected auto or one of {', '.join(PROTOCOLS)}")
    best = None
    for proto in (PROTOCOLS if protocol == "auto" else (protocol,)):
        timed = _time_schedule(schedule, spec, topology, _timer(topology, model, proto), size)
        if best is None or timed[0] < best[0]:  # ties keep the earlier regime (simple first)
            best = timed + (proto,)
    total, steps, link_bytes, capacity, shapes, proto = best
    samples = None
    if jitter is not None:
        from topologies import instability
        samples = instability.sample_totals(topology, shapes, _timer(topology, model, proto).link.call_s, jitter,
                                            seed, iters)
        total = float(np.median(samples))
    actual = spec.nbytes(P, count, size)
    algbw = actual / total / 1e9 if total > 0 else 0.0
    busbw = algbw * spec.busbw_factor(P)
    peak = peak_bw_GBps(topology)
    return SimResult(collective, algorithm, topology.name, P, actual, count, name, total, algbw, busbw, peak,
                     busbw / peak if peak > 0 else math.nan, steps, link_bytes, topology.arrays.edges,
                     capacity, proto, samples)


def _time_schedule(schedule, spec, topology, timer, itemsize):
    """(total seconds, per-phase steps, bytes per link, link capacities) of a schedule in one regime."""
    reduce_Bps = _reduce_rates(topology)
    total = timer.link.call_s
    steps = []
    shapes = []  # (repeat, StepDetail, reduce time, devices taking part) per timed step, for jitter
    link_bytes = np.zeros(len(timer.link.capacity_Bps))
    node_of = _endpoint_nodes(topology, schedule)
    if schedule.endpoints:
        reduce_Bps = np.concatenate([reduce_Bps, [topology.graph.nodes[n].get("reduce_bw_GBps", math.inf) * 1e9
                                                  for n in schedule.endpoints]])
    for phase, src, dst, nb, reduce, repeat in schedule.timing(itemsize):
        t_net, detail = timer.time(node_of[src], node_of[dst], nb)
        t_red = _reduce_time(dst, nb, reduce_Bps) if (reduce and spec.reduces) else 0.0
        # Devices reduce while data streams in (as NCCL's kernels do): the slower of the two sets the pace.
        t_step = max(t_net, t_red)
        total += t_step * repeat
        if detail is not None:
            link_bytes += repeat * detail.link_bytes(len(link_bytes))
        shapes.append((repeat, detail, t_red, len(np.union1d(src, dst))))
        if steps and steps[-1]["phase"] == phase and steps[-1]["step_s"] == t_step:
            steps[-1]["repeat"] += repeat
        else:
            steps.append({"phase": phase, "repeat": repeat, "step_s": t_step})
    return total, steps, link_bytes, timer.link.capacity_Bps, shapes


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
    fn = getattr(topology, "peak_bw_GBps", None)
    if fn is not None:
        return fn()
    return min(topology.injection_bw_GBps(i) for i in range(topology.num_devices))


def _timer(topology, model, protocol):
    from topologies.network import StepTimer
    key = (repr(sorted((model or {}).items())), protocol)
    cache = topology.__dict__.setdefault("_step_timers", {})
    if key not in cache:
        cache[key] = StepTimer(topology, model, protocol)
    return cache[key]


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

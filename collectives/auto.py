"""Algorithm auto-selection: the algorithm *and parameters* with the least emulated time, as NCCL's
tuner picks (and HCCL's algorithm selection), found by timing the candidates on the network model.

Candidates (:func:`candidates`): every registered algorithm with its default parameters
(:func:`~collectives.algorithms.params.default_params`), plus a few channel counts for the
algorithms that take ``channels``, a quarter and four times the default pipeline depth for the
pipelined ones, and the ``intra`` / ``inter`` combinations of ``hierarchical``. Algorithms that cannot
run on the topology (:class:`~collectives.registry.AlgorithmUnavailable`) are skipped.

On large systems (more than :data:`LARGE_P` devices) the candidates whose schedules have about P^2
transfers in each of many steps (which take seconds each to time here) are left out: see
:data:`LARGE_P_ALGORITHMS`; :func:`rank` reports them as skipped.

>>> from topologies import full_mesh
>>> choose("allgather", 1 << 20, full_mesh(8, bw_GBps=28.0))
'direct'
>>> r = choose_result("allreduce", 1 << 28, full_mesh(8, bw_GBps=28.0))
>>> r.algorithm, r.params
('direct', {})
"""

from __future__ import annotations

from dataclasses import dataclass

from . import registry
from .algorithms.params import MAX_CHUNKS, default_params, is_full_mesh, pipeline_chunks
from .algorithms.pipeline import coprime_strides
from .registry import AlgorithmUnavailable

#: Channel counts tried go up to this.
MAX_CHANNELS = 8
#: Above this many devices only :data:`LARGE_P_ALGORITHMS` are timed.
LARGE_P = 64
#: Algorithms timed on large systems: their schedules have few transfers per step or few distinct
#: steps. Left out there: ``pairwise`` (P-1 distinct all-device steps), ``bruck`` (log P steps of
#: up to P^2/2 transfers) and ``direct`` reduce-scatter.
LARGE_P_ALGORITHMS = {
    "allreduce": ("direct", "halving_doubling", "hierarchical", "in_network", "recursive_doubling", "ring", "tree"),
    "allgather": ("direct", "hierarchical", "recursive_doubling", "ring"),
    "reduce_scatter": ("hierarchical", "recursive_halving", "ring"),
    "alltoall": ("direct", "hierarchical"),
    "broadcast": ("binomial", "ring"),
    "reduce": ("binomial", "ring"),
}
#: On large systems, schedules with more transfers than this (see :func:`timed_flows`) are not
#: timed either.
MAX_FLOWS = 400_000
#: ``intra`` x ``inter`` combinations of ``hierarchical`` tried.
HIERARCHICAL_CHOICES = {
    "allreduce": [("direct", "ring"), ("direct", "halving_doubling"), ("direct", "direct"), ("ring", "ring")],
    "allgather": [("direct", "ring"), ("direct", "halving_doubling"), ("direct", "direct"), ("ring", "ring")],
    "reduce_scatter": [("direct", "ring"), ("direct", "halving_doubling"), ("direct", "direct"), ("ring", "ring")],
}


@dataclass
class Trial:
    """One candidate: its algorithm and parameters, and its result or why it was not timed."""

    algorithm: str
    params: dict
    result: object = None       # SimResult
    skipped: str | None = None  # reason, when not timed


def candidates(collective: str, topology=None, nbytes: int | None = None) -> list[tuple[str, dict]]:
    """``(algorithm, params)`` pairs auto tries for one call (all algorithms, default params, if no topology)."""
    out = []
    for name in registry.list_algorithms(collective):
        for params in _variants(collective, name, topology, nbytes):
            if (name, params) not in out:
                out.append((name, params))
    return out


def _variants(collective, name, topology, nbytes):
    base = default_params(collective, name, topology, nbytes)
    yield base
    if topology is None:
        return
    P = topology.num_devices
    if "channels" in base:
        # Channel c is the ring of stride s_c: on a full mesh each stride has links of its own (up
        # to the coprime strides, and MAX_CHANNELS); elsewhere only the two directions of the index
        # ring (1 and P-1) can differ, so more channels only cost time to simulate.
        limit = min(len(coprime_strides(P)), MAX_CHANNELS) if is_full_mesh(topology) else min(2, P - 1)
        for c in sorted({1, 2, 4, limit}):
            if c <= limit and c != base["channels"]:
                v = dict(base, channels=c)
                if "chunks" in base:    # pipelines re-tune their depth for the smaller share per channel
                    v["chunks"] = pipeline_chunks(collective, name, topology, nbytes, c)
                yield v
    if "chunks" in base and (name != "ring" or collective in ("broadcast", "reduce")):
        for f in (0.25, 4.0):
            c = max(1, min(4 * MAX_CHUNKS, round(base["chunks"] * f)))
            if c != base["chunks"]:
                yield dict(base, chunks=c)
    if "intra" in base:
        for intra, inter in HIERARCHICAL_CHOICES.get(collective, []):
            yield dict(base, intra=intra, inter=inter)


def rank(collective: str, nbytes: int, topology, dtype="float32", op="sum", root: int = 0, model=None,
         protocol: str = "auto", algorithms=None) -> list[Trial]:
    """Every candidate timed (or the reason it was not), fastest first; skipped ones last.

    ``algorithms`` restricts the candidates to those names.
    """
    from .api import build_schedule, simulate

    registry.collective(collective)
    large = topology.num_devices > LARGE_P
    keep = LARGE_P_ALGORITHMS.get(collective, ()) if large else None
    trials = []
    for name, params in candidates(collective, topology, nbytes):
        if algorithms is not None and name not in algorithms:
            continue
        if keep is not None and name not in keep:
            trials.append(Trial(name, params, skipped=f"not timed on more than {LARGE_P} devices "
                                                      "(schedule too large to time quickly)"))
            continue
        try:
            if large:
                flows = timed_flows(build_schedule(collective, name, topology.num_devices,
                                                   _count(collective, nbytes, topology, dtype), root,
                                                   topology=topology, **params))
                if flows > MAX_FLOWS:
                    trials.append(Trial(name, params, skipped=f"{flows} transfers to time (more than {MAX_FLOWS})"))
                    continue
            res = simulate(collective, nbytes, topology, algorithm=name, dtype=dtype, op=op, root=root,
                           model=model, protocol=protocol, **params)
        except AlgorithmUnavailable as exc:
            trials.append(Trial(name, params, skipped=str(exc)))
            continue
        trials.append(Trial(name, res.params, res))
    timed = sorted((t for t in trials if t.result is not None), key=lambda t: t.result.time_s)  # stable: ties
    return timed + [t for t in trials if t.result is None]                                    # keep name order


def timed_flows(schedule) -> int:
    """Transfers between different endpoints summed over the schedule's phases (each phase once,
    whatever its repeat count): a measure of the time the network model takes to time it."""
    return int(sum(int((ph.src != ph.dst).sum()) for ph in schedule.phases))


def _count(collective, nbytes, topology, dtype):
    from . import dtypes
    return registry.collective(collective).count_for_nbytes(int(nbytes), topology.num_devices,
                                                            dtypes.itemsize(dtypes.canonical(dtype)))


def choose(collective: str, nbytes: int, topology, dtype="float32", op="sum", root: int = 0, model=None) -> str:
    """Name of the fastest algorithm for one call; algorithms that cannot run here are skipped."""
    return choose_result(collective, nbytes, topology, dtype, op, root, model).algorithm


def choose_result(collective, nbytes, topology, dtype="float32", op="sum", root=0, model=None, protocol="auto",
                  algorithms=None):
    """The :class:`~collectives.api.SimResult` of the fastest (algorithm, parameters) candidate.

    ``result.algorithm`` names the algorithm and ``result.params`` its parameters. Ties go to the
    first candidate (algorithms in name order, default parameters first).

    Raises
    ------
    AlgorithmUnavailable
        (a ``ValueError``) When no candidate can run on the topology; the message gives every reason.
    """
    trials = rank(collective, nbytes, topology, dtype, op, root, model, protocol, algorithms)
    if not trials or trials[0].result is None:
        reasons = "; ".join(f"{t.algorithm}: {t.skipped}" for t in trials) or "no candidate"
        raise AlgorithmUnavailable(f"no {collective} algorithm can run on {topology.name!r}: {reasons}")
    return trials[0].result

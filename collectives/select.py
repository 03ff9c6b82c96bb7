"""Choosing the algorithm of a call: ``best`` times every candidate on the network model.

Candidates (:func:`candidates`): every registered algorithm of the collective with its tuned
parameters (:func:`collectives.tuning.default_params`), plus a few channel counts for the
algorithms that take ``channels``, a quarter and four times the tuned depth for pipelined ones, and
the extra parameter sets an algorithm declares (``variants``, e.g. ``hierarchical``'s
``intra`` / ``inter`` pairs). Algorithms that cannot run on the topology
(:class:`~collectives.registry.AlgorithmUnavailable`) are skipped with the reason.

Candidates are timed in order of a closed-form lower bound of their time
(:func:`collectives.timing.lower_bound`: per step, the bytes each device, and each group of
devices joined by scale-up links, must send and receive over the capacity it has), and one whose
bound is above the fastest time found is pruned, so every candidate is either timed or proven
slower. Without a bound, on large systems (more than :data:`LARGE_P` devices) only algorithms
that declare themselves ``large_scale`` are timed, and none whose schedule has more than
:data:`MAX_FLOWS` transfers. :func:`collectives.simulate` with ``algorithm="best"`` (and ``"auto"``
under the ``ideal`` library) takes the fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import registry
from .algorithms.pipeline import coprime_strides
from .registry import AlgorithmUnavailable
from .tuning import MAX_CHUNKS, default_params, is_full_mesh, pipeline_chunks

#: Channel counts tried go up to this.
MAX_CHANNELS = 8
#: Above this many devices only algorithms declared ``large_scale`` are timed.
LARGE_P = 64
#: On large systems, schedules with more transfers than this (see :func:`timed_flows`) are not timed.
MAX_FLOWS = 400_000


@dataclass
class Trial:
    """One candidate: its algorithm and parameters, and its result or why it was not timed."""

    algorithm: str
    params: dict
    result: object = None       # SimResult
    skipped: str | None = None  # reason, when not timed


def candidates(collective: str, topology, nbytes: int | None = None, given: dict | None = None
               ) -> list[tuple[str, dict]]:
    """``(algorithm, params)`` pairs ``best`` tries for one call.

    ``given`` parameters are imposed on every candidate; algorithms that do not take all of them
    are left out.

    >>> from topologies import full_mesh
    >>> [a for a, p in candidates("alltoall", full_mesh(4))]
    ['bruck', 'direct', 'hierarchical', 'pairwise']
    >>> candidates("allreduce", full_mesh(4), given={"chunks": 2})[:2]
    [('in_network', {'chunks': 2}), ('ring', {'channels': 6, 'chunks': 2, 'orders': 'mesh'})]
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    out = []
    for name in registry.list_algorithms(collective):
        alg = registry.info(collective, name)
        if not set(given) <= set(alg.params):
            continue
        for params in _variants(alg, topology, nbytes):
            params = {**params, **given}
            if (name, params) not in out:
                out.append((name, params))
    return out


def _variants(alg, topology, nbytes):
    base = default_params(alg.collective, alg.name, topology, nbytes)
    yield base
    P = topology.num_devices
    if "channels" in base:
        # Channel c is the ring of stride s_c: on a full mesh each stride has links of its own (up
        # to the coprime strides, and MAX_CHANNELS); elsewhere only the two directions of the index
        # ring (1 and P-1) can differ, so more channels only cost time to simulate. (A full mesh's
        # default is its mesh rings, which use every link; these are the stride rings beside them.)
        limit = min(len(coprime_strides(P)), MAX_CHANNELS) if is_full_mesh(topology) else min(2, P - 1)
        strides = {"orders": "strides"} if "orders" in base else {}
        for c in sorted({1, 2, 4, limit}):
            if c <= limit and (c != base["channels"] or base.get("orders", "strides") != "strides"):
                v = dict(base, channels=c, **strides)
                if alg.pipelined:    # pipelines re-tune their depth for the smaller share per channel
                    v["chunks"] = pipeline_chunks(alg, topology, nbytes, c)
                yield v
    if alg.pipelined and "chunks" in base:
        for f in (0.25, 4.0):
            c = max(1, min(4 * MAX_CHUNKS, round(base["chunks"] * f)))
            if c != base["chunks"]:
                yield dict(base, chunks=c)
    if alg.variants is not None:
        for extra in alg.variants(topology):
            yield dict(base, **extra)


def rank(collective: str, nbytes: int, topology, timer, given: dict | None = None, itemsize: int = 4,
         bound=None) -> list[Trial]:
    """Every candidate timed by ``timer(algorithm, params)`` (or the reason it was not), fastest
    first, then the others. Ties keep candidate order (algorithms by name, defaults first).

    ``bound(algorithm, params, stop_above=None)``, optional, gives ``(lower bound of a candidate's
    time, complete)``: candidates are then timed in order of their bounds, and one whose bound is
    above the fastest time found so far is not timed (it cannot win; it is reported as pruned, with
    both figures). Candidates whose bound is not complete (a partial sum, cheap on huge schedules)
    come after the others, and their bound is refined with ``stop_above`` = the fastest time found
    before they are timed.
    """
    spec = registry.collective(collective)
    large = topology.num_devices > LARGE_P
    order = []
    trials = {}
    for i, (name, params) in enumerate(candidates(collective, topology, nbytes, given)):
        try:
            lb, complete = bound(name, params) if bound is not None else (0.0, True)
        except AlgorithmUnavailable as exc:
            trials[i] = Trial(name, params, skipped=str(exc))
            continue
        order.append((lb, i, name, params, complete))
    best = float("inf")
    # Complete bounds first: a partial one is small for being partial, not for its candidate being fast.
    for lb, i, name, params, complete in sorted(order, key=lambda x: (not x[4], x[0], x[1])):
        if not complete and lb <= best < float("inf"):
            lb, _ = bound(name, params, stop_above=best)
        if lb > best:
            trials[i] = Trial(name, params, skipped=f"pruned: its lower bound {lb * 1e6:.3f} us is above the fastest "
                                                    f"time found, {best * 1e6:.3f} us")
            continue
        if large and bound is None and not registry.info(collective, name).large_scale:
            trials[i] = Trial(name, params, skipped=f"not timed on more than {LARGE_P} devices "
                                                    "(schedule too large to time quickly)")
            continue
        try:
            if large and bound is None:
                count = spec.count_for_nbytes(int(nbytes), topology.num_devices, itemsize)
                flows = timed_flows(registry.build_schedule(collective, name, topology.num_devices, count,
                                                            topology=topology, **params))
                if flows > MAX_FLOWS:
                    trials[i] = Trial(name, params, skipped=f"{flows} transfers to time (more than {MAX_FLOWS})")
                    continue
            res = timer(name, params)
        except AlgorithmUnavailable as exc:
            trials[i] = Trial(name, params, skipped=str(exc))
            continue
        trials[i] = Trial(name, res.params, res)
        best = min(best, res.time_s)
    ordered = [trials[i] for i in sorted(trials)]
    timed = sorted((t for t in ordered if t.result is not None), key=lambda t: t.result.time_s)
    return timed + [t for t in ordered if t.result is None]


def timed_flows(schedule) -> int:
    """Transfers between different endpoints summed over the schedule's phases (each phase once,
    whatever its repeat count): a measure of the time the network model takes to time it."""
    return int(sum(int(np.count_nonzero(src != dst)) for src, dst, _ in (ph.pair_form() for ph in schedule.phases)))


def unavailable(collective: str, topology, trials) -> AlgorithmUnavailable:
    reasons = "; ".join(f"{t.algorithm}: {t.skipped}" for t in trials) or "no candidate"
    return AlgorithmUnavailable(f"no {collective} algorithm can run on {topology.name!r}: {reasons}")

"""Algorithm auto-selection: the registered algorithm with the least emulated time, as NCCL's tuner picks.

>>> from topologies import full_mesh
>>> choose("allgather", 1 << 20, full_mesh(8, bw_GBps=28.0))
'direct'
"""

from __future__ import annotations

from . import registry
from .registry import AlgorithmUnavailable


def candidates(collective: str) -> list[str]:
    return registry.list_algorithms(collective)


def choose(collective: str, nbytes: int, topology, dtype="float32", op="sum", root: int = 0, model=None) -> str:
    """Name of the fastest algorithm for one call; algorithms that cannot run here are skipped."""
    return choose_result(collective, nbytes, topology, dtype, op, root, model).algorithm


def choose_result(collective, nbytes, topology, dtype="float32", op="sum", root=0, model=None):
    """The :class:`~collectives.api.SimResult` of the fastest algorithm (ties go to the first name)."""
    from .api import simulate

    best = None
    reasons = []
    for name in candidates(collective):
        try:
            res = simulate(collective, nbytes, topology, algorithm=name, dtype=dtype, op=op, root=root, model=model)
        except AlgorithmUnavailable as exc:
            reasons.append(f"{name}: {exc}")
            continue
        if best is None or res.time_s < best.time_s:
            best = res
    if best is None:
        raise ValueError(f"no {collective} algorithm can run on {topology.name!r}: " + "; ".join(reasons))
    return best

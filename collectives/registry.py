"""The one registry: collectives by name, algorithms by (collective, name).

Unknown names raise ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

import numpy as np

from .allgather import AllGather
from .allreduce import AllReduce
from .alltoall import AllToAll
from .broadcast import Broadcast
from .reduce import Reduce
from .reduce_scatter import ReduceScatter
from .schedule import Schedule

COLLECTIVES = {c.name: c for c in (AllReduce(), AllGather(), ReduceScatter(), AllToAll(), Broadcast(), Reduce())}
# (collective, algorithm) -> builder(spec, P, count, root, topology, **params) -> Schedule
ALGORITHMS: dict[tuple[str, str], callable] = {}


class AlgorithmUnavailable(ValueError):
    """The algorithm cannot run on this topology or device count (the message says why)."""


def algorithm(collective: str, name: str):
    """Decorator registering a schedule builder under ``(collective, name)``."""
    def deco(fn):
        if (collective, name) in ALGORITHMS:
            raise RuntimeError(f"algorithm {collective}/{name} registered twice")
        ALGORITHMS[(collective, name)] = fn
        return fn
    return deco


def collective(name: str):
    spec = COLLECTIVES.get(name)
    if spec is None:
        raise ValueError(f"unknown collective {name!r}; expected one of {', '.join(COLLECTIVES)}")
    return spec


_spec = collective  # for functions whose parameter is named ``collective``


def list_algorithms(collective_name: str) -> list[str]:
    """Names of the algorithms registered for a collective.

    >>> list_algorithms("alltoall")
    ['bruck', 'direct', 'hierarchical', 'pairwise']
    """
    collective(collective_name)
    return sorted(a for c, a in ALGORITHMS if c == collective_name)


def builder(collective_name: str, name: str):
    valid = list_algorithms(collective_name)
    if name not in valid:
        raise ValueError(f"unknown algorithm {name!r} for {collective_name}; expected one of {', '.join(valid)}")
    return ALGORITHMS[(collective_name, name)]


def build_schedule(collective: str, algorithm: str, P: int, count: int, root: int = 0, topology=None,
                   **params) -> Schedule:
    """The schedule of ``algorithm`` for ``collective`` on ``P`` devices and ``count`` elements."""
    spec = _spec(collective)
    build = builder(collective, algorithm)
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"device count P={P!r}; expected an integer >= 1")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count={count!r}; expected an integer >= 0")
    if not 0 <= root < P:
        raise ValueError(f"root={root!r}; expected a device index 0..{P - 1}")
    return build(spec, int(P), int(count), int(root), topology, **params)


# Importing the algorithm modules registers them (plain Python: nothing compiles).
from .algorithms import bruck, direct, halving_doubling, hierarchical, in_network, ring, tree  # noqa: E402,F401

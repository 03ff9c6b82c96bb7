"""The registries: collectives by name, algorithms by ``(collective, name)``.

Each entry declares its properties, and everything else reads them: the CLI's commands and
choices, ``best``'s candidates, the time plane's parameter tuning, the executors and the tests.
Adding an algorithm touches its module (one :func:`algorithm` decorator) and its test; adding a
collective touches its spec (one :func:`register_collective` call), its algorithms and their tests.
Unknown names raise ``ValueError`` listing the valid ones.

Plain Python: importing this module (or any algorithm module) loads neither numba nor the network
model.

>>> list_algorithms("alltoall")
['bruck', 'direct', 'hierarchical', 'pairwise']
>>> info("allreduce", "ring").params
{'channels': 1, 'chunks': 1, 'orders': 'strides'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .schedule import Schedule

COLLECTIVES: dict = {}
ALGORITHMS: dict = {}


class AlgorithmUnavailable(ValueError):
    """The algorithm cannot run on this topology or device count (the message says why)."""


@dataclass(frozen=True)
class Algorithm:
    """What an algorithm declares about itself.

    ``params`` maps each parameter to the value a schedule is built with when the caller gives none
    and nothing tunes it (the data plane without a topology); ``None`` lets the builder derive it.
    The time plane (:mod:`collectives.tuning`) tunes ``channels`` and ``chunks`` from the properties
    below before it builds the schedule.
    """

    collective: str
    name: str
    build: Callable
    params: dict = field(default_factory=dict)
    #: ``"strides"``: one channel per ring stride coprime with P on a full mesh (disjoint links).
    channels: str | None = None
    #: For pipelined algorithms, ``(P, channels) -> (depth, bytes share, rate, rate share)``: a chunk
    #: crosses ``depth`` steps after the first; each pipeline carries ``bytes share`` of the call at
    #: ``rate share`` of the ``"pair"`` (one device to its peer) or ``"inject"`` (a device's links)
    #: rate. The tuner sizes ``chunks`` from it.
    pipeline: Callable | None = None
    #: Cheap to time on large systems (few transfers per step or few distinct steps).
    large_scale: bool = False
    #: May run as a sub-collective of ``hierarchical``, under this name (default: its own).
    sub_name: str | None = None
    #: ``topology -> [param dict, ...]``: extra parameter sets ``best`` tries besides the tuned defaults.
    variants: Callable | None = None

    @property
    def pipelined(self) -> bool:
        return self.pipeline is not None


def algorithm(collective: str, name: str, *, params=None, channels=None, pipeline=None, large_scale=False,
              sub_name=None, variants=None):
    """Decorator registering a schedule builder ``build(spec, P, count, root, topology, **params)``."""
    def deco(fn):
        if (collective, name) in ALGORITHMS:
            raise RuntimeError(f"algorithm {collective}/{name} registered twice")
        ALGORITHMS[(collective, name)] = Algorithm(collective, name, fn, dict(params or {}), channels, pipeline,
                                                   large_scale, sub_name, variants)
        return fn
    return deco


def register_collective(spec):
    """Register a collective spec (a :class:`~collectives.collective.Collective`) under ``spec.name``."""
    if not spec.name or spec.name in COLLECTIVES:
        raise RuntimeError(f"collective {spec.name!r} registered twice or without a name")
    COLLECTIVES[spec.name] = spec
    return spec


def unregister(collective: str, name: str | None = None) -> None:
    """Remove an algorithm, or a collective with all its algorithms (for tests and plug-ins)."""
    if name is not None:
        ALGORITHMS.pop((collective, name), None)
        return
    COLLECTIVES.pop(collective, None)
    for key in [k for k in ALGORITHMS if k[0] == collective]:
        del ALGORITHMS[key]


def collective(name: str):
    """The spec of collective ``name``."""
    spec = COLLECTIVES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown collective {name!r}; expected one of {', '.join(COLLECTIVES)}")
    return spec


_spec = collective  # for functions whose parameter is named ``collective``


def list_collectives() -> list[str]:
    return list(COLLECTIVES)


def list_algorithms(collective_name: str) -> list[str]:
    """Names of the algorithms registered for a collective, sorted."""
    collective(collective_name)
    return sorted(a for c, a in ALGORITHMS if c == collective_name)


def info(collective_name: str, name: str) -> Algorithm:
    """The declared :class:`Algorithm` of ``name`` for ``collective_name``."""
    valid = list_algorithms(collective_name)
    if name not in valid:
        raise ValueError(f"unknown algorithm {name!r} for {collective_name}; expected one of {', '.join(valid)}")
    return ALGORITHMS[(collective_name, name)]


def builder(collective_name: str, name: str):
    return info(collective_name, name).build


def resolve_params(collective_name: str, name: str, given: dict) -> dict:
    """``given`` completed with the declared defaults; unknown parameter names raise ``ValueError``.

    >>> resolve_params("broadcast", "ring", {"chunks": 8})
    {'channels': 1, 'chunks': 8}
    """
    declared = info(collective_name, name).params
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = f"takes {', '.join(declared)}" if declared else "takes no parameters"
        raise ValueError(f"{collective_name}/{name} has no parameter {unknown[0]!r}; it {takes}")
    return {k: (given[k] if given.get(k) is not None else v) for k, v in declared.items()}


def sub_algorithms(collective_name: str) -> dict[str, str]:
    """``{name as hierarchical's intra/inter: algorithm}`` of the algorithms that may be sub-collectives."""
    return {a.sub_name: a.name for (c, _), a in sorted(ALGORITHMS.items()) if c == collective_name and a.sub_name}


def build_schedule(collective: str, algorithm: str, P: int, count: int, root: int = 0, topology=None,
                   **params) -> Schedule:
    """The schedule of ``algorithm`` for ``collective`` on ``P`` devices and ``count`` elements.

    Parameters not given take the algorithm's declared defaults (:func:`resolve_params`); the time
    plane tunes them for a topology first (:func:`collectives.tuning.default_params`).
    """
    spec = _spec(collective)
    build = builder(collective, algorithm)
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"device count P={P!r}; expected an integer >= 1")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count={count!r}; expected an integer >= 0")
    check_root(root, P)
    spec.check_devices(int(P))
    schedule = build(spec, int(P), int(count), int(root), topology, **params)
    if topology is not None and topology.graph.graph.get("lost_links"):
        _check_lost_links(topology, schedule, collective, algorithm)
    return schedule


def _check_lost_links(topology, schedule, collective, algorithm):
    """A schedule that needs a device pair whose link a what-if removed, on a topology whose library does
    not reroute (``topologies.whatif.fail_link(..., on_lost=...)``): unavailable (``"ring"``: the library
    falls back to a ring that avoids the pair) or an error (``"fail"``)."""
    from topologies.whatif import LostLinkError, lost_link_use

    hit = lost_link_use(topology, schedule)
    if hit is None:
        return
    i, j, policy, phase = hit
    what = (f"{collective}/{algorithm} sends between devices {i} and {j} (phase {phase!r}), whose link a what-if "
            f"removed from {topology.name!r}")
    if policy == "ring":
        raise AlgorithmUnavailable(f"{what}; with on_lost='ring' the library falls back to a ring that avoids it: "
                                   "use algorithm='ring' or 'best'")
    raise LostLinkError(f"{what}; with on_lost='fail' the library stops with an error (fail_link(..., "
                        "on_lost='host') reroutes through the host instead)")


def check_root(root, P: int) -> int:
    """``root`` if it is an integer device index below ``P``; ``TypeError``/``ValueError`` otherwise."""
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
        raise TypeError(f"root={root!r}; expected an integer device index 0..{P - 1}")
    if not 0 <= root < P:
        raise ValueError(f"root={root!r}; expected a device index 0..{P - 1}")
    return int(root)


# Importing the spec and algorithm modules registers them (plain Python: nothing compiles).
# Collectives in nccl-tests' order (the order CLIs list them in).
from . import allreduce  # noqa: E402,F401,I001
from . import allgather, reduce_scatter, alltoall, alltoallv, broadcast, reduce  # noqa: E402,F401
from . import gather, scatter, sendrecv, hypercube  # noqa: E402,F401
from .algorithms import bruck, direct, halving_doubling, hierarchical, in_network, ring, tree  # noqa: E402,F401

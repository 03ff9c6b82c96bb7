"""A new collective and a new algorithm, defined outside the project's own modules.

The architecture test registers them and checks that the CLI, ``best``'s candidates, the local and
the MPI executors all pick them up with no other file touched (the registries are the only place
that lists collectives and algorithms). Registration is explicit (:func:`register`), so importing
this module changes nothing for other tests.
"""

from __future__ import annotations

from collectives import registry
from collectives.broadcast import Broadcast
from collectives.schedule import Phase, Schedule, fixed, split

COLLECTIVE = "dummy_copy"
ALGORITHM = "gather_then_copy"


class DummyCopy(Broadcast):
    """Every device ends with the root's buffer (a broadcast under another name)."""

    name = COLLECTIVE
    perf_name = "dummy_copy_perf"


def star(spec, P, count, root=0, topology=None, **params):
    """One step: the root copies its whole buffer to every other device."""
    registry.resolve_params(spec.name, "star", params)
    off, ln = split(count, 1)
    others = [d for d in range(P) if d != root]
    phases = [Phase("send", [root] * len(others), others, fixed([0] * len(others)))] if others else []
    return Schedule(spec.name, "star", P, count, count, off, ln, phases, root)


def gather_then_copy(spec, P, count, root=0, topology=None, **params):
    """allreduce in two steps: every other device reduces its buffer into device 0, which copies
    the result back to all of them."""
    registry.resolve_params(spec.name, ALGORITHM, params)
    off, ln = split(count, 1)
    others = list(range(1, P))
    zero = fixed([0] * len(others))
    phases = [Phase("gather", others, [0] * len(others), zero, reduce=True),
              Phase("copy", [0] * len(others), others, zero)] if others else []
    return Schedule(spec.name, ALGORITHM, P, count, count, off, ln, phases, root)


def register() -> None:
    registry.register_collective(DummyCopy())
    registry.algorithm(COLLECTIVE, "star", large_scale=True)(star)
    registry.algorithm("allreduce", ALGORITHM, large_scale=True)(gather_then_copy)


def unregister() -> None:
    registry.unregister(COLLECTIVE)
    registry.unregister("allreduce", ALGORITHM)

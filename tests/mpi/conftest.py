"""Fixtures of the MPI tests: the world communicator, and a failure on one rank ends every rank.

The tests here run in-process on one rank (plain ``pytest``) and under ``mpiexec -n 2`` / ``-n 3``
(``tests/test_mpi_launch.py``). Every test body works for any world size: each rank builds the same
full input, runs its part, and checks its own rows.

With several ranks, a test that fails on one rank only would leave the others waiting in the next
collective; the hook below prints the failure as ``rank R: ...`` and aborts the job instead.
"""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from collectives import registry
from collectives.executors.mpi import MPI
from collectives.schedule import Phase, Schedule, fixed, split

NAIVE = "naive-test"


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    world = MPI.COMM_WORLD
    if report.failed and world.Get_size() > 1:
        print(f"\nrank {world.Get_rank()}: {item.nodeid} failed ({report.when}):\n{report.longreprtext}",
              file=sys.stderr, flush=True)
        world.Abort(1)
        os._exit(1)  # MPICH's Abort may return before the launcher's kill arrives


def naive_broadcast(spec, P, count, root=0, topology=None):
    """One step: the root copies its whole buffer to every other device."""
    off, ln = split(count, 1)
    others = [d for d in range(P) if d != root]
    zero = [0] * len(others)
    phases = [Phase("send", [root] * len(others), others, fixed(zero))] if others else []
    return Schedule(spec.name, NAIVE, P, count, count, off, ln, phases, root)


def naive_reduce(spec, P, count, root=0, topology=None):
    """One step: every other device reduces its whole buffer into the root, highest device first
    (several reductions into one chunk in one step: their order decides the float bits)."""
    off, ln = split(count, 1)
    others = [d for d in reversed(range(P)) if d != root]
    zero = [0] * len(others)
    phases = [Phase("reduce", others, [root] * len(others), fixed(zero), reduce=True)] if others else []
    return Schedule(spec.name, NAIVE, P, count, count, off, ln, phases, root)


@contextlib.contextmanager
def rooted_algorithms():
    """Register test-only broadcast/reduce schedules while the block runs (none ship yet)."""
    added = []
    for name, fn in (("broadcast", naive_broadcast), ("reduce", naive_reduce)):
        if (name, NAIVE) not in registry.ALGORITHMS:
            registry.algorithm(name, NAIVE)(fn)
            added.append((name, NAIVE))
    try:
        yield NAIVE
    finally:
        for key in added:
            registry.unregister(*key)


@pytest.fixture
def naive_rooted():
    with rooted_algorithms() as name:
        yield name

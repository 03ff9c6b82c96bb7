"""What the communicators derived from one :class:`~collectives.comm.EmulatedComm` share on a rank:
the emulated system, the emulated clock, the groups with their sub-systems and statistics, and the
time plane's cache.

The clock. Each rank keeps one emulated clock for all its communicators. Between two calls it
advances by the host time the program spent (``compute_factor`` x host seconds: 1 counts this host's
compute as it is, 0.5 a machine twice as fast, 0 ignores it); a collective then ends at the same
instant on all its members, the latest member's arrival plus the call's emulated time. Host time
spent inside the calls (the data plane, the waits for slower ranks) is never counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import api, dtypes, registry

_perf = time.perf_counter


class Clock:
    """A rank's emulated clock: ``now`` seconds at host instant ``last`` (``time.perf_counter``)."""

    __slots__ = ("now", "last", "factor", "pending")

    def __init__(self, factor: float):
        self.now = 0.0
        self.last = _perf()
        self.factor = factor
        self.pending = []   # nonblocking calls whose completion mpi4py may observe without us

    def at(self, host: float) -> float:
        """The emulated time at host instant ``host`` (after the last call)."""
        return self.now + (host - self.last) * self.factor

    def wtime(self) -> float:
        """Emulated seconds now: what ``MPI.Wtime`` returns on the modelled machine."""
        if self.pending:
            self.sweep()
        return self.now + (_perf() - self.last) * self.factor

    def leave(self, now: float) -> None:
        """End a call at emulated time ``now``; the host time from here on is compute."""
        self.now = now
        self.last = _perf()

    def sweep(self) -> None:
        """Account the nonblocking calls mpi4py completed on its own (``MPI.Request.Waitall`` on a
        list): they end when they are first noticed here."""
        keep = []
        for pending in self.pending:
            if not pending.done and not pending.poll():
                keep.append(pending)
        self.pending = keep


@dataclass
class CallStats:
    """Totals of one kind of call in one group on this rank. ``nbytes`` is nccl-tests' S summed over
    calls; ``emulated_s`` the calls' emulated time, ``wait_s`` the emulated time this rank waited for
    the group's last member to arrive, ``host_s`` this host's wall time inside the calls."""

    calls: int = 0
    nbytes: int = 0
    emulated_s: float = 0.0
    wait_s: float = 0.0
    host_s: float = 0.0
    delegated: int = 0
    untimed: int = 0
    algorithms: set = field(default_factory=set)
    #: What the calls were timed as: ``"collective/algorithm"`` (``"alltoallv/direct"`` for a Gather).
    timed_as: set = field(default_factory=set)


#: Old names of the stats keys (collective names), for ``comm.stats[...]``.
ALIASES = {"alltoallv": "Alltoallv", "broadcast": "Bcast", "reduce_scatter": "Reduce_scatter_block",
           "alltoallw": "Alltoallw", "allgatherv": "Allgatherv", "gatherv": "Gatherv", "scatterv": "Scatterv"}


class Stats(dict):
    """``call name -> CallStats`` of one group; the ccemu collective names of the earlier API
    (``stats["alltoallv"]``, ``stats["broadcast"]``) name the same entries."""

    def __missing__(self, key):
        real = ALIASES.get(key)
        if real is not None and real in self:
            return self[real]
        raise KeyError(key)


class Group:
    """A communicator's members as the session sees them: their ranks in the session's root
    communicator (in this communicator's rank order), their devices in the root topology, the
    sub-system those devices span (cached per device tuple in the session), and the devices of its
    sibling groups (the other communicators the same ``Split`` made, this one's included)."""

    def __init__(self, session, label: str, ranks: tuple, calls, siblings=None):
        self.session, self.label, self.ranks = session, label, ranks
        k = session.devices_per_rank
        self.devices = tuple(r * k + i for r in ranks for i in range(k))
        self.num_devices = len(self.devices)
        self.topology = session.sub_topology(self.devices)
        self.stats = Stats((name, CallStats()) for name in calls)
        siblings = tuple(tuple(r * k + i for r in g for i in range(k)) for g in siblings or (ranks,))
        # Timed together only with siblings of its own size (an SPMD program's equal groups).
        same = tuple(g for g in siblings if len(g) == self.num_devices)
        self.siblings = same if len(same) > 1 and self.devices in same else ()


class Session:
    """The state shared by an :class:`EmulatedComm` and every communicator derived from it on this rank."""

    def __init__(self, topology, devices_per_rank: int, algorithm: str, library, compute_factor: float,
                 concurrent_groups: bool = True):
        self.topology = topology
        self.devices_per_rank = devices_per_rank
        self.algorithm = algorithm
        self.library = library
        self.concurrent = concurrent_groups and _concurrent() is not None
        self.clock = Clock(compute_factor)
        self.groups: list[Group] = []
        self._topologies = {tuple(range(topology.num_devices)): topology}
        self._times = {}   # (devices, collective, size key, dtype, root, algorithm) -> (nbytes, algorithm, seconds)
        self.wtime_patched = None

    def sub_topology(self, devices: tuple):
        """The sub-system of ``devices`` (:func:`topologies.whatif.select_devices`), cached."""
        topo = self._topologies.get(devices)
        if topo is None:
            from topologies.whatif import select_devices

            topo = self._topologies[devices] = select_devices(self.topology, list(devices))
        return topo

    def add_group(self, label: str, ranks, calls, siblings=None) -> Group:
        group = Group(self, label, tuple(ranks), calls, siblings)
        self.groups.append(group)
        return group

    def time(self, group: Group, collective: str, size, dtype: str, root: int = 0, algorithm: str | None = None):
        """``(nbytes, algorithm, seconds, label)`` of one call on the group's sub-system, cached (``label``:
        ``"collective/algorithm"``, what the report says it was timed as).

        ``size`` is nccl-tests' S in bytes, or for ``alltoallv`` a :class:`~collectives.alltoallv.Counts`
        over the group's devices. ``algorithm``: a fixed choice (the alltoallv-shaped calls run
        ``direct``); otherwise the session's algorithm where ``collective`` registers it, else
        ``"auto"`` (what the system's library picks, ``library=`` as in :func:`collectives.simulate`).

        A group with siblings (:class:`Group`) is timed with the same call on each of them at once on the
        whole system (:func:`collectives.concurrent.simulate_concurrent`: the groups share the links
        they have in common), as an SPMD program makes them; the others alone on their sub-system.
        """
        if algorithm is None:
            algorithm = self.algorithm if self.algorithm in registry.list_algorithms(collective) else "auto"
        size_key = size.fingerprint() if hasattr(size, "fingerprint") else int(size)
        key = (group.devices, group.siblings if self.concurrent else (), collective, size_key, dtype, root, algorithm)
        hit = self._times.get(key)
        if hit is None and group.num_devices == 1:  # nothing leaves the device (and a lone device has no links)
            nbytes = size.total * dtypes.itemsize(dtype) if hasattr(size, "total") else int(size)
            hit = self._times[key] = (nbytes, "local", 0.0, f"{collective}/local")
        if hit is None and self.concurrent and group.siblings:
            concurrent = _concurrent()
            calls = [concurrent.Call(collective, size, devices, dtype=dtype, algorithm=algorithm, root=root,
                                     label=str(i)) for i, devices in enumerate(group.siblings)]
            res = concurrent.simulate_concurrent(self.topology, calls, library=self.library, link_bytes=False)
            mine = res.calls[group.siblings.index(group.devices)]
            hit = self._times[key] = (int(mine.nbytes), mine.algorithm, float(mine.time_s),
                                      f"{collective}/{mine.algorithm} ({len(calls)} groups at once)")
        if hit is None:
            res = api.simulate(collective, size, group.topology, algorithm=algorithm, dtype=dtype, root=root,
                               library=self.library)
            hit = self._times[key] = (int(res.nbytes), res.algorithm, float(res.time_s),
                                      f"{collective}/{res.algorithm}")
        return hit

    # -- report ------------------------------------------------------------------------------------

    def report_lines(self, first: Group, num_ranks: int) -> list[str]:
        k = self.devices_per_rank
        lines = [f"# EmulatedComm: {first.num_devices} devices ({num_ranks} ranks x {k}) on {first.topology.name}",
                 f"# emulated clock {self.clock.wtime():.9g} s on this rank (compute x {self.clock.factor:g} + "
                 "collectives); " + ("the groups of one Split are timed together on the system, sharing its "
                                     "links (each making the same call at once); the others alone"
                                     if self.concurrent else "groups are timed alone, each on its own sub-system")]
        cols = (f"{'call':<22} {'calls':>7} {'bytes':>14} {'emulated s':>12} {'wait s':>10} {'host s':>10} "
                f"{'delegated':>9}  timed as")
        groups = [first] + [g for g in self.groups if g is not first]
        for group in groups:
            rows = [(name, s) for name, s in group.stats.items() if s.calls]
            if not rows and group is not first:
                continue
            total = sum(s.emulated_s for _, s in rows)
            lines.append(f"## group {group.label}: ranks {_ranks_text(group.ranks)}, {group.num_devices} devices on "
                         f"{group.topology.name}; {total:.6g} emulated s in collectives")
            lines.append(cols)
            for name, s in rows:
                emu = "-" if s.untimed == s.calls else f"{s.emulated_s:.6g}"
                algs = ",".join(sorted(s.timed_as)) or "-"
                lines.append(f"{name:<22} {s.calls:>7} {s.nbytes:>14} {emu:>12} {s.wait_s:>10.4g} {s.host_s:>10.4g} "
                             f"{s.delegated:>9}  {algs}")
        return lines


def _concurrent():
    """:mod:`collectives.concurrent`, or ``None`` where it is not there (groups are then timed alone)."""
    try:
        from .. import concurrent
    except ImportError:
        return None
    return concurrent


def _ranks_text(ranks) -> str:
    ranks = list(ranks)
    if ranks == list(range(ranks[0], ranks[0] + len(ranks))) and len(ranks) > 2:
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(map(str, ranks))


def float_bits(x: float) -> int:
    """The int64 bit pattern of a float64 >= 0 (whose order it keeps: the ranks take a max of clocks as
    a max of integers, in the same message as their other integers)."""
    return int(np.float64(x).view(np.int64))

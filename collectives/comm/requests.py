"""The requests the nonblocking calls return: an ``MPI.Request`` whose completion the emulated clock sees.

A nonblocking call's data moves when the call is made (:mod:`collectives.comm`), so its request is
complete in the data plane at once; in the time plane it completes at the call's emulated end. The
request is an ``mpi4py.MPI.Request`` (a generalized request, or for a call passed to the wrapped
communicator that call's own request), so every mpi4py function that takes one takes it:

- ``req.Wait()`` (``wait``) moves this rank's clock to ``max(now, end)``;
- ``req.Test()`` (``test``) is true once the clock has reached ``end`` (the host time the program
  spends meanwhile counts as compute); with ``compute_factor=0`` the clock does not run between
  calls, so ``Test`` completes the call at once, as ``Wait`` would (a program looping on ``Test``
  would otherwise never end);
- ``MPI.Request.Waitall``/``Testall``/... on a list (mpi4py's class methods, which never call back
  into Python) complete it at once too: the clock goes to ``max(now, end)`` when MPI frees the
  request, or, for a delegated call's own request, at the next emulated call or ``Wtime``.
"""

from __future__ import annotations

import time

from ..executors import mpi as _executor

MPI = _executor.MPI
_perf = time.perf_counter


class Pending:
    """The time plane of one nonblocking call until the program sees it complete: its stats entry,
    emulated seconds and end (``end`` is ``None`` until ``reader()`` can give it: ``Ibarrier``'s
    ranks agree on their clocks in a nonblocking MPI call)."""

    __slots__ = ("clock", "entry", "seconds", "end", "done", "native_done", "reader", "request")

    def __init__(self, clock, entry, seconds, end, native_done=True, reader=None):
        self.clock, self.entry, self.seconds, self.end = clock, entry, seconds, end
        self.done, self.native_done, self.reader, self.request = False, native_done, reader, None

    def due(self, host: float) -> bool:
        if self.end is None:
            self.end = self.reader()
        clock = self.clock
        return clock.factor == 0 or clock.at(host) >= self.end

    def complete(self, host: float) -> None:
        """Account the call at host instant ``host``: the clock goes to ``max(now, end)``."""
        if self.done:
            return
        self.done = True
        if self.end is None:
            self.end = self.reader()
        clock = self.clock
        clock.leave(max(clock.at(host), self.end))
        if self.seconds is not None:
            self.entry.emulated_s += self.seconds

    def freed(self) -> None:
        """MPI freed the generalized request (any wait or test that saw it complete)."""
        self.complete(_perf())

    def poll(self) -> bool:
        """For :meth:`collectives.comm.session.Clock.sweep`: whether mpi4py completed the request."""
        req = self.request
        if req is not None and req == MPI.REQUEST_NULL:
            self.complete(_perf())
            return True
        return False


class EmulatedRequest(MPI.Request):
    """An ``MPI.Request`` of a nonblocking emulated call (see the module docstring)."""

    def __new__(cls, request=None, pending=None):
        if request is None:  # mpi4py's own constructors (Request.fromhandle, ...): a plain request
            return MPI.Request.__new__(MPI.Request)
        return super().__new__(cls, request)

    def __init__(self, request=None, pending=None):
        self._pending = pending

    def Wait(self, status=None):
        t0 = _perf()
        p = self._pending
        if p.native_done:
            p.complete(t0)
            super().Wait(status)
        else:
            super().Wait(status)
            p.native_done = True
            p.complete(t0)

    def Test(self, status=None) -> bool:
        t0 = _perf()
        p = self._pending
        if p.done:
            return super().Test(status)
        if not p.native_done:
            if not super().Test(status):
                return False
            p.native_done = True
            if not p.due(t0):
                return False
            p.complete(t0)
            return True
        if not p.due(t0):
            return False
        p.complete(t0)
        return super().Test(status)

    def Free(self) -> None:
        self._pending.done = True  # abandoned: the clock never waits for it
        super().Free()

    def wait(self, status=None):
        self.Wait(status)
        return None

    def test(self, status=None):
        return self.Test(status), None


def completed(pending: Pending) -> EmulatedRequest:
    """A request for a call whose data has moved: a generalized request, complete in MPI's eyes, that
    accounts the call when MPI frees it (``free_fn``) or our ``Wait``/``Test`` see it."""
    greq = MPI.Grequest.Start(None, pending.freed, None)
    greq.Complete()
    return EmulatedRequest(greq, pending)


def native(request, pending: Pending) -> EmulatedRequest:
    """A request for a call running in MPI (delegated, or ``Ibarrier``'s clock agreement)."""
    req = EmulatedRequest(request, pending)
    pending.native_done = False
    pending.request = req
    pending.clock.pending.append(pending)
    return req

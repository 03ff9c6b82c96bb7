"""The emulated clock: equal on every rank after each collective, simulate()'s time per call in an
OSU-style loop, the overlap of nonblocking calls with compute, and the report's timeline.

Runs on any number of ranks (in-process on one, under ``mpiexec -n 2`` / ``-n 3``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import collectives
from collectives.mpi import MPI, EmulatedComm
from topologies import switch

WORLD = MPI.COMM_WORLD


def gathered(x):
    """Every rank's value of ``x`` (natively: not through the emulated communicator)."""
    return WORLD.allgather(x)


def test_clock_equal_across_ranks_after_each_collective():
    """compute_factor=0: the clock holds collectives only, so Wtime() agrees on every rank after each
    blocking collective, whatever each rank did in between; with compute_factor=1 the collectives
    still end at the same instant everywhere (``last_end``)."""
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    emu = EmulatedComm(WORLD, topology=switch(2 * size, bw_GBps=5.0, lat_us=2.0), devices_per_rank=2,
                       compute_factor=0)
    try:
        x = np.ones(1000, np.float32)
        y = np.zeros(size * 1000, np.float32)
        before = emu.Wtime()
        for call in (lambda: emu.Allreduce(MPI.IN_PLACE, x), lambda: emu.Allgather(x, y), lambda: emu.Barrier(),
                     lambda: emu.Bcast(x, root=size - 1), lambda: emu.allreduce(rank), lambda: emu.Scan(x, x.copy())):
            time.sleep(0.002 * rank)   # uneven host work: not counted at compute_factor=0
            call()
            clocks = gathered(emu.Wtime())
            assert len(set(clocks)) == 1, clocks
        assert emu.Wtime() > before
    finally:
        emu.close()
    emu = EmulatedComm(WORLD, compute_factor=1.0)
    try:
        x = np.ones(64, np.float64)
        for _ in range(3):
            time.sleep(0.003 * rank)   # the last rank arrives last: the others wait for it
            emu.Allreduce(MPI.IN_PLACE, x)
            ends = gathered(emu.last_end)
            assert len(set(ends)) == 1, ends
            assert emu.Wtime() >= ends[0]
        if size > 1:  # every rank but the last waited (emulated) for the last one to arrive
            waited = emu.stats["Allreduce"].wait_s
            assert (waited > 0.005) == (rank < size - 1), waited
    finally:
        emu.close()


def test_osu_latency_loop_reports_simulate_time():
    """An unchanged OSU-style loop, timed with MPI.Wtime under patch_wtime=True and compute_factor=0,
    reports exactly simulate()'s time per call (the library's choice on the system)."""
    size = WORLD.Get_size()
    top = switch(2 * size, bw_GBps=12.5, lat_us=1.5)
    native_wtime = MPI.Wtime
    emu = EmulatedComm(WORLD, topology=top, devices_per_rank=2, compute_factor=0, patch_wtime=True)
    try:
        assert MPI.Wtime is not native_wtime
        for nbytes in (8, 4096, 1 << 20):
            send = np.ones(nbytes // 4, np.float32)
            recv = np.empty_like(send)
            iters = 20
            emu.Barrier()
            t0 = MPI.Wtime()
            for _ in range(iters):
                emu.Allreduce(send, recv, op=MPI.SUM)
            t1 = MPI.Wtime()
            latency = (t1 - t0) / iters
            sim = collectives.simulate("allreduce", nbytes, top, algorithm="auto", dtype="float32")
            assert abs(latency - sim.time_s) <= 1e-9 * sim.time_s, (nbytes, latency, sim.time_s)
            assert set(gathered(latency)) == {latency}
    finally:
        emu.close()
    assert MPI.Wtime is native_wtime   # close() restores it


def test_nonblocking_calls_overlap_compute():
    """A nonblocking call ends at its start + its emulated time; compute in between overlaps it. Wait
    moves the clock to max(now, end); Test is false until the clock reaches the end."""
    size = WORLD.Get_size()
    slow = switch(size, bw_GBps=0.001, lat_us=1.0)   # 4 KiB take ~4 ms per step
    emu = EmulatedComm(WORLD, topology=slow, compute_factor=1.0)
    try:
        x = np.ones(1024, np.float32)
        y = np.empty_like(x)
        emu.Allreduce(x, y)                       # warm: plan and time plane cached
        seconds = emu.stats["Allreduce"].emulated_s
        req = emu.Iallreduce(x, y)
        end = req._pending.end
        if size > 1:
            assert seconds > 1e-3 and not req.Test()  # just issued: the emulated end is far ahead
        req.Wait()
        now = emu.Wtime()
        assert end <= now <= end + 0.05           # waited for the end (plus this test's own host time)
        assert (y == size).all()
        req = emu.Iallreduce(x, y)                # compute longer than the call: no wait at the end
        start = emu.Wtime()
        time.sleep(seconds + 0.02)
        req.Wait()
        assert emu.Wtime() >= start + seconds + 0.02
        assert emu.stats["Iallreduce"].calls == 2
        assert emu.stats["Iallreduce"].emulated_s == pytest.approx(2 * seconds)
    finally:
        emu.close()
    emu = EmulatedComm(WORLD, topology=slow, compute_factor=0)
    try:  # the clock does not run between calls: Test completes at once (a Test loop must end)
        x = np.ones(1024, np.float32)
        reqs = [emu.Iallreduce(MPI.IN_PLACE, x.copy()) for _ in range(2)] + [emu.Ibarrier()]
        t_issue = emu.Wtime()
        assert reqs[0].Test()
        MPI.Request.Waitall(reqs)                 # mpi4py's own Waitall on the requests
        now = emu.Wtime()                         # (the Ibarrier's own MPI request is noticed here)
        ends = [r._pending.end for r in reqs]
        assert all(r._pending.done for r in reqs)
        assert now == pytest.approx(max(ends)) and max(ends) >= t_issue
        assert set(gathered(emu.Wtime())) == {emu.Wtime()}
    finally:
        emu.close()


def test_report_shows_the_timeline_per_group_and_call():
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    emu = EmulatedComm(WORLD)
    half = emu.Split(rank % 2)
    try:
        x = np.ones(256, np.float32)
        emu.Allreduce(MPI.IN_PLACE, x)
        half.Allreduce(MPI.IN_PLACE, x)
        half.Iallgather(x, np.zeros(256 * half.Get_size(), np.float32)).Wait()
        text = emu.report(file=None)
        lines = text.splitlines()
        assert lines[0] == f"# EmulatedComm: {size} devices ({size} ranks x 1) on {emu.topology.name}"
        groups = [line for line in lines if line.startswith("## group")]
        assert groups[0].startswith("## group COMM_WORLD: ranks ") and "COMM_WORLD.Split(" in groups[1]
        rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in
                ("Allreduce", "Iallgather")}
        assert rows["Allreduce"][1] == "1" and rows["Iallgather"][1] == "1"
        assert "allreduce/" in text and "allgather/" in text
        sub = half.report(file=None).splitlines()
        assert sub[2].startswith("## group COMM_WORLD.Split(")   # a communicator's own group first
    finally:
        half.Free()
        emu.close()

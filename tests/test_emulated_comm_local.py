"""EmulatedComm on one rank (buffer parsing, the datatype and op tables, the clock), and the launches
that the per-rank suites cannot make themselves: a few cases at ``mpiexec -n 4``, the DP x TP example,
and a failure inside the steps on one rank ending every rank.

The per-rank suites (tests/mpi/test_emulated_comm.py, test_comm_groups.py, test_comm_clock.py) run
in-process here too, and under ``mpiexec -n 2`` / ``-n 3`` from tests/test_mpi_launch.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from collectives import dtypes, ops
from collectives.comm import buffers
from collectives.comm.session import Clock
from collectives.mpi import MPI, EmulatedComm

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 240


# -- the tables ---------------------------------------------------------------------------------------------

def test_every_predefined_mpi_datatype_of_the_table_maps_to_its_dtype():
    """Table-driven: each MPI.<NAME> of dtypes.MPI_NAMES maps to its ccemu name, and each numpy dtype of
    the table to its own; a type outside the table (long double) maps to nothing."""
    for attr, name in dtypes.MPI_NAMES.items():
        t = getattr(MPI, attr, None)
        if t is None or t == MPI.DATATYPE_NULL:
            continue
        assert buffers.datatype(t)[0] == name, attr
    for name, row in dtypes.TABLE.items():
        if row.numpy is not None:
            assert buffers.numpy_name(row.numpy) == name
    assert buffers.datatype(MPI.LONG_DOUBLE)[0] is None
    block = MPI.FLOAT.Create_contiguous(2).Commit()
    try:
        assert buffers.datatype(block) == (None, None)   # derived: delegated
    finally:
        block.Free()


def test_every_mpi_op_maps_and_only_valid_pairs_are_emulated():
    for attr, name in ops.MPI_OPS.items():
        assert buffers.op_name(getattr(MPI, attr)) == name
    assert buffers.op_name(MPI.REPLACE) is None and buffers.op_name("sum") is None
    assert buffers.valid("lor", "bool") and not buffers.valid("sum", "bool")
    assert buffers.valid("maxloc", "double_int") and not buffers.valid("max", "double_int")
    assert not buffers.valid("min", "complex64") and not buffers.valid(None, "int32")


# -- buffer specifications ------------------------------------------------------------------------------

def test_message_takes_mpi4py_forms_and_refuses_what_the_executor_cannot():
    a = np.arange(12, dtype=np.float32)
    m = buffers.message(a, 3)
    assert m.count == 4 and m.dtype == "float32" and np.shares_memory(m.array, a)
    m = buffers.message([a, (4, 2), MPI.FLOAT], 0)
    assert m.count == 4 and m.array.tolist() == [2, 3, 4, 5]
    m = buffers.message([a, MPI.INT], 0)                 # reinterpreted as the datatype says
    assert m.dtype == "int32" and m.count == 12
    assert buffers.message(a[::2], 0) is None            # not contiguous
    assert buffers.message(a.astype(">f4"), 0) is None   # not native byte order
    assert buffers.message(np.arange(5, dtype=np.float32), 2) is None   # not whole blocks
    ro = a.copy()
    ro.flags.writeable = False
    assert buffers.message(ro, 0, writable=True) is None and buffers.message(ro, 0) is not None
    assert buffers.message([a, 13, MPI.FLOAT], 0) is None  # past the end: mpi4py's error, delegated


def test_vector_and_w_specs_name_bad_values():
    a = np.zeros(6, np.int32)
    v = buffers.vmessage([a, ([1, 2], [0, 3])], 2, "send", "Gatherv")
    assert v.counts.tolist() == [1, 2] and v.displs.tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"^Gatherv: sendcounts\[1\] = -2; expected >= 0$"):
        buffers.vmessage([a, [1, -2]], 2, "send", "Gatherv")
    with pytest.raises(TypeError, match=r"^Scatterv: sendcounts=\[1.5, 2\]; expected integers, one per rank$"):
        buffers.vmessage([a, [1.5, 2]], 2, "send", "Scatterv")
    with pytest.raises(ValueError, match=r"^Allgatherv: recv block 1 \(displacement 5, count 2\) ends past the "
                                         r"buffer's 6 entries$"):
        buffers.vmessage([a, ([1, 2], [0, 5])], 2, "recv", "Allgatherv")
    w = buffers.wmessage([a, ([1, 2], [0, 8]), [MPI.INT, MPI.INT]], 2, "send")
    assert w.counts.tolist() == [4, 8] and w.displs.tolist() == [0, 8] and w.array.dtype == np.uint8
    with pytest.raises(ValueError, match=r"^Alltoallw: sendtypes has 1 entries; expected 2"):
        buffers.wmessage([a, ([1, 2], [0, 8]), [MPI.INT]], 2, "send")


# -- one rank: the clock and the memo ----------------------------------------------------------------------

def test_clock_counts_compute_times_the_factor():
    clock = Clock(0.5)
    clock.leave(1.0)
    time.sleep(0.02)
    assert 1.009 <= clock.wtime() <= 1.2
    clock = Clock(0.0)
    clock.leave(2.0)
    time.sleep(0.01)
    assert clock.wtime() == 2.0


def test_repeated_calls_replay_their_plan():
    """A loop over the same buffers parses and plans once: one job per signature, reused."""
    emu = EmulatedComm(MPI.COMM_WORLD, compute_factor=0)
    try:
        x, y = np.ones(1024, np.float32), np.empty(1024, np.float32)
        for _ in range(5):
            emu.Allreduce(x, y)
        jobs = dict(emu._st.jobs)
        memo = emu._st.memo["Allreduce"]
        for _ in range(5):
            emu.Allreduce(x, y)
        assert emu._st.jobs == jobs and emu._st.memo["Allreduce"] is memo
        z = np.empty(1024, np.float32)
        emu.Allreduce(x, z)                       # other buffers: parsed again, same job
        assert emu._st.jobs == jobs and emu._st.memo["Allreduce"] is not memo
        assert (z == 1).all() and emu.stats["Allreduce"].calls == 11
        assert emu.Wtime() == emu.last_end        # compute_factor=0: collectives only
    finally:
        emu.close()


# -- launches ------------------------------------------------------------------------------------------------

def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec next to the interpreter or on PATH")


def launch(n: int, args: list[str], timeout_s: float = LAUNCH_TIMEOUT_S):
    """``mpiexec -n n python args...`` from the repository root: (status, stdout, stderr, seconds); on
    timeout the whole process group is killed and the test fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    proc = subprocess.Popen([MPIEXEC, "-n", str(n), sys.executable, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not finish in {timeout_s} s\n{out[-3000:]}\n{err[-3000:]}")
    return proc.returncode, out, err, time.monotonic() - start


@needs_mpiexec
def test_groups_and_clock_at_four_ranks():
    """Four ranks on the 2-core machine: TP groups of two ranks inside a server, DP groups across."""
    clock = "tests/mpi/test_comm_clock.py::test_clock_equal_across_ranks_after_each_collective"
    status, out, err, _ = launch(4, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/mpi/test_comm_groups.py",
                                     clock])
    assert status == 0 and " failed" not in out and out.count(" passed") >= 4, f"{out[-3000:]}\n{err[-3000:]}"


@needs_mpiexec
def test_dp_tp_example_matches_native_and_reports_its_groups():
    runs = {}
    for flag in ([], ["--native"]):
        status, out, err, _ = launch(4, ["examples/dp_tp.py", "--steps", "4", *flag])
        assert status == 0, f"{out[-3000:]}\n{err[-3000:]}"
        runs[bool(flag)] = out
    native = [line.split("mean loss ")[1] for line in runs[True].splitlines() if "mean loss" in line]
    emulated = [line.split("mean loss ")[1] for line in runs[False].splitlines() if "mean loss" in line]
    assert len(emulated) == 2 and set(emulated) == set(native), (native, emulated)
    for system in ("atlas800t-a2-x2", "hgx-h20-x2"):
        assert f"TP0: 8 devices on {system}[0,1,2,3,4,5,6,7]" in runs[False]
        assert f"DP0: 8 devices on {system}[0,1,2,3,8,9,10,11]" in runs[False]
        assert "## group TP0: ranks 0,1" in runs[False] and "## group DP0: ranks 0,2" in runs[False]
        assert f"# EmulatedComm: 16 devices (4 ranks x 4) on {system}" in runs[False]


FAULT = """
import numpy as np
from collectives.mpi import EmulatedComm, MPI
from collectives.executors import mpi as ex
comm = EmulatedComm(MPI.COMM_WORLD)
x = np.ones(1 << 16, np.float32)
comm.Allreduce(MPI.IN_PLACE, x)
if comm.Get_rank() == 1:
    def boom(self, *args):
        raise RuntimeError("injected failure in the steps")
    ex.Bound.run = ex.Replay.run = boom   # (a replayed call runs its Replay)
comm.Allreduce(MPI.IN_PLACE, x)
comm.Barrier()
print("should have aborted", flush=True)
"""


@needs_mpiexec
def test_failure_inside_the_steps_ends_every_rank_naming_it():
    status, out, err, seconds = launch(3, ["-c", FAULT], timeout_s=60)
    assert status != 0 and "should have aborted" not in out, (status, out, err)
    assert "rank 1: Allreduce: RuntimeError: injected failure in the steps" in err, err
    assert seconds < 60

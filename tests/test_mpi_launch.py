"""Launch the MPI tests under ``mpiexec -n 2`` and ``-n 3``, and prove a failing rank ends the job.

Plain ``pytest`` runs ``tests/mpi`` in-process on one rank; this module runs the same tests on
several ranks through the mpiexec next to the Python interpreter (the ``mpich`` wheel puts it there)
or, failing that, the one on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE_TIMEOUT_S = 300
FAULT_TIMEOUT_S = 60


def find_mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    return shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec next to the interpreter or on PATH")


def launch(n: int, args: list[str], timeout_s: float) -> tuple[int, str, str, float]:
    """Run ``mpiexec -n n python args...`` from the repository root; (status, stdout, stderr, seconds).

    On timeout the whole process group is killed (ranks included) and the test fails.
    """
    env = dict(os.environ)
    # One thread per rank: the ranks already fill the cores (this machine may have only two).
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout_s} s\n{_tails(out, err, 4000)}")
    return proc.returncode, out, err, time.monotonic() - start


def _tails(out: str, err: str, chars: int) -> str:
    return f"--- stdout\n{out[-chars:]}\n--- stderr\n{err[-chars:]}"


@pytest.mark.parametrize("n", [2, 3])
def test_mpi_suite(n):
    status, out, err, _ = launch(n, ["-m", "pytest", "-q", "tests/mpi"], SUITE_TIMEOUT_S)
    assert status == 0, f"mpiexec -n {n} pytest tests/mpi exited {status}\n{_tails(out, err, 6000)}"
    assert out.count(" passed") >= n, out[-2000:]


@pytest.mark.parametrize("n", [2, 3])
def test_failing_rank_ends_every_rank(n):
    """Rank 1 raises mid-collective: the job ends well within the timeout, non-zero, naming rank 1."""
    status, out, err, seconds = launch(n, ["tests/mpi/fault_raise.py"], FAULT_TIMEOUT_S)
    assert status != 0, f"the job exited 0\n{out}\n{err}"
    assert "rank 1: RuntimeError: injected failure mid-collective" in err, err
    assert "should have aborted" not in err, err
    assert seconds < FAULT_TIMEOUT_S


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("how,named", [
    (["--exit"], "rank 1: SystemExit: 3"),                                 # inside abort_on_error
    (["--exit", "--bare"], "rank 1: exited in the middle of a collective"),  # no guard: the exit hook
    (["--kill"], None),                                                    # a crash: the launcher
])
def test_dying_rank_ends_every_rank(n, how, named):
    """Rank 1 exits (``sys.exit``) or is killed mid-collective: the job ends within seconds,
    non-zero. An exiting rank names itself on the way out; a killed one cannot, and MPICH's
    launcher then reports a process it ended, not always the one that died."""
    status, out, err, seconds = launch(n, ["tests/mpi/fault_raise.py", *how], FAULT_TIMEOUT_S)
    assert status != 0 and seconds < 10, (status, seconds, err)
    if named:
        assert named in err, err
    else:
        assert "BAD TERMINATION" in err + out, err + out


def test_benchmark_cli_under_mpiexec():
    """``mpiexec -n 2 python -m bench ...``: 4 devices per rank, data checked across ranks."""
    status, out, err, _ = launch(2, ["-m", "bench", "allreduce", "-b", "1K", "-e", "64K", "-f", "8", "-n", "2",
                                     "--topology", "atlas800t-a2"], SUITE_TIMEOUT_S)
    assert status == 0, _tails(out, err, 4000)
    rows = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1024, 8192, 65536]
    assert all(r[8] == "0" and r[12] == "0" for r in rows)
    assert "2 rank(s) x 4 device(s)" in out


def test_benchmark_cli_error_ends_every_rank():
    """8 devices cannot be shared by 3 ranks: one line, status 2, promptly, from every rank at once."""
    status, out, err, seconds = launch(3, ["-m", "bench", "allreduce", "--topology", "hgx-h20"], FAULT_TIMEOUT_S)
    assert status == 2 and "cannot share evenly" in err and "Traceback" not in err
    assert seconds < FAULT_TIMEOUT_S


def test_training_example_switched_with_one_line():
    """examples/dp_training.py reaches the same loss through EmulatedComm as through COMM_WORLD."""
    runs = {}
    for flag in ([], ["--native"]):
        status, out, err, _ = launch(2, ["examples/dp_training.py", "--steps", "20", *flag], SUITE_TIMEOUT_S)
        assert status == 0, _tails(out, err, 4000)
        runs[bool(flag)] = out
    loss = [line for line in runs[True].splitlines() if "mean loss" in line]
    assert loss and loss[0] in runs[False]
    assert "EmulatedComm: 8 devices (2 ranks x 4) on atlas800t-a2" in runs[False]

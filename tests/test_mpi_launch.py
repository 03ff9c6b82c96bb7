"""Launch the MPI tests under ``mpiexec -n 2`` and ``-n 3``, and prove a failing rank ends the job.

Plain ``pytest`` runs ``tests/mpi`` in-process on one rank; this module runs the same tests on
several ranks through the mpiexec next to the Python interpreter (the ``mpich`` wheel puts it there)
or, failing that, the one on ``PATH``.
"""

from __future__ import annotations

import os
import re
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


def launch(n: int, args: list[str], timeout_s: float, mpiexec_flags=(), per_rank=None) -> tuple[int, str, str, float]:
    """Run ``mpiexec -n n python args...`` from the repository root; (status, stdout, stderr, seconds).

    ``per_rank``: one argument list per rank instead (MPMD: ``-n 1 python a... : -n 1 python b...``).
    On timeout the whole process group is killed (ranks included) and the test fails.
    """
    env = dict(os.environ)
    # One thread per rank: the ranks already fill the cores (this machine may have only two).
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    if per_rank is None:
        cmd = [MPIEXEC, *mpiexec_flags, "-n", str(n), sys.executable, *args]
    else:
        cmd = [MPIEXEC, *mpiexec_flags]
        for i, rank_args in enumerate(per_rank):
            cmd += ([":"] if i else []) + ["-n", "1", sys.executable, *rank_args]
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


def _mpiexec_has(flag: str) -> bool:
    try:
        text = subprocess.run([MPIEXEC, "-h"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in text.stdout + text.stderr


# The survivors' line when rank 1 (device 1 of 1 per rank) is killed in fault_raise.py.
SURVIVOR_NAMES_DEAD_RANK = re.compile(r"rank \d+: rank 1 \(device 1, pid \d+\) died during allreduce; aborting")


@pytest.mark.parametrize("n", [2, 3])
def test_mpi_suite(n):
    status, out, err, _ = launch(n, ["-m", "pytest", "-q", "tests/mpi"], SUITE_TIMEOUT_S)
    assert status == 0, f"mpiexec -n {n} pytest tests/mpi exited {status}\n{_tails(out, err, 6000)}"
    assert out.count(" passed") >= n, out[-2000:]


@pytest.mark.parametrize("n", [2, 3])
def test_alltoallv_under_mpiexec(n):
    """alltoallv across ranks (issue 14): the executor's rows and EmulatedComm.Alltoallv against
    MPI.COMM_WORLD.Alltoallv, uneven and zero counts, mismatched counts raising on every rank."""
    status, out, err, _ = launch(n, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/mpi/test_alltoallv_mpi.py"],
                                 SUITE_TIMEOUT_S)
    assert status == 0, f"mpiexec -n {n} pytest test_alltoallv_mpi.py exited {status}\n{_tails(out, err, 6000)}"
    assert out.count(" passed") >= n and " failed" not in out, out[-2000:]


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
    non-zero. An exiting rank names itself on the way out. A killed one cannot: the launcher
    reports it by PID, and a survivor waiting for it names it (``rank 0: rank 1 (device 1, pid N)
    died during allreduce; aborting``), unless the launcher, which kills the survivors about 4 ms
    after the death, is faster: a best effort, so one launch in three must show the survivor's line
    (it did in 40 of 40 launches here)."""
    for attempt in range(3 if named is None else 1):
        status, out, err, seconds = launch(n, ["tests/mpi/fault_raise.py", *how], FAULT_TIMEOUT_S)
        assert status != 0 and seconds < 10, (status, seconds, err)
        if named:
            assert named in err, err
            return
        assert "BAD TERMINATION" in err + out, err + out
        if SURVIVOR_NAMES_DEAD_RANK.search(err):
            return
    pytest.fail(f"no survivor named the killed rank in 3 launches\n{_tails(out, err, 3000)}")


@pytest.mark.parametrize("n", [2, 3])
def test_survivor_names_a_killed_rank(n):
    """With the launcher's own clean-up off, nothing but the survivors can end the job when rank 1
    is killed by SIGKILL: each survivor waiting for rank 1 finds its process gone, prints one line
    naming its rank, devices and PID, and aborts; promptly, every time."""
    if not _mpiexec_has("-disable-auto-cleanup"):
        pytest.skip("this mpiexec has no -disable-auto-cleanup (MPICH's Hydra has)")
    status, out, err, seconds = launch(n, ["tests/mpi/fault_raise.py", "--kill"], FAULT_TIMEOUT_S,
                                       mpiexec_flags=["-disable-auto-cleanup"])
    assert status != 0 and seconds < 15, (status, seconds, err)
    assert SURVIVOR_NAMES_DEAD_RANK.search(err), _tails(out, err, 3000)
    assert "MPI_ERROR" not in err, err  # not MPICH's failed request: the survivor's own finding


def test_benchmark_cli_under_mpiexec():
    """``mpiexec -n 2 python -m bench ...``: 4 devices per rank, data checked across ranks."""
    status, out, err, _ = launch(2, ["-m", "bench", "allreduce", "-b", "1K", "-e", "64K", "-f", "8", "-n", "2",
                                     "--topology", "atlas800t-a2"], SUITE_TIMEOUT_S)
    assert status == 0, _tails(out, err, 4000)
    rows = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1024, 8192, 65536]
    assert all(r[8] == "0" and r[12] == "0" for r in rows)
    assert "# nThread 1 nGpus 4 minBytes 1024 maxBytes 65536 " in out
    assert len([line for line in out.splitlines() if line.startswith("#  Rank")]) == 8  # both ranks' devices


def test_benchmark_cli_error_ends_every_rank():
    """8 devices cannot be shared by 3 ranks: one line, status 2, promptly, from every rank at once."""
    status, out, err, seconds = launch(3, ["-m", "bench", "allreduce", "--topology", "hgx-h20"], FAULT_TIMEOUT_S)
    assert status == 2 and "cannot share evenly" in err and "Traceback" not in err
    assert seconds < FAULT_TIMEOUT_S


def test_benchmark_cli_ranks_with_different_arguments():
    """Ranks started with different -e: one line naming both values, status 2, at once (it was a
    29-line MPI truncation traceback)."""
    common = ["-m", "bench", "allreduce", "-b", "8", "-f", "2", "-n", "1", "--topology", "atlas800t-a2"]
    status, out, err, seconds = launch(2, [], FAULT_TIMEOUT_S,
                                       per_rank=[common + ["-e", "8M"], common + ["-e", "16M"]])
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and "Traceback" not in err, _tails(out, err, 3000)
    assert lines == ["python -m bench: error: ranks were started with different arguments: rank 1 has -e 16M, "
                     "rank 0 has -e 8M"], err
    assert seconds < FAULT_TIMEOUT_S


def test_benchmark_cli_one_rank_model_only():
    """One rank of three given --model-only (which alone would skip MPI and leave the others
    waiting): the same one line from rank 0, status 2."""
    common = ["-m", "bench", "allreduce", "-b", "1K", "-e", "1K", "--topology", "mi300x-8"]
    status, out, err, _ = launch(3, [], FAULT_TIMEOUT_S, per_rank=[common, common + ["--model-only"], common])
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1, _tails(out, err, 3000)
    assert lines[0].endswith("ranks were started with different arguments: rank 1 has --model-only, "
                             "ranks 0, 2 have no --model-only"), lines


@pytest.mark.parametrize("second,expected", [
    (["-n", "many"], "python -m bench: error: rank 1: argument -n/--iters: invalid int value: 'many'"),
    (["--version"], "python -m bench: error: ranks were started with different commands: rank 1 exits at once "
                    "(-h or --version), rank 0 runs bench allreduce"),
])
def test_benchmark_cli_rank_stopping_before_mpi(second, expected):
    """A rank that stops while parsing (before MPI starts) no longer leaves the others waiting for it
    forever: one line naming it, status 2."""
    common = ["-m", "bench", "allreduce", "-b", "1K", "-e", "1K", "--topology", "atlas800t-a2"]
    rank1 = common + second if second[0] != "--version" else ["-m", "bench", "--version"]
    status, out, err, seconds = launch(2, [], FAULT_TIMEOUT_S, per_rank=[common, rank1])
    assert status == 2 and "Traceback" not in err, _tails(out, err, 3000)
    assert [line for line in err.splitlines() if line.strip()] == [expected], err
    assert seconds < FAULT_TIMEOUT_S


def test_cli_ranks_with_different_commands():
    status, out, err, _ = launch(2, [], FAULT_TIMEOUT_S, per_rank=[
        ["-m", "bench", "allreduce", "-b", "1K", "-e", "1K"], ["-m", "bench", "topo", "list"]])
    assert status == 2, _tails(out, err, 3000)
    assert [line for line in err.splitlines() if line.strip()] == [
        "python -m bench: error: ranks were started with different commands: rank 1 runs topo list, "
        "rank 0 runs bench allreduce"], err


def test_benchmark_cli_error_on_one_rank_names_it():
    """Only rank 0 writes -J, so only rank 0 finds its folder missing: its line names it, status 2,
    and the other rank, already waiting for rank 0, is ended too."""
    status, out, err, seconds = launch(2, ["-m", "bench", "allreduce", "-b", "1K", "-e", "1K", "--topology",
                                           "atlas800t-a2", "-J", "/nonexistent/dir/out.json"], FAULT_TIMEOUT_S)
    assert status == 2 and "Traceback" not in err, _tails(out, err, 3000)
    assert "python -m bench: error: rank 0: -J /nonexistent/dir/out.json: directory /nonexistent/dir does not exist" \
        in err, err
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

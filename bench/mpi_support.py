"""Whether we run under MPI, without importing mpi4py when we do not."""

from __future__ import annotations

import os
import sys
import time

_ENV_HINTS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (then mpi4py is imported)."""
    return any(k in os.environ for k in _ENV_HINTS)


def world():
    """``(comm, rank, size)``; ``(None, 0, 1)`` outside an MPI launch."""
    if not launched_by_mpi():
        return None, 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    global _shared
    if not _shared:
        _shared = True
        _share_cores(comm)
    return comm, comm.Get_rank(), comm.Get_size()


_shared = False


def _share_cores(comm) -> None:
    """Ranks on one host share its cores: each rank's Numba kernels get ``cores / local ranks``
    threads (at least one), unless ``NUMBA_NUM_THREADS`` is set. By default every rank would start a
    thread per core: on this 2-core host the main job at two ranks took 27.4 s so, 16.2 s with one
    thread each. Collective over ``comm`` (the first :func:`world` call)."""
    if comm.Get_size() < 2 or "NUMBA_NUM_THREADS" in os.environ:
        return
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks = local.Get_size()
    local.Free()
    if ranks > 1:
        import numba   # its thread count only: nothing compiles here

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, cores // ranks)))


def rank() -> int:
    """This process's rank in the world (0 outside MPI, or before mpi4py was imported)."""
    if "mpi4py.MPI" not in sys.modules:
        return 0
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank() if MPI.Is_initialized() and not MPI.Is_finalized() else 0


def several_ranks() -> bool:
    """True when MPI is running with more than one rank (mpi4py already imported and initialised)."""
    if "mpi4py.MPI" not in sys.modules:
        return False
    from mpi4py import MPI

    return MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1


def abort_others(status: int) -> None:
    """After an error on this rank, end all ranks with ``status`` so none waits forever."""
    if several_ranks():
        from mpi4py import MPI

        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.2)  # let the launcher forward the error line before the job is killed
        MPI.COMM_WORLD.Abort(status)
        os._exit(status)  # MPICH's Abort has been seen to return; this rank must not go on


def agree_on_start(comm, mine) -> None:
    """Collective over ``comm``, right after each rank parsed its command line: ``mine`` is
    ``("ok", command words)``, ``("error", message)`` (a parse error) or ``("exit", code)`` (``-h``,
    ``--version``). Returns when every rank has the same; else every rank raises the same
    :class:`~bench.errors.RanksDisagree`: a parse error on some ranks only names the first of them
    (``rank 1: argument -n/--iters: invalid int value: 'many'``), the same error on every rank reads
    as it would on one, different commands are listed per rank. Without this, a rank that stops
    before MPI starts (or runs another command) leaves the others waiting for it forever.
    """
    from .errors import RanksDisagree

    table = [(kind, tuple(v) if isinstance(v, list) else v) for kind, v in comm.allgather(list(mine))]
    if len(set(table)) == 1:
        if table[0][0] == "error":
            raise RanksDisagree(table[0][1])
        return
    errors = [(r, v) for r, (kind, v) in enumerate(table) if kind == "error"]
    if errors:
        r, message = errors[0]
        more = f" (and on {len(errors) - 1} more rank{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise RanksDisagree(f"rank {r}: {message}{more}")
    shown = [f"runs {' '.join(v)}" if kind == "ok" else "exits at once (-h or --version)" for kind, v in table]
    raise RanksDisagree("ranks were started with different commands: " + _by_rank(shown, "{}"))


def agree_on_arguments(comm, items) -> None:
    """Collective over ``comm``: every rank must have been started with the same arguments.

    ``items`` is this rank's list of ``(label, shown value)`` pairs, e.g. ``("-e", "-e 8M")``. One
    ``allgather`` compares them; if any differ, every rank raises the same
    :class:`~bench.errors.RanksDisagree` naming the first argument that differs and which ranks have
    which value, e.g. ``ranks were started with different arguments: rank 1 has -e 16M, rank 0 has
    -e 8M`` (the CLI prints it once, from rank 0, and every rank exits with status 2).
    """
    from .errors import RanksDisagree

    mine = [(str(label), str(shown)) for label, shown in items]
    tables = comm.allgather(mine)
    labels = [label for label, _ in tables[0]]
    if any([label for label, _ in t] != labels for t in tables):
        raise RanksDisagree("ranks were started with different arguments (different sets of options, "
                            "e.g. different ccemu versions)")
    differing = [i for i, label in enumerate(labels) if len({t[i][1] for t in tables}) > 1]
    if not differing:
        return
    i = differing[0]
    also = [labels[j] for j in differing[1:]]
    raise RanksDisagree("ranks were started with different arguments: " + _by_rank([t[i][1] for t in tables])
                        + (f" (also different: {', '.join(also)})" if also else ""))


def _by_rank(shown, verb="has {}") -> str:
    """``rank 1 has X, ranks 2, 3 have Y, rank 0 has Z``: the ranks grouped by value, rank 0's last."""
    groups: dict[str, list[int]] = {}
    for r, value in enumerate(shown):
        groups.setdefault(value, []).append(r)
    parts = []
    for value, ranks in sorted(groups.items(), key=lambda kv: (kv[1][0] == 0, kv[1][0])):
        if len(ranks) == 1:
            who, text = f"rank {ranks[0]}", verb.format(value)
        else:
            who = "ranks " + ", ".join(map(str, ranks[:8])) + (", ..." if len(ranks) > 8 else "")
            text = verb.replace("has", "have").format(value)
        parts.append(f"{who} {text}")
    return ", ".join(parts)

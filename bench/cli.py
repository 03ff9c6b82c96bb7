"""The ``ccemu`` command: one subcommand per job, each registered by its module.

A command module exposes ``register(subparsers)``, which adds its parser and sets
``func=handler``; ``handler(args)`` returns the exit status. ``ValueError``, ``TypeError``,
``OSError`` and :class:`~bench.errors.UsageError` become one line on stderr and exit status 2. Under
MPI with several ranks the line names the rank (``rank 1: ...``) and every rank of the job ends; when
the ranks themselves disagree (:class:`~bench.errors.RanksDisagree`, every rank knows it) rank 0
prints the one line and every rank exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings

from .errors import RanksDisagree, UsageError, fail

# Modules that add a subcommand; a module not written yet is skipped.
COMMAND_MODULES = ("nccl_tests", "topo_cmd", "scaling_cmd", "regress_cmd", "validate_cmd", "tune_cmd",
                   "hccl_test_cmd", "workload_cmd")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as argparse does, but without the usage block
        raise UsageError(message)


def build_parser(prog="ccemu") -> argparse.ArgumentParser:
    from . import VERSION

    parser = _Parser(prog=prog, description="ccemu: emulate collective communication on modelled accelerator systems")
    parser.add_argument("--version", action="version", version=f"ccemu {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = __import__(f"bench.{name}", fromlist=["register"])
        except ModuleNotFoundError:
            continue
        module.register(sub)
    return parser


def main(argv=None, prog="ccemu") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ``python -m bench allreduce ...`` and ``ccemu allreduce ...`` mean ``ccemu bench allreduce ...``, and so
    # do nccl-tests' binary names (``ccemu all_reduce_perf ...``).
    from collectives import registry

    from .nccl_tests import binary_names

    if argv and (argv[0] in registry.list_collectives() or argv[0] in binary_names()):
        argv = ["bench"] + argv
    try:
        parser = build_parser(prog)
        args = _parse(parser, argv)
        args._argv = prog.split() + argv  # the command line, for the JSON's "args"
        _say_if_compiling(args)
        with _notes_as_lines(prog):
            return int(args.func(args) or 0)
    except _Stop as stop:  # -h or --version on every rank: printed, nothing to abort
        return stop.code
    except RanksDisagree as exc:  # found alike on every rank: one line from rank 0, a clean exit everywhere
        from . import mpi_support

        if mpi_support.rank() == 0:
            fail(prog, exc)
        return 2
    except (UsageError, ValueError, TypeError, OSError) as exc:
        return _fail_everywhere(prog, exc)
    except KeyboardInterrupt:
        return _fail_everywhere(prog, "interrupted", 130)
    except BaseException:
        # A bug, not bad input: the traceback helps; under MPI the other ranks must not wait for us.
        from . import mpi_support

        if mpi_support.several_ranks():
            traceback.print_exc()
            mpi_support.abort_others(1)
        raise


@contextlib.contextmanager
def _notes_as_lines(prog):
    """What a topology import completed or assumed (:class:`topologies.nccl_xml.TopologyNote`): one line
    ``ccemu: note: ...`` on stderr (rank 0 only), not a Python warning with its source line."""
    from topologies.nccl_xml import TopologyNote

    with warnings.catch_warnings():
        warnings.simplefilter("always", TopologyNote)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, TopologyNote):
                return shown(message, category, filename, lineno, file, line)
            from . import mpi_support

            if mpi_support.rank() == 0:
                print(f"{prog}: note: {message}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


# Commands that run no jitted code.
_NO_JIT = {"topo", "tune"}


def _say_if_compiling(args) -> None:
    """One line on stderr when the jitted network model and kernels are not in Numba's cache yet
    (the first command after an install compiles them; later ones load them)."""
    if getattr(args, "command", None) in _NO_JIT:
        return
    import glob
    import os

    import topologies

    where = [os.path.join(os.path.dirname(topologies.__file__), "__pycache__")]
    if os.environ.get("NUMBA_CACHE_DIR"):
        where.append(os.environ["NUMBA_CACHE_DIR"])
    if not any(glob.glob(os.path.join(d, "**", "network._solve_step-*.nbi"), recursive=True) for d in where):
        from . import mpi_support

        if mpi_support.rank() == 0:
            print("ccemu: first run after install: compiling the network model and kernels (about a minute on a "
                  "2-core machine; cached for later runs)", file=sys.stderr, flush=True)


def _parse(parser, argv):
    """Parse ``argv``; under an MPI launch of several ranks, every rank then agrees on the outcome
    (:func:`~bench.mpi_support.agree_on_start`) before any runs: a rank with a parse error, ``-h``
    or another command would otherwise leave the others waiting for it."""
    from . import mpi_support

    comm, _, size = mpi_support.world()
    if size <= 1:
        return parser.parse_args(argv)
    args = stop = None
    try:
        args = parser.parse_args(argv)
        mine = ("ok", [args.command] + [str(getattr(args, d)) for d in _COMMAND_WORDS if getattr(args, d, None)])
    except UsageError as exc:
        mine = ("error", " ".join(str(exc).split()))
    except SystemExit as exc:  # -h, --version: printed already
        stop, mine = exc, ("exit", str(exc.code))
    mpi_support.agree_on_start(comm, mine)
    if stop is not None:
        raise _Stop(stop.code if isinstance(stop.code, int) else 0)
    return args


class _Stop(Exception):
    """Every rank stopped after parsing (``-h``, ``--version``) with ``code``."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# Parsed values that tell which command runs (besides ``command``): sub-actions and the collective.
_COMMAND_WORDS = ("topo_command", "regress_command", "collective")


def _fail_everywhere(prog, exc, status=2) -> int:
    """Print the error and, under MPI with several ranks, end every rank (never a hang)."""
    from . import mpi_support

    if mpi_support.several_ranks():
        exc = f"rank {mpi_support.rank()}: {exc}"
    fail(prog, exc, status)
    mpi_support.abort_others(status)
    return status

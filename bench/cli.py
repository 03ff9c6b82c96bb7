"""The ``ccemu`` command: one subcommand per job, each registered by its module.

A command module exposes ``register(subparsers)``, which adds its parser and sets
``func=handler``; ``handler(args)`` returns the exit status. ``ValueError``, ``TypeError``,
``OSError`` and :class:`~bench.errors.UsageError` become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from .errors import UsageError, fail

# Modules that add a subcommand; a module not written yet is skipped.
COMMAND_MODULES = ("nccl_tests", "topo_cmd", "scaling_cmd", "regress_cmd", "validate_cmd")


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
    # ``python -m bench allreduce ...`` and ``ccemu allreduce ...`` mean ``ccemu bench allreduce ...``.
    from collectives import registry

    if argv and argv[0] in registry.list_collectives():
        argv = ["bench"] + argv
    try:
        parser = build_parser(prog)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
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


def _fail_everywhere(prog, exc, status=2) -> int:
    """Print the error and, under MPI with several ranks, end every rank (never a hang)."""
    from . import mpi_support

    fail(prog, exc, status)
    mpi_support.abort_others(status)
    return status

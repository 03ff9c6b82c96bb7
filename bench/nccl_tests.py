"""``ccemu bench <collective>`` / ``python -m bench <collective>``: nccl-tests 2.19's flags, output and JSON.

The default output is nccl-tests 2.19.6's, line for line (``src/util.cu``'s formats): the header
(``# nccl-tests version ...``, ``# nThread ... unalign: 0``, ``# Using devices`` and one
``#  Rank ...`` line per device, at most 2047 characters per process as nccl-tests cuts them), the
two column header lines, rows of 13 whitespace-separated fields (size count type redop root, then
time algbw busbw #wrong out of place and in place, ``N/A`` where nccl-tests prints it), and the
footer (``# Out of bounds values``, ``# Avg bus bandwidth``, ``# Collective test concluded``, ``#``).

What is emulated: time, algbw and busbw are :func:`collectives.simulate`'s figures on the chosen
topology; the data really moves (Numba kernels in one process, or across MPI ranks under
``mpirun``) and ``#wrong`` counts the elements that differ from the expected result. ccemu's own
columns (algorithm, bus efficiency, host wall time, p99 under ``--jitter``, headroom under
``--library``) appear with ``--columns extended``; all of it is always in the JSON's ``ccemu`` block.

Every nccl-tests flag is accepted, long and short (:data:`NO_OPS` lists the ones without an
emulated effect). Differences from nccl-tests: the device count P is the topology's, so ``-t`` and
``-g`` must multiply with the MPI ranks to P (neither given: P split evenly over the ranks);
``-J`` writes the file whatever its suffix, replaces an existing one (all at once, never half
written) and records only the NCCL/CUDA/HCCL/RCCL/ccemu variables of the environment; bad input
stops with one line and exit status 2 instead of falling back to a default.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time

import numpy as np

from collectives import dtypes, registry
from collectives import simulate
from collectives.timing import SELECTIONS
from collectives.ops import OPS
from collectives.study import MAX_SIZE, parse_size, size_sweep

from .errors import (MAX_DEVICES, MAX_ITERS, MAX_SEED, MAX_SIZES, RanksDisagree, UsageError, check_int,
                     check_output_paths, write_atomic)
from .mpi_support import agree_on_arguments, world

from . import VERSION
from . import add_routing_argument

DEFAULT_TOPOLOGY = "atlas800t-a2"

#: The nccl-tests release whose output and JSON this command writes.
NCCL_TESTS_VERSION = "2.19.6"
#: nccl-tests' ``JSON_FILE_VERSION`` of that layout (``src/util.cu``).
JSON_FILE_VERSION = 3
#: nccl-tests' binaries with no ccemu collective (exit status 2 naming what exists): none left. Its
#: CMake list of collectives (``src/CMakeLists.txt`` COLLS: all_reduce, all_gather, broadcast,
#: reduce_scatter, reduce, alltoall, alltoallv, gather, scatter, sendrecv, hypercube) are all
#: registered collectives' ``perf_name``s; ``alltoallv_perf`` runs ccemu's alltoallv (its even split
#: of S over all devices, :mod:`collectives.alltoallv`), not nccl-tests' distance-weighted traffic
#: (``NCCL_TESTS_ALLTOALLV_SPREAD``) or matrix file.
NCCL_TESTS_ONLY: tuple = ()
#: nccl-tests' -d names in its order (``-d all``: its test_typenames with fp8, NCCL >= 2.24; nccl-tests
#: drops f8e4m3 / f8e5m2 from ``all`` on GPUs before Hopper, which the emulation does not model).
TYPE_ORDER = ("int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float", "double", "bfloat16",
              "f8e4m3", "f8e5m2")
NOT_YET_TYPES = ()
#: nccl-tests' -o names in its order (``-o all``); mulsum: its PreMulSum op, scalar 1 on even ranks, 2 on odd.
OP_ORDER = ("sum", "prod", "max", "min", "avg", "mulsum")
#: Flags accepted with no emulated effect (shown in the header or JSON where nccl-tests shows them).
NO_OPS = {
    "-p": "parallel communicator init: no communicators to build",
    "-y": "the NULL stream: no streams",
    "-G": "CUDA graph launches: the emulated time has no launch cost to save",
    "-R": "buffer registration: registration costs are not modelled",
    "-x": "CTA policy: CTAs are not modelled",
    "-V": "device-kernel CTAs: device kernels are not modelled",
    "-u": "unaligned buffers: the model has no alignment cost",
    "-z": "blocking: every emulated call is synchronous already (header line as nccl-tests prints it)",
}
#: Environment variables recorded in the JSON's "env" (nccl-tests records the whole environment).
ENV_PREFIXES = ("NCCL_", "RCCL_", "HCCL_", "CUDA_", "HIP_", "ASCEND_", "CCEMU_")

_BLOCKING_LINES = {
    1: "# Blocking Enabled: wait and barrier after each inner iteration (-m) ",
    2: "# Blocking Enabled: wait after each inner iteration (-m), no barrier ",
    3: "# Blocking Enabled: wait and barrier after each outer iteration (-n); time excludes barrier ",
}
_MAX_LINE = 2048          # nccl-tests' buffer of one process's "#  Rank" lines
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def register(sub):
    p = sub.add_parser("bench", help="nccl-tests-style benchmark of one collective",
                       description="Run a collective over a size sweep and print nccl-tests 2.19's output with "
                                   "emulated times. The collective may be named as nccl-tests' binary "
                                   "(all_reduce_perf, ...).")
    names = registry.list_collectives()
    p.add_argument("collective", choices=names + list(binary_names()), metavar="COLLECTIVE",
                   help="one of " + ", ".join(names) + ", or nccl-tests' binary name (" +
                        ", ".join(perf_names()) + ")")
    a = p.add_argument
    a("-t", "--nthreads", type=int, default=None,
      help="threads per process; -t x -g x ranks must be the topology's devices (default: -t 1 -g P/ranks)")
    a("-g", "--ngpus", type=int, default=None, help="GPUs (devices) per thread")
    a("-b", "--minbytes", default="32M", help="smallest size (default 32M)")
    a("-e", "--maxbytes", default="32M", help="largest size (default 32M)")
    a("-i", "--stepbytes", default="1M", help="fixed size increment (default 1M)")
    a("-f", "--stepfactor", type=float, default=None, help="multiplicative size factor (overrides -i)")
    a("-n", "--iters", type=int, default=20, help="timed iterations (default 20)")
    a("-m", "--agg_iters", type=int, default=1, help="operations aggregated per iteration (default 1): the data "
      "plane runs -n x -m calls; the emulated time is per operation")
    a("-w", "--warmup_iters", type=int, default=1, help="warm-up iterations (default 1)")
    a("-N", "--run_cycles", type=int, default=1, help="times the sweep is run and printed (default 1)")
    a("-p", "--parallel_init", type=int, default=0, help="0/1: no-op (header line as nccl-tests prints it)")
    a("-c", "--check", type=int, default=1, help="check results (0: no, prints N/A)")
    a("-o", "--op", default="sum", help="/".join(OP_ORDER) + "/all (default sum)")
    a("-d", "--datatype", default="float", help="|".join(TYPE_ORDER) + "|all (default float)")
    a("-r", "--root", default="0", help="root device of broadcast/reduce/gather/scatter, or all (default 0)")
    a("-z", "--blocking", type=int, default=0, help="0/1/2/3: no-op (header line as nccl-tests prints it)")
    a("-y", "--stream_null", type=int, default=0, help="0/1: no-op")
    a("-T", "--timeout", type=int, default=0, help="seconds: stop when one emulated synchronisation (the -n x -m "
      "calls of a size, one call with -z) would wait longer (default 0: none)")
    a("-G", "--cudagraph", type=int, default=0, help="CUDA graph launches: no-op (shown as graph:)")
    a("-C", "--report_cputime", type=int, default=0, help="1: the time column is this host's wall time per call "
      "(cputime), as nccl-tests reports CPU time; algbw and busbw stay emulated")
    a("-S", "--report_timestamps", type=int, default=0, help="1: a timestamp after each row")
    a("-J", "--output_file", default=None, help="also write nccl-tests' JSON layout (plus a ccemu block) here")
    a("--trace", default=None, metavar="FILE.json",
      help="also write a Chrome/Perfetto trace of the largest size's emulated call (first datatype, op and root "
           "of the sweep): each device's transfers and each link's busy time, step by step")
    a("-a", "--average", type=int, default=1, choices=[0, 1, 2, 3],
      help="host times across ranks: 0 rank 0, 1 mean, 2 min, 3 max")
    a("-R", "--local_register", type=int, default=0, help="0-4: no-op")
    a("-x", "--cta_policy", type=int, default=None, help="0/1/2: no-op")
    a("-D", "--device_implementation", type=int, default=0, help="0 only: device kernels are not modelled")
    a("-V", "--device_cta_count", type=int, default=16, help="no-op")
    a("-M", "--memory_report", "--memory", type=int, default=0,
      help="1: the '# GPU memory usage' line (the buffers nccl-tests would allocate per device)")
    a("-u", "--unalign", type=int, default=0, help="element offset of the buffers: no-op (shown as unalign:)")
    a("-I", "--per_iter_timing", type=int, default=0,
      help="1: per-iteration columns i_min i_max i_p99 i_cv%% of the emulated calls (vary with --jitter)")
    a("-K", "--per_iter_skip", type=int, default=0, help="iterations the per-iteration summary skips (default 0)")
    a("--columns", choices=("nccl", "extended"), default="nccl",
      help="nccl (default): nccl-tests' columns only; extended: also algo, buseff, host_us (and p99_us, headroom)")
    a("--host-budget", type=float, default=0.25, metavar="SECONDS",
      help="host seconds the timed data-plane calls of one size may take: fewer than -n iterations "
           "(at least one) past it; the emulated times need no repeats (default 0.25; 0: always -n)")
    a("--topology", default=DEFAULT_TOPOLOGY, help=f"preset name or topology file (default {DEFAULT_TOPOLOGY})")
    a("--nodes", type=int, default=None, help="number of servers of a preset or an NCCL topology XML file (default 1)")
    a("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
      help="NICs of a multi-node preset instead of the vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
           "tcpx:200:0.5 (one NIC per 2 devices), efa:100:4 (4 per device)")
    add_routing_argument(p)
    a("--gpu", default=None, metavar="MODEL",
      help="GPU model completing the GPUs of an NCCL topology hint file (a preset such as dgx-a100, "
           "or a device: a100, h100, mi300x, ...)")
    a("--algo", default="auto", help="algorithm name, auto (default: the library's choice), best "
                                     "(the fastest of every algorithm and parameter set) or msccl:FILE "
                                     "(an MSCCL XML allreduce file)")
    a("--library", default=None, metavar="NAME",
      help="library whose tuner --algo auto follows: nccl, rccl, hccl, ideal (= best) or native (the "
           "system vendor's, the default). The JSON then gives the headroom time(auto) / time(best)")
    a("--model-only", action="store_true", help="emulated time only: no data, any device count, no mpirun")
    a("--devices-per-rank", type=int, default=None, help="devices hosted by each MPI rank (= -t x -g)")
    a("--jitter", default=None, metavar="PROFILE",
      help="instability profile (stable, noisy, lossy): the time column is the median of -n seeded "
           "calls, p99_us their 99th percentile")
    a("--seed", type=int, default=0, help="seed of the instability profile (default 0)")
    p.set_defaults(func=main)
    _FLAGS.update({x.dest: (x.option_strings[0] if x.option_strings else None) for x in p._actions})


# dest -> flag of every argument of ``ccemu bench`` (filled by register), for the rank agreement.
_FLAGS: dict = {}
# Arguments that may differ between ranks: only rank 0 writes the JSON file.
_RANK_LOCAL = ("func", "output_file", "trace", "command", "_argv")


# -- names ------------------------------------------------------------------------------------------

def perf_names() -> dict:
    """``{nccl-tests binary: ccemu collective}`` for every registered collective that has one."""
    out = {}
    for name in registry.list_collectives():
        perf = registry.collective(name).perf_name
        if perf:
            out[perf] = name
    return out


def binary_names() -> list[str]:
    """Every nccl-tests binary name the bench command takes: ccemu's, then nccl-tests' others."""
    return list(perf_names()) + [b for b in NCCL_TESTS_ONLY if b not in perf_names()]


def resolve_collective(word: str) -> str:
    """The ccemu collective ``word`` names (a collective or nccl-tests' binary); UsageError otherwise.

    >>> resolve_collective("all_reduce_perf"), resolve_collective("alltoall")
    ('allreduce', 'alltoall')
    """
    if word in registry.list_collectives():
        return word
    names = perf_names()
    if word in names:
        return names[word]
    have = ", ".join(f"{b} ({c})" for b, c in names.items())
    raise UsageError(f"{word}: nccl-tests' {word} has no ccemu collective yet; ccemu emulates {have}")


# -- sizes ------------------------------------------------------------------------------------------

def sizes_from(args) -> list[int]:
    """The sizes of ``-b``/``-e`` with ``-f`` (factor) or ``-i`` (increment), as nccl-tests steps them;
    at most :data:`~bench.errors.MAX_SIZES` of them."""
    step = getattr(args, "stepbytes", None)
    lo, hi = parse_size(args.minbytes), parse_size(args.maxbytes)
    step_bytes = None if step is None else parse_size(step)
    count = _sweep_length(lo, hi, args.stepfactor, step_bytes)
    if count > MAX_SIZES:
        how = f"-f {args.stepfactor}" if args.stepfactor is not None else f"-i {step}"
        raise UsageError(f"-b {args.minbytes} -e {args.maxbytes} {how} gives more than {MAX_SIZES} sizes; "
                         f"expected at most {MAX_SIZES} (a larger -f or -i)")
    return size_sweep(lo, hi, factor=args.stepfactor, step=step_bytes,
                      names=(f"-b {args.minbytes}", f"-e {args.maxbytes}", f"-f {args.stepfactor}", f"-i {step}"))


def _sweep_length(lo, hi, factor, step) -> int:
    """How many sizes :func:`size_sweep` would give (counting stops past MAX_SIZES); 0 when it will
    refuse the arguments itself."""
    if not 0 <= lo <= hi <= MAX_SIZE:
        return 0
    if factor is not None:
        if not (factor > 1 and math.isfinite(factor)):
            return 0
        n, s = 0, lo
        while s <= hi and n <= MAX_SIZES:
            n += 1
            s = max(s + 1, int(s * factor))
        return n
    if step is None or step <= 0:
        return 0
    return (hi - lo) // step + 1


def row_count(spec, size: int, P: int, itemsize: int) -> int:
    """The count column of a ``size``-byte call, as nccl-tests 2.19 computes it: elements per device
    (allreduce, broadcast, reduce, sendrecv), or per block for the collectives whose size is P blocks
    (allgather, reduce_scatter, alltoall, gather, scatter, hypercube), rounded down to a multiple of
    16 bytes per block (``(count/nranks) & -(16/eltSize)`` in its ``*GetCollByteCount``).

    >>> from collectives import registry
    >>> row_count(registry.collective("alltoall"), 1000, 8, 4), row_count(registry.collective("allreduce"), 1000, 8, 4)
    (28, 250)
    """
    count = spec.count_for_nbytes(size, P, itemsize)
    if spec.per_device_blocks:
        align = max(1, 16 // itemsize)
        count -= count % align
    return count


def _choices(value, valid, what, not_yet=()):
    if value == "all":
        return list(valid)
    if value in not_yet:
        raise UsageError(f"{what} {value!r} is nccl-tests' but not modelled in ccemu yet; expected one of "
                         f"{', '.join(valid)} or all")
    if value not in valid:
        raise UsageError(f"unknown {what} {value!r}; expected one of {', '.join(valid)} or all")
    return [value]


def _roots(args, spec, P, name) -> list[int]:
    text = str(args.root).strip()
    if text == "all":
        return list(range(P)) if spec.rooted else [0]
    try:
        root = int(text, 10)
    except ValueError:
        try:
            root = int(text, 0)
        except ValueError:
            raise UsageError(f"-r {args.root}: expected a device index or all") from None
    if not 0 <= root < P:
        raise UsageError(f"-r {args.root} is not a device of {name} (0..{P - 1})")
    return [root]


# -- rank agreement -----------------------------------------------------------------------------------

def _agree(args, comm) -> None:
    """Under MPI, every rank must run the same benchmark: compare the parsed arguments (and a topology
    file's contents) across ranks before any work, and fail on every rank with one line if they differ."""
    items = []
    given = vars(args)
    for dest in [d for d in _FLAGS if d in given] + sorted(set(given) - set(_FLAGS)):  # --help order
        value = given[dest]
        if dest in _RANK_LOCAL:
            continue
        flag = _FLAGS.get(dest)
        if flag is None:
            shown = f"the collective {value}" if dest == "collective" else f"{dest}={value!r}"
        elif isinstance(value, bool):
            shown = flag if value else f"no {flag}"
        elif value is None:
            shown = f"no {flag}"
        else:
            shown = f"{flag} {value}"
        if dest == "topology" and isinstance(value, str) and os.path.isfile(value):
            shown += f" (contents crc32 {_file_crc(value)})"
        items.append((flag or dest, shown))
    agree_on_arguments(comm, items)


def _file_crc(path) -> str:
    import zlib

    crc = 0
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                crc = zlib.crc32(block, crc)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return f"{crc:08x}"


# -- the command ----------------------------------------------------------------------------------------

def _check_flags(args) -> None:
    """Every numeric nccl-tests flag within what it means; one line naming the flag otherwise."""
    for flag, value, lo, hi, what in (
            ("-n", args.iters, 1, MAX_ITERS, "timed iterations"),
            ("-w", args.warmup_iters, 0, MAX_ITERS, "warm-up iterations"),
            ("-c", args.check, 0, MAX_ITERS, "0: no check"),
            ("-m", args.agg_iters, 1, MAX_ITERS, "operations aggregated per iteration"),
            ("-p", args.parallel_init, 0, 1, "0 or 1"),
            ("-z", args.blocking, 0, 3, "nccl-tests' blocking modes"),
            ("-y", args.stream_null, 0, 1, "0 or 1"),
            ("-T", args.timeout, 0, 10**9, "seconds, 0: none"),
            ("-G", args.cudagraph, 0, MAX_ITERS, "CUDA graph launches"),
            ("-C", args.report_cputime, 0, 1, "0 or 1"),
            ("-S", args.report_timestamps, 0, 1, "0 or 1"),
            ("-R", args.local_register, 0, 4, "nccl-tests' registration modes"),
            ("-V", args.device_cta_count, 1, 128, "device-kernel CTAs"),
            ("-M", args.memory_report, 0, 1, "0 or 1"),
            ("-u", args.unalign, 0, MAX_ITERS, "element offset"),
            ("-I", args.per_iter_timing, 0, 1, "0 or 1"),
            ("--seed", args.seed, 0, MAX_SEED, "seed of the instability profile")):
        check_int(flag, value, lo, hi, what)
    if args.run_cycles == 0:
        raise UsageError("-N 0: nccl-tests' endless cycles are not emulated; expected a whole number of cycles "
                         f"from 1 to {MAX_ITERS}")
    check_int("-N", args.run_cycles, 1, MAX_ITERS, "run cycles")
    check_int("-K", args.per_iter_skip, 0, args.iters - 1, "iterations skipped, fewer than -n")
    if args.cta_policy is not None:
        check_int("-x", args.cta_policy, 0, 2, "nccl-tests' CTA policies")
    if args.device_implementation != 0:
        raise UsageError(f"-D {args.device_implementation}: nccl-tests' device-API kernels are not modelled in "
                         "ccemu; expected -D 0 (the library's own implementation)")
    if args.iters * args.agg_iters > MAX_ITERS:
        raise UsageError(f"-n {args.iters} x -m {args.agg_iters} = {args.iters * args.agg_iters} calls per size; "
                         f"expected at most {MAX_ITERS}")
    if not (math.isfinite(args.host_budget) and 0 <= args.host_budget <= 3600):
        raise UsageError(f"--host-budget {args.host_budget}: expected seconds from 0 to 3600 (0: always -n)")
    if args.nodes is not None:
        check_int("--nodes", args.nodes, 1, MAX_DEVICES, "servers of the preset or topology file")
    for flag, value in (("--devices-per-rank", args.devices_per_rank), ("-t", args.nthreads), ("-g", args.ngpus)):
        if value is not None:
            check_int(flag, value, 1, MAX_DEVICES)


def main(args) -> int:
    from topologies import load_topology

    world_comm, world_rank, world_size = world()
    if world_size > 1:  # before anything else: a rank that goes another way would leave the others waiting
        _agree(args, world_comm)
    coll = resolve_collective(args.collective)
    spec = registry.collective(coll)
    _check_flags(args)
    if spec.call_params and not args.model_only:
        # A collective sized by more than a count (alltoallv's counts matrix) has no benchmark data
        # path yet: its rows are emulated times only, and #wrong says N/A rather than check nothing.
        if world_rank == 0:
            print(f"ccemu: note: {coll}: timed on the network model only (its data runs through "
                  f"collectives.run(..., {', '.join(spec.call_params)}=)); #wrong is N/A", file=sys.stderr)
        args.model_only = True
    # Only rank 0 writes the JSON file (every rank with --model-only, which runs no MPI).
    check_output_paths(("-J", args.output_file if args.model_only or world_rank == 0 else None),
                       ("--trace", args.trace if args.model_only or world_rank == 0 else None))
    sizes = sizes_from(args)
    names = [n for n in TYPE_ORDER if n in dtypes.nccl_names()]
    types = [dtypes.canonical(t) for t in _choices(args.datatype, names, "datatype", NOT_YET_TYPES)]
    # sendrecv names its ops in the rows (nccl-tests passes them to TimeTest) though it reduces nothing.
    ops = _choices(args.op, OP_ORDER, "op") if spec.reduces or spec.op_column else ["sum"]
    for dtype in types:
        bad = [s for s in sizes if s % dtypes.itemsize(dtype)]
        if bad:
            raise UsageError(f"size {bad[0]} is not a multiple of the {dtype} element size "
                             f"({dtypes.itemsize(dtype)} bytes)")
    topo = load_topology(args.topology, nodes=args.nodes, gpu=args.gpu, nic=args.nic, routing=args.routing)
    P = topo.num_devices
    try:  # hypercube: powers of two only (nccl-tests prints "nRanks P is not a power of 2, skipping")
        spec.check_devices(P)
    except ValueError as exc:  # the same on every rank: rank 0 says it, all exit with 2
        raise RanksDisagree(f"{topo.name}: {exc}") from None
    roots = _roots(args, spec, P, topo.name)
    if args.algo.startswith("msccl:"):
        args.algo = _load_msccl(coll, args.algo[len("msccl:"):])
    if args.algo not in SELECTIONS:
        registry.info(coll, args.algo)
    comm, rank, nranks = (None, 0, 1) if args.model_only else world()
    threads, gpus = _layout(args, P, nranks, topo.name)
    if not args.model_only and sizes:
        # The data plane runs in column blocks, so what it needs does not grow with the size, but a
        # system's one column (every device's slot elements) must still fit.
        from collectives import dataplane
        from topologies.presets._common import physical_memory_bytes

        memory = physical_memory_bytes()
        top = max(sizes)
        need = max(dataplane.memory_needed(coll, P, spec.count_for_nbytes(top, P, dtypes.itemsize(t)), t, nranks)
                   for t in types)
        if memory is not None and need > memory // 2:
            raise UsageError(f"-e {args.maxbytes}: the data plane needs about {need / 2**30:.1f} GiB per process "
                             f"on {P} devices, more than half of the {memory / 2**30:.1f} GiB of this machine; "
                             "use --model-only, or more ranks")
    if args.jitter:
        from topologies.instability import profile
        profile(args.jitter)

    run = _Run(args, coll, spec, topo, P, threads, gpus, comm, rank, nranks, world_size)
    out = _Printer(run, rank == 0)
    out.header()
    rows = []
    try:
        for dtype in types:
            for op in ops:
                for root in roots:
                    done = []
                    for size in sizes:  # each row printed as soon as it is measured
                        done.append(_one_size(run, dtype, op, root, size))
                        out.row(done[-1])
                    rows += done
                    for cycle in range(1, args.run_cycles):  # -N: the sweep again (the emulated times are the same)
                        for r in done:
                            rows.append(dict(r, cycle=cycle))
                            out.row(rows[-1])
    except _Timeout as stop:
        out.p(str(stop))
        return 1
    errors = sum(1 for r in rows for p in ("out_of_place", "in_place") if (r[p]["nwrong"] or 0) > 0)
    busbws = [r[p]["bus_bw"] for r in rows for p in ("out_of_place", "in_place")]
    avg_bus = float(np.mean(busbws)) if busbws else 0.0
    min_bw = _min_bw()
    bw_ok = min_bw is None or avg_bus >= min_bw * 0.9
    out.footer(errors, avg_bus, min_bw, bw_ok, types)
    if args.output_file and rank == 0:
        write_atomic(args.output_file, json.dumps(_json(run, rows, errors, avg_bus, min_bw, bw_ok), indent=1) + "\n")
    if args.trace and rank == 0 and sizes:
        from collectives.trace import trace
        doc = trace(spec.name, max(sizes), topo, algorithm=args.algo, dtype=types[0], op=ops[0], root=roots[0],
                    library=args.library)
        write_atomic(args.trace, json.dumps(doc, separators=(",", ":")) + "\n")
    return 1 if errors or not bw_ok else 0


def _min_bw():
    """``NCCL_TESTS_MIN_BW``: the run fails when the average bus bandwidth is below 0.9 x this value."""
    text = os.environ.get("NCCL_TESTS_MIN_BW")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"NCCL_TESTS_MIN_BW={text!r}: expected a bandwidth in GB/s") from None
    if not math.isfinite(value):
        raise UsageError(f"NCCL_TESTS_MIN_BW={text!r}: expected a finite bandwidth in GB/s")
    return value


def _load_msccl(coll, path):
    """``--algo msccl:FILE``: the MSCCL XML algorithm file registered (afresh: the file may have
    changed since an earlier call in this process) as allreduce algorithm ``msccl:FILE``."""
    from collectives.formats.msccl import register_msccl

    if coll != "allreduce":
        raise UsageError(f"--algo msccl:{path}: ccemu imports MSCCL files for allreduce only, not {coll}")
    name = f"msccl:{path}"
    if name in registry.list_algorithms("allreduce"):
        registry.unregister("allreduce", name)
    return register_msccl(path, name=name)


def _layout(args, P, nranks, name):
    """``(threads, gpus per thread)`` of each rank: ``-t`` and ``-g`` (1 when one is not given), which with
    the ranks must make the topology's P; neither given: P split evenly over the ranks (``-t 1``).

    Every rank (their arguments agreed already) finds the same error here: it is raised as
    :class:`~bench.errors.RanksDisagree`, so rank 0 prints the one line and every rank exits with 2."""
    try:
        return _layout_of(args, P, nranks, name)
    except UsageError as exc:
        raise RanksDisagree(str(exc)) from None


def _layout_of(args, P, nranks, name):
    t, g, k = args.nthreads, args.ngpus, args.devices_per_rank
    if t is None and g is None:
        if args.model_only:
            if k is not None and k != P:
                raise UsageError(f"--devices-per-rank {k}: --model-only runs one process hosting all {P} devices "
                                 f"of {name}")
            return 1, P
        if k is not None:
            if k * nranks != P:
                raise UsageError(f"--devices-per-rank {k} x {nranks} ranks = {k * nranks} devices, but the topology "
                                 f"has {P}")
            return 1, k
        if P % nranks:
            raise UsageError(f"the topology has {P} devices, which {nranks} MPI ranks cannot share evenly; "
                             "choose a rank count that divides it, or --model-only")
        return 1, P // nranks
    t_, g_ = t or 1, g or 1
    if nranks * t_ * g_ != P:
        shown = f"-t {t_}{'' if t else ' (default)'} x -g {g_}{'' if g else ' (default)'} x {nranks} rank(s)"
        raise UsageError(f"{shown} = {nranks * t_ * g_} devices, but the topology {name} has {P}: ccemu's device "
                         f"count is the topology's, so ranks x -t x -g must be {P} (or give neither -t nor -g)")
    if k is not None and k != t_ * g_:
        raise UsageError(f"--devices-per-rank {k} differs from -t {t_} x -g {g_} = {t_ * g_}")
    return t_, g_


class _Timeout(Exception):
    """-T: an emulated synchronisation waited longer than the timeout (the message is nccl-tests' line)."""


class _Run:
    """What the whole run shares: arguments, topology, layout, the library ``auto`` follows."""

    def __init__(self, args, coll, spec, topo, P, threads, gpus, comm, rank, nranks, world_size):
        from collectives import libraries
        from collectives.timing import DEFAULT_LIBRARY

        self.args, self.coll, self.spec, self.topo, self.P = args, coll, spec, topo, P
        self.threads, self.gpus, self.k = threads, gpus, threads * gpus
        self.comm, self.rank, self.nranks, self.world_size = comm, rank, nranks, world_size
        self.perf = spec.perf_name or f"{coll}_perf"
        self.host = socket.gethostname().split(".")[0]
        self.start_time = time.strftime(_TIME_FORMAT)
        lib = (args.library or DEFAULT_LIBRARY) if args.algo == "auto" else "ideal"
        if lib == "native":
            lib = libraries.native_library(topo)
        self.library = lib
        self.library_version = libraries.library(lib).default_version
        try:
            self.device_model = libraries.device_model(topo)
        except ValueError:
            self.device_model = topo.name
        self.validation = 0 if args.model_only else args.check
        # time(library pick) / time(best): shown in the JSON and the extended columns only, so only timed
        # for them (best searches every candidate: the default output does not pay for it).
        self.wants_headroom = args.algo == "auto" and lib != "ideal" and (args.columns == "extended"
                                                                          or bool(args.output_file))

    def nccl_version(self) -> str:
        """``nccl-headers=`` / ``nccl-library=``: NCCL's version code (``NCCL_VERSION_CODE``, 2.19.3 -> 21903)
        for the NCCL and RCCL models, as nccl-tests prints it; ``name-version`` for HCCL and ideal."""
        code = self.nccl_version_code()
        return str(code) if code else f"{self.library}-{self.library_version}"

    def nccl_version_code(self) -> int:
        if self.library not in ("nccl", "rccl"):
            return 0
        try:
            major, minor, patch = (int(x) for x in self.library_version.split(".")[:3])
        except ValueError:
            return 0
        return major * 10000 + minor * 100 + patch if (major, minor) >= (2, 9) else major * 1000 + minor * 100 + patch


def _one_size(run, dtype, op, root, size):
    args, spec, P, topo = run.args, run.spec, run.P, run.topo
    size_item = dtypes.itemsize(dtype)
    count = row_count(spec, size, P, size_item)
    nbytes = spec.nbytes(P, count, size_item)
    sim = simulate(spec.name, nbytes, topo, algorithm=args.algo, dtype=dtype, op=op, root=root,
                   jitter=args.jitter or None, seed=args.seed, iters=args.iters, library=args.library)
    if args.timeout > 0:
        calls = args.iters * args.agg_iters if args.blocking == 0 else (args.agg_iters if args.blocking == 3 else 1)
        wait = sim.time_s * calls
        if wait > args.timeout:
            raise _Timeout(f"{run.host}: Test timeout ({args.timeout}s) emulated: {calls} call(s) of {nbytes} bytes "
                           f"wait {wait:.6f} s")
    headroom = None
    if run.wants_headroom and sim.library_choice is not None and sim.library_choice.library != "ideal":
        best = simulate(spec.name, nbytes, topo, algorithm="best", dtype=dtype, op=op, root=root)
        headroom = sim.time_s / best.time_s if best.time_s > 0 else None
    samples = (np.asarray(sim.time_samples_s, dtype=float) if sim.time_samples_s is not None
               else np.full(args.iters, sim.time_s))
    row = {"size": nbytes, "count": count, "type": dtypes.NCCL_NAMES.get(dtype, dtype),
           "redop": op if spec.reduces or spec.op_column else "none", "root": root if spec.rooted else -1, "cycle": 0,
           "algorithm": sim.algorithm, "params": sim.params, "protocol": sim.protocol,
           "bus_efficiency": sim.bus_efficiency, "peak_GBps": sim.peak_GBps, "headroom": headroom,
           "library": None if sim.library_choice is None else sim.library_choice.as_dict(),
           "time_stats_us": {stat: v * 1e6 for stat, v in sim.time_stats().items()},
           "iter_us": samples * 1e6}
    data = ([(math.nan, None)] * 2 if args.model_only else
            _run_data(args, spec, topo, P, run.comm, dtype, op, root, count, sim.algorithm, sim.params))
    # nccl-tests' algbw: S / time, but for hypercube the (P-1)/P of S a rank receives (HyperCubeGetBw).
    alg_bw = sim.algbw_GBps * spec.algbw_factor(P)
    for place, (host_s, nwrong) in zip(("out_of_place", "in_place"), data):
        shown = nwrong
        if place == "in_place" and not spec.checks_in_place:
            row[f"{spec.name}_in_place_nwrong"] = nwrong  # nccl-tests checks no in-place alltoall/sendrecv: N/A
            shown = None
        row[place] = {"time": sim.time_s * 1e6, "alg_bw": alg_bw, "bus_bw": sim.busbw_GBps,
                      "nwrong": shown, "host_time": host_s * 1e6}
    return row


# -- the data plane --------------------------------------------------------------------------------

def _run_data(args, spec, topo, P, comm, dtype, op, root, count, algorithm, params):
    """``[(host seconds per call, #wrong)]`` out of place and in place for this size, with real data
    on the local or MPI executor, running the schedule the time plane timed (same algorithm and
    parameters), in column blocks of bounded memory (:func:`collectives.dataplane.measure`)."""
    from collectives import dataplane

    budget = args.host_budget if args.host_budget > 0 else None
    runs = dataplane.measure(spec.name, P, count, algorithm, params, dtype=dtype, op=op, root=root,
                             topology=topo, comm=comm, iters=args.iters * args.agg_iters, warmup=args.warmup_iters,
                             check=args.check != 0, places=(False, True), budget_s=budget)
    return [(r.host_s if comm is None else _combine(comm, r.host_s, args.average), r.nwrong) for r in runs]


def _combine(comm, value, how):
    values = comm.allgather(value)
    return {0: values[0], 1: float(np.mean(values)), 2: min(values), 3: max(values)}[how]


# -- output -------------------------------------------------------------------------------------------

def fmt_num(value, width) -> str:
    """nccl-tests' ``getFloatStr``: the first of %.2f, %.1f, %.0f that fits ``width``, else %.1e (width 7
    or more) or %.0e, cut to ``width`` characters as its ``snprintf`` does.

    >>> fmt_num(12.3456, 6), fmt_num(1234.567, 6), fmt_num(123456.7, 6), fmt_num(1e9, 7), fmt_num(2.5e7, 6)
    (' 12.35', '1234.6', '123457', '1.0e+09', ' 2e+07')
    """
    if value is None:
        return f"{'N/A':>{width}}"
    value = float(value)
    for f in ("%*.2f", "%*.1f", "%*.0f"):
        s = f % (width, value)
        if len(s) <= width:
            return s
    return (("%*.1e" if width >= 7 else "%*.0e") % (width, value))[:width]


def mem_string(amount: int) -> str:
    """nccl-tests' ``getMemString`` (B, KB, MB, GB of 1024; 2 decimals below 10, 1 below 100).

    >>> mem_string(0), mem_string(3 << 30), mem_string(384 << 20)
    ('0.00 B', '3.00 GB', '384 MB')
    """
    value, unit = float(amount), " B"
    for limit, name in ((2**30, " GB"), (2**20, " MB"), (2**10, " KB")):
        if abs(value) >= limit:
            value, unit = value / limit, name
            break
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}{unit}"


def _iter_stats(times_us, skip):
    """nccl-tests' per-iteration summary of ``times_us`` past the first ``skip``: min, max, avg, p50, p95,
    p99 (its percentile index ``min(n - 1, (n p + 99) / 100 - 1)``), stdev and cv%."""
    t = np.sort(np.asarray(times_us, dtype=float)[skip:])
    n = len(t)

    def pct(p):
        return float(t[min(n - 1, (n * p + 99) // 100 - 1)])

    avg = float(t.mean())
    stdev = float(np.sqrt(np.mean((t - avg) ** 2)))
    return {"min_us": float(t[0]), "max_us": float(t[-1]), "avg_us": avg, "p50_us": float(t[n // 2]),
            "p95_us": pct(95), "p99_us": pct(99), "stdev_us": stdev, "cv_pct": stdev / avg * 100 if avg > 0 else 0.0}


class _Printer:
    """nccl-tests 2.19's text output (``src/util.cu``), on rank 0."""

    def __init__(self, run, enabled):
        self.run = run
        self.enabled = enabled
        a = run.args
        self.extended = a.columns == "extended"
        self.per_iter = bool(a.per_iter_timing)
        self.stamps = bool(a.report_timestamps)
        self.timestr = "cputime" if a.report_cputime else "time"

    def p(self, text=""):
        if self.enabled:
            print(text, flush=True)

    # The header: run parameters and devices (writeDeviceReport), then the column headers (writeResultHeader).
    def header(self):
        run, a = self.run, self.run.args
        if a.output_file:
            self.p(f"# Writing JSON output to {a.output_file}")
        ver = run.nccl_version()
        self.p(f"# nccl-tests version {NCCL_TESTS_VERSION} nccl-headers={ver} nccl-library={ver}")
        self.p(f"# Collective test starting: {run.perf}")
        self.p(f"# nThread {run.threads} nGpus {run.gpus} minBytes {parse_size(a.minbytes)} maxBytes "
               f"{parse_size(a.maxbytes)} step: {_step(a)} warmup iters: {a.warmup_iters} iters: {a.iters} "
               f"agg iters: {a.agg_iters} validation: {run.validation} graph: {a.cudagraph} unalign: {a.unalign}")
        if a.blocking:
            self.p(_BLOCKING_LINES[a.blocking])
        if self.per_iter:
            skip = f"; summary skips first {a.per_iter_skip} iterations" if a.per_iter_skip else ""
            self.p(f"# Per-Iteration Report: CUDA event timing; i_* uses max over process rows{skip} ")
        if a.parallel_init:
            self.p("# Parallel Init Enabled: threads call into NcclInitRank concurrently ")
        if self.extended:
            mode = "model only, no data" if a.model_only else f"{run.nranks} rank(s) x {run.k} device(s)"
            self.p(f"# ccemu {VERSION} emulated: topology {run.topo.name} ({run.P} devices), {mode}, library "
                   f"{run.library} {run.library_version}".rstrip())
        self.p("#")
        self.p("# Using devices")
        for block in _device_blocks(run):
            if self.enabled:
                print(block, end="", flush=True)
        self._columns()

    def _columns(self):
        ts_label, ts_fmt, pad = ("timestamp", _TIME_FORMAT, 19) if self.stamps else ("", "", 0)
        t = self.timestr
        self.p("#")
        lead = "# %10s  %12s  %8s  %6s  %6s" % ("", "", "", "", "")
        names = "# %10s  %12s  %8s  %6s  %6s" % ("size", "count", "type", "redop", "root")
        units = "# %10s  %12s  %8s  %6s  %6s" % ("(B)", "(elements)", "", "", "")
        if self.per_iter:
            top = lead + ("              out-of-place (+ per-iteration)                                "
                          "in-place (+ per-iteration)")
            for _ in range(2):
                names += "  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s" % (t, "algbw", "busbw", "#wrong", "i_min", "i_max",
                                                                      "i_p99", "i_cv%")
                units += "  %7s  %6s  %6s  %6s  %7s  %7s  %7s  %7s" % ("(us)", "(GB/s)", "(GB/s)", "", "(us)", "(us)",
                                                                      "(us)", "(%)")
        else:
            top = lead + "           out-of-place                       in-place          "
            for _ in range(2):
                names += "  %7s  %6s  %6s  %6s" % (t, "algbw", "busbw", "#wrong")
                units += "  %7s  %6s  %6s  %6s" % ("(us)", "(GB/s)", "(GB/s)", "")
        names += " %*s" % (pad, ts_label)
        units += " %*s" % (pad, ts_fmt)
        if self.extended:
            x_names, x_units = self._extended_heads()
            names, units = names + x_names, units + x_units
        self.p(top)
        self.p(names)
        self.p(units)

    def _extended_heads(self):
        heads = [("algo", "", 10), ("buseff", "", 6), ("host_us", "(us)", 8)]
        if self.run.args.jitter:
            heads.append(("p99_us", "(us)", 8))
        if self.run.wants_headroom:
            heads.append(("headroom", "", 8))
        return ("".join("  %*s" % (w, n) for n, _, w in heads), "".join("  %*s" % (w, u) for _, u, w in heads))

    def row(self, r):
        a = self.run.args
        line = "%12d  %12d  %8s  %6s  %6s" % (r["size"], r["count"], r["type"], r["redop"], "%6i" % r["root"])
        for place in ("out_of_place", "in_place"):
            x = r[place]
            shown = x["host_time"] if a.report_cputime else x["time"]
            body = "  %7s  %6s  %6s" % (fmt_num(shown, 7), fmt_num(x["alg_bw"], 6), fmt_num(x["bus_bw"], 6))
            line += body + ("  %6g" % x["nwrong"] if x["nwrong"] is not None else "    N/A")
            if self.per_iter:
                s = _iter_stats(r["iter_us"], a.per_iter_skip)
                line += "  %7s  %7s  %7s  %7s" % (fmt_num(s["min_us"], 7), fmt_num(s["max_us"], 7),
                                                  fmt_num(s["p99_us"], 7), fmt_num(s["cv_pct"], 7))
        if self.stamps:
            line += "%21s" % time.strftime(_TIME_FORMAT)
        if self.extended:
            line += "  %10s  %6s  %8s" % (r["algorithm"], fmt_num(r["bus_efficiency"], 6),
                                          fmt_num(r["in_place"]["host_time"], 8))
            if a.jitter:
                line += "  %8s" % fmt_num(r["time_stats_us"]["p99"], 8)
            if self.run.wants_headroom:
                line += "  %8s" % fmt_num(r["headroom"], 8)
        self.p(line)

    # The footer (writeResultFooter, the memory report, finalizeFooter, writeErrors).
    def footer(self, errors, avg_bus, min_bw, bw_ok, types):
        run = self.run
        self.p("# %-20s : %d %s" % ("Out of bounds values", errors, "FAILED" if errors else "OK"))
        verdict = "" if min_bw is None else ("OK" if bw_ok else "FAILED")
        self.p("# %-20s : %g %s" % ("Avg bus bandwidth", avg_bus, verdict))
        self.p("#")
        self.p(f"# Collective test concluded: {run.perf}")
        if run.args.memory_report:
            user = max(_buffer_bytes(run, parse_size(run.args.maxbytes), t) for t in types) if types else 0
            parts = [("Initialization", 0), ("User-Allocated", user), ("Collective", 0)]
            text = "".join(f"{n} {mem_string(v)} | " for n, v in parts) + f"Total  {mem_string(user)}"
            self.p("# %-20s : %s" % ("GPU memory usage", text))
        self.p("#")
        self.p("")


def _step(a) -> str:
    """The header's ``step:``: nccl-tests' integer factor, or the increment in bytes."""
    f = a.stepfactor
    if f is not None:
        return f"{int(f)}(factor)" if float(f).is_integer() else f"{f:g}(factor)"
    return f"{parse_size(a.stepbytes)}(bytes)"


def _buffer_bytes(run, size, dtype) -> int:
    """The per-device buffers nccl-tests allocates for the largest size: send and receive of ``size``
    bytes each (``ncclMemAlloc(maxBytes)``), plus the expected result (its receive count) with -c."""
    item = dtypes.itemsize(dtype)
    count = row_count(run.spec, size, run.P, item)
    recv = run.spec.nbytes(run.P, count, item)
    if run.spec.name in ("reduce_scatter", "scatter"):   # a block per device: recvcount is the count
        recv = count * item
    return 2 * size + (recv if run.validation else 0)


def _device_infos(run):
    """``(pids, hosts)`` of the ranks (one process without MPI). Rank r hosts devices r*k .. r*k+k-1,
    its CUDA devices numbered after those of the ranks before it on the same host."""
    pid, host = os.getpid(), run.host
    if run.comm is not None:
        pids = run.comm.allgather(pid)
        hosts = run.comm.allgather(host)
    else:
        pids, hosts = [pid], [host]
    return pids, hosts


def _pci_id(cuda_dev) -> str:
    """A PCI id in nccl-tests' ``%04x:%02x:%02x`` (domain, bus, device): one bus per emulated device."""
    return f"{(cuda_dev >> 8) & 0xffff:04x}:{cuda_dev & 0xff:02x}:00"


def _device_line(d, pid, host, cuda_dev, model):
    return "#  Rank %2d Group %2d Pid %6d on %10s device %2d [%s] %s (emulated)" % (d, 0, pid, host, cuda_dev,
                                                                                    _pci_id(cuda_dev), model)


def _device_blocks(run):
    """Each process's ``#  Rank`` lines, cut as nccl-tests cuts them: at most 2047 characters, ending
    ``...`` when they would be longer (its 2048-byte line buffer)."""
    pids, hosts = _device_infos(run)
    run.pids, run.hosts = pids, hosts
    blocks = []
    for r in range(len(pids)):
        local = sum(1 for q in range(r) if hosts[q] == hosts[r])
        text = ""
        for i in range(run.k):
            if len(text) >= _MAX_LINE:
                break
            text += _device_line(r * run.k + i, pids[r], hosts[r], local * run.k + i, run.device_model) + "\n"
        if len(text) >= _MAX_LINE:
            text = text[:_MAX_LINE - 5] + "...\n"
        blocks.append(text)
    return blocks


# -- JSON (nccl-tests' layout, JSON_FILE_VERSION 3, plus one "ccemu" block) -------------------------------

def _jbool(value) -> str:
    return "true" if value else "false"     # nccl-tests writes booleans as the strings "true" / "false"


def _jnum(value):
    if value is None:
        return None
    value = float(value)
    return "nan" if math.isnan(value) else value   # as nccl-tests' jsonDouble writes a NaN


def _json(run, rows, errors, avg_bus, min_bw, bw_ok):
    a = run.args
    config = {"nthreads": run.threads, "ngpus": run.gpus, "minimum_bytes": parse_size(a.minbytes),
              "maximum_bytes": parse_size(a.maxbytes)}
    if a.stepfactor is not None:
        config["step_factor"] = int(a.stepfactor) if float(a.stepfactor).is_integer() else a.stepfactor
    else:
        config["step_bytes"] = parse_size(a.stepbytes)
    config.update({"warmup_iters": a.warmup_iters, "iterations": a.iters, "aggregated_iterations": a.agg_iters,
                   "validation": run.validation, "graph": a.cudagraph, "blocking_collectives": _jbool(a.blocking),
                   "per_iter_timing": _jbool(a.per_iter_timing), "per_iter_skip": a.per_iter_skip,
                   "parallel_init": _jbool(a.parallel_init)})
    devices = []
    for r in range(len(run.pids)):
        local = sum(1 for q in range(r) if run.hosts[q] == run.hosts[r])
        for i in range(run.k):
            cuda_dev = local * run.k + i
            devices.append({"rank": r * run.k + i, "group": 0, "pid": run.pids[r], "hostname": run.hosts[r],
                            "device": cuda_dev, "device_hex": _pci_id(cuda_dev),
                            "device_info": f"{run.device_model} (emulated)"})
    config["devices"] = devices
    time_key = "cpu_time" if a.report_cputime else "time"

    def place(x):
        return {time_key: _jnum(x["host_time"] if a.report_cputime else x["time"]), "alg_bw": _jnum(x["alg_bw"]),
                "bus_bw": _jnum(x["bus_bw"]), "nwrong": _jnum(x["nwrong"])}

    def per_iter(r):
        times = [float(t) for t in r["iter_us"]]
        out = {"skipped_iterations": a.per_iter_skip, **_iter_stats(times, a.per_iter_skip), "times_us": times}
        if run.world_size > 1 and not a.model_only:
            out["per_process_max_times_us"] = [times] * run.world_size
        return out

    results = []
    for r in rows:
        item = {"size": r["size"], "count": r["count"], "type": r["type"], "redop": r["redop"],
                "root": "%6i" % r["root"], "out_of_place": place(r["out_of_place"])}
        if a.per_iter_timing:
            item["out_of_place_per_iter"] = per_iter(r)
        item["in_place"] = place(r["in_place"])
        if a.per_iter_timing:
            item["in_place_per_iter"] = per_iter(r)
        item.update({"actual_iterations": a.iters, "experiment_name": ""})
        results.append(item)
    argv = getattr(a, "_argv", None) or ["ccemu", "bench", a.collective]
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)]

    def host(x):
        return None if x is None or math.isnan(x) else x

    ccemu_rows = [{"size": r["size"], "type": r["type"], "redop": r["redop"], "root": r["root"], "cycle": r["cycle"],
                   "algorithm": r["algorithm"], "params": r["params"], "protocol": r["protocol"],
                   "headroom": r["headroom"], "library": r["library"], "bus_efficiency": r["bus_efficiency"],
                   "peak_GBps": r["peak_GBps"], "time_stats_us": r["time_stats_us"],
                   "host_time_us": {"out_of_place": host(r["out_of_place"]["host_time"]),
                                    "in_place": host(r["in_place"]["host_time"])},
                   **{k: v for k, v in r.items() if k.endswith("_in_place_nwrong")}} for r in rows]
    return {
        "version": JSON_FILE_VERSION, "start_time": run.start_time, "args": argv, "env": env,
        "nccl_version": run.nccl_version_code(), "config": config, "results": results,
        "out_of_bounds": {"count": errors, "okay": _jbool(errors == 0)},
        "average_bus_bandwidth": {"bandwidth": _jnum(avg_bus),
                                  "okay": "unchecked" if min_bw is None else _jbool(bw_ok)},
        "errors": [], "end_time": time.strftime(_TIME_FORMAT),
        "ccemu": {"version": VERSION, "nccl_tests_version": NCCL_TESTS_VERSION, "collective": run.coll,
                  "topology": run.topo.name, "devices": run.P, "ranks": run.nranks, "device_model": run.device_model,
                  "algo": a.algo, "library": {"name": run.library, "version": run.library_version},
                  "jitter": a.jitter, "seed": a.seed, "model_only": bool(a.model_only), "columns": a.columns,
                  "host_budget_s": a.host_budget, "run_cycles": a.run_cycles,
                  "units": {"time": "us", "bw": "GB/s (1e9 B/s)"},
                  "no_ops": {flag: why for flag, why in NO_OPS.items()}, "results": ccemu_rows},
    }

"""``ccemu bench <collective>`` / ``python -m bench <collective>``: nccl-tests' flags, table and JSON.

The time, algbw and busbw columns are the emulated figures on the chosen topology; the data really
moves (Numba kernels in one process, or across MPI ranks under ``mpirun``) and ``#wrong`` counts the
elements that differ from the expected result, as nccl-tests does. Extra columns after nccl-tests'
own: the algorithm used, bus efficiency (busbw / per-device peak) and host wall time.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np

from collectives import dtypes, registry
from collectives import simulate
from collectives.timing import SELECTIONS
from collectives.ops import OPS
from collectives.study import MAX_SIZE, parse_size, size_sweep

from .errors import (MAX_DEVICES, MAX_ITERS, MAX_SEED, MAX_SIZES, UsageError, check_int, check_output_paths,
                     write_atomic)
from .mpi_support import agree_on_arguments, world

from . import VERSION

DEFAULT_TOPOLOGY = "atlas800t-a2"


def register(sub):
    p = sub.add_parser("bench", help="nccl-tests-style benchmark of one collective",
                       description="Run a collective over a size sweep and print nccl-tests' table with emulated times.")
    names = registry.list_collectives()
    p.add_argument("collective", choices=names, metavar="COLLECTIVE", help="one of " + ", ".join(names))
    p.add_argument("-b", "--minbytes", default="32M", help="smallest size (default 32M)")
    p.add_argument("-e", "--maxbytes", default="32M", help="largest size (default 32M)")
    p.add_argument("-i", "--stepbytes", default="1M", help="fixed size increment (default 1M)")
    p.add_argument("-f", "--stepfactor", type=float, default=None, help="multiplicative size factor (overrides -i)")
    p.add_argument("-n", "--iters", type=int, default=20, help="timed iterations (default 20)")
    p.add_argument("-w", "--warmup_iters", type=int, default=1, help="warm-up iterations (default 1)")
    p.add_argument("--host-budget", type=float, default=0.25, metavar="SECONDS",
                   help="host seconds the timed data-plane calls of one size may take: fewer than -n iterations "
                        "(at least one) past it; the emulated times need no repeats (default 0.25; 0: always -n)")
    p.add_argument("-c", "--check", type=int, default=1, help="check results (0: no, prints N/A)")
    p.add_argument("-d", "--datatype", default="float", help="|".join(dtypes.nccl_names()) + "|all")
    p.add_argument("-o", "--op", default="sum", help="|".join(OPS) + "|all")
    p.add_argument("-r", "--root", type=int, default=0, help="root device of broadcast/reduce")
    p.add_argument("-a", "--average", type=int, default=1, choices=[0, 1, 2, 3],
                   help="host times across ranks: 0 rank 0, 1 mean, 2 min, 3 max")
    p.add_argument("-J", "--output_file", default=None, help="also write nccl-tests' JSON layout to this file")
    p.add_argument("--topology", default=DEFAULT_TOPOLOGY, help=f"preset name or topology file (default {DEFAULT_TOPOLOGY})")
    p.add_argument("--nodes", type=int, default=None, help="number of servers for a preset (default 1)")
    p.add_argument("--algo", default="auto", help="algorithm name, auto (default: the library's choice) or best "
                                                  "(the fastest of every algorithm and parameter set)")
    p.add_argument("--library", default=None, metavar="NAME",
                   help="library whose tuner --algo auto follows: nccl, rccl, hccl, ideal (= best) or native (the "
                        "system vendor's); default ideal. The JSON then gives the headroom time(auto) / time(best)")
    p.add_argument("--model-only", action="store_true", help="emulated time only: no data, any device count, no mpirun")
    p.add_argument("--devices-per-rank", type=int, default=None, help="devices hosted by each MPI rank")
    p.add_argument("--jitter", default=None, metavar="PROFILE",
                   help="instability profile (stable, noisy, lossy): the time column is the median of -n seeded "
                        "calls, p99_us their 99th percentile")
    p.add_argument("--seed", type=int, default=0, help="seed of the instability profile (default 0)")
    p.set_defaults(func=main)
    _FLAGS.update({a.dest: (a.option_strings[0] if a.option_strings else None) for a in p._actions})


# dest -> flag of every argument of ``ccemu bench`` (filled by register), for the rank agreement.
_FLAGS: dict = {}
# Arguments that may differ between ranks: only rank 0 writes the JSON file.
_RANK_LOCAL = ("func", "output_file", "command")


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


def _choices(value, valid, what):
    if value == "all":
        return list(valid)
    if value not in valid:
        raise UsageError(f"unknown {what} {value!r}; expected one of {', '.join(valid)} or all")
    return [value]


def main(args) -> int:
    from topologies import load_topology

    world_comm, world_rank, world_size = world()
    if world_size > 1:  # before anything else: a rank that goes another way would leave the others waiting
        _agree(args, world_comm)
    coll = args.collective
    spec = registry.collective(coll)
    for flag, value, least, what in (("-n", args.iters, 1, "timed iterations"),
                                     ("-w", args.warmup_iters, 0, "warm-up iterations"),
                                     ("-c", args.check, 0, "0: no check")):
        check_int(flag, value, least, MAX_ITERS, what)
    check_int("--seed", args.seed, 0, MAX_SEED, "seed of the instability profile")
    if not (math.isfinite(args.host_budget) and 0 <= args.host_budget <= 3600):
        raise UsageError(f"--host-budget {args.host_budget}: expected seconds from 0 to 3600 (0: always -n)")
    if args.nodes is not None:
        check_int("--nodes", args.nodes, 1, MAX_DEVICES, "servers of the preset")
    if args.devices_per_rank is not None:
        check_int("--devices-per-rank", args.devices_per_rank, 1, MAX_DEVICES)
    # Only rank 0 writes the JSON file (every rank with --model-only, which runs no MPI).
    check_output_paths(("-J", args.output_file if args.model_only or world_rank == 0 else None))
    sizes = sizes_from(args)
    types = [dtypes.canonical(t) for t in _choices(args.datatype, dtypes.nccl_names(), "datatype")]
    ops = _choices(args.op, OPS, "op") if spec.reduces else ["sum"]
    for dtype in types:
        bad = [s for s in sizes if s % dtypes.itemsize(dtype)]
        if bad:
            raise UsageError(f"size {bad[0]} is not a multiple of the {dtype} element size "
                             f"({dtypes.itemsize(dtype)} bytes)")
    topo = load_topology(args.topology, nodes=args.nodes)
    P = topo.num_devices
    if not 0 <= args.root < P:
        raise UsageError(f"-r {args.root} is not a device of {topo.name} (0..{P - 1})")
    if args.algo not in SELECTIONS:
        registry.info(coll, args.algo)
    comm, rank, nranks = (None, 0, 1) if args.model_only else world()
    k = _devices_per_rank(args, P, nranks)
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
    out = _Printer(rank == 0, args.jitter)
    out.header(args, coll, sizes, topo, P, k, nranks, rank, comm)
    rows = []
    for dtype in types:
        for op in ops:
            for size in sizes:
                rows.append(_one_size(args, spec, topo, P, k, comm, rank, nranks, dtype, op, size))
                out.row(rows[-1])
    wrong = sum(r["nwrong_total"] for r in rows)
    busbws = [r[p]["bus_bw"] for r in rows for p in ("out_of_place", "in_place")]
    avg_bus = float(np.mean(busbws)) if busbws else 0.0
    out.footer(coll, wrong, avg_bus, args.check)
    if args.output_file and rank == 0:
        write_atomic(args.output_file, json.dumps(_json(args, coll, topo, P, rows, wrong, avg_bus), indent=2) + "\n")
    return 1 if wrong else 0


def _devices_per_rank(args, P, nranks) -> int:
    if args.model_only:
        return P
    if args.devices_per_rank is not None:
        k = args.devices_per_rank
        if k < 1 or k * nranks != P:
            raise UsageError(f"--devices-per-rank {k} x {nranks} ranks = {k * nranks} devices, but the topology "
                             f"has {P}")
        return k
    if P % nranks:
        raise UsageError(f"the topology has {P} devices, which {nranks} MPI ranks cannot share evenly; "
                         "choose a rank count that divides it, or --model-only")
    return P // nranks


def _one_size(args, spec, topo, P, k, comm, rank, nranks, dtype, op, size):
    size_item = dtypes.itemsize(dtype)
    count = spec.count_for_nbytes(size, P, size_item)
    nbytes = spec.nbytes(P, count, size_item)
    sim = simulate(spec.name, nbytes, topo, algorithm=args.algo, dtype=dtype, op=op, root=args.root,
                   jitter=args.jitter or None, seed=args.seed, iters=args.iters, library=args.library)
    headroom = None
    if args.algo == "auto" and sim.library_choice is not None and sim.library_choice.library != "ideal":
        best = simulate(spec.name, nbytes, topo, algorithm="best", dtype=dtype, op=op, root=args.root)
        headroom = sim.time_s / best.time_s if best.time_s > 0 else None
    row = {"size": nbytes, "count": count, "type": dtypes.NCCL_NAMES.get(dtype, dtype),
           "redop": op if spec.reduces else "none",
           "root": args.root if spec.rooted else -1,
           "algorithm": sim.algorithm, "params": sim.params, "protocol": sim.protocol,
           "bus_efficiency": sim.bus_efficiency, "peak_GBps": sim.peak_GBps, "headroom": headroom,
           "library": None if sim.library_choice is None else sim.library_choice.as_dict(),
           "time_stats_us": {stat: v * 1e6 for stat, v in sim.time_stats().items()}}
    total_wrong = 0
    data = ([(math.nan, None)] * 2 if args.model_only else
            _run_data(args, spec, topo, P, comm, dtype, op, count, sim.algorithm, sim.params))
    for place, (host_s, nwrong) in zip(("out_of_place", "in_place"), data):
        total_wrong += nwrong or 0
        row[place] = {"time": sim.time_s * 1e6, "alg_bw": sim.algbw_GBps, "bus_bw": sim.busbw_GBps,
                      "nwrong": nwrong, "host_time": host_s * 1e6}
    row["nwrong_total"] = total_wrong
    return row


# -- the data plane --------------------------------------------------------------------------------

def _run_data(args, spec, topo, P, comm, dtype, op, count, algorithm, params):
    """``[(host seconds per call, #wrong)]`` out of place and in place for this size, with real data
    on the local or MPI executor, running the schedule the time plane timed (same algorithm and
    parameters), in column blocks of bounded memory (:func:`collectives.dataplane.measure`)."""
    from collectives import dataplane

    budget = args.host_budget if args.host_budget > 0 else None
    runs = dataplane.measure(spec.name, P, count, algorithm, params, dtype=dtype, op=op, root=args.root,
                             topology=topo, comm=comm, iters=args.iters, warmup=args.warmup_iters,
                             check=args.check != 0, places=(False, True), budget_s=budget)
    return [(r.host_s if comm is None else _combine(comm, r.host_s, args.average), r.nwrong) for r in runs]


def _combine(comm, value, how):
    values = comm.allgather(value)
    return {0: values[0], 1: float(np.mean(values)), 2: min(values), 3: max(values)}[how]


# -- output -------------------------------------------------------------------------------------------

def fmt_num(value, width) -> str:
    """nccl-tests' column format: the narrowest of %.2f, %.1f, %.0f, %e that fits ``width``.

    >>> fmt_num(12.3456, 6), fmt_num(1234.567, 6), fmt_num(123456.7, 6), fmt_num(1e9, 7)
    (' 12.35', '1234.6', '123457', '1.000000e+09')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'N/A':>{width}}"
    for f in ("%.2f", "%.1f", "%.0f"):
        s = f % value
        if len(s) <= width:
            return f"{s:>{width}}"
    return "%e" % value


class _Printer:
    def __init__(self, enabled, jitter=None):
        self.enabled = enabled
        self.jitter = jitter

    def p(self, text=""):
        if self.enabled:
            print(text, flush=True)

    def header(self, args, coll, sizes, topo, P, k, nranks, rank, comm):
        step = f"{args.stepfactor:g}(factor)" if args.stepfactor else f"{parse_size(args.stepbytes)}(bytes)"
        mode = "model only, no data" if args.model_only else f"{nranks} rank(s) x {k} device(s)"
        self.p(f"# nccl-tests version 2.19.6 layout, ccemu {VERSION} emulated: topology {topo.name} "
               f"({P} devices), {mode}")
        self.p(f"# Collective test starting: {registry.collective(coll).perf_name}")
        self.p(f"# nThread 1 nGpus {k} minBytes {min(sizes)} maxBytes {max(sizes)} step: {step} warmup iters: "
               f"{args.warmup_iters} iters: {args.iters} agg iters: 1 validation: {args.check} graph: 0")
        self.p("#")
        self.p("# Using devices")
        host = socket.gethostname()
        pids = comm.allgather(os.getpid()) if comm is not None else [os.getpid()]
        hosts = comm.allgather(host) if comm is not None else [host]
        for d in range(min(P, 16)):
            r = 0 if args.model_only else d // k
            self.p(f"#  Rank {d:2d} Group  0 Pid {pids[r]:6d} on {hosts[r]:>10s} device {d:2d} [emulated] "
                   f"{topo.name} device {d}")
        if P > 16:
            self.p(f"#  ... and {P - 16} more devices")
        self.p("#")
        self.p("#                                                              out-of-place                       "
               "in-place          ")
        self.p("#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   "
               "algbw   busbw  #wrong        algo  buseff   host_us" + ("    p99_us" if self.jitter else ""))
        self.p("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  "
               "(GB/s)  (GB/s)                              (us)")

    def row(self, r):
        line = f"{r['size']:12d}  {r['count']:12d}  {r['type']:>8s}  {r['redop']:>6s}  {r['root']:6d}"
        for place in ("out_of_place", "in_place"):
            x = place_row = r[place]
            wrong = "N/A" if x["nwrong"] is None else f"{x['nwrong']:g}"
            line += (f"  {fmt_num(place_row['time'], 7)}  {fmt_num(x['alg_bw'], 6)}  {fmt_num(x['bus_bw'], 6)}"
                     f"  {wrong:>6s}")
        host = r["in_place"]["host_time"]
        line += f"  {r['algorithm']:>10s}  {fmt_num(r['bus_efficiency'], 6)}  {fmt_num(host, 8)}"
        if self.jitter:
            line += f"  {fmt_num(r['time_stats_us']['p99'], 8)}"
        self.p(line)

    def footer(self, coll, wrong, avg_bus, check):
        self.p(f"# Out of bounds values : {wrong} {'OK' if wrong == 0 else 'FAILED'}")
        self.p(f"# Avg bus bandwidth    : {avg_bus:g}")
        self.p("#")
        self.p(f"# Collective test concluded: {registry.collective(coll).perf_name}")
        self.p("")


def _json(args, coll, topo, P, rows, wrong, avg_bus):
    def place(x):
        return {"time": x["time"], "alg_bw": x["alg_bw"], "bus_bw": x["bus_bw"], "nwrong": x["nwrong"],
                "host_time": None if math.isnan(x["host_time"]) else x["host_time"]}

    return {
        "config": {"collective": registry.collective(coll).perf_name, "minBytes": parse_size(args.minbytes),
                   "maxBytes": parse_size(args.maxbytes), "stepFactor": args.stepfactor,
                   "stepBytes": parse_size(args.stepbytes), "iters": args.iters, "warmupIters": args.warmup_iters,
                   "validation": args.check, "datatype": args.datatype, "op": args.op, "root": args.root},
        "results": [{"size": r["size"], "count": r["count"], "type": r["type"], "redop": r["redop"], "root": r["root"],
                     "out_of_place": place(r["out_of_place"]), "in_place": place(r["in_place"]),
                     "ccemu": {"algorithm": r["algorithm"], "params": r["params"], "protocol": r["protocol"],
                               "headroom": r["headroom"], "library": r["library"],
                               "bus_efficiency": r["bus_efficiency"], "peak_GBps": r["peak_GBps"],
                               "time_stats_us": r["time_stats_us"]}} for r in rows],
        "out_of_bounds": {"count": wrong, "okay": wrong == 0},
        "average_bus_bandwidth": {"bandwidth": avg_bus, "okay": True},
        "ccemu": {"version": VERSION, "topology": topo.name, "devices": P, "algo": args.algo,
                  "jitter": args.jitter, "seed": args.seed,
                  "model_only": bool(args.model_only), "units": {"time": "us", "bw": "GB/s (1e9 B/s)"}},
    }

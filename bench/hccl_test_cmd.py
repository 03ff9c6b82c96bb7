"""``ccemu hccl-test EXECUTABLE``: Ascend HCCL Test's (``hccl_test``) flags and output, emulated.

``ccemu hccl-test all_reduce_test -b 8K -e 64M -f 2 -d fp32 -o sum -p 8`` stands for
``mpirun -n 8 ./bin/all_reduce_test ...``: the same getopt flags, start line, header and rows
(``%-17llu | %-14.2f | %-20.5f | success|failed|NULL``).

What is emulated: ``aveg_time(us)`` is :func:`collectives.simulate` of the call with
``library="hccl"`` (the HCCL library model's pick, timed on the network model of ``--topology``);
``alg_bandwidth(GB/s)`` is algbw, bytes / time with GB = 1e9, not busbw; ``check_result`` comes
from really running the picked schedule on checkable data (:func:`collectives.dataplane.measure`),
``NULL`` with ``-c 0`` or when a sum over more than 256 devices could overflow the check.

data_size is the size column hccl_test sweeps (``-b`` .. ``-e``), the largest buffer each NPU
holds, which is nccl-tests' size S of the call:

* all_reduce_test, broadcast_test, reduce_test: each NPU's whole buffer (S = data_size);
* all_gather_test: each NPU's receive buffer, P blocks of data_size / P (its send buffer);
* reduce_scatter_test: each NPU's send buffer, P blocks of data_size / P (its receive buffer);
* alltoall_test: each NPU's send (= receive) buffer, data_size / P per peer;
* scatter_test: the root's send buffer, P blocks of data_size / P (each NPU's receive buffer,
  ``HcclScatter``'s recvCount: ``hccl_scatter_rootinfo_test.cc`` rounds ``count / rank_size`` up and
  divides ``recv bytes x rank_size`` by the time);
* alltoallv_test: each NPU's send (= receive) buffer, cut evenly, ``count / rank_size`` elements per
  peer (``hccl_alltoallv_rootinfo_test.cc``: the element count rounded up to a multiple of
  ``rank_size x 128``, or of ``rank_size`` below that; alg_bandwidth is one NPU's buffer over the
  time). ccemu's alltoallv of the P NPUs' buffers (its size is what all of them send, P x data_size),
  checked with the counts on column blocks of every peer's block.

As hccl_test does, the per-NPU block count is rounded up (to whole elements, and for the block
collectives to whole elements per block), and alg_bandwidth divides the bytes actually moved.

No-ops: ``-n`` and ``-w`` only appear in the start line (emulated times need no repeats; the data
runs once per size); ``-z`` (zero copy), ``-s`` (nslb), ``-a`` (accelerator mode) are accepted and
ignored; ``-o`` is ignored by the collectives that do not reduce, as hccl_test warns. ``-p`` must
be the topology's devices per server (the device count is the topology's, with ``--nodes``).

>>> executable_collective("./bin/all_gather_test"), hccl_dtype("bfp16"), hccl_sizes(8, 64, 4.0, None)
('allgather', 'bfloat16', [8, 32])
>>> format_row(8192, 20.5, 0.3996, "success")
'8192              | 20.50          | 0.39960              | success'
"""

from __future__ import annotations

import math
import os

from .errors import MAX_DEVICES, MAX_ITERS, MAX_SIZES, UsageError, check_int
from . import add_routing_argument

DEFAULT_TOPOLOGY = "atlas800t-a2"

#: hccl_test executables ccemu emulates -> ccemu collective.
EXECUTABLES = {
    "all_reduce_test": "allreduce", "all_gather_test": "allgather", "reduce_scatter_test": "reduce_scatter",
    "alltoall_test": "alltoall", "broadcast_test": "broadcast", "reduce_test": "reduce",
    "scatter_test": "scatter", "alltoallv_test": "alltoallv",
}
#: hccl_test executables without a ccemu collective yet: none (its eight binaries, libraries.md 3.5).
NOT_YET: tuple = ()
#: hccl_test's ``granularity`` (``hccl_test_common.h``, 128): alltoallv_test's element count is rounded
#: up to a multiple of ``rank_size x GRANULARITY`` (of ``rank_size`` when it is smaller than that).
GRANULARITY = 128

#: hccl_test's -d names -> ccemu dtype.
DTYPE_NAMES = {
    "fp32": "float32", "fp16": "float16", "bfp16": "bfloat16", "bf16": "bfloat16", "fp64": "float64",
    "int8": "int8", "int32": "int32", "int64": "int64", "uint8": "uint8", "uint32": "uint32", "uint64": "uint64",
    "int16": "int16", "uint16": "uint16",
}
OPS = ("sum", "prod", "max", "min")

START = "the minbytes is {}, maxbytes is {}, iters is {}, warmup_iters is {}"
HEADER = "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:"


def register(subparsers):
    p = subparsers.add_parser(
        "hccl-test", help="Ascend hccl_test's flags and output, with emulated times",
        description="Run an hccl_test executable's sweep (all_reduce_test, all_gather_test, reduce_scatter_test, "
                    "alltoall_test, broadcast_test, reduce_test, scatter_test, alltoallv_test) and print its "
                    "table with ccemu's emulated times.")
    p.add_argument("executable", metavar="EXECUTABLE", help=", ".join(EXECUTABLES))
    p.add_argument("-b", dest="minbytes", default="64M", help="smallest data size, K/M/G (default 64M)")
    p.add_argument("-e", dest="maxbytes", default="64M", help="largest data size, K/M/G (default 64M)")
    p.add_argument("-i", dest="stepbytes", default=None, help="size increment (default (e-b)/10)")
    p.add_argument("-f", dest="stepfactor", type=float, default=None, help="size factor > 1.0 (wins over -i)")
    p.add_argument("-n", dest="iters", type=int, default=20, help="iterations (default 20; start line only)")
    p.add_argument("-w", dest="warmup_iters", type=int, default=5, help="warm-up iterations (default 5; start line only)")
    p.add_argument("-o", dest="op", default="sum", help="|".join(OPS) + " (default sum)")
    p.add_argument("-d", dest="datatype", default="fp32", help="|".join(DTYPE_NAMES) + " (default fp32)")
    p.add_argument("-r", dest="root", type=int, default=0, help="root rank of broadcast/reduce/scatter (default 0)")
    p.add_argument("-c", dest="check", type=int, default=1, help="check the result: 1 (default) or 0 (NULL)")
    p.add_argument("-p", dest="npus", type=int, default=None,
                   help="NPUs per node (default and only value: the topology's devices per server)")
    p.add_argument("-z", dest="zero_copy", default=None, help="zero copy (accepted, no effect)")
    p.add_argument("-s", dest="nslb", default=None, help="nslb (accepted, no effect)")
    p.add_argument("-a", dest="accelerator", default=None, help="accelerator mode (accepted, no effect)")
    p.add_argument("--topology", default=DEFAULT_TOPOLOGY, help=f"preset name or topology file (default {DEFAULT_TOPOLOGY})")
    p.add_argument("--nodes", type=int, default=None, help="servers of a preset (default 1)")
    p.add_argument("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
                   help="NICs of a multi-node preset instead of the vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
                        "tcpx:200:0.5, efa:100:4")
    add_routing_argument(p)
    p.set_defaults(func=main)


def executable_collective(name: str) -> str:
    """The ccemu collective of an hccl_test executable (a path like ``./bin/all_reduce_test`` works)."""
    base = os.path.basename(str(name))
    if base in EXECUTABLES:
        return EXECUTABLES[base]
    if base in NOT_YET:
        raise UsageError(f"{base}: ccemu does not have {base[:-len('_test')]} yet; "
                         f"expected one of {', '.join(EXECUTABLES)}")
    raise UsageError(f"unknown hccl_test executable {name!r}; expected one of {', '.join(EXECUTABLES)}")


def hccl_dtype(name: str) -> str:
    """The ccemu dtype of hccl_test's ``-d`` name."""
    if name not in DTYPE_NAMES:
        raise UsageError(f"-d {name}: unknown data type; expected one of {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def hccl_sizes(lo: int, hi: int, factor: float | None, step: int | None) -> list[int]:
    """hccl_test's sweep: times ``factor`` (wins), else plus ``step`` (default ``(hi - lo) // 10``);
    a step of 0 (``-b`` = ``-e``) gives the one size."""
    from collectives.study import size_sweep

    if lo > hi:
        raise UsageError(f"-b {lo} is larger than -e {hi}")
    if factor is not None:
        if not (factor > 1.0 and math.isfinite(factor)):
            raise UsageError(f"-f {factor:g}: expected a factor greater than 1.0")
        if lo == 0:
            raise UsageError("-b 0 with -f: a factor never grows 0 bytes; expected -b of at least 1")
        if math.log(max(hi, 1) / lo) / math.log(factor) > MAX_SIZES:
            raise UsageError(f"-b {lo} -e {hi} -f {factor:g} gives more than {MAX_SIZES} sizes")
        return size_sweep(lo, hi, factor=factor)
    if step is None:
        step = (hi - lo) // 10
    if step <= 0:
        return [lo]
    if (hi - lo) // step + 1 > MAX_SIZES:
        raise UsageError(f"-b {lo} -e {hi} -i {step} gives more than {MAX_SIZES} sizes")
    return size_sweep(lo, hi, step=step)


def count_for(spec, data_size: int, P: int, itemsize: int) -> int:
    """Elements per slot (ccemu's count) for hccl_test's data size, rounded up as hccl_test does
    (alltoallv: the count of all NPUs' buffers, each rounded up to its alignment).

    >>> from collectives import registry
    >>> count_for(registry.collective("scatter"), 1000, 8, 4), count_for(registry.collective("alltoallv"), 1000, 8, 4)
    (32, 2048)
    """
    if spec.call_params:   # alltoallv_test: per NPU ceil(data_size / itemsize) elements, aligned
        count = -(-data_size // itemsize)
        align = P * GRANULARITY if count >= P * GRANULARITY else P
        return P * (-(-count // align) * align)
    slots = P if spec.per_device_blocks else 1
    return -(-data_size // (itemsize * slots))


def format_row(data_size: int, time_us: float, algbw: float, check: str) -> str:
    return f"{data_size:<17d} | {time_us:<14.2f} | {algbw:<20.5f} | {check}"


def main(args) -> int:
    from collectives import dataplane, dtypes, registry, simulate
    from collectives.libraries import system
    from collectives.study import parse_size
    from topologies import load_topology

    coll = executable_collective(args.executable)
    spec = registry.collective(coll)
    dtype = hccl_dtype(args.datatype)
    if args.op not in OPS:
        raise UsageError(f"-o {args.op}: unknown reduction; expected one of {', '.join(OPS)}")
    check_int("-n", args.iters, 1, MAX_ITERS, "iterations")
    check_int("-w", args.warmup_iters, 0, MAX_ITERS, "warm-up iterations")
    check_int("-c", args.check, 0, 1, "1: check the result, 0: no check")
    if args.nodes is not None:
        check_int("--nodes", args.nodes, 1, MAX_DEVICES, "servers of the preset")
    lo, hi = parse_size(args.minbytes), parse_size(args.maxbytes)
    step = None if args.stepbytes is None else parse_size(args.stepbytes)
    sizes = hccl_sizes(lo, hi, args.stepfactor, step)
    topo = load_topology(args.topology, nodes=args.nodes, nic=args.nic, routing=args.routing)
    P = topo.num_devices
    ppn = system(topo).ppn
    if args.npus is not None and (args.npus < 1 or P % args.npus or args.npus != ppn):
        raise UsageError(f"-p {args.npus}: {topo.name} has {P} devices, {ppn} per server; expected -p {ppn}")
    if not 0 <= args.root < P:
        raise UsageError(f"-r {args.root} is not a rank of {topo.name} (0..{P - 1})")
    op = args.op if spec.reduces else "sum"
    itemsize = dtypes.itemsize(dtype)
    # The data plane's inputs keep sums exact up to 256 devices; beyond, ccemu says NULL rather than check inexactly.
    checkable = args.check == 1 and not (spec.reduces and op == "sum" and P > 256)

    print(START.format(lo, hi, args.iters, args.warmup_iters), flush=True)
    print(HEADER, flush=True)
    for data_size in sizes:
        count = count_for(spec, data_size, P, itemsize)
        nbytes = spec.nbytes(P, count, itemsize)
        result = simulate(coll, nbytes, topo, algorithm="auto", library="hccl", dtype=dtype, op=op, root=args.root)
        time_us = result.time_s * 1e6
        moved = nbytes // P if spec.call_params else nbytes   # alltoallv_test: one NPU's buffer
        algbw = moved / time_us / 1e3 if time_us > 0 else 0.0
        check = "NULL"
        if checkable and spec.call_params:
            check = "success" if _alltoallv_wrong(P, count // (P * P), result, dtype, topo) == 0 else "failed"
        elif checkable:
            run = dataplane.measure(coll, P, count, result.algorithm, result.params, dtype=dtype, op=op,
                                    root=args.root, topology=topo, iters=1, warmup=0, places=(False,), budget_s=0.1)
            check = "success" if run[0].nwrong == 0 else "failed"
        print(format_row(data_size, time_us, algbw, check), flush=True)
    return 0


def _alltoallv_wrong(P: int, per_peer: int, result, dtype: str, topology) -> int:
    """Wrong elements of alltoallv_test's even alltoallv (``per_peer`` elements from every NPU to every
    NPU) on the schedule ``result`` timed, run in column blocks of every peer's block (each block an
    even alltoallv of its own width) of at most :data:`collectives.dataplane.BLOCK_BYTES`."""
    import numpy as np

    import collectives
    from collectives import dataplane, dtypes, registry

    even = registry.collective("alltoall")          # the same input layout: P blocks of per_peer per NPU
    params = {k: v for k, v in result.params.items() if k != "counts"}
    bits = dtype if dtypes.bits_only(dtype) else None
    width = max(1, min(per_peer, dataplane.BLOCK_BYTES // max(P * P * dtypes.itemsize(dtype), 1)))
    wrong = 0
    for lo in range(0, per_peer, width):
        runs = dataplane.block_runs(even, P, per_peer, lo, min(per_peer, lo + width))
        data = np.stack([dataplane.device_input(even, P, per_peer, dtype, "sum", d, runs) for d in range(P)])
        got = collectives.run("alltoallv", data, result.algorithm, dtype=bits, **params)
        want = collectives.reference("alltoallv", data, dtype=bits)
        wrong += int(np.count_nonzero(got.view(want.dtype) != want))
    return wrong

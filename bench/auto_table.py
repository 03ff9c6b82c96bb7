"""What auto-selection picks: ``python -m bench.auto_table [--topology NAME ...] [--sizes ...]``.

For every topology preset, collective and message size, prints the algorithm and parameters
:func:`collectives.simulate` with ``algorithm="best"`` picks, the protocol regime, the emulated time and the busbw
it gives, and the runner-up. A preset that cannot be built (unknown name, preset module not there
yet) gets one line saying so instead of rows. On systems of more than
:data:`collectives.select.LARGE_P` devices auto times a restricted set of algorithms; the table lists
which were left out.
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_TOPOLOGIES = ("hgx-h20", "mi308x-8", "atlas800t-a2", "cloudmatrix384")
DEFAULT_COLLECTIVES = ("allreduce", "allgather", "alltoall")
DEFAULT_SIZES = (1 << 10, 1 << 20, 256 << 20)


def human(nbytes: int) -> str:
    """``1024 -> '1 KiB'``, ``268435456 -> '256 MiB'``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def _params(p: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in p.items()) or "-"


def load(name: str):
    """The preset ``name``, or ``(None, reason)`` when it cannot be built here."""
    try:
        from topologies import preset
    except ImportError as exc:  # presets package not there yet
        return None, f"presets unavailable ({exc})"
    try:
        return preset(name), None
    except (ValueError, ImportError, KeyError) as exc:
        return None, str(exc)


def table(topologies, collectives=DEFAULT_COLLECTIVES, sizes=DEFAULT_SIZES, out=sys.stdout) -> int:
    """Print the table; returns the number of topologies that could not be built."""
    from collectives import simulate

    missing = 0
    header = f"{'topology':<16}{'P':>5}  {'collective':<11}{'size':>9}  {'algorithm':<19}{'params':<34}" \
             f"{'proto':<7}{'time_us':>11}{'busbw':>9}{'eff':>6}  runner-up"
    print(header, file=out)
    for name in topologies:
        topo, why = load(name)
        if topo is None:
            missing += 1
            print(f"{name:<16}  not available: {why}", file=out)
            continue
        skipped = set()
        for coll in collectives:
            for size in sizes:
                t0 = time.perf_counter()
                trials = simulate(coll, size, topo, algorithm="best", candidates=True).candidates
                host = time.perf_counter() - t0
                timed = [t for t in trials if t.result is not None]
                skipped |= {(coll, t.algorithm, t.skipped) for t in trials
                            if t.result is None and not t.skipped.startswith("pruned")}  # pruned: proven slower
                if not timed:
                    print(f"{name:<16}{topo.num_devices:>5}  {coll:<11}{human(size):>9}  no algorithm can run", file=out)
                    continue
                best = timed[0].result
                runner = next((t for t in timed[1:] if t.algorithm != best.algorithm), None)
                second = (f"{runner.algorithm} {runner.result.busbw_GBps:.1f}" if runner else "-")
                print(f"{name:<16}{topo.num_devices:>5}  {coll:<11}{human(size):>9}  {best.algorithm:<19}"
                      f"{_params(best.params):<34}{best.protocol:<7}{best.time_s * 1e6:>11.1f}"
                      f"{best.busbw_GBps:>9.1f}{best.bus_efficiency:>6.2f}  {second}"
                      f"  [{len(timed)} timed, {host:.1f}s]", file=out)
        for coll, alg, why in sorted(skipped):
            print(f"{name:<16}  skipped {coll} {alg}: {why}", file=out)
    return missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auto_table", description=__doc__.splitlines()[0])
    parser.add_argument("--topology", nargs="+", default=list(DEFAULT_TOPOLOGIES), metavar="NAME",
                        help="preset names (default: %(default)s)")
    parser.add_argument("--collectives", nargs="+", default=list(DEFAULT_COLLECTIVES), metavar="NAME")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), metavar="BYTES",
                        help="message sizes in bytes (nccl-tests' size); default 1 KiB, 1 MiB, 256 MiB")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    table(args.topology, args.collectives, args.sizes)
    print(f"({time.perf_counter() - t0:.1f} s; busbw in GB/s, eff = busbw / peak)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

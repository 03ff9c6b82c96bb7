"""The scale-out table: ``python -m bench.scaleout_table [--devices 8,64,512,4096] [--systems ...]``.

Allreduce and all-to-all busbw (nccl-tests' definitions) at each device count on each system with its
vendor's usual NIC, as the system's library would run them (``algorithm="auto"``), with the routing
the fabric used. Devices fill the system's building blocks (servers of 8, CloudMatrix 384
supernodes, GB200 NVL72 racks) evenly, as jobs are placed: ``n`` devices take the fewest blocks that
each hold an equal share (512 GB200s: 64 in each of 8 racks; 4096 CloudMatrix NPUs: 256 in each of 16
supernodes), the first devices of each block (:func:`topologies.whatif.select_devices`). Prints one
markdown table, then the host time and peak memory of the run.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

#: (label, preset, devices per building block): H20-class and 910B-class clusters of 8-device servers,
#: the CloudMatrix 384 supernode, GB200 NVL72 racks joined by InfiniBand.
SYSTEMS = (("H20 cluster", "hgx-h20", 8), ("910B cluster", "atlas800t-a2", 8),
           ("CloudMatrix 384", "cloudmatrix384", 384), ("GB200 NVL72 racks", "gb200-nvl72", 72))
DEFAULT_DEVICES = (8, 64, 512, 4096)
#: Sizes: nccl-tests' total size S per collective.
DEFAULT_SIZE = 256 << 20


def system(preset_name: str, block: int, devices: int):
    """``devices`` devices of ``preset_name``, an equal share in each of the fewest blocks that hold them."""
    from topologies import preset
    from topologies.whatif import select_devices

    blocks = next(k for k in range(-(-devices // block), devices + 1) if devices % k == 0)
    share = devices // blocks
    topo = preset(preset_name, nodes=blocks) if blocks > 1 else preset(preset_name)
    chosen = [b * block + i for b in range(blocks) for i in range(share)]
    return select_devices(topo, chosen, name=f"{topo.name}[{blocks}x{share}]") if share < block else topo


def rows(systems=SYSTEMS, devices=DEFAULT_DEVICES, nbytes=DEFAULT_SIZE, progress=None):
    """One dict per (system, device count): busbw of allreduce and all-to-all, their algorithms, the routing."""
    from collectives import simulate

    out = []
    for label, name, block in systems:
        for P in devices:
            topo = system(name, block, P)
            row = {"system": label, "preset": name, "devices": P, "topology": topo.name,
                   "routing": topo.routing_text()}
            for coll in ("allreduce", "alltoall"):
                t0 = time.perf_counter()
                r = simulate(coll, nbytes, topo)
                row[coll] = (r.busbw_GBps, r.algorithm, time.perf_counter() - t0)
            out.append(row)
            if progress:
                progress(row)
    return out


def markdown(rows_) -> str:
    lines = ["| system | devices | allreduce busbw GB/s (algorithm) | all-to-all busbw GB/s (algorithm) | routing |",
             "|---|---:|---|---|---|"]
    for r in rows_:
        ar, a2a = r["allreduce"], r["alltoall"]
        lines.append(f"| {r['system']} | {r['devices']} | {ar[0]:.1f} ({ar[1]}) | {a2a[0]:.1f} ({a2a[1]}) | "
                     f"{r['routing']} |")
    return "\n".join(lines)


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"device counts {text!r}; expected integers like 8,64,512") from None
    if not values or any(v < 2 for v in values):
        raise argparse.ArgumentTypeError(f"device counts {text!r}; expected integers >= 2")
    return values


def main(argv=None) -> int:
    names = [s[1] for s in SYSTEMS]
    p = argparse.ArgumentParser(prog="python -m bench.scaleout_table", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=_counts, default=DEFAULT_DEVICES, help="device counts (default 8,64,512,4096)")
    p.add_argument("--systems", default=",".join(names), help=f"presets among {', '.join(names)}")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="nccl-tests' total size S in bytes (default 256 MiB)")
    args = p.parse_args(argv)
    chosen = args.systems.split(",")
    unknown = [c for c in chosen if c not in names]
    if unknown:
        p.error(f"system {unknown[0]!r}; expected one of {', '.join(names)}")
    if args.size <= 0:
        p.error(f"size {args.size}; expected a positive number of bytes")
    systems = [s for s in SYSTEMS if s[1] in chosen]
    tracemalloc.start()
    t0 = time.perf_counter()

    def progress(row):
        print(f"# {row['system']} x{row['devices']}: {row['allreduce'][2]:.1f} s + {row['alltoall'][2]:.1f} s",
              file=sys.stderr, flush=True)

    table = rows(systems, args.devices, args.size, progress)
    print(markdown(table))
    peak = tracemalloc.get_traced_memory()[1]
    print(f"\nhost time {time.perf_counter() - t0:.1f} s, peak traced memory {peak / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
